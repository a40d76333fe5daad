"""Search index with a hubness-aware scorer: the penalty is computed once at build time from a
reference query set, stored beside the embeddings and subtracted at search time (numpy and
FAISS alike); rankings are checked against the formula written as loops."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

import uclip
import uclip.cli
from test_serve_api import make_image_folder, make_model  # tests/ is on sys.path
from uclip.errors import UclipError
from uclip.features.scoring import ReferenceQueries
from uclip.serve.app import create_app
from uclip.serve.index.build import build_index
from uclip.serve.index.files import EMBEDDINGS_FILE, INDEX_FILE, PENALTY_FILE
from uclip.serve.index.query import SearchIndex

REFERENCE_TEXTS = ["rojo", "rot", "red car", "rouge", "vert", "blue", "blue sky", "nothing", "x y"]
QUERIES = ["rojo", "blue sky", "緑", "something unrelated"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("scored")
    make_image_folder(root)
    refs = root / "refs.txt"
    refs.write_text("\n".join(REFERENCE_TEXTS) + "\n", encoding="utf-8")
    return root, make_model(identity=False, seed=3), ReferenceQueries.from_file(refs)


def brute_csls(root: Path, model, query: str, k: int) -> tuple[list[int], list[float]]:
    emb = np.load(root / EMBEDDINGS_FILE).astype(np.float64)
    refs = model.encode_text(REFERENCE_TEXTS).numpy().astype(np.float64)
    q = model.encode_text([query]).numpy()[0].astype(np.float64)
    scores = []
    for y in emb:
        r = sum(sorted((float(y @ x) for x in refs), reverse=True)[:k]) / k
        scores.append(2 * float(q @ y) - r)
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i)), scores


def test_csls_index_stores_the_penalty_and_ranks_by_it(setup) -> None:
    root, model, reference = setup
    out = root / "idx-csls"
    built = build_index(
        model, root / "images", out, scorer="csls:k=3", reference=reference, progress=False
    )
    meta = json.loads((out / INDEX_FILE).read_text())
    assert meta["scorer"]["name"] == "csls(k=3)" and meta["scorer"]["weight"] == 2.0
    assert meta["scorer"]["reference"] == reference.description
    assert np.load(out / PENALTY_FILE).shape == (len(built), 1)
    loaded = SearchIndex.load(out, model, images_root=root / "images")
    assert "CSLS with k=3" in loaded.banner() and "refs.txt" in loaded.banner()
    plain = build_index(model, root / "images", root / "idx-cos", progress=False)
    changed = False
    for query in QUERIES:
        order, expected = brute_csls(out, model, query, 3)
        for index in (built, loaded):
            scores, ids = index.search(model.encode_text([query]), 7)
            assert ids[0].tolist() == order[:7]
            assert scores[0].tolist() == pytest.approx([expected[i] for i in order[:7]], abs=1e-5)
        changed |= plain.search(model.encode_text([query]), 7)[1][0].tolist() != order[:7]
    assert changed  # the scorer changes at least one ranking: the test can fail
    body = TestClient(create_app(loaded, model), base_url="http://127.0.0.1").get(
        "/search", params={"q": "rojo", "k": 5}
    )
    order, expected = brute_csls(out, model, "rojo", 3)
    assert [r["id"] for r in body.json()["results"]] == order[:5]


def test_faiss_backends_rank_by_the_stored_penalty(setup) -> None:
    root, model, reference = setup
    scorer = "qbnorm:beta=5"
    exact = build_index(
        model, root / "images", root / "idx-qb", scorer=scorer, reference=reference, progress=False
    )
    flat = build_index(
        model,
        root / "images",
        root / "idx-qb-flat",
        scorer=scorer,
        reference=reference,
        faiss_threshold=1,
        progress=False,
    )
    assert flat.backend == "faiss-flat"
    queries = model.encode_text(QUERIES)
    want_scores, want_ids = exact.search(queries, 6)
    for index in (
        flat,
        SearchIndex.load(root / "idx-qb-flat", model, images_root=root / "images"),
        SearchIndex.load(root / "idx-qb", model, images_root=root / "images", backend="faiss"),
    ):
        scores, ids = index.search(queries, 6)
        np.testing.assert_array_equal(ids, want_ids)
        np.testing.assert_allclose(scores, want_scores, atol=1e-4)


def test_scorer_arguments_are_checked(setup, tmp_path: Path) -> None:
    root, model, reference = setup
    images = root / "images"
    with pytest.raises(UclipError, match="needs the test queries"):
        build_index(model, images, tmp_path / "a", scorer="csls-transductive", progress=False)
    with pytest.raises(UclipError, match="needs a reference query set"):
        build_index(model, images, tmp_path / "b", scorer="csls", progress=False)
    with pytest.raises(UclipError, match="needs at least 10 reference queries"):
        build_index(model, images, tmp_path / "d", scorer="csls", reference=reference)
    with pytest.raises(UclipError, match="takes no reference"):
        build_index(model, images, tmp_path / "c", reference=reference, progress=False)


def test_penalty_is_checked_on_load_and_dropped_by_a_cosine_rebuild(setup, tmp_path: Path) -> None:
    root, model, reference = setup
    out = tmp_path / "idx"
    build_index(model, root / "images", out, scorer="csls:k=2", reference=reference, progress=False)
    np.save(out / PENALTY_FILE, np.zeros((12, 1), dtype=np.float32))
    with pytest.raises(UclipError, match="sha256 mismatch"):
        SearchIndex.load(out, model, images_root=root / "images")
    rebuilt = build_index(model, root / "images", out, progress=False)
    assert not (out / PENALTY_FILE).exists() and rebuilt.scorer == {"name": "cosine"}
    assert SearchIndex.load(out, model, images_root=root / "images").penalty is None


def test_cli_index_build_with_a_scorer(setup, tmp_path: Path, monkeypatch, capsys) -> None:
    root, model, _ = setup
    monkeypatch.setattr("uclip.loading.load", lambda spec: model)
    refs = tmp_path / "refs.txt"
    refs.write_text("\n".join(REFERENCE_TEXTS), encoding="utf-8")
    argv = ["index", "build", "--images", str(root / "images"), "--model", "m", "--no-progress"]
    out = tmp_path / "idx"
    scored = [*argv, "--out", str(out), "--scorer", "csls:k=3", "--scorer-reference", str(refs)]
    assert uclip.cli.main(scored) == 0
    assert json.loads(capsys.readouterr().out)["scorer"] == "csls(k=3)"
    assert (
        SearchIndex.load(out, model, images_root=root / "images")
        .scorer["reference"]
        .startswith("file refs.txt (sha256 ")
    )
    assert uclip.cli.main([*argv, "--out", str(tmp_path / "b"), "--scorer", "csls"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs a reference query set" in err[0]
