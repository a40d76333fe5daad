"""Soft embedding retrieval from a memory bank (uCLIP, Sec. "Soft Embedding Retrieval", Eq. 1–2).

For a query e_i and a bank {b_1, ..., b_N}:

    r_i = sum_k softmax_k(sim(e_i, b_k) / tau) * b_k                         (Eq. 1, Eq. 2)

Eq. 1 retrieves from the image bank V with the CLIP text embedding e^C; Eq. 2 retrieves from the
multilingual text bank M with the multilingual embedding e^M. Both are the same operation.

Queries and bank rows are assumed L2-normalised, so the cosine similarity is a dot product.
Banks are frozen features: nothing here needs gradients, but nothing forces ``no_grad`` either, so
gradients flow to ``queries`` when the caller asks for them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from uclip.errors import UclipError


@runtime_checkable
class ChunkedBank(Protocol):
    """Anything that can stream its (N, d) rows in chunks, e.g. ``features.banks.MemoryBank``."""

    def chunks(self, chunk_size: int) -> Iterable[Tensor]: ...

    def __len__(self) -> int: ...


Bank = Tensor | ChunkedBank


def soft_retrieve_dense(queries: Tensor, bank: Tensor, tau: float) -> Tensor:
    """Reference Eq. 1–2 in one shot: ``softmax(queries @ bank.T / tau) @ bank``.

    queries: (B, d), bank: (N, d), both L2-normalised. Returns (B, d). Materialises the full
    (B, N) similarity matrix; used by tests and benchmarks as the baseline for ``soft_retrieve``.
    """
    return torch.softmax(queries @ bank.T / tau, dim=-1) @ bank


def soft_retrieve(
    queries: Tensor,
    bank: Bank,
    tau: float,
    *,
    chunk_size: int = 65536,
    top_k: int | None = None,
    query_chunk_size: int | None = None,
) -> Tensor:
    """Soft retrieval, Eq. 1–2, streamed over the bank so (B, N) is never held at once.

    Args:
        queries: (B, d) L2-normalised query embeddings (e^C for Eq. 1, e^M for Eq. 2).
        bank: (N, d) tensor of L2-normalised rows, or an object with ``chunks(chunk_size)``
            yielding (n, d) tensors and ``__len__`` (e.g. a memory-mapped ``MemoryBank``).
        tau: softmax temperature, > 0.
        chunk_size: bank rows per step; peak extra memory is about
            ``query_chunk_size x chunk_size`` floats.
        top_k: if given, approximate mode: the softmax runs only over the ``top_k`` most similar
            bank rows of each query (``top_k >= N`` keeps every row).
        query_chunk_size: if given, queries are processed in blocks of this many rows per bank
            chunk (the bank is still read only once).

    Returns:
        (B, d) retrieved embeddings, not re-normalised, in float32 (or the queries' wider float
        dtype, e.g. float64), on the queries' device. A float16 bank is upcast chunk by chunk.
    """
    n_bank = validate_retrieval_args(queries, bank, tau, chunk_size, top_k, query_chunk_size)
    dtype = compute_dtype(queries, bank)
    q = queries.to(dtype)
    # Scaling the (B, d) queries once is cheaper than dividing every (B, n) logit block by tau.
    q_scaled = q / tau
    blocks = query_blocks(q.shape[0], query_chunk_size)
    chunks = bank_chunks(bank, chunk_size, q.shape[1], dtype, q.device)
    if top_k is None:
        return _retrieve_exact(q_scaled, chunks, blocks)
    return _retrieve_top_k(q_scaled, bank, chunks, blocks, min(top_k, n_bank))


def _retrieve_exact(q_scaled: Tensor, chunks: Iterator[Tensor], blocks: list[slice]) -> Tensor:
    """Online softmax (running log-sum-exp) over bank chunks.

    Per query we keep the running max m, the denominator s = sum exp(l - m) and the numerator
    acc = sum exp(l - m) * b. When a chunk raises the max, s and acc are rescaled by exp(m_old -
    m_new), which keeps every exponent <= 0 and so never overflows, even for tiny tau.
    """
    states = [OnlineSoftmax(q_scaled[rows]) for rows in blocks]
    for chunk in chunks:
        for state in states:
            state.update(chunk)
    return torch.cat([state.result() for state in states])


class OnlineSoftmax:
    """Running (max, denominator, numerator) of Eq. 1–2 for one block of queries."""

    def __init__(self, q_scaled: Tensor) -> None:
        n_q, dim = q_scaled.shape
        like = {"dtype": q_scaled.dtype, "device": q_scaled.device}
        self.q_scaled = q_scaled
        self.max = torch.full((n_q,), -math.inf, **like)
        self.denom = torch.zeros(n_q, **like)
        self.acc = torch.zeros(n_q, dim, **like)

    def update(self, chunk: Tensor) -> None:
        logits = self.q_scaled @ chunk.T
        # The max is only a numerical shift (the result does not depend on it), so it is
        # detached: autograd then never needs the logits that the in-place ops below overwrite.
        new_max = torch.maximum(self.max, logits.detach().amax(dim=1))
        rescale = torch.exp(self.max - new_max)
        weights = logits.sub_(new_max[:, None]).exp_()
        self.denom = self.denom * rescale + weights.sum(dim=1)
        self.acc = torch.addmm(self.acc * rescale[:, None], weights, chunk)
        self.max = new_max

    def result(self) -> Tensor:
        return self.acc / self.denom[:, None]


def _retrieve_top_k(
    q_scaled: Tensor, bank: Bank, chunks: Iterator[Tensor], blocks: list[slice], k: int
) -> Tensor:
    """Approximate Eq. 1–2: softmax over each query's k most similar bank rows only.

    A running top-k (scaled similarity, global row index) per query is merged with each chunk's
    own top-k, so besides one (B, chunk) block of logits only (B, k) entries are kept. A tensor
    bank is indexed once at the end; a streamed bank cannot be indexed, so its candidate rows
    (B, k, d) are carried along instead.
    """
    carry_rows = not isinstance(bank, Tensor)
    states = [_RunningTopK(q_scaled[rows], k, carry_rows) for rows in blocks]
    offset = 0
    for chunk in chunks:
        for state in states:
            state.update(chunk, offset)
        offset += chunk.shape[0]
    logits = torch.cat([state.logits for state in states])
    if carry_rows:
        rows = torch.cat([state.rows for state in states])
    else:
        index = torch.cat([state.index for state in states])
        rows = bank[index.to(bank.device)].to(device=q_scaled.device, dtype=q_scaled.dtype)
    weights = torch.softmax(logits, dim=1)
    return torch.bmm(weights[:, None, :], rows).squeeze(1)


class _RunningTopK:
    """The k largest scaled similarities seen so far for a block of queries, with row indices."""

    def __init__(self, q_scaled: Tensor, k: int, carry_rows: bool) -> None:
        n_q, dim = q_scaled.shape
        self.q_scaled = q_scaled
        self.k = k
        self.logits = torch.full((n_q, k), -math.inf, dtype=q_scaled.dtype, device=q_scaled.device)
        self.index = torch.zeros(n_q, k, dtype=torch.long, device=q_scaled.device)
        self.rows = q_scaled.new_zeros(n_q, k, dim) if carry_rows else None

    def update(self, chunk: Tensor, offset: int) -> None:
        logits, idx = torch.topk(self.q_scaled @ chunk.T, min(self.k, chunk.shape[0]), dim=1)
        self.logits, keep = torch.topk(torch.cat([self.logits, logits], dim=1), self.k, dim=1)
        self.index = torch.gather(torch.cat([self.index, idx + offset], dim=1), 1, keep)
        if self.rows is not None:
            rows = torch.cat([self.rows, chunk[idx]], dim=1)
            self.rows = torch.gather(rows, 1, keep[:, :, None].expand(-1, -1, rows.shape[2]))


def validate_retrieval_args(
    queries: Tensor,
    bank: Bank,
    tau: float,
    chunk_size: int,
    top_k: int | None,
    query_chunk_size: int | None,
) -> int:
    """Check the arguments of ``soft_retrieve`` (and of the bank-sharded variants in
    :mod:`uclip.method.bank_search`); returns the bank size N."""
    if not isinstance(queries, Tensor) or queries.ndim != 2:
        raise UclipError("soft_retrieve queries must be a 2-D torch.Tensor (B, d); reshape them.")
    if not queries.is_floating_point():
        raise UclipError(f"soft_retrieve queries must be floating point, got {queries.dtype}.")
    if not isinstance(bank, (Tensor, ChunkedBank)):
        raise UclipError(
            f"soft_retrieve bank must be an (N, d) tensor or have chunks()/__len__, "
            f"got {type(bank).__name__}."
        )
    if isinstance(bank, Tensor) and bank.ndim != 2:
        raise UclipError(f"soft_retrieve bank must be 2-D (N, d), got shape {tuple(bank.shape)}.")
    n_bank = len(bank)
    if n_bank == 0:
        raise UclipError("soft_retrieve bank is empty; build the memory bank before retrieval.")
    bank_dim = bank.shape[1] if isinstance(bank, Tensor) else getattr(bank, "dim", None)
    if isinstance(bank_dim, int):
        _check_dim(queries.shape[1], bank_dim)
    if not (isinstance(tau, (int, float)) and math.isfinite(tau) and tau > 0):
        raise UclipError(f"soft_retrieve tau must be a finite number > 0, got {tau!r}.")
    _check_positive("chunk_size", chunk_size)
    if top_k is not None:
        _check_positive("top_k", top_k)
    if query_chunk_size is not None:
        _check_positive("query_chunk_size", query_chunk_size)
    return n_bank


def _check_positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UclipError(f"soft_retrieve {name} must be an integer >= 1, got {value!r}.")


def _check_dim(query_dim: int, bank_dim: int) -> None:
    if query_dim != bank_dim:
        raise UclipError(
            f"query dim {query_dim} does not match bank dim {bank_dim}; query each bank with "
            "embeddings from the encoder that built it (CLIP text -> V, multilingual -> M)."
        )


def compute_dtype(queries: Tensor, bank: Bank) -> torch.dtype:
    """At least float32 (fp16 banks are upcast); float64 if the queries or a tensor bank are."""
    dtype = torch.promote_types(queries.dtype, torch.float32)
    if isinstance(bank, Tensor) and bank.is_floating_point():
        dtype = torch.promote_types(dtype, bank.dtype)
    return dtype


def query_blocks(n_queries: int, query_chunk_size: int | None) -> list[slice]:
    """Row slices of at most ``query_chunk_size`` queries (one slice for all when ``None``)."""
    step = query_chunk_size or max(n_queries, 1)
    return [slice(start, start + step) for start in range(0, max(n_queries, 1), step)]


def bank_chunks(
    bank: Bank, chunk_size: int, dim: int, dtype: torch.dtype, device: torch.device
) -> Iterator[Tensor]:
    """Yield bank chunks as (n, d) tensors in the compute dtype on the queries' device."""
    source = bank.split(chunk_size) if isinstance(bank, Tensor) else bank.chunks(chunk_size)
    for chunk in source:
        chunk = torch.as_tensor(chunk)
        if chunk.ndim != 2:
            raise UclipError(
                f"bank chunks must be 2-D (n, d), got shape {tuple(chunk.shape)}; "
                "fix the bank's chunks()."
            )
        _check_dim(dim, chunk.shape[1])
        if chunk.shape[0]:
            yield chunk.to(device=device, dtype=dtype)
