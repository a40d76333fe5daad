"""The one FAISS constructor (``uclip.features.faiss_index``) through both of its users, soft
retrieval's bank top-k and the image search index, against a brute-force numpy top-k."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from test_serve_api import make_image_folder, make_model  # tests/ is on sys.path
from uclip.errors import UclipError
from uclip.features.faiss_index import default_nlist, inner_product_index
from uclip.features.scoring import ReferenceQueries
from uclip.method.bank_search import FaissBankIndex
from uclip.serve.index.build import build_index
from uclip.serve.index.files import EMBEDDINGS_FILE, PENALTY_FILE
from uclip.serve.index.query import SearchIndex

torch.set_num_threads(1)


def brute_top_k(
    queries: np.ndarray,
    rows: np.ndarray,
    k: int,
    weight: float = 1.0,
    penalty: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(B, k) scores ``weight * q . y - penalty(y)`` and row ids, best first, by a full sort in
    float64 (ties: smaller id first)."""
    scores = weight * (queries.astype(np.float64) @ rows.astype(np.float64).T)
    if penalty is not None:
        scores = scores - penalty.astype(np.float64)[None, :]
    ids = np.stack([np.lexsort((np.arange(len(row)), -row))[:k] for row in scores])
    return np.take_along_axis(scores, ids, axis=1), ids


def unit_rows(n: int, d: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_bank_search_top_k_is_the_brute_force_top_k(kind: str) -> None:
    """IVF scanning every cell (nprobe = nlist) must be exact as well."""
    bank, queries = unit_rows(500, 16, 0), unit_rows(9, 16, 1)
    nlist = default_nlist(len(bank))
    assert nlist > 1  # several cells, so a search that skipped cells could fail
    index = FaissBankIndex(torch.from_numpy(bank), kind=kind, nprobe=nlist, chunk_size=64)
    scores, ids = index.search(torch.from_numpy(queries), 10)
    want_scores, want_ids = brute_top_k(queries, bank, 10)
    np.testing.assert_array_equal(ids.numpy(), want_ids)
    np.testing.assert_allclose(scores.numpy(), want_scores, atol=1e-5)


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("faiss")
    make_image_folder(root)
    refs = root / "refs.txt"
    refs.write_text("rojo\nrot\nred car\nrouge\nvert\nblue\nblue sky\nnothing\nx y\nzz\n")
    return root, make_model(identity=False, seed=3), ReferenceQueries.from_file(refs)


@pytest.mark.parametrize("scorer", ["cosine", "qbnorm:beta=5"])
@pytest.mark.parametrize("ivf_threshold", [100_000, 1], ids=["faiss-flat", "faiss-ivf"])
def test_index_search_is_the_brute_force_top_k(collection, scorer: str, ivf_threshold: int):
    """Built, reloaded from disk, and a numpy-built index reloaded with backend="faiss" (the
    constructor's three calls in serve); with a scorer FAISS holds [y, -penalty / weight]."""
    root, model, reference = collection
    reference = reference if scorer != "cosine" else None
    out = root / f"idx-{scorer}-{ivf_threshold}"
    built = build_index(
        model,
        root / "images",
        out,
        scorer=scorer,
        reference=reference,
        faiss_threshold=1,
        ivf_threshold=ivf_threshold,
        progress=False,
    )
    exact_dir = root / f"idx-{scorer}-numpy"
    build_index(
        model, root / "images", exact_dir, scorer=scorer, reference=reference, progress=False
    )
    loaded = SearchIndex.load(out, model, images_root=root / "images", nprobe=len(built))
    rebuilt = SearchIndex.load(exact_dir, model, images_root=root / "images", backend="faiss")
    assert built.backend == loaded.backend == ("faiss-ivf" if ivf_threshold == 1 else "faiss-flat")
    assert rebuilt.backend == "faiss-flat"

    queries = model.encode_text(["rojo", "blue sky", "緑", "something unrelated"]).numpy()
    rows = np.load(out / EMBEDDINGS_FILE)
    penalty = np.load(out / PENALTY_FILE)[:, 0] if reference is not None else None
    weight = float(built.scorer.get("weight", 1.0))
    want_scores, want_ids = brute_top_k(queries, rows, 7, weight, penalty)
    for index in (built, loaded, rebuilt):
        scores, ids = index.search(queries, 7)
        np.testing.assert_array_equal(ids, want_ids)
        np.testing.assert_allclose(scores, want_scores, atol=1e-5)


def test_constructor_arguments_are_checked() -> None:
    rows = unit_rows(50, 4, 0)
    with pytest.raises(UclipError, match="kind"):
        inner_product_index([rows], 4, 50, kind="hnsw")  # type: ignore[arg-type]
    with pytest.raises(UclipError, match="nlist 60 exceeds the 50 rows"):
        inner_product_index([rows], 4, 50, kind="ivf", train=rows, nlist=60)
    with pytest.raises(UclipError, match="training rows"):
        inner_product_index([rows], 4, 50, kind="ivf")
