"""Embedding perturbation (uCLIP, Sec. "Embedding Perturbation", Eq. 3–4).

    x~ = Norm(x + eps),  eps ~ N(0, sigma^2 I)                                  (Eq. 3, Eq. 4)

applied to e^C, e^M (Eq. 3) and to the retrieved v^C, m^M (Eq. 4) with independent noise. The
reference configuration uses sigma^2 = 0.004, i.e. a noise standard deviation of about 0.063.
"""

from __future__ import annotations

import math

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
