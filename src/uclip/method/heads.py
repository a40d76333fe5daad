"""Projection heads f_C and f_M (uCLIP, Sec. "Inter Alignment").

    e^_C = f_C(e~_C),  v^_C = f_C(v~_C),  e^_M = f_M(e~_M),  m^_M = f_M(m~_M)

Each head is Linear(in, 2*in) -> BatchNorm1d -> ReLU -> Linear(2*in, out) -> L2-normalise, the
reference architecture. With a 512-d CLIP and a 384-d multilingual encoder the two heads hold
1,052,160 + 690,944 = 1,743,104 parameters: the paper's "1.7M trainable parameters".
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from uclip.errors import UclipError


class ProjectionHead(nn.Module):
    """Maps frozen (B, in_dim) embeddings to the shared (B, out_dim) unit sphere."""

    def __init__(self, in_dim: int, out_dim: int = 512, hidden_dim: int | None = None) -> None:
        super().__init__()
        hidden_dim = 2 * in_dim if hidden_dim is None else hidden_dim
        for name, value in (("in_dim", in_dim), ("out_dim", out_dim), ("hidden_dim", hidden_dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UclipError(f"ProjectionHead {name} must be an integer >= 1, got {value!r}.")
        self.in_dim = in_dim
        self.out_dim = out_dim
        self.hidden_dim = hidden_dim
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden_dim),
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, out_dim),
        )

    def config(self) -> dict[str, int]:
        """Constructor arguments: ``ProjectionHead(**head.config())`` rebuilds the architecture."""
        return {"in_dim": self.in_dim, "out_dim": self.out_dim, "hidden_dim": self.hidden_dim}

    def forward(self, x: Tensor) -> Tensor:
        """(B, in_dim) -> (B, out_dim), L2-normalised rows."""
        if x.ndim != 2 or x.shape[1] != self.in_dim:
            raise UclipError(
                f"ProjectionHead expects (B, {self.in_dim}) inputs, got {tuple(x.shape)}; "
                "feed it embeddings from the encoder it was built for."
            )
        if self.training and x.shape[0] < 2:
            # BatchNorm cannot estimate batch statistics from a single row.
            raise UclipError(
                "ProjectionHead got a batch of 1 in training mode; use batches of >= 2 "
                "or call .eval() for inference."
            )
        return F.normalize(self.net(x), dim=-1)
