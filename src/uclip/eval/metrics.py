"""Evaluation metrics: retrieval Recall@K, accuracy, macro-F1, bitext matching accuracy.

Retrieval and bitext metrics work from embeddings in chunks of queries, so peak extra memory is
about ``chunk_size x num_candidates`` scores (plus one boolean mask of that size), never the
full similarity matrix: 5,000 images x 25,000 captions needs ~64 MB at the default chunk size (512).

Scores are dot products: pass L2-normalised embeddings to rank by cosine similarity (uCLIP,
"Setup": sim(v_q, m_j) is the cosine similarity of the projected embeddings).

Ranks and ties
--------------
For a query q with correct candidates C(q) and best correct score s* = max_{c in C(q)} s(q, c),
the 0-based rank is the number of *wrong* candidates that beat it:

    ties="pessimistic" (default): rank = #{c not in C(q) : s(q, c) >= s*}
    ties="optimistic":            rank = #{c not in C(q) : s(q, c) >  s*}

and the query is a hit at K if rank < K. Both are deterministic and independent of candidate
order (unlike ``torch.topk``, which breaks ties arbitrarily). Pessimistic is the default because
a collapsed model that maps everything to one vector must score 0, not 100%; the optimistic
rule gives the upper bound, and the two differ only where scores tie exactly (e.g. identical
caption texts, which get identical embeddings: XM3600 cs has 283 such captions). Counting
beats ``torch.topk`` here as well: one comparison pass per chunk gives the exact rank, for every
K at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from uclip.errors import UclipError

Protocol = Literal["all", "first"]
Ties = Literal["pessimistic", "optimistic"]
ArrayLike = Tensor | np.ndarray | Sequence[int]

DEFAULT_CHUNK_SIZE = 512


def _check_embeddings(name: str, emb: Tensor) -> None:
    if not isinstance(emb, Tensor) or emb.ndim != 2:
        raise UclipError(f"{name} must be a 2-D torch.Tensor (N, d), got {_describe(emb)}.")
    if not emb.is_floating_point():
        raise UclipError(f"{name} must be floating point, got {emb.dtype}.")
    if emb.shape[0] == 0:
        raise UclipError(f"{name} is empty: encode at least one item before evaluating.")
    # Row blocks keep the check's temporaries small (a whole-tensor isfinite on 25,000 x 512
    # floats briefly takes ~90 MB).
    if not all(bool(torch.isfinite(block).all()) for block in emb.split(4096)):
        raise UclipError(f"{name} holds NaN or inf values: check the encoder output.")


def _describe(value: object) -> str:
    if isinstance(value, Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    return type(value).__name__


def _check_pair(a_name: str, a: Tensor, b_name: str, b: Tensor) -> None:
    _check_embeddings(a_name, a)
    _check_embeddings(b_name, b)
    if a.shape[1] != b.shape[1]:
        raise UclipError(
            f"{a_name} dim {a.shape[1]} != {b_name} dim {b.shape[1]}: both sides must come from "
            "the same joint embedding space."
        )
    if a.device != b.device:
        raise UclipError(f"{a_name} is on {a.device} but {b_name} is on {b.device}: move both.")


def _check_chunk(chunk_size: int) -> None:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise UclipError(f"chunk_size must be an integer >= 1, got {chunk_size!r}.")


def _check_ties(ties: str) -> None:
    if ties not in ("pessimistic", "optimistic"):
        raise UclipError(f"ties must be 'pessimistic' or 'optimistic', got {ties!r}.")


def _compute_dtype(*tensors: Tensor) -> torch.dtype:
    dtype = torch.float32
    for t in tensors:
        dtype = torch.promote_types(dtype, t.dtype)
    return dtype


def _ranks(
    queries: Tensor,
    candidates: Tensor,
    correct: Tensor,
    correct_valid: Tensor | None,
    ties: Ties,
    chunk_size: int,
) -> Tensor:
    """0-based rank of each query's best correct candidate (module docstring's rule).

    Args:
        queries: (Q, d); candidates: (N, d).
        correct: (Q, m) candidate indices of each query's correct candidates, padded by
            repeating a valid index.
        correct_valid: (Q, m) bool, False on padding; ``None`` if there is none.

    Each chunk costs one matmul, one comparison and one sum over its (chunk, N) scores: the
    correct scores are gathered (O(Q m)), never found with a (chunk, N) mask.
    """
    dtype = _compute_dtype(queries, candidates)
    cand = candidates.to(dtype)
    ranks = torch.empty(queries.shape[0], dtype=torch.long, device=queries.device)
    for start in range(0, queries.shape[0], chunk_size):
        rows = slice(start, min(start + chunk_size, queries.shape[0]))
        scores = queries[rows].to(dtype) @ cand.T
        # Correct scores are read from the same score matrix as the comparisons, so a correct
        # candidate never competes with a differently rounded copy of its own score.
        positives = scores.gather(1, correct[rows])
        if correct_valid is not None:
            positives = positives.masked_fill(~correct_valid[rows], -torch.inf)
        best = positives.amax(dim=1, keepdim=True)
        if ties == "optimistic":
            # No correct candidate scores above the best correct one.
            ranks[rows] = _count_true(scores > best)
        else:
            ties_with_best = (positives >= best).sum(dim=1)  # correct ones, incl. itself
            ranks[rows] = _count_true(scores >= best) - ties_with_best
    return ranks


def _count_true(mask: Tensor) -> Tensor:
    """Per-row count of a (Q, N) bool mask; summing its bytes as int32 is ~2x faster on CPU than
    ``mask.sum(1)`` (int64) and exact for N < 2**31."""
    return mask.view(torch.uint8).sum(dim=1, dtype=torch.int32).long()


def _captions_of_images(caption_to_image: Tensor, num_images: int) -> tuple[Tensor, Tensor]:
    """(I, m) caption indices per image, padded by repeating the first, and the validity mask."""
    order = torch.sort(caption_to_image, stable=True).indices
    counts = torch.bincount(caption_to_image, minlength=num_images)
    offsets = torch.cumsum(counts, 0) - counts
    slot = torch.arange(int(counts.max()), device=caption_to_image.device)
    valid = slot[None, :] < counts[:, None]
    position = offsets[:, None] + torch.minimum(slot[None, :], counts[:, None] - 1)
    return order[position], valid


def _as_index_tensor(name: str, values: ArrayLike, device: torch.device) -> Tensor:
    try:
        tensor = torch.as_tensor(np.asarray(values) if not isinstance(values, Tensor) else values)
    except (TypeError, ValueError) as exc:
        raise UclipError(f"{name} must be a 1-D sequence of integers ({exc}).") from None
    if tensor.ndim == 1 and tensor.numel() == 0:
        return tensor.to(device=device, dtype=torch.long)  # [] parses as float64
    if (
        tensor.ndim != 1
        or tensor.is_floating_point()
        or tensor.is_complex()
        or tensor.dtype == torch.bool
    ):
        raise UclipError(
            f"{name} must be a 1-D sequence of integers, got {_describe(tensor)} of {tensor.dtype}."
        )
    return tensor.to(device=device, dtype=torch.long)


def first_caption_indices(caption_to_image: Tensor, num_images: int) -> Tensor:
    """For each image, the index of its first (lowest-index) caption; (num_images,) long."""
    positions = torch.arange(len(caption_to_image), device=caption_to_image.device)
    first = torch.full((num_images,), len(caption_to_image), device=caption_to_image.device)
    return first.scatter_reduce(0, caption_to_image, positions, reduce="amin")


def retrieval_ranks(
    image_emb: Tensor,
    text_emb: Tensor,
    caption_to_image: ArrayLike,
    *,
    protocol: Protocol = "all",
    ties: Ties = "pessimistic",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> tuple[Tensor, Tensor]:
    """Per-query 0-based ranks for image->text and text->image retrieval.

    Args:
        image_emb: (I, d) image embeddings.
        text_emb: (T, d) caption embeddings.
        caption_to_image: (T,) index of each caption's image; every image needs >= 1 caption.
        protocol: ``"all"``: every caption is a candidate (image->text) and a query
            (text->image); an image query counts the best of its captions (Karpathy /
            CLIP_benchmark). ``"first"``: only each image's first caption is kept, on both
            sides (uCLIP's one-caption-per-image setting).
        ties: see the module docstring.
        chunk_size: queries per step.

    Returns:
        ``(i2t, t2i)``: (I,) and (T,) long tensors (T = I under ``"first"``).
    """
    _check_pair("image_emb", image_emb, "text_emb", text_emb)
    _check_chunk(chunk_size)
    _check_ties(ties)
    if protocol not in ("all", "first"):
        raise UclipError(f"protocol must be 'all' or 'first', got {protocol!r}.")
    c2i = _as_index_tensor("caption_to_image", caption_to_image, image_emb.device)
    n_img, n_txt = image_emb.shape[0], text_emb.shape[0]
    if c2i.shape[0] != n_txt:
        raise UclipError(
            f"caption_to_image has {c2i.shape[0]} entries for {n_txt} captions: give one image "
            "index per caption."
        )
    if c2i.min() < 0 or c2i.max() >= n_img:
        raise UclipError(
            f"caption_to_image holds indices outside 0..{n_img - 1}: they must index image_emb."
        )
    counts = torch.bincount(c2i, minlength=n_img)
    if (counts == 0).any():
        missing = int((counts == 0).sum())
        example = int(torch.nonzero(counts == 0)[0])
        raise UclipError(
            f"{missing} of {n_img} images have no caption (e.g. image {example}): drop them or "
            "fix caption_to_image."
        )
    if protocol == "first":
        text_emb = text_emb[first_caption_indices(c2i, n_img)]
        c2i = torch.arange(n_img, device=image_emb.device)
    captions, valid = _captions_of_images(c2i, n_img)
    i2t = _ranks(
        image_emb, text_emb, captions, None if bool(valid.all()) else valid, ties, chunk_size
    )
    t2i = _ranks(text_emb, image_emb, c2i[:, None], None, ties, chunk_size)
    return i2t, t2i


def _check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    ks = tuple(ks)
    if not ks or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in ks):
        raise UclipError(f"ks must be a non-empty sequence of integers >= 1, got {ks!r}.")
    return ks


def recall_at_k(ranks: Tensor, ks: Sequence[int]) -> dict[int, float]:
    """Fraction of queries with rank < K, for each K."""
    return {k: float((ranks < k).double().mean()) for k in _check_ks(ks)}


def retrieval_recall(
    image_emb: Tensor,
    text_emb: Tensor,
    caption_to_image: ArrayLike,
    ks: Sequence[int] = (1, 5, 10),
    protocol: Protocol = "all",
    *,
    ties: Ties = "pessimistic",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> dict[str, float]:
    """Image->text and text->image Recall@K as fractions in [0, 1] (uCLIP Table 1 reports %).

    Keys: ``"i2t_R@{k}"`` (an image query is a hit if any of its captions ranks in the top K;
    under ``protocol="first"``, its first caption) and ``"t2i_R@{k}"`` (a caption query is a hit
    if its image ranks in the top K). Arguments as in :func:`retrieval_ranks`.
    """
    ks = _check_ks(ks)
    i2t, t2i = retrieval_ranks(
        image_emb, text_emb, caption_to_image, protocol=protocol, ties=ties, chunk_size=chunk_size
    )
    result = {f"i2t_R@{k}": v for k, v in recall_at_k(i2t, ks).items()}
    result.update({f"t2i_R@{k}": v for k, v in recall_at_k(t2i, ks).items()})
    return result


def query_ranks(
    queries: Tensor,
    candidates: Tensor,
    correct: ArrayLike,
    *,
    ties: Ties = "pessimistic",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> Tensor:
    """(Q,) 0-based rank of each query's one correct candidate ``correct[q]`` among
    ``candidates`` (N, d), by dot product; ties as in the module docstring."""
    _check_pair("queries", queries, "candidates", candidates)
    _check_chunk(chunk_size)
    _check_ties(ties)
    target = _as_index_tensor("correct", correct, queries.device)
    if target.shape[0] != queries.shape[0]:
        raise UclipError(
            f"correct has {target.shape[0]} entries for {queries.shape[0]} queries: give one "
            "candidate index per query."
        )
    if target.min() < 0 or target.max() >= candidates.shape[0]:
        raise UclipError(
            f"correct holds indices outside 0..{candidates.shape[0] - 1}: they must index "
            "candidates."
        )
    return _ranks(queries, candidates, target[:, None], None, ties, chunk_size)


def distinct_candidates(texts: Sequence[str]) -> tuple[list[int], list[int]]:
    """The rule for repeated candidate texts (XM3600 and COCO repeat a few English captions):
    identical texts are one candidate, so a query is correct when it retrieves its target's text.

    Returns ``(rows, correct)``: ``rows[j]`` is the index in ``texts`` of the first occurrence of
    distinct text ``j`` (the candidate that stands for it), ``correct[i]`` the candidate of
    ``texts[i]``. E.g. ``["a", "b", "a"]`` -> ``([0, 1], [0, 1, 0])``.
    """
    first: dict[str, int] = {}
    for index, text in enumerate(texts):
        first.setdefault(text, index)
    position = {text: j for j, text in enumerate(first)}
    return list(first.values()), [position[text] for text in texts]


def bitext_accuracy(
    src_emb: Tensor,
    tgt_emb: Tensor,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    *,
    ties: Ties = "pessimistic",
) -> dict[str, float]:
    """Top-1 nearest-neighbour translation matching (row i of ``src`` translates row i of ``tgt``).

    ``src`` is the language x, ``tgt`` English (the pivot). Returns fractions
    ``{"x2en_acc": src->tgt, "en2x_acc": tgt->src}``; ties as in the module docstring.
    """
    _check_pair("src_emb", src_emb, "tgt_emb", tgt_emb)
    _check_chunk(chunk_size)
    _check_ties(ties)
    if src_emb.shape[0] != tgt_emb.shape[0]:
        raise UclipError(
            f"src_emb has {src_emb.shape[0]} rows but tgt_emb has {tgt_emb.shape[0]}: bitext "
            "rows must be aligned one to one."
        )
    diagonal = torch.arange(src_emb.shape[0], device=src_emb.device)[:, None]
    x2en = _ranks(src_emb, tgt_emb, diagonal, None, ties, chunk_size)
    en2x = _ranks(tgt_emb, src_emb, diagonal, None, ties, chunk_size)
    return {
        "x2en_acc": float((x2en == 0).double().mean()),
        "en2x_acc": float((en2x == 0).double().mean()),
    }


def _labels_pair(preds: ArrayLike, labels: ArrayLike) -> tuple[Tensor, Tensor]:
    p = _as_index_tensor("preds", preds, torch.device("cpu"))
    y = _as_index_tensor("labels", labels, torch.device("cpu"))
    if p.shape != y.shape:
        raise UclipError(
            f"preds has {p.shape[0]} entries but labels has {y.shape[0]}: give one "
            "prediction per label."
        )
    if p.shape[0] == 0:
        raise UclipError("preds and labels are empty: evaluate at least one example.")
    return p, y


def accuracy(preds: ArrayLike, labels: ArrayLike) -> float:
    """Fraction of ``preds`` equal to ``labels`` (1-D integer sequences of equal length)."""
    p, y = _labels_pair(preds, labels)
    return float((p == y).double().mean())


def macro_f1(preds: ArrayLike, labels: ArrayLike, num_classes: int) -> float:
    """Unweighted mean over classes of F1_c = 2 TP_c / (2 TP_c + FP_c + FN_c).

    Classes that occur in neither ``labels`` nor ``preds`` have no defined F1 and are left out
    of the mean (as ``sklearn.metrics.f1_score(labels, preds, average="macro")`` does); a class
    present in ``labels`` but never predicted counts as F1 = 0.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise UclipError(f"num_classes must be an integer >= 1, got {num_classes!r}.")
    p, y = _labels_pair(preds, labels)
    for name, t in (("preds", p), ("labels", y)):
        if t.min() < 0 or t.max() >= num_classes:
            raise UclipError(f"{name} holds values outside 0..{num_classes - 1}.")
    tp = torch.bincount(y[p == y], minlength=num_classes).double()
    predicted = torch.bincount(p, minlength=num_classes).double()
    actual = torch.bincount(y, minlength=num_classes).double()
    denominator = predicted + actual  # = 2 TP + FP + FN
    present = denominator > 0
    return float((2 * tp[present] / denominator[present]).mean())
