"""Embedding perturbation (uCLIP, Sec. "Embedding Perturbation", Eq. 3–4).

    x~ = Norm(x + eps),  eps ~ N(0, sigma^2 I)                                  (Eq. 3, Eq. 4)

applied to e^C, e^M (Eq. 3) and to the retrieved v^C, m^M (Eq. 4) with independent noise. The
reference configuration uses sigma^2 = 0.004, i.e. a noise standard deviation of about 0.063.

Under data parallelism (:mod:`uclip.train.distributed`) each rank perturbs its own rows with the
noise one process would draw for them (:func:`perturb_local_rows`); the rank layout comes from a
:class:`RowGather` (``uclip.train.gather.FeatureGather``).
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from uclip.errors import UclipError


def perturb(x: Tensor, noise_variance: float, generator: torch.Generator | None = None) -> Tensor:
    """Eq. 3–4: add isotropic Gaussian noise of variance ``noise_variance`` and L2-normalise.

    Args:
        x: (..., d) embeddings; normalisation is along the last dimension.
        noise_variance: sigma^2 of the noise (not sigma); 0 returns Norm(x) and draws nothing.
        generator: source of the noise, on ``x``'s device; the same generator state gives the
            same output.

    Returns:
        Tensor of ``x``'s shape and dtype with unit-norm rows.
    """
    if not isinstance(x, Tensor) or x.ndim == 0 or not x.is_floating_point():
        raise UclipError("perturb expects a floating-point tensor of embeddings (..., d).")
    if not (isinstance(noise_variance, (int, float)) and math.isfinite(noise_variance)):
        raise UclipError(f"perturb noise_variance must be a finite number, got {noise_variance!r}.")
    if noise_variance < 0:
        raise UclipError(
            f"perturb noise_variance must be >= 0 (it is sigma^2), got {noise_variance}; "
            "the reference setting is 0.004."
        )
    if noise_variance == 0:
        return F.normalize(x, dim=-1)
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    return F.normalize(x + noise * math.sqrt(noise_variance), dim=-1)


class RowGather(Protocol):
    """The rows of a global batch spread over ``world_size`` ranks (``uclip.train.gather``):
    calling it concatenates every rank's (b, ...) rows in rank order, with gradients."""

    rank: int
    world_size: int

    @property
    def active(self) -> bool: ...

    def __call__(self, x: Tensor) -> Tensor: ...

    def local_rows(self, n_local: int) -> slice: ...


def perturb_local_rows(
    x: Tensor, noise_variance: float, generator: torch.Generator, gather: RowGather | None = None
) -> Tensor:
    """Eq. 3–4 on this rank's rows with the noise a single process would draw for them.

    A single process perturbs the whole (B, d) global batch with one draw of (B, d) noise from the
    step generator. Each rank draws that same (B, d) noise (every rank's generator has the same
    state) and keeps its own rows, by perturbing a (B, d) tensor that holds ``x`` at this rank's
    rows; the other rows are discarded. Costs W times the (cheap) elementwise work of ``perturb``.
    """
    if gather is None or not gather.active:
        return perturb(x, noise_variance, generator)
    rows = gather.local_rows(x.shape[0])
    full = x.new_zeros((x.shape[0] * gather.world_size, *x.shape[1:]))
    full[rows] = x
    return perturb(full, noise_variance, generator)[rows]
