"""uCLIP training objective (Sec. "Inter Alignment" and "Intra Alignment", Eq. 5–7).

All embeddings are (B, d) outputs of the projection heads, L2-normalised, so the cosine
similarity sim(a, b) is the dot product a . b. Row i of every tensor belongs to English query i.

    l(q, k)   = -(1/B) sum_i log softmax_j(sim(q_i, k_j) / tau)[i]              (Eq. 5)
              (also CLT's loss, with its learned temperature: :func:`info_nce`)
    L_text    = 1/2 [l(e^C, e^M) + l(e^M, e^C)]                                  (Eq. 6)
    L_pseudo  = 1/2 [l(v^C, m^M) + l(m^M, v^C)]                                  (Eq. 6)
    L_inter   = L_text + L_pseudo
    L_intra   = 1/(2B) sum_i (||e^C_i - v^C_i||^2 + ||e^M_i - m^M_i||^2)        (Eq. 7)
    L         = L_inter + lambda * L_intra
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from uclip.errors import UclipError


def info_nce(
    q: Tensor,
    k: Tensor,
    tau: float | None = None,
    *,
    scale: Tensor | None = None,
    groups: Tensor | None = None,
) -> Tensor:
    """Eq. 5: InfoNCE of queries q against keys k, positives on the diagonal. (B, d) -> scalar.

    The one contrastive loss of the project (uCLIP's Eq. 5 and CLT's CrossEntropy(S, I)). The
    temperature comes the way each method defines it, so each keeps its exact numbers:

    - ``tau`` (uCLIP, a fixed float): ``logits = q kᵀ / tau``;
    - ``scale`` (CLT, the learned t = exp(logit_scale) as a 0-d tensor that receives gradients):
      ``logits = q kᵀ · t``.

    ``groups`` (B,) marks rows that share an item (CLT: an image, or an English pivot sentence):
    entry (r, c), c != r, is removed from row r's softmax when rows r and c share a group id, so
    two captions of one image are not each other's negatives. ``None``: every off-diagonal pair
    is a negative.
    """
    _check_pair("info_nce", q, k)
    if (tau is None) == (scale is None):
        raise UclipError("info_nce takes the temperature as tau or as scale (exactly one).")
    if tau is not None:
        _check_tau(tau)
        logits = q @ k.T / tau
    else:
        logits = q @ k.T * scale
    if groups is not None:
        if groups.shape != (logits.shape[0],):
            raise UclipError(
                f"groups must have shape ({logits.shape[0]},), got {tuple(groups.shape)}"
            )
        logits = _mask_same_group(logits, groups)
    targets = torch.arange(q.shape[0], device=q.device)
    return F.cross_entropy(logits, targets)


def symmetric_info_nce(
    a: Tensor,
    b: Tensor,
    tau: float | None = None,
    *,
    scale: Tensor | None = None,
    groups: Tensor | None = None,
) -> Tensor:
    """1/2 [l(a, b) + l(b, a)] with l from Eq. 5: softmax is asymmetric, so both directions
    (the temperature and ``groups`` as in :func:`info_nce`)."""
    forward = info_nce(a, b, tau, scale=scale, groups=groups)
    return 0.5 * (forward + info_nce(b, a, tau, scale=scale, groups=groups))


def _mask_same_group(logits: Tensor, groups: Tensor) -> Tensor:
    same = groups[:, None] == groups[None, :]
    same.fill_diagonal_(False)
    return logits.masked_fill(same, float("-inf"))


def text_alignment_loss(e_c_hat: Tensor, e_m_hat: Tensor, tau: float) -> Tensor:
    """L_text (Eq. 6): the same English query through the CLIP and the multilingual head."""
    return symmetric_info_nce(e_c_hat, e_m_hat, tau)


def pseudo_alignment_loss(v_c_hat: Tensor, m_m_hat: Tensor, tau: float) -> Tensor:
    """L_pseudo (Eq. 6): retrieved image feature vs retrieved multilingual text feature."""
    return symmetric_info_nce(v_c_hat, m_m_hat, tau)


def inter_alignment_loss(
    e_c_hat: Tensor, e_m_hat: Tensor, v_c_hat: Tensor, m_m_hat: Tensor, tau: float
) -> Tensor:
    """L_inter = L_text + L_pseudo (Eq. 6)."""
    return text_alignment_loss(e_c_hat, e_m_hat, tau) + pseudo_alignment_loss(v_c_hat, m_m_hat, tau)


def intra_alignment_loss(
    e_c_hat: Tensor, v_c_hat: Tensor, e_m_hat: Tensor, m_m_hat: Tensor, squared: bool = True
) -> Tensor:
    """L_intra (Eq. 7): the attractive term only, 1/(2B) sum_i (||e^C-v^C||^2 + ||e^M-m^M||^2).

    Note the argument order pairs each query embedding with its retrieved partner in the same
    encoder space: (e^C, v^C) in CLIP space, (e^M, m^M) in multilingual space. ``squared=False``
    uses the plain distances ||.||, as the authors' code does (the paper writes squares).
    """
    _check_pair("intra_alignment_loss", e_c_hat, v_c_hat)
    _check_pair("intra_alignment_loss", e_m_hat, m_m_hat)
    _check_same_batch(e_c_hat, e_m_hat)
    clip_gap = (e_c_hat - v_c_hat).pow(2).sum(dim=1)
    multilingual_gap = (e_m_hat - m_m_hat).pow(2).sum(dim=1)
    if not squared:
        clip_gap, multilingual_gap = clip_gap.sqrt(), multilingual_gap.sqrt()
    return (clip_gap + multilingual_gap).sum() / (2 * e_c_hat.shape[0])


def uclip_loss(
    e_c_hat: Tensor,
    e_m_hat: Tensor,
    v_c_hat: Tensor,
    m_m_hat: Tensor,
    *,
    tau: float = 0.01,
    lam: float = 0.1,
    use_text: bool = True,
    use_pseudo: bool = True,
    use_intra: bool = True,
    intra_squared: bool = True,
) -> dict[str, Tensor]:
    """The full objective L = L_text + L_pseudo + lam * L_intra (Eq. 5–7).

    The ``use_*`` flags are for ablations: a switched-off term adds nothing to ``"loss"`` (and
    gets no gradient) but its value is still computed and reported, detached.

    Returns:
        ``{"loss": L, "text": L_text, "pseudo": L_pseudo, "intra": L_intra}`` (scalars; the
        reported ``"intra"`` is unweighted).
    """
    _check_same_batch(e_c_hat, e_m_hat)
    _check_same_batch(e_c_hat, v_c_hat)
    if not (use_text or use_pseudo or use_intra):
        raise UclipError("uclip_loss has every term switched off; enable text, pseudo or intra.")
    if not (isinstance(lam, (int, float)) and math.isfinite(lam) and lam >= 0):
        raise UclipError(f"uclip_loss lam must be a finite number >= 0, got {lam!r}.")
    grad = torch.is_grad_enabled()
    # A switched-off term is still evaluated for the report, but outside the autograd graph.
    with torch.set_grad_enabled(grad and use_text):
        text = text_alignment_loss(e_c_hat, e_m_hat, tau)
    with torch.set_grad_enabled(grad and use_pseudo):
        pseudo = pseudo_alignment_loss(v_c_hat, m_m_hat, tau)
    with torch.set_grad_enabled(grad and use_intra):
        intra = intra_alignment_loss(e_c_hat, v_c_hat, e_m_hat, m_m_hat, intra_squared)
    enabled = [(use_text, text), (use_pseudo, pseudo), (use_intra, lam * intra)]
    loss = torch.stack([term for on, term in enabled if on]).sum()
    return {"loss": loss, "text": text, "pseudo": pseudo, "intra": intra}


def _check_pair(where: str, a: Tensor, b: Tensor) -> None:
    if not isinstance(a, Tensor) or not isinstance(b, Tensor) or a.ndim != 2 or b.ndim != 2:
        raise UclipError(f"{where} expects two 2-D (B, d) tensors; reshape the embeddings.")
    if a.shape != b.shape:
        raise UclipError(
            f"{where} got shapes {tuple(a.shape)} and {tuple(b.shape)}; both sides must be (B, d) "
            "with row i of each belonging to the same query (project both with a head of the "
            "same out_dim)."
        )
    if a.shape[0] == 0:
        raise UclipError(f"{where} got an empty batch; use batches of at least one query.")


def _check_same_batch(a: Tensor, b: Tensor) -> None:
    if isinstance(a, Tensor) and isinstance(b, Tensor) and a.shape[:1] != b.shape[:1]:
        raise UclipError(
            f"uclip_loss inputs have batch sizes {a.shape[0]} and {b.shape[0]}; all four "
            "embeddings must come from the same B English queries."
        )


def _check_tau(tau: float) -> None:
    if not (isinstance(tau, (int, float)) and math.isfinite(tau) and tau > 0):
        raise UclipError(f"temperature tau must be a finite number > 0, got {tau!r}.")
