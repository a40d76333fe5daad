"""FAISS top-k soft retrieval and per-slice partials vs the exact Eq. 1–2 (``soft_retrieve``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from uclip.errors import UclipError
from uclip.features.banks import MemoryBank
from uclip.method.bank_search import (
    FaissBankIndex,
    combine_partials,
    soft_retrieve_distributed,
    soft_retrieve_faiss,
    soft_retrieve_partial,
)
from uclip.method.retrieval import soft_retrieve, soft_retrieve_dense


def data(n: int = 300, d: int = 16, b: int = 11, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    bank = F.normalize(torch.randn(n, d, generator=g), dim=-1)
    queries = F.normalize(torch.randn(b, d, generator=g), dim=-1)
    return queries, bank


@pytest.mark.parametrize(("tau", "atol"), [(0.5, 1e-6), (0.05, 1e-6), (0.01, 1e-5)])
def test_flat_top_k_with_k_equal_n_is_exact(tau: float, atol: float) -> None:
    """Against a float64 reference; float32 similarities carry ~6e-8 relative error, i.e.
    ~6e-8 / tau in the logits, hence the looser bound at tau = 0.01 (logits up to 100)."""
    queries, bank = data()
    index = FaissBankIndex(bank, chunk_size=64)
    got, lse = soft_retrieve_faiss(queries, index, tau, k=len(bank))
    reference = soft_retrieve_dense(queries.double(), bank.double(), tau)
    assert (got.double() - reference).abs().max() < atol
    exact_lse = torch.logsumexp(queries @ bank.T / tau, dim=1)
    torch.testing.assert_close(lse, exact_lse, rtol=1e-5, atol=1e-5)


def test_memory_mapped_bank(tmp_path: Path) -> None:
    queries, bank = data()
    path = tmp_path / "bank.npy"
    np.save(path, bank.numpy())
    mm = MemoryBank.from_npy(path)
    index = FaissBankIndex(mm, chunk_size=50)
    got, _ = soft_retrieve_faiss(queries, index, 0.05, k=len(bank))
    assert (got - soft_retrieve(queries, mm, 0.05, chunk_size=50)).abs().max() < 1e-6


@pytest.mark.parametrize("k", [1, 5, 40])
def test_top_k_matches_the_brute_force_top_k_softmax(k: int) -> None:
    queries, bank = data()
    logits = queries @ bank.T / 0.05
    top, idx = logits.topk(k, dim=1)
    expected = torch.einsum("bk,bkd->bd", torch.softmax(top, dim=1), bank[idx])
    got, _ = soft_retrieve_faiss(queries, FaissBankIndex(bank), 0.05, k=k)
    assert (got - expected).abs().max() < 1e-5
    torch.testing.assert_close(got, soft_retrieve(queries, bank, 0.05, top_k=k), atol=1e-5, rtol=0)


def test_ivf_scanning_every_cell_equals_flat() -> None:
    queries, bank = data(n=400)
    flat, _ = soft_retrieve_faiss(queries, FaissBankIndex(bank), 0.05, k=20)
    ivf = FaissBankIndex(bank, kind="ivf", nlist=8, nprobe=8)
    got, _ = soft_retrieve_faiss(queries, ivf, 0.05, k=20)
    assert (got - flat).abs().max() < 1e-5


def test_ivf_with_fewer_hits_than_k_masks_missing_ids() -> None:
    queries, bank = data(n=400)
    ivf = FaissBankIndex(bank, kind="ivf", nlist=40, nprobe=1)
    scores, ids = ivf.search(queries, 200)
    assert (ids < 0).any(), "one cell of 400/40 rows should not fill 200 results"
    got, _ = soft_retrieve_faiss(queries, ivf, 0.05, k=200)
    found = ids[0][ids[0] >= 0]
    weights = torch.softmax(scores[0][ids[0] >= 0] / 0.05, dim=0)
    torch.testing.assert_close(got[0], weights @ bank[found], atol=1e-5, rtol=0)


def test_partials_of_slices_combine_to_the_whole_bank() -> None:
    """The log-sum-exp combination of soft_retrieve_distributed, done by hand over 3 slices
    (float64, so the comparison tests the algebra rather than float32 rounding)."""
    queries, bank = (t.double() for t in data())
    parts = [soft_retrieve_partial(queries, s, 0.01, chunk_size=33) for s in bank.split(100)]
    m = torch.stack([p[0] for p in parts]).amax(dim=0)
    scale = [torch.exp(p[0] - m) for p in parts]
    den = sum(p[1] * c for p, c in zip(parts, scale, strict=True))
    num = sum(p[2] * c[:, None] for p, c in zip(parts, scale, strict=True))
    assert (num / den[:, None] - soft_retrieve_dense(queries, bank, 0.01)).abs().max() < 1e-12
    # without a process group, combine/distributed are the single-process retrieval
    torch.testing.assert_close(
        combine_partials(*parts[0]), soft_retrieve(queries, bank[:100], 0.01)
    )
    got = soft_retrieve_distributed(queries, bank, 0.01, chunk_size=70, query_chunk_size=4)
    assert (got - soft_retrieve(queries, bank, 0.01)).abs().max() < 1e-12


def test_bad_arguments() -> None:
    queries, bank = data()
    index = FaissBankIndex(bank)
    with pytest.raises(UclipError, match="top-k"):
        index.search(queries, 0)
    with pytest.raises(UclipError, match="16-d"):
        index.search(queries[:, :8], 3)
    with pytest.raises(UclipError, match="kind"):
        FaissBankIndex(bank, kind="hnsw")
    with pytest.raises(UclipError, match="tau"):
        soft_retrieve_faiss(queries, index, 0.0, k=3)
    with pytest.raises(UclipError, match="dim"):
        soft_retrieve_partial(queries[:, :8], bank, 0.1)
