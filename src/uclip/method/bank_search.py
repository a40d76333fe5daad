"""Soft retrieval (Eq. 1–2) over banks too large for one process: rank-split exact, FAISS top-k.

Exact, split across ranks (:func:`soft_retrieve_distributed`). Each of W ranks holds a contiguous
slice B_r of the bank (``MemoryBank.shard(rank, W)``, typically memory-mapped) and the same
queries. For query q with logits l_k = q . b_k / tau, rank r streams its slice once and keeps

    m_r = max_{k in B_r} l_k,   s_r = sum_{k in B_r} exp(l_k - m_r),   a_r = sum exp(l_k - m_r) b_k

Then one all-reduce of the max and two of sums combine them exactly (log-sum-exp):

    M = max_r m_r,   s = sum_r exp(m_r - M) s_r,   a = sum_r exp(m_r - M) a_r,   r(q) = a / s

which is Eq. 1–2 over the whole bank; every exponent is <= 0, so nothing overflows for small tau.
Communication per query block: (B + B + B*d) floats, independent of the bank size N.

Approximate top-k (:class:`FaissBankIndex`, :func:`soft_retrieve_faiss`): the project's FAISS
inner-product index (``uclip.features.faiss_index``: exact ``IndexFlatIP`` or inverted-file
``IndexIVFFlat``) returns each query's k most similar rows and the softmax of Eq. 1–2 runs over
those k only. The dropped softmax mass p_tail bounds the error: ||r_k - r|| <= 2 p_tail max_k
||b_k|| = 2 p_tail for unit rows.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

from uclip.errors import UclipError
from uclip.features.faiss_index import FaissKind, inner_product_index

# The streaming state of Eq. 1–2 lives in retrieval.py; its online softmax is reused here so the
# per-rank partial sums are bit-for-bit the single-process ones.
from uclip.method.retrieval import (
    Bank,
    OnlineSoftmax,
    bank_chunks,
    compute_dtype,
    query_blocks,
    validate_retrieval_args,
)


def soft_retrieve_partial(
    queries: Tensor,
    bank: Bank,
    tau: float,
    *,
    chunk_size: int = 65536,
) -> tuple[Tensor, Tensor, Tensor]:
    """Eq. 1–2 statistics of one bank slice: ``(max, denominator, numerator)``.

    Shapes (B,), (B,), (B, d) with ``numerator / denominator[:, None]`` the retrieval over this
    slice alone; combine slices with :func:`combine_partials`.
    """
    validate_retrieval_args(queries, bank, tau, chunk_size, None, None)
    dtype = compute_dtype(queries, bank)
    q_scaled = queries.to(dtype) / tau
    state = OnlineSoftmax(q_scaled)
    for chunk in bank_chunks(bank, chunk_size, q_scaled.shape[1], dtype, q_scaled.device):
        state.update(chunk)
    return state.max, state.denom, state.acc


def combine_partials(
    maxima: Tensor, denominators: Tensor, numerators: Tensor, group: Any = None
) -> Tensor:
    """All-reduce per-rank partials (max, sum, sum) into the exact Eq. 1–2 result, (B, d).

    Without an initialised process group the partial is already the whole bank's.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size(group) == 1:
        return numerators / denominators[:, None]
    global_max = maxima.clone()
    dist.all_reduce(global_max, op=dist.ReduceOp.MAX, group=group)
    scale = torch.exp(maxima - global_max)
    denominators = denominators * scale
    numerators = numerators * scale[:, None]
    dist.all_reduce(denominators, group=group)
    dist.all_reduce(numerators, group=group)
    return numerators / denominators[:, None]


def soft_retrieve_distributed(
    queries: Tensor,
    bank_shard: Bank,
    tau: float,
    *,
    chunk_size: int = 65536,
    query_chunk_size: int | None = 4096,
    group: Any = None,
) -> Tensor:
    """Exact Eq. 1–2 over a bank split across the ranks of ``group``.

    Every rank passes the same (B, d) ``queries`` and its own slice ``bank_shard`` (e.g.
    ``MemoryBank.from_npy(path).shard(rank, world)``); every rank gets the same (B, d) result,
    equal to ``soft_retrieve(queries, whole_bank, tau)``. Queries are processed in blocks of
    ``query_chunk_size`` (each block streams the slice once), which bounds the (B, d) buffers
    that are all-reduced. Collective: all ranks must call it with the same query shape.
    """
    validate_retrieval_args(queries, bank_shard, tau, chunk_size, None, query_chunk_size)
    blocks = query_blocks(queries.shape[0], query_chunk_size)
    out = [
        combine_partials(
            *soft_retrieve_partial(queries[rows], bank_shard, tau, chunk_size=chunk_size),
            group=group,
        )
        for rows in blocks
    ]
    return torch.cat(out)


class FaissBankIndex:
    """A FAISS inner-product index (:func:`inner_product_index`) over a bank, for approximate
    top-k soft retrieval.

    ``kind="flat"``: ``IndexFlatIP``, exact top-k (brute force, N x d x 4 bytes of RAM).
    ``kind="ivf"``: ``IndexIVFFlat`` with ``nlist`` k-means cells trained on up to
    ``train_size`` rows; a query scans ``nprobe`` cells (faster, may miss neighbours). The
    bank is added chunk by chunk, so a memory-mapped bank is read once. Rows for the softmax
    are read back from the bank itself (a memory-mapped bank stays on disk).
    """

    def __init__(
        self,
        bank: Bank,
        *,
        kind: FaissKind = "flat",
        nlist: int | None = None,
        nprobe: int = 16,
        train_size: int = 100_000,
        chunk_size: int = 65536,
        seed: int = 0,
    ) -> None:
        n = len(bank)
        if n == 0:
            raise UclipError("cannot index an empty bank: build the memory bank first")
        self.bank = bank
        self.dim = int(bank.shape[1] if isinstance(bank, Tensor) else bank.dim)
        self.kind = kind
        chunks = bank_chunks(bank, chunk_size, self.dim, torch.float32, torch.device("cpu"))
        self.index = inner_product_index(
            (chunk.numpy() for chunk in chunks),
            self.dim,
            n,
            kind=kind,
            train=_training_sample(bank, self.dim, train_size, chunk_size, seed)
            if kind == "ivf"
            else None,
            nlist=nlist,
            nprobe=nprobe,
        )

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def search(self, queries: Tensor, k: int) -> tuple[Tensor, Tensor]:
        """(B, k) similarities and bank row ids, best first; id -1 where fewer than k were found."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise UclipError(f"top-k must be an integer >= 1, got {k!r}")
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise UclipError(
                f"queries have shape {tuple(queries.shape)}, the index holds {self.dim}-d rows: "
                "query it with embeddings of the encoder that built the bank"
            )
        q = np.ascontiguousarray(queries.detach().cpu().numpy(), dtype=np.float32)
        scores, ids = self.index.search(q, min(k, len(self)))
        return torch.from_numpy(scores), torch.from_numpy(ids)

    def rows(self, ids: Tensor) -> Tensor:
        """Bank rows for (B, k) ids as (B, k, d) float32 (zeros where id is -1)."""
        flat = ids.reshape(-1)
        valid = flat >= 0
        unique = torch.unique(flat[valid])
        if isinstance(self.bank, Tensor):
            table = self.bank[unique].to(torch.float32)
        else:
            table = self.bank.subset(unique.numpy()).to_tensor()
        out = torch.zeros(flat.shape[0], self.dim)
        out[valid] = table[torch.searchsorted(unique, flat[valid])]
        return out.view(*ids.shape, self.dim)


def soft_retrieve_faiss(
    queries: Tensor, index: FaissBankIndex, tau: float, k: int
) -> tuple[Tensor, Tensor]:
    """Approximate Eq. 1–2: softmax over each query's ``k`` nearest rows found by ``index``.

    Returns the (B, d) retrieved vectors and the (B,) log-sum-exp of the kept logits (with the
    exact log-sum-exp of the whole bank, ``1 - exp(lse_k - lse)`` is the dropped softmax mass).
    """
    if not (isinstance(tau, (int, float)) and math.isfinite(tau) and tau > 0):
        raise UclipError(f"soft_retrieve tau must be a finite number > 0, got {tau!r}.")
    scores, ids = index.search(queries, k)
    logits = (scores / tau).masked_fill(ids < 0, -math.inf)
    lse = torch.logsumexp(logits, dim=1)
    weights = torch.exp(logits - lse[:, None])
    retrieved = torch.bmm(weights[:, None, :], index.rows(ids)).squeeze(1)
    return retrieved.to(queries.dtype if queries.is_floating_point() else torch.float32), lse


def _training_sample(bank: Bank, dim: int, size: int, chunk_size: int, seed: int) -> np.ndarray:
    """Up to ``size`` rows drawn evenly at random for IVF k-means (the whole bank if smaller)."""
    n = len(bank)
    if n <= size:
        parts = bank_chunks(bank, chunk_size, dim, torch.float32, torch.device("cpu"))
        return np.ascontiguousarray(torch.cat(list(parts)).numpy())
    rows = np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))
    sample = bank[torch.from_numpy(rows)] if isinstance(bank, Tensor) else bank.subset(rows)
    if not isinstance(sample, Tensor):
        sample = sample.to_tensor()
    return np.ascontiguousarray(sample.to(torch.float32).numpy())
