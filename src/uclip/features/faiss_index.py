"""The one FAISS inner-product index of the project, for unit rows ranked by cosine = dot product.

Two users: soft retrieval's top-k over a memory bank (``uclip.method.bank_search``) and the image
search index (``uclip.serve.index``). Both rank by inner product, so both get the same two kinds:

* ``"flat"``: ``IndexFlatIP``, exact (brute force, N x d x 4 bytes of RAM);
* ``"ivf"``: ``IndexIVFFlat`` over inner product with ``nlist`` k-means cells; a search scans
  ``nprobe`` cells, faster and approximate (it may miss neighbours in unscanned cells).

``faiss`` is imported on first use, so the library imports without faiss-cpu installed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Literal

import numpy as np

from uclip.errors import UclipError

FaissKind = Literal["flat", "ivf"]
FAISS_KINDS: tuple[FaissKind, ...] = ("flat", "ivf")


def import_faiss() -> Any:
    """The ``faiss`` module, or a :class:`UclipError` that says how to install it."""
    try:
        import faiss
    except ImportError as exc:
        raise UclipError(
            "FAISS search needs faiss-cpu: pip install faiss-cpu, or search exactly without it "
            "(an index: backend='numpy'; a bank: soft_retrieve)"
        ) from exc
    return faiss


def default_nlist(count: int) -> int:
    """IVF cells for ``count`` rows: ~4 sqrt(N), but k-means wants >= 39 training rows per cell."""
    return max(1, min(int(4 * math.sqrt(count)), count // 39))


def set_nprobe(index: Any, nprobe: int) -> None:
    """Cells an IVF index scans per query (FAISS scans all ``nlist`` when ``nprobe`` is larger;
    the value is stored as given, so a saved index is the same bytes); a flat index has none."""
    if hasattr(index, "nprobe"):
        index.nprobe = int(nprobe)


def inner_product_index(
    rows: Iterable[np.ndarray],
    dim: int,
    count: int,
    *,
    kind: FaissKind = "flat",
    train: np.ndarray | None = None,
    nlist: int | None = None,
    nprobe: int = 16,
) -> Any:
    """A FAISS index ranking by inner product that holds ``rows``: (n_i, dim) blocks, ``count``
    rows in all, added block by block so a memory-mapped source is read once.

    ``kind="ivf"`` trains ``nlist`` cells (default :func:`default_nlist` of ``count``) on
    ``train``, (T, dim) rows from the same distribution (all rows, or a sample of a large bank),
    and scans ``nprobe`` of them per query.
    """
    if kind not in FAISS_KINDS:
        raise UclipError(f"FAISS index kind must be 'flat' or 'ivf', got {kind!r}")
    if count < 1:
        raise UclipError("cannot build a FAISS index over no rows: embed something first")
    faiss = import_faiss()
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    else:
        nlist = nlist or default_nlist(count)
        if nlist > count:
            raise UclipError(f"nlist {nlist} exceeds the {count} rows to index: use fewer cells")
        if train is None:
            raise UclipError("an IVF index needs training rows (train=)")
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(np.ascontiguousarray(train, dtype=np.float32))
        set_nprobe(index, nprobe)
    for block in rows:
        index.add(np.ascontiguousarray(block, dtype=np.float32))
    return index
