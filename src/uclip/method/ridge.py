"""The closed-form baseline: a ridge map from the multilingual space to the anchor space.

Fit on the English training text alone (the same sentences the heads see): X = e^M, Y = e^C,

    W = argmin ||X W^T - Y||^2 + lam ||W||^2 = ((X^T X + lam I)^{-1} X^T Y)^T      (d_C, d_M)

A foreign sentence x is then compared as Norm(W e^M(x)) against the anchor embedding of English
text. This is the simplest strong baseline for uCLIP in the text-anchor setting (issue 12), and
a closed-form initialisation of the heads (:func:`init_heads_from_ridge`).
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
from torch import Tensor

from uclip.errors import UclipError
from uclip.method.model import UCLIPConfig, UCLIPHeads


def fit_ridge(x: Tensor, y: Tensor, lam: float) -> Tensor:
    """Ridge regression without intercept: the (d_y, d_x) W minimising ||x W^T - y||^2 + lam||W||^2.

    Shapes: x (N, d_x), y (N, d_y). Solved in float64 through the (d_x, d_x) normal equations.
    """
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise UclipError(
            f"fit_ridge needs (N, d_x) and (N, d_y) with the same N >= 1, got {tuple(x.shape)} "
            f"and {tuple(y.shape)}"
        )
    if not (isinstance(lam, (int, float)) and math.isfinite(lam) and lam >= 0):
        raise UclipError(f"ridge lam must be a finite number >= 0, got {lam!r}")
    x64, y64 = x.double(), y.double()
    gram = x64.T @ x64 + lam * torch.eye(x.shape[1], dtype=torch.float64)
    return torch.linalg.solve(gram, x64.T @ y64).T.float()


def embed_into(weight: Tensor, out_dim: int) -> Tensor:
    """Pad a (d, in) map with zero rows to (out_dim, in): the first d output coordinates."""
    if weight.shape[0] > out_dim:
        raise UclipError(
            f"a {weight.shape[0]}-d linear map does not fit a {out_dim}-d embedding: set "
            f"embed_dim >= {weight.shape[0]}"
        )
    padded = torch.zeros(out_dim, weight.shape[1], dtype=weight.dtype)
    padded[: weight.shape[0]] = weight
    return padded


def init_heads_from_ridge(heads: UCLIPHeads, e_c: Tensor, e_m: Tensor, lam: float) -> None:
    """Make the heads' linear paths the ridge baseline: f_C = identity, f_M = ridge map.

    With ``linear`` heads the model then *is* the baseline; with ``residual`` heads (MLP output
    zeroed) it starts there. ``e_c`` (N, d_C) and ``e_m`` (N, d_M) embed the same English text.
    """
    out_dim = heads.f_c.out_dim
    identity = torch.eye(heads.f_c.in_dim)
    heads.f_c.init_linear(embed_into(identity, out_dim))
    heads.f_m.init_linear(embed_into(fit_ridge(e_m, e_c, lam), out_dim))


def ridge_config(config: UCLIPConfig) -> UCLIPConfig:
    """The baseline's architecture: linear heads in the anchor's own dimension."""
    return replace(config, head="linear", embed_dim=config.anchor_dim, hidden_dim=None)
