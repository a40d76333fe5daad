"""CLT's contrastive loss (paper §3, the two unnumbered equations of "Method").

    S = E_c · E_iᵀ · t            (B, B) similarities of captions and images, scaled by t
    L(E_i, E_c) = CrossEntropy(S, I)   the diagonal (the paired image) is each row's target

``E_c`` and ``E_i`` are the L2-normalised 512-d adapter outputs, ``t`` a learned temperature
stored as ``logit_scale = log t`` (CLIP's parameterisation, so t stays positive). The same loss
aligns text with text in the Eng-Pivot setting (LaBSE-style): ``E_i`` is then the English side.
It is uCLIP's InfoNCE (:func:`uclip.method.losses.info_nce`) with t as a multiplier.
"""

from __future__ import annotations

import math

from torch import Tensor

from uclip.errors import UclipError
from uclip.method.losses import info_nce, symmetric_info_nce

CLIP_INIT_TEMPERATURE = 0.07
"""CLIP initialises its logit scale to log(1 / 0.07)."""
MAX_LOGIT_SCALE = math.log(100.0)
"""CLIP clips t at 100 so the softmax cannot collapse onto one entry."""


def temperature(logit_scale: Tensor, max_logit_scale: float = MAX_LOGIT_SCALE) -> Tensor:
    """The paper's ``t`` = exp(logit_scale), clipped at exp(max_logit_scale) (= 100)."""
    return logit_scale.clamp(max=max_logit_scale).exp()


def clt_similarity(text_emb: Tensor, other_emb: Tensor, logit_scale: Tensor) -> Tensor:
    """S = E_c · E_iᵀ · t: (B, d), (B', d), scalar -> (B, B')."""
    if text_emb.ndim != 2 or other_emb.ndim != 2 or text_emb.shape[1] != other_emb.shape[1]:
        raise UclipError(
            f"embeddings must be (B, d) with the same d, got {tuple(text_emb.shape)} and "
            f"{tuple(other_emb.shape)}"
        )
    return text_emb @ other_emb.T * temperature(logit_scale)


def clt_loss(
    text_emb: Tensor,
    other_emb: Tensor,
    logit_scale: Tensor,
    *,
    symmetric: bool = False,
    groups: Tensor | None = None,
) -> Tensor:
    """CrossEntropy(S, I) with S = E_c · E_iᵀ · t (the paper's form: captions query images).

    :func:`uclip.method.losses.info_nce` with ``scale = t``. ``symmetric=True`` averages it with
    the images-query-captions direction (CLIP's loss). ``groups`` (B,) marks rows that share an
    image (or an English pivot sentence); such pairs are not used as negatives of each other.
    Returns a scalar (mean over rows).
    """
    if text_emb.shape != other_emb.shape:
        raise UclipError(
            f"CLT pairs row i of the captions with row i of the images: got "
            f"{tuple(text_emb.shape)} and {tuple(other_emb.shape)}"
        )
    loss = symmetric_info_nce if symmetric else info_nce
    return loss(text_emb, other_emb, scale=temperature(logit_scale), groups=groups)
