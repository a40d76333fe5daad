"""Search index and HTTP API (issue 7): ranking vs brute force, bad input, path traversal,
index integrity and resumable builds.

The model is the real ``UCLIPModel`` with tiny fake towers injected (``set_encoder``): words of a
small multilingual colour lexicon map to fixed directions, images to their mean colour. With
identity heads, "rojo" must find the red images, which checks the id -> path plumbing end to end;
with random heads, rankings are compared to a brute-force cosine ranking.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from uclip.data.io import list_images
from uclip.errors import UclipError
from uclip.method.model import UCLIPConfig, UCLIPModel
from uclip.serve.app import create_app
from uclip.serve.index.build import build_index
from uclip.serve.index.files import EMBEDDINGS_FILE, FAISS_FILE, INDEX_FILE, PARTIAL_DIR
from uclip.serve.index.query import SearchIndex

torch.set_num_threads(1)

DIM = 8
COLOURS = {"red": (230, 20, 20), "green": (20, 200, 20), "blue": (20, 20, 230)}
LEXICON = {
    "red": ["red", "rojo", "rouge", "rot", "赤", "أحمر", "красный"],
    "green": ["green", "verde", "vert", "grün", "緑", "أخضر", "зелёный"],
    "blue": ["blue", "azul", "bleu", "blau", "青", "أزرق", "синий"],
}
WORD_TO_COLOUR = {w: c for c, words in LEXICON.items() for w in words}
AXIS = {"red": 0, "green": 1, "blue": 2}
SECRET = "TOP-SECRET-CONTENT-outside-the-image-folder"


def _hash_vector(text: str, dim: int = DIM) -> torch.Tensor:
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    return torch.randn(dim, generator=torch.Generator().manual_seed(seed))


class FakeTextTower:
    """Colour words (any language) -> their axis; every other word -> a small hashed vector."""

    modality, weights = "text", "random-init"

    def __init__(self, name: str) -> None:
        self.name, self.dim, self.calls = name, DIM, 0
        self.weights_id = name

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        self.calls += 1
        rows = []
        for text in texts:
            v = torch.zeros(DIM)
            for word in re.findall(r"\w+", text.lower()):
                if word in WORD_TO_COLOUR:
                    v[AXIS[WORD_TO_COLOUR[word]]] += 1.0
                else:
                    v += 0.05 * _hash_vector(word)
            rows.append(v if v.norm() > 0 else _hash_vector(text))
        return torch.nn.functional.normalize(torch.stack(rows), dim=-1)


class FakeImageTower:
    """Mean RGB on the colour axes plus a small content-dependent part; can fail on demand."""

    modality, weights, weights_id = "image", "random-init", "fake-image"

    def __init__(self, fail_after_calls: int | None = None) -> None:
        self.name, self.dim = "fake-image", DIM
        self.calls, self.images_seen, self.fail_after_calls = 0, 0, fail_after_calls

    def encode(self, images: Sequence[Image.Image]) -> torch.Tensor:
        if self.fail_after_calls is not None and self.calls >= self.fail_after_calls:
            raise RuntimeError("simulated crash during indexing")
        self.calls += 1
        self.images_seen += len(images)
        rows = []
        for img in images:
            arr = np.asarray(img, dtype=np.float32) / 255.0
            v = torch.zeros(DIM)
            v[:3] = torch.from_numpy(arr.reshape(-1, 3).mean(0))
            v += 0.05 * _hash_vector(hashlib.sha256(arr.tobytes()).hexdigest())
            rows.append(v)
        return torch.nn.functional.normalize(torch.stack(rows), dim=-1)


def _identity_heads(model: UCLIPModel) -> None:
    """Linear [I; -I] -> BN(identity) -> ReLU -> Linear [I, -I] computes x exactly (up to scale)."""
    eye = torch.eye(DIM)
    with torch.no_grad():
        for head in (model.heads.f_c, model.heads.f_m):
            lin1, bn, _, lin2 = head.net
            lin1.weight.copy_(torch.cat([eye, -eye]))
            lin1.bias.zero_()
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0)
            bn.weight.fill_(1.0)
            bn.bias.zero_()
            lin2.weight.copy_(torch.cat([eye, -eye], dim=1))
            lin2.bias.zero_()


def make_model(
    *,
    identity: bool = True,
    seed: int = 0,
    image_tower: bool = True,
    multilingual: str = "fake-multilingual",
    fail_after_calls: int | None = None,
) -> UCLIPModel:
    """A real UCLIPModel (8-d everything) with fake towers; random heads have random BN stats."""
    config = UCLIPConfig(
        anchor_encoder="fake-anchor",
        multilingual_encoder=multilingual,
        image_encoder="fake-image" if image_tower else None,
        anchor_dim=DIM,
        multilingual_dim=DIM,
        embed_dim=DIM,
        random_init=True,
    )
    torch.manual_seed(seed)
    model = UCLIPModel(config)
    if identity:
        _identity_heads(model)
    else:
        with torch.no_grad():
            for head in (model.heads.f_c, model.heads.f_m):
                head.net[1].running_mean.normal_(0, 0.3)
                head.net[1].running_var.uniform_(0.5, 2.0)
    towers: dict[str, Any] = {
        "fake-anchor": FakeTextTower("fake-anchor"),
        multilingual: FakeTextTower(multilingual),
    }
    if image_tower:
        towers["fake-image"] = FakeImageTower(fail_after_calls)
    model.use_encoders(towers)
    return model.eval()


def make_image_folder(root: Path) -> Path:
    """12 small images: 4 shades of each colour, some in a subfolder, one JPEG, plus noise files."""
    images = root / "images"
    (images / "sub").mkdir(parents=True)
    (images / ".hidden").mkdir()
    for colour, (r, g, b) in COLOURS.items():
        for shade in range(4):
            scale = 1.0 - 0.15 * shade
            rgb = (int(r * scale), int(g * scale), int(b * scale))
            sub = "sub/" if shade == 3 else ""
            ext = "jpg" if (colour, shade) == ("blue", 1) else "png"
            path = images / f"{sub}{colour}_{shade}.{ext}"
            noise = np.random.default_rng(shade).integers(0, 30, (16, 16, 3))
            pixels = np.clip(np.array(rgb)[None, None] + noise - 15, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(path)
            (path.with_suffix(".txt")).write_text(f"a {colour} square\nsomething {colour}\n")
    Image.new("RGB", (4, 4)).save(images / ".hidden" / "skip.png")
    (images / "notes.md").write_text("not an image")
    (root / "secret.txt").write_text(SECRET)
    return images


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("serve")
    make_image_folder(root)
    return root


@pytest.fixture(scope="module")
def semantic(workspace: Path) -> tuple[SearchIndex, UCLIPModel, TestClient]:
    model = make_model(identity=True)
    index = build_index(model, workspace / "images", workspace / "idx-semantic", progress=False)
    return index, model, local_client(create_app(index, model))


@pytest.fixture(scope="module")
def random_heads(workspace: Path) -> tuple[SearchIndex, UCLIPModel, TestClient]:
    model = make_model(identity=False, seed=3)
    index = build_index(
        model, workspace / "images", workspace / "idx-random", chunk_size=5, progress=False
    )
    return index, model, local_client(create_app(index, model))


def local_client(app: Any) -> TestClient:
    """A client whose requests carry ``Host: 127.0.0.1``, a name the app answers by default."""
    return TestClient(app, base_url="http://127.0.0.1")


def load_index(index_dir: Path, *args: Any, **kw: Any) -> SearchIndex:
    """:meth:`SearchIndex.load` with the images folder the tests build beside each index."""
    kw.setdefault("images_root", Path(index_dir).parent / "images")
    return SearchIndex.load(index_dir, *args, **kw)


def brute_force(index_dir: Path, model: UCLIPModel, query: str) -> tuple[list[int], np.ndarray]:
    """Reference ranking: cosine of the query with every stored row, best first, ties by id."""
    emb = np.load(index_dir / EMBEDDINGS_FILE)
    q = model.encode_text([query]).numpy()[0]
    sims = (emb @ q) / (np.linalg.norm(emb, axis=1) * np.linalg.norm(q))
    order = sorted(range(len(sims)), key=lambda i: (-sims[i], i))
    return order, sims


# ---------------------------------------------------------------------------------------------
# listing and building


def test_list_images_is_sorted_relative_and_skips_hidden_non_images_and_outside_links(
    tmp_path: Path,
) -> None:
    images = make_image_folder(tmp_path)
    (images / "link_out.png").symlink_to(tmp_path / "secret.txt")
    (images / "link_in.png").symlink_to(images / "red_0.png")
    paths, skipped = list_images(images)
    assert paths == sorted(paths)
    assert len(paths) == 13  # 12 images + the symlink that stays inside
    assert "link_in.png" in paths and "sub/red_3.png" in paths
    assert skipped == ["link_out.png"]
    assert not any(p.startswith(".hidden") or p.endswith(".md") for p in paths)


def test_index_records_relative_paths_hashes_spec_and_checksums(
    workspace: Path, semantic: tuple[SearchIndex, UCLIPModel, TestClient]
) -> None:
    index, model, _ = semantic
    meta = json.loads((workspace / "idx-semantic" / INDEX_FILE).read_text())
    assert meta["mode"] == "image" and meta["version"] == 1
    assert meta["images_root"] == str((workspace / "images").resolve())
    assert [e["path"] for e in meta["images"]] == index.paths
    for entry in meta["images"]:
        data = (workspace / "images" / entry["path"]).read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    emb_bytes = (workspace / "idx-semantic" / EMBEDDINGS_FILE).read_bytes()
    assert meta["embeddings"]["sha256"] == hashlib.sha256(emb_bytes).hexdigest()
    assert meta["model"]["spec"] == json.loads(json.dumps(model.describe()["config"]))
    assert meta["backend"]["kind"] == "numpy"
    assert not (workspace / "idx-semantic" / PARTIAL_DIR).exists()
    assert index.changed_images() == []


def test_index_round_trip_and_backends_agree(
    workspace: Path, random_heads: tuple[SearchIndex, UCLIPModel, TestClient]
) -> None:
    built, model, _ = random_heads
    loaded = load_index(workspace / "idx-random", model)
    assert loaded.paths == built.paths and loaded.mode == "image"
    np.testing.assert_array_equal(loaded.embeddings, built.embeddings)
    queries = model.encode_text(["rojo", "blue sky", "zzz"]).numpy()
    scores_np, ids_np = loaded.search(queries, 5)

    flat = build_index(
        model, workspace / "images", workspace / "idx-flat", faiss_threshold=1, progress=False
    )
    assert flat.backend == "faiss-flat" and (workspace / "idx-flat" / FAISS_FILE).is_file()
    flat = load_index(workspace / "idx-flat", model)
    scores_f, ids_f = flat.search(queries, 5)
    np.testing.assert_array_equal(ids_f, ids_np)
    np.testing.assert_allclose(scores_f, scores_np, atol=1e-6)

    # IVF with every list probed is exact, so it must agree too.
    ivf = build_index(
        model,
        workspace / "images",
        workspace / "idx-ivf",
        faiss_threshold=1,
        ivf_threshold=1,
        progress=False,
    )
    assert ivf.backend == "faiss-ivf"
    nlist = json.loads((workspace / "idx-ivf" / INDEX_FILE).read_text())["backend"]["nlist"]
    ivf = load_index(workspace / "idx-ivf", model, nprobe=nlist)
    np.testing.assert_array_equal(ivf.search(queries, 5)[1], ids_np)
    # backend override: exact numpy search over a FAISS index directory
    exact = load_index(workspace / "idx-ivf", model, backend="numpy")
    assert exact.backend == "numpy"
    np.testing.assert_array_equal(exact.search(queries, 5)[1], ids_np)


def test_search_rejects_wrong_dimension_and_bad_k(
    random_heads: tuple[SearchIndex, UCLIPModel, TestClient],
) -> None:
    index, _, _ = random_heads
    with pytest.raises(UclipError, match="8-d"):
        index.search(np.ones(5, dtype=np.float32), 3)
    with pytest.raises(UclipError, match="positive integer"):
        index.search(np.ones(DIM, dtype=np.float32), 0)


# ---------------------------------------------------------------------------------------------
# search API


@pytest.mark.parametrize("query", ["rojo", "blue sky", "緑", "something unrelated"])
def test_search_ranking_matches_brute_force_cosine(
    workspace: Path, random_heads: tuple[SearchIndex, UCLIPModel, TestClient], query: str
) -> None:
    index, model, client = random_heads
    order, sims = brute_force(workspace / "idx-random", model, query)
    response = client.get("/search", params={"q": query, "k": 7})
    assert response.status_code == 200
    body = response.json()
    assert body["k"] == 7 and body["mode"] == "image" and body["query"] == query
    assert [r["id"] for r in body["results"]] == order[:7]
    for r in body["results"]:
        assert r["path"] == index.paths[r["id"]]
        assert r["url"] == f"/images/{r['id']}"
        assert r["score"] == pytest.approx(float(sims[r["id"]]), abs=1e-5)


@pytest.mark.parametrize(
    ("query", "colour"),
    [
        ("rojo", "red"),
        ("赤", "red"),
        ("أحمر", "red"),
        ("красный", "red"),
        ("vert", "green"),
        ("синий", "blue"),
        ("bleu", "blue"),
    ],
)
def test_non_english_query_finds_the_right_images(
    semantic: tuple[SearchIndex, UCLIPModel, TestClient], query: str, colour: str
) -> None:
    _, _, client = semantic
    response = client.get("/search", params={"q": f"  {query} ", "k": 4})
    assert response.status_code == 200
    body = response.json()
    assert body["query"] == query  # UTF-8 round trip, surrounding whitespace stripped
    assert len(body["results"]) == 4
    assert all(Path(r["path"]).name.startswith(colour) for r in body["results"]), body


def test_k_larger_than_index_is_clamped(
    semantic: tuple[SearchIndex, UCLIPModel, TestClient],
) -> None:
    index, _, client = semantic
    body = client.get("/search", params={"q": "red", "k": 100}).json()
    assert body["k"] == len(index) == 12
    assert sorted(r["id"] for r in body["results"]) == list(range(12))
    scores = [r["score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({}, "'q'"),
        ({"q": ""}, "'q'"),
        ({"q": "   \t\n "}, "only whitespace"),
        ({"q": "x" * 513}, "'q'"),
        ({"q": "red", "k": 0}, "'k'"),
        ({"q": "red", "k": 101}, "'k'"),
        ({"q": "red", "k": -3}, "'k'"),
        ({"q": "red", "k": "ten"}, "'k'"),
        ({"q": "red", "k": 2.5}, "'k'"),
    ],
)
def test_bad_search_input_is_a_clear_4xx(
    semantic: tuple[SearchIndex, UCLIPModel, TestClient], params: dict[str, Any], fragment: str
) -> None:
    _, _, client = semantic
    response = client.get("/search", params=params)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert isinstance(detail, str) and fragment in detail
    assert "send" in detail  # says what to do


def test_longest_allowed_query_is_accepted(
    semantic: tuple[SearchIndex, UCLIPModel, TestClient],
) -> None:
    _, _, client = semantic
    assert client.get("/search", params={"q": "ü" * 512, "k": 1}).status_code == 200


def test_image_is_served_with_its_content_type(
    workspace: Path, semantic: tuple[SearchIndex, UCLIPModel, TestClient]
) -> None:
    index, _, client = semantic
    for media_type, suffix in (("image/png", ".png"), ("image/jpeg", ".jpg")):
        image_id = next(i for i, p in enumerate(index.paths) if p.endswith(suffix))
        response = client.get(f"/images/{image_id}")
        assert response.status_code == 200
        assert response.headers["content-type"] == media_type
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.content == (workspace / "images" / index.paths[image_id]).read_bytes()


@pytest.mark.parametrize(
    ("url", "status"),
    [("/images/12", 404), ("/images/99999", 404), ("/images/-1", 422), ("/images/abc", 422)],
)
def test_unknown_image_id_is_a_clear_4xx(
    semantic: tuple[SearchIndex, UCLIPModel, TestClient], url: str, status: int
) -> None:
    _, _, client = semantic
    response = client.get(url)
    assert response.status_code == status
    assert "id" in response.json()["detail"]


@pytest.mark.parametrize(
    "url",
    [
        "/images/../../secret.txt",
        "/images/..%2F..%2Fsecret.txt",
        "/images/%2e%2e%2f%2e%2e%2fsecret.txt",
        "/images/%252e%252e%252fsecret.txt",
        "/images//etc/passwd",
        "/images/%2Fetc%2Fpasswd",
        "/images/0/../../../secret.txt",
        "/images/0%00",
        "/static/../../../secret.txt",
        "/static/%2e%2e/%2e%2e/%2e%2e/secret.txt",
        "/static/..%2F..%2F..%2Fsecret.txt",
    ],
)
def test_path_traversal_never_serves_outside_files(
    semantic: tuple[SearchIndex, UCLIPModel, TestClient], url: str
) -> None:
    _, _, client = semantic
    response = client.get(url)
    assert 400 <= response.status_code < 500, (url, response.status_code)
    assert SECRET not in response.text and "root:" not in response.text


def test_symlink_and_tampered_paths_pointing_outside_are_refused(tmp_path: Path) -> None:
    images = make_image_folder(tmp_path)
    (images / "zz_link_out.png").symlink_to(tmp_path / "secret.txt")
    model = make_model()
    index = build_index(model, images, tmp_path / "idx", progress=False)
    assert "zz_link_out.png" not in index.paths  # skipped at build time ...
    assert index.meta["skipped"] == ["zz_link_out.png"]  # ... and recorded
    client = local_client(create_app(index, model))

    # An indexed image replaced by a symlink to a file outside the folder after the build.
    victim = index.paths.index("red_0.png")
    (images / "red_0.png").unlink()
    (images / "red_0.png").symlink_to(tmp_path / "secret.txt")
    response = client.get(f"/images/{victim}")
    assert response.status_code == 403
    assert "outside the images folder" in response.json()["detail"]
    assert SECRET not in response.text

    # A symlinked directory inside the folder that leads out.
    (images / "sub").rename(images / "sub_real")
    (images / "sub").symlink_to(tmp_path)
    (tmp_path / "red_3.png").write_text(SECRET)
    sub_id = index.paths.index("sub/red_3.png")
    assert client.get(f"/images/{sub_id}").status_code == 403

    # Stored paths are re-validated on every request, not only on load.
    for bad in ("../secret.txt", "/etc/passwd", "a/../../secret.txt"):
        index.paths[0] = bad
        response = client.get("/images/0")
        assert response.status_code == 403 and SECRET not in response.text

    # Deleted file: 404 saying to rebuild.
    (images / "green_1.png").unlink()
    response = client.get(f"/images/{index.paths.index('green_1.png')}")
    assert response.status_code == 404 and "rebuild" in response.json()["detail"]


def test_tampered_index_json_with_escaping_path_fails_to_load(tmp_path: Path) -> None:
    images = make_image_folder(tmp_path)
    model = make_model()
    build_index(model, images, tmp_path / "idx", progress=False)
    meta_file = tmp_path / "idx" / INDEX_FILE
    meta = json.loads(meta_file.read_text())
    meta["images"][0]["path"] = "../secret.txt"
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(UclipError, match="outside the images folder"):
        load_index(tmp_path / "idx", model)


def test_health_info_openapi_and_page(
    semantic: tuple[SearchIndex, UCLIPModel, TestClient],
) -> None:
    _, _, client = semantic
    assert client.get("/health").json() == {"status": "ok", "images": 12, "mode": "image"}
    info = client.get("/info").json()
    assert info["banner"].startswith("image-indexed")
    assert "fake-image" in info["banner"] and "random-init" in info["banner"]
    schema = client.get("/openapi.json").json()
    assert {"/search", "/images/{image_id}", "/health", "/info"} <= set(schema["paths"])
    params = {p["name"]: p["schema"] for p in schema["paths"]["/search"]["get"]["parameters"]}
    assert params["q"]["maxLength"] == 512 and params["q"]["minLength"] == 1
    assert params["k"]["minimum"] == 1 and params["k"]["maximum"] == 100
    assert client.get("/docs").status_code == 404  # CDN-based docs are off (offline)

    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert 'dir="auto"' in page.text and 'charset="utf-8"' in page.text
    for asset in ("/static/app.js", "/static/style.css"):
        assert client.get(asset).status_code == 200
    # Offline: no resource is loaded from another origin.
    static = Path(__file__).parents[1] / "src" / "uclip" / "serve" / "static"
    for file in static.iterdir():
        text = file.read_text()
        assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", text), file
        assert "url(http" not in text and "@import" not in text, file


# ---------------------------------------------------------------------------------------------
# integrity and model checks on load


def test_load_rejects_a_different_model(workspace: Path, semantic: Any) -> None:
    other_encoder = make_model(multilingual="another-multilingual")
    with pytest.raises(UclipError, match=r"different model.*multilingual_encoder"):
        load_index(workspace / "idx-semantic", other_encoder)
    other_heads = make_model(identity=False, seed=7)  # same spec, other weights
    with pytest.raises(UclipError, match="different head weights"):
        load_index(workspace / "idx-semantic", other_heads)
    load_index(workspace / "idx-semantic", make_model(identity=True))  # same: fine


@pytest.mark.parametrize(
    "damage", ["truncate", "flip", "delete", "delete_faiss", "bad_json", "version", "no_index"]
)
def test_load_detects_corrupt_or_missing_files(
    tmp_path: Path, workspace: Path, damage: str
) -> None:
    model = make_model()
    out = tmp_path / "idx"
    build_index(model, workspace / "images", out, faiss_threshold=1, progress=False)
    emb = out / EMBEDDINGS_FILE
    if damage == "truncate":
        emb.write_bytes(emb.read_bytes()[:-7])
        match = "corrupt or truncated"
    elif damage == "flip":
        data = bytearray(emb.read_bytes())
        data[-3] ^= 0xFF
        emb.write_bytes(bytes(data))
        match = "corrupt or truncated"
    elif damage == "delete":
        emb.unlink()
        match = "missing"
    elif damage == "delete_faiss":
        (out / FAISS_FILE).unlink()
        match = "missing"
    elif damage == "bad_json":
        (out / INDEX_FILE).write_text('{"format": "uclip-search-index", ')
        match = "corrupt"
    elif damage == "version":
        meta = json.loads((out / INDEX_FILE).read_text())
        meta["version"] = 99
        (out / INDEX_FILE).write_text(json.dumps(meta))
        match = "version 99"
    else:
        shutil.rmtree(out)
        match = "no search index"
    with pytest.raises(UclipError, match=match) as info:
        load_index(out, model, images_root=workspace / "images")
    assert "\n" not in str(info.value)


def test_load_with_moved_images_needs_images_root(tmp_path: Path) -> None:
    images = make_image_folder(tmp_path)
    model = make_model()
    build_index(model, images, tmp_path / "idx", progress=False)
    moved = tmp_path / "moved"
    images.rename(moved)
    with pytest.raises(UclipError, match="images_root"):
        SearchIndex.load(tmp_path / "idx", model, images_root=images)
    index = SearchIndex.load(tmp_path / "idx", model, images_root=moved)
    assert index.image_file(0) == (moved / index.paths[0]).resolve()


def test_build_refuses_a_foreign_output_folder(tmp_path: Path) -> None:
    images = make_image_folder(tmp_path)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "thesis.tex").write_text("precious")
    with pytest.raises(UclipError, match="not empty and not an index"):
        build_index(make_model(), images, tmp_path / "busy", progress=False)
    with pytest.raises(UclipError, match="images folder itself"):
        build_index(make_model(), images, images, progress=False)
    with pytest.raises(UclipError, match="no images"):
        build_index(make_model(), tmp_path / "busy", tmp_path / "idx", progress=False)


# ---------------------------------------------------------------------------------------------
# resumable build


def test_killed_build_resumes_and_matches_a_clean_build(tmp_path: Path, workspace: Path) -> None:
    images = workspace / "images"
    clean = build_index(
        make_model(), images, tmp_path / "clean", chunk_size=4, batch_size=2, progress=False
    )

    crashing = make_model(fail_after_calls=5)  # 2 full chunks (4 calls) + half of the third
    with pytest.raises(RuntimeError, match="simulated crash"):
        build_index(crashing, images, tmp_path / "idx", chunk_size=4, batch_size=2, progress=False)
    partial = tmp_path / "idx" / PARTIAL_DIR
    assert sorted(p.name for p in partial.glob("chunk_*.json")) == [
        "chunk_000000.json",
        "chunk_000001.json",
    ]
    assert not (tmp_path / "idx" / INDEX_FILE).exists()
    with pytest.raises(UclipError, match="interrupted"):
        load_index(tmp_path / "idx", images_root=images)

    resumed_model = make_model()
    resumed = build_index(
        resumed_model, images, tmp_path / "idx", chunk_size=4, batch_size=2, progress=False
    )
    assert resumed_model.encoder("image").images_seen == 4  # only the last chunk was embedded
    np.testing.assert_array_equal(resumed.embeddings, clean.embeddings)
    assert resumed.meta["images"] == clean.meta["images"]
    assert not partial.exists()
    load_index(tmp_path / "idx", resumed_model, images_root=images)


def test_resume_starts_over_when_the_folder_changed(tmp_path: Path) -> None:
    images = make_image_folder(tmp_path)
    with pytest.raises(RuntimeError):
        build_index(
            make_model(fail_after_calls=2),
            images,
            tmp_path / "idx",
            chunk_size=4,
            batch_size=2,
            progress=False,
        )
    Image.new("RGB", (8, 8), (250, 0, 0)).save(images / "red_new.png")
    model = make_model()
    index = build_index(model, images, tmp_path / "idx", chunk_size=4, batch_size=2, progress=False)
    assert model.encoder("image").images_seen == 13 == len(index)


def test_corrupt_chunk_is_recomputed(tmp_path: Path, workspace: Path) -> None:
    with pytest.raises(RuntimeError):
        build_index(
            make_model(fail_after_calls=4),
            workspace / "images",
            tmp_path / "idx",
            chunk_size=4,
            batch_size=2,
            progress=False,
        )
    chunk = tmp_path / "idx" / PARTIAL_DIR / "chunk_000000.npy"
    chunk.write_bytes(chunk.read_bytes()[:-5])
    model = make_model()
    build_index(
        model, workspace / "images", tmp_path / "idx", chunk_size=4, batch_size=2, progress=False
    )
    assert model.encoder("image").images_seen == 8  # chunk 0 (corrupt) and chunk 2 (never done)


# ---------------------------------------------------------------------------------------------
# caption mode


def test_caption_mode_embeds_mean_of_captions(tmp_path: Path) -> None:
    images = make_image_folder(tmp_path)
    model = make_model(image_tower=False)
    with pytest.raises(UclipError, match="no image tower"):
        build_index(model, images, tmp_path / "idx-img", mode="image", progress=False)

    index = build_index(model, images, tmp_path / "idx", mode="caption", progress=False)
    assert index.mode == "caption"
    # Hand reference: mean of the anchor embeddings of the sidecar captions, renormalised.
    for i, rel in enumerate(index.paths):
        caps = (images / rel).with_suffix(".txt").read_text().splitlines()
        ref = model.encode_english(caps).numpy().mean(0)
        np.testing.assert_allclose(index.embeddings[i], ref / np.linalg.norm(ref), atol=1e-6)
    client = local_client(create_app(load_index(tmp_path / "idx", model), model))
    body = client.get("/search", params={"q": "azul", "k": 4}).json()
    assert body["mode"] == "caption"
    assert all(Path(r["path"]).name.startswith("blue") for r in body["results"])
    banner = client.get("/info").json()["banner"]
    assert banner.startswith("caption-indexed: images are found through their captions")
    assert "anchor tower = fake-anchor" in banner and "image tower =" not in banner


def test_caption_mode_with_a_mapping_and_missing_captions(tmp_path: Path) -> None:
    images = make_image_folder(tmp_path)
    model = make_model(image_tower=False)
    paths, _ = list_images(images)
    captions = {p: "a photo" for p in paths}
    captions[paths[0]] = ["a dog", "a puppy on grass"]
    index = build_index(
        model, images, tmp_path / "idx", mode="caption", captions=captions, progress=False
    )
    ref = model.encode_english(["a dog", "a puppy on grass"]).numpy().mean(0)
    np.testing.assert_allclose(index.embeddings[0], ref / np.linalg.norm(ref), atol=1e-6)

    captions_file = tmp_path / "caps.json"
    del captions[paths[5]]
    captions_file.write_text(json.dumps(captions))
    with pytest.raises(UclipError, match=rf"1 of 12 have none.*{re.escape(paths[5])}"):
        build_index(
            model, images, tmp_path / "idx2", mode="caption", captions=captions_file, progress=False
        )
    os.remove((images / paths[1]).with_suffix(".txt"))
    with pytest.raises(UclipError, match="sidecar"):
        build_index(model, images, tmp_path / "idx3", mode="caption", progress=False)


# ---------------------------------------------------------------------------------------------
# schema-driven fuzzing


def test_openapi_contract_with_schemathesis(
    semantic: tuple[SearchIndex, UCLIPModel, TestClient],
) -> None:
    """Bounded schemathesis run: every operation, no 5xx, status codes / content types / bodies
    conform to the OpenAPI schema (positive and negative inputs)."""
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import (
        content_type_conformance,
        not_a_server_error,
        response_schema_conformance,
        status_code_conformance,
    )

    index, model, _ = semantic
    # schemathesis calls the app as Starlette's test client does, with Host: testserver
    app = create_app(index, model, allowed_hosts=["testserver"])
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 4
    for operation in operations:
        has_params = bool(len(operation.query) + len(operation.path_parameters))
        for mode in schemathesis.GenerationMode:
            if mode is schemathesis.GenerationMode.NEGATIVE and not has_params:
                continue  # nothing to make invalid in a parameterless GET

            @settings(
                max_examples=20,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(mode))
            def run(case: Any) -> None:
                case.call_and_validate(checks=checks)

            run()


def test_serve_checks_the_model_and_binds_loopback(
    workspace: Path, semantic: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn

    from uclip.serve.app import serve

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append({"app": app, **kw}))
    images = workspace / "images"
    serve(workspace / "idx-semantic", make_model(identity=True), port=8765, images_root=images)
    assert calls[0]["host"] == "127.0.0.1" and calls[0]["port"] == 8765
    assert local_client(calls[0]["app"]).get("/health").json()["images"] == 12
    with pytest.raises(UclipError, match="different model"):
        serve(workspace / "idx-semantic", make_model(multilingual="other"), images_root=images)
    assert len(calls) == 1


@pytest.mark.parametrize(
    "query",
    [
        "\x00", "\x00\x00 \x00", "\u200b\u200b", "\x07\x1b", "\u2028\u00a0\u3000", "\ufeff",
        # issue 23: blank letters and symbols, combining marks with no base
        "\u3164", "\u3164 \u3164", "\u2800\u2800", "\u0301", "\u0301\u0308 \u200b", "\u115f\uffa0",
    ],
)  # fmt: skip
def test_query_without_visible_characters_is_a_4xx(
    semantic: tuple[SearchIndex, UCLIPModel, TestClient], query: str
) -> None:
    _, _, client = semantic
    response = client.get("/search", params={"q": query})
    assert response.status_code == 422
    assert "no visible characters" in response.json()["detail"]
    assert client.get("/search", params={"q": "\x00red\u200b", "k": 1}).status_code == 200
    assert client.get("/search", params={"q": "e\u0301", "k": 1}).status_code == 200


@pytest.mark.parametrize("path", ["/", "/health", "/info", "/search?q=red&k=2", "/images/0",
                                  "/static/app.js", "/openapi.json"])  # fmt: skip
def test_head_is_answered_wherever_get_is(
    semantic: tuple[SearchIndex, UCLIPModel, TestClient], path: str
) -> None:
    _, _, client = semantic
    get, head = client.get(path), client.head(path)
    assert get.status_code == head.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"]
    assert head.headers.get("content-length") == get.headers.get("content-length")
    assert client.head("/search?q=%00").status_code == 422
    assert client.head("/images/9999").status_code == 404


# ---------------------------------------------------------------------------------------------
# issue 24 / issue 23 (5, 6): what a shared index may decide, and a server safe by default


def test_a_crafted_index_cannot_choose_the_served_folder(tmp_path: Path) -> None:
    """index.json once chose the images root: `"images_root": "/"` with `etc/passwd` served
    /etc/passwd. Now the root is what the caller passes (or the index folder)."""
    images = make_image_folder(tmp_path)
    (tmp_path / "outside.png").write_text(SECRET)
    model = make_model()
    build_index(model, images, tmp_path / "idx", progress=False)
    meta_file = tmp_path / "idx" / INDEX_FILE
    meta = json.loads(meta_file.read_text())

    meta["images_root"], meta["images"][0]["path"] = "/", "etc/passwd"
    meta_file.write_text(json.dumps(meta))
    for root in (None, images, Path("/")):
        with pytest.raises(UclipError, match="not an image file"):
            SearchIndex.load(tmp_path / "idx", model, images_root=root)

    # An image name that exists only in the folder index.json names: not served from there.
    meta["images"][0]["path"] = "red_0.png"
    meta["images_root"], meta["images"][5]["path"] = str(tmp_path), "outside.png"
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(UclipError, match=r"images of index .* are not in .*idx: pass images_root"):
        SearchIndex.load(tmp_path / "idx", model)
    client = local_client(create_app(load_index(tmp_path / "idx", model), model))
    response = client.get("/images/5")
    assert response.status_code == 404 and SECRET not in response.text


def test_a_replaced_image_is_refused_not_served_under_the_old_ranking(
    tmp_path: Path,
) -> None:
    images = make_image_folder(tmp_path)
    model = make_model()
    index = build_index(model, images, tmp_path / "idx", progress=False)
    client = local_client(create_app(index, model))
    red, blue = index.paths.index("red_0.png"), index.paths.index("blue_0.png")
    original = (images / "red_0.png").read_bytes()
    assert client.get(f"/images/{red}").content == original

    stat = (images / "red_0.png").stat()
    shutil.copyfile(images / "blue_0.png", images / "red_0.png")  # in place, same inode
    os.utime(images / "red_0.png", ns=(stat.st_atime_ns, stat.st_mtime_ns))  # mtime kept
    response = client.get(f"/images/{red}")
    assert response.status_code == 409
    assert response.json()["detail"] == (
        f"image {red} has changed since the index was built; rebuild the index"
    )
    assert client.get(f"/images/{blue}").status_code == 200
    (images / "red_0.png").write_bytes(original)  # restored: served again
    assert client.get(f"/images/{red}").content == original


@pytest.mark.parametrize(
    ("name", "problem"),
    [("~draft.jpg", "starts with '.' or '~'"), ("a\\b.png", "backslash"),
     ("sub/~x.png", "starts with '.' or '~'")],
)  # fmt: skip
def test_build_refuses_names_that_serve_would_refuse(
    tmp_path: Path, name: str, problem: str
) -> None:
    """`index build` accepted `~draft.jpg` and backslashes; the index was then unusable."""
    images = make_image_folder(tmp_path)
    (images / name).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(images / "red_0.png", images / name)
    with pytest.raises(UclipError, match=f"1 image name.*{re.escape(repr(name))}.*{problem}"):
        build_index(make_model(), images, tmp_path / "idx", progress=False)
    assert not (tmp_path / "idx").exists()


def test_a_non_utf8_file_name_is_one_line(tmp_path: Path) -> None:
    """A Latin-1 file name raised UnicodeEncodeError while index.json was written."""
    images = make_image_folder(tmp_path)
    latin1 = os.fsencode(images) + b"/caf\xe9.png"
    with open(latin1, "wb") as fh:
        fh.write((images / "red_0.png").read_bytes())
    with pytest.raises(UclipError, match="not UTF-8"):
        build_index(make_model(), images, tmp_path / "idx", progress=False)


def test_embeddings_rewritten_under_a_running_server_change_nothing(tmp_path: Path) -> None:
    """embeddings.npy was memory-mapped: rewritten in place (cp, rsync --inplace) it changed the
    results, and truncated it killed the server with SIGBUS."""
    images = make_image_folder(tmp_path)
    model = make_model()
    build_index(model, images, tmp_path / "idx", progress=False)
    index = load_index(tmp_path / "idx", model)
    client = local_client(create_app(index, model))
    before = client.get("/search", params={"q": "rojo", "k": 5}).json()
    emb = tmp_path / "idx" / EMBEDDINGS_FILE
    size = emb.stat().st_size
    with open(emb, "r+b") as fh:  # same file, same size, other numbers
        fh.seek(size - 4 * 8 * 6)
        fh.write(b"\x00" * (4 * 8 * 6))
    assert client.get("/search", params={"q": "rojo", "k": 5}).json() == before
    os.truncate(emb, 0)
    assert client.get("/search", params={"q": "rojo", "k": 5}).json() == before


class FailingTextTower(FakeTextTower):
    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        raise UclipError("encoder path /home/alice/private/models/e5 is not a model folder")


def test_error_bodies_hold_no_paths_or_tracebacks(tmp_path: Path, caplog: Any) -> None:
    """/search answered 400 `encoder path /home/alice/private/... is not ...`."""
    images = make_image_folder(tmp_path)
    model = make_model()
    index = build_index(model, images, tmp_path / "idx", progress=False)
    model.use_encoders({"fake-multilingual": FailingTextTower("fake-multilingual")})
    client = TestClient(
        create_app(index, model), base_url="http://127.0.0.1", raise_server_exceptions=False
    )
    with caplog.at_level("ERROR", logger="uclip.serve.app"):
        response = client.get("/search", params={"q": "red"})
    assert response.status_code == 500
    assert response.json() == {
        "detail": "the server could not search; the server log has the details"
    }
    assert "/home/alice" in caplog.text  # the detail is in the server log

    index.meta["images"][0]["path"] = "../../home/alice/x.png"
    index.paths[0] = "../../home/alice/x.png"
    for url in ("/images/0", f"/images/{len(index) + 5}"):
        body = client.get(url).text
        assert "alice" not in body and str(tmp_path) not in body and "Traceback" not in body


@pytest.mark.parametrize(
    ("host", "status"),
    [("127.0.0.1:8000", 200), ("localhost", 200), ("[::1]:80", 200), ("evil.example", 400),
     ("127.0.0.1.evil.example", 400), ("localhost.", 400)],
)  # fmt: skip
def test_only_bound_host_names_are_answered(
    semantic: tuple[SearchIndex, UCLIPModel, TestClient], host: str, status: int
) -> None:
    """DNS rebinding: any Host header was answered, so a web page could read a local server."""
    _, _, client = semantic
    response = client.get("/search", params={"q": "red"}, headers={"Host": host})
    assert response.status_code == status
    if status == 400:
        assert "red_" not in response.text


def test_allowed_hosts_widen_the_list_and_a_wildcard_bind_needs_them(
    semantic: tuple[SearchIndex, UCLIPModel, TestClient],
) -> None:
    from uclip.serve.app import host_allow_list

    index, model, _ = semantic
    assert host_allow_list("127.0.0.1") == ["localhost", "127.0.0.1", "[::1]"]
    assert host_allow_list("::1")[-1] == "[::1]" and host_allow_list("myhost")[-1] == "myhost"
    with pytest.raises(UclipError, match=r"--host 0\.0\.0\.0 listens on every interface"):
        host_allow_list("0.0.0.0")
    with pytest.raises(UclipError, match="not a host name"):
        host_allow_list("0.0.0.0", ["http://x.org/"])
    hosts = host_allow_list("0.0.0.0", ["search.example.org", "*.corp.example"])
    client = local_client(create_app(index, model, allowed_hosts=hosts))
    for host, status in (("search.example.org", 200), ("a.corp.example", 200), ("evil.org", 400)):
        assert client.get("/health", headers={"Host": host}).status_code == status


def test_slow_headers_are_cut_off_and_connections_are_limited(
    semantic: tuple[SearchIndex, UCLIPModel, TestClient],
) -> None:
    """Slowloris: connections that never finished their headers stayed open for ever."""
    import socket
    import time

    import httpx

    from uclip.serve.app import BackgroundServer

    index, model, _ = semantic
    app = create_app(index, model)
    with BackgroundServer(app, header_timeout=0.5) as server:
        slow = socket.create_connection((server.host, server.port), timeout=5)
        slow.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-a: ")
        start = time.monotonic()
        assert slow.recv(1024) == b""  # closed by the server, not by our 5 s timeout
        assert time.monotonic() - start < 3
        slow.close()

    with (
        BackgroundServer(app, limit_concurrency=3) as server,
        httpx.Client(base_url=server.url) as client,
    ):
        idle = [socket.create_connection((server.host, server.port)) for _ in range(3)]
        deadline = time.monotonic() + 5  # until the server has accepted the three
        while (status := client.get("/health").status_code) != 503:
            assert status == 200 and time.monotonic() < deadline
            time.sleep(0.05)
        for sock in idle:
            sock.close()
        time.sleep(0.2)
        assert client.get("/health").status_code == 200
