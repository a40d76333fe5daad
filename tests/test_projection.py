"""2-D maps (``uclip.eval.projection.embed_2d``): the documented t-SNE parameters and precision
against a direct scikit-learn reference, determinism and input checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from uclip.errors import UclipError
from uclip.eval import projection
from uclip.eval.projection import embed_2d


@pytest.fixture(autouse=True)
def _one_openmp_thread():
    """t-SNE's OpenMP threads slow it down tenfold on a busy shared 2-core machine."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="openmp"):
        yield


@pytest.mark.parametrize(
    ("n", "perplexity", "dtype"),
    [(5, 2.0, torch.float32), (31, 10.0, torch.float64), (100, 30.0, torch.float32)],
)
def test_embed_2d_tsne_is_sklearn_with_the_documented_parameters(n, perplexity, dtype) -> None:
    from sklearn.manifold import TSNE

    x = torch.randn(n, 6, generator=torch.Generator().manual_seed(n), dtype=dtype)
    # perplexity min(30, max(2, (N - 1) / 3)): 4/3 -> 2 (floor), 30/3 = 10, 99/3 -> 30 (cap);
    # in the input's own precision
    reference = TSNE(
        n_components=2, perplexity=perplexity, init="pca", metric="euclidean", random_state=3
    ).fit_transform(x.numpy())
    got = embed_2d(x, "tsne", seed=3, metric="euclidean")
    assert got.dtype == np.float64 and got.shape == (n, 2)
    assert np.array_equal(got, reference)


def test_embed_2d_tsne_is_seeded_and_checks_input(monkeypatch) -> None:
    x = torch.randn(30, 8, generator=torch.Generator().manual_seed(1))
    a, b = embed_2d(x, "tsne", seed=3), embed_2d(x.numpy(), "tsne", seed=3)
    assert a.shape == (30, 2) and np.array_equal(a, b)
    whole = (10 * x).int()  # not a float: mapped as float64
    assert np.array_equal(embed_2d(whole, "tsne"), embed_2d(whole.double(), "tsne"))
    with pytest.raises(UclipError, match="'umap' or 'tsne'"):
        embed_2d(x, "pca")
    with pytest.raises(UclipError, match="N >= 4"):
        embed_2d(x[:3], "tsne")
    # (UMAP itself is not run here: numba compiles it for minutes on first use.)
    monkeypatch.setattr(projection, "umap_available", lambda: False)
    with pytest.raises(UclipError, match="pip install umap-learn"):
        embed_2d(x, "umap")
