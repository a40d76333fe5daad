"""Projection heads f_C and f_M (uCLIP, Sec. "Inter Alignment").

    e^_C = f_C(e~_C),  v^_C = f_C(v~_C),  e^_M = f_M(e~_M),  m^_M = f_M(m~_M)

Each head is Linear(in, 2*in) -> BatchNorm1d -> ReLU -> Linear(2*in, out) -> L2-normalise, the
reference architecture (``kind="mlp"``). With a 512-d CLIP and a 384-d multilingual encoder the
two heads hold 1,052,160 + 690,944 = 1,743,104 parameters: the paper's "1.7M trainable parameters".

Two variants beyond the paper, chosen on dev data only (see docs/training.md):

- ``kind="linear"``: one bias-free Linear then L2-normalise. With f_C the identity and f_M a ridge
  map from the multilingual to the anchor space it is the closed-form baseline
  (:mod:`uclip.method.ridge`), and a trainable linear map when trained.
- ``kind="residual"``: a bias-free linear ``skip`` path plus the reference MLP,
  Norm(skip(x) + mlp(x)). With the MLP's last layer zeroed the head starts as exactly its
  linear path, so a closed-form initialisation is a starting point the training can only refine.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from uclip.errors import UclipError

HEAD_KINDS = ("mlp", "linear", "residual")


class ProjectionHead(nn.Module):
    """Maps frozen (B, in_dim) embeddings to the shared (B, out_dim) unit sphere."""

    def __init__(
        self, in_dim: int, out_dim: int = 512, hidden_dim: int | None = None, kind: str = "mlp"
    ) -> None:
        super().__init__()
        hidden_dim = 2 * in_dim if hidden_dim is None else hidden_dim
        for name, value in (("in_dim", in_dim), ("out_dim", out_dim), ("hidden_dim", hidden_dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UclipError(f"ProjectionHead {name} must be an integer >= 1, got {value!r}.")
        if kind not in HEAD_KINDS:
            raise UclipError(f"ProjectionHead kind must be one of {HEAD_KINDS}, got {kind!r}.")
        self.in_dim = in_dim
        self.out_dim = out_dim
        self.hidden_dim = hidden_dim
        self.kind = kind
        self.skip = nn.Linear(in_dim, out_dim, bias=False) if kind != "mlp" else None
        self.net = (
            nn.Sequential(
                nn.Linear(in_dim, hidden_dim),
                nn.BatchNorm1d(hidden_dim),
                nn.ReLU(),
                nn.Linear(hidden_dim, out_dim),
            )
            if kind != "linear"
            else None
        )

    def config(self) -> dict[str, Any]:
        """Constructor arguments: ``ProjectionHead(**head.config())`` rebuilds the architecture."""
        return {
            "in_dim": self.in_dim,
            "out_dim": self.out_dim,
            "hidden_dim": self.hidden_dim,
            "kind": self.kind,
        }

    @torch.no_grad()
    def init_linear(self, weight: Tensor) -> None:
        """Set the linear path to ``weight`` (out_dim, in_dim) and, for a residual head, zero the
        MLP's output layer, so the head computes exactly Norm(weight @ x)."""
        if self.skip is None:
            raise UclipError(
                "init_linear needs a 'linear' or 'residual' head (kind='mlp' has none)"
            )
        if tuple(weight.shape) != (self.out_dim, self.in_dim):
            raise UclipError(
                f"init_linear weight is {tuple(weight.shape)}, expected ({self.out_dim}, "
                f"{self.in_dim})"
            )
        self.skip.weight.copy_(weight)
        if self.net is not None:
            self.net[-1].weight.zero_()
            self.net[-1].bias.zero_()

    def forward(self, x: Tensor) -> Tensor:
        """(B, in_dim) -> (B, out_dim), L2-normalised rows."""
        if x.ndim != 2 or x.shape[1] != self.in_dim:
            raise UclipError(
                f"ProjectionHead expects (B, {self.in_dim}) inputs, got {tuple(x.shape)}; "
                "feed it embeddings from the encoder it was built for."
            )
        if self.training and self.net is not None and x.shape[0] < 2:
            # BatchNorm cannot estimate batch statistics from a single row.
            raise UclipError(
                "ProjectionHead got a batch of 1 in training mode; use batches of >= 2 "
                "or call .eval() for inference."
            )
        if self.skip is None:
            return F.normalize(self.net(x), dim=-1)
        if self.net is None:
            return F.normalize(self.skip(x), dim=-1)
        return F.normalize(self.skip(x) + self.net(x), dim=-1)
