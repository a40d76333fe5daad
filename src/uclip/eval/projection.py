"""2-D maps of embedding sets for the analysis figures: UMAP (``umap-learn``) or t-SNE
(scikit-learn), one function for the uCLIP Fig. 5 analogue and CLT's t-SNE (its Figure 1)."""

from __future__ import annotations

import numpy as np
from torch import Tensor

from uclip.errors import UclipError


def umap_available() -> bool:
    """Whether ``umap-learn`` is installed (it is optional: ``uclip[umap]``)."""
    try:
        import umap  # noqa: F401
    except ImportError:
        return False
    return True


def embed_2d(
    x: Tensor | np.ndarray, method: str = "umap", *, seed: int = 0, metric: str = "cosine"
) -> np.ndarray:
    """(N, d) embeddings → (N, 2) float64 with UMAP (``umap-learn``) or t-SNE (scikit-learn).

    Deterministic for a given ``seed``. The map is computed in ``x``'s precision (float32 or
    float64; other dtypes as float64): t-SNE of the same points differs between the two.
    ``method="umap"`` needs ``pip install umap-learn`` (``uclip[umap]``); t-SNE uses PCA
    initialisation and perplexity ``min(30, max(2, (N - 1) / 3))``.
    """
    data = np.asarray(x.detach().cpu() if isinstance(x, Tensor) else x)
    if data.dtype not in (np.float32, np.float64):
        data = data.astype(np.float64)
    if data.ndim != 2 or data.shape[0] < 4:
        raise UclipError(f"embed_2d needs an (N, d) array with N >= 4, got shape {data.shape}")
    if method == "umap":
        if not umap_available():
            raise UclipError("UMAP needs umap-learn: pip install umap-learn, or use method='tsne'")
        import umap

        reducer = umap.UMAP(
            n_neighbors=min(15, data.shape[0] - 1), metric=metric, random_state=seed
        )
        return np.asarray(reducer.fit_transform(data), dtype=np.float64)
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = min(30.0, max(2.0, (data.shape[0] - 1) / 3))
        tsne = TSNE(
            n_components=2, perplexity=perplexity, init="pca", metric=metric, random_state=seed
        )
        return np.asarray(tsne.fit_transform(data), dtype=np.float64)
    raise UclipError(f"unknown 2-D embedding method {method!r}: use 'umap' or 'tsne'")
