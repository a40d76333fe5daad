"""Fuzz the readers of the files uclip writes and the server's query parameters (issue 23, item
7): a search index's ``index.json``, bank and shard sidecars of ``uclip extract``, export
manifests (``manifest.json``, ``onnx.json``, HF ``config.json``) with any field replaced by any
JSON value (or removed) are read, or refused with one :class:`UclipError` line, never another
exception. ``/search`` answers any ``q`` and ``k`` with a 2xx/4xx JSON body that shows no path or
traceback, never a 500.

Each record starts from one the library wrote (a tiny index of fake towers, a real shard
extraction) or, for exports, from the manifest layout ``verify_export`` reads with files whose
checksums match; the fuzz changes one field at a time, so every example is one step from valid.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from test_serve_api import local_client, make_image_folder, make_model  # tests/ is on sys.path
from test_sharding import TEXTS, HashEncoder  # tests/ is on sys.path
from uclip.app.train_inputs import check_bank_file, check_bank_weights
from uclip.data.text_quality import has_visible_text
from uclip.errors import UclipError
from uclip.export import verify_export
from uclip.features.sharding import (
    MERGED_NAME,
    ShardInfo,
    extract_shard,
    merge_shards,
    shard_status,
)
from uclip.serve.app import MAX_K, create_app
from uclip.serve.index.build import build_index
from uclip.serve.index.files import EMBEDDINGS_FILE, INDEX_FILE
from uclip.serve.index.query import SearchIndex

FUZZ = settings(
    max_examples=50,
    deadline=None,
    derandomize=True,  # the same examples on every run: a failure reproduces locally
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
    | st.sampled_from(["", "../x", "/etc/passwd", "faiss-ivf", "float16", "<U8"]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


def field_paths(obj: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every key path into ``obj`` (dict keys and list indices), outermost first."""
    if isinstance(obj, dict):
        items: Any = obj.items()
    else:
        items = enumerate(obj) if isinstance(obj, list) else ()
    for key, value in items:
        yield (*prefix, key)
        yield from field_paths(value, (*prefix, key))


def mutate(record: Any, path: Sequence[Any], value: Any, drop: bool) -> Any:
    """A copy of ``record`` with the field at ``path`` removed (``drop``) or set to ``value``."""
    changed = copy.deepcopy(record)
    parent = changed
    for key in path[:-1]:
        parent = parent[key]
    if drop:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return changed


def one_line(exc: UclipError) -> None:
    assert "\n" not in str(exc) and str(exc).strip(), repr(exc)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- index.json --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any, dict[str, Any]]:
    root = tmp_path_factory.mktemp("fuzz-index")
    make_image_folder(root)
    model = make_model(identity=True)
    build_index(model, root / "images", root / "idx", progress=False)
    return root, model, json.loads((root / "idx" / INDEX_FILE).read_text())


INDEX_PATHS = [
    ("format",),
    ("version",),
    ("mode",),
    ("count",),
    ("dim",),
    ("images",),
    ("images", 0),
    ("images", 0, "path"),
    ("images", 0, "sha256"),
    ("images", 11, "path"),
    ("embeddings",),
    ("embeddings", "file"),
    ("embeddings", "dtype"),
    ("embeddings", "sha256"),
    ("backend",),
    ("backend", "kind"),
    ("model",),
    ("model", "spec"),
    ("model", "spec", "embed_dim"),
    ("model", "spec", "setting"),
    ("model", "heads_fingerprint"),
    ("scorer",),
    ("images_root",),
    ("captions_sha256",),
    ("created",),
    ("skipped",),
]


@FUZZ
@given(path=st.sampled_from(INDEX_PATHS), value=JSON_VALUES, drop=st.booleans())
def test_index_json_loads_or_refuses_in_one_line(built, path, value, drop) -> None:
    root, model, meta = built
    changed = mutate(meta, path, value, drop)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "idx"
        directory.mkdir()
        shutil.copy(root / "idx" / EMBEDDINGS_FILE, directory / EMBEDDINGS_FILE)
        (directory / INDEX_FILE).write_text(json.dumps(changed), encoding="utf-8")
        try:
            index = SearchIndex.load(directory, model, images_root=root / "images")
        except UclipError as exc:
            one_line(exc)
            return
        # Loaded: what the server does with an index works on it too.
        client = local_client(create_app(index, model))
        for url in ("/health", "/info", "/search?q=red&k=3", "/images/0"):
            response = client.get(url)
            assert response.status_code in (200, 404, 409), (url, response.text)


# -- server query parameters --------------------------------------------------------------------

LEAK = ("Traceback", 'File "', "/tmp", "/home", "/work", "site-packages", ".py")


@pytest.fixture(scope="module")
def client(built) -> Any:
    root, model, _ = built
    index = SearchIndex.load(root / "idx", model, images_root=root / "images")
    return local_client(create_app(index, model))


SHORT_TEXT = st.text(max_size=40) | st.sampled_from(
    ["\u3164", "\u2800\u2800", "\u0301\u0308", "\x00", "red\x00", "%", "rojo"]
)
# Long enough to pass max_query_chars, short enough for the client's 64 KiB URL limit.
ANY_TEXT = SHORT_TEXT | st.text(min_size=1000, max_size=1500) | st.just("a" * 20_000)
K_VALUES = (
    st.sampled_from(["-1", "0", "1", "12", "13", str(MAX_K), str(MAX_K + 1)])  # at the limits
    | st.integers(-3, 300).map(str)
    | st.integers(-(2**70), 2**70).map(str)
    | st.sampled_from(["", "1.5", "1e3", "nan", "inf", "true", " 3", "0x10", "١٢"])
    | SHORT_TEXT
)
PARAMS = st.lists(
    st.tuples(st.sampled_from(["q", "k", "lang", "mode", "backend", "extra"]), K_VALUES),
    max_size=3,
)


@FUZZ
@given(
    q=st.none() | st.sampled_from(["rojo", "赤 red", " blau "]) | ANY_TEXT,
    k=st.none() | K_VALUES,
    more=PARAMS,
)
def test_search_parameters_answer_4xx_or_results_never_500(client, q, k, more) -> None:
    params = [("q", q)] if q is not None else []
    params += [("k", k)] if k is not None else []
    response = client.get("/search", params=params + more)
    assert response.status_code in (200, 400, 404, 409, 413, 422), response.text
    body = response.json()
    assert isinstance(body, dict)
    if response.status_code == 200:
        assert has_visible_text(body["query"])  # the one rule for queries (data.text_quality)
        assert isinstance(body["results"], list)
        assert all(not r["path"].startswith("/") and ".." not in r["path"] for r in body["results"])
    else:
        detail = body["detail"]
        assert isinstance(detail, str) and "\n" not in detail
        assert not any(leak in detail for leak in LEAK), detail


@pytest.mark.parametrize(
    "query",
    ["q=%FF&k=3", "q=%ED%A0%80", "q=red&k=%FF", "q=red&k=1&k=2", "q=red&q=blue", "q=%00", "k=3"],
)
def test_undecodable_or_repeated_parameters_answer_4xx_or_results(client, query) -> None:
    response = client.get(f"/search?{query}")
    assert response.status_code in (200, 400, 422), response.text
    assert isinstance(response.json(), dict)


@FUZZ
@given(
    image_id=st.sampled_from(["-1", "0", "11", "12", "1.0", "0x1", "٣"])  # 12 images: ids 0..11
    | st.integers(-(2**70), 2**70).map(str)
    | ANY_TEXT
)
def test_image_ids_answer_4xx_or_an_image_never_500(client, image_id) -> None:
    response = client.get("/images/" + quote(image_id, safe=""))
    assert response.status_code in (200, 400, 403, 404, 409, 413, 422), response.text
    if response.status_code != 200:
        detail = response.json()["detail"]
        assert not any(leak in detail for leak in LEAK), detail


@pytest.mark.parametrize(
    ("path", "value"),
    [(("embeddings",), "x"), (("scorer",), True), (("backend",), None), (("images", 0), 1)],
)
def test_index_json_fields_of_the_wrong_type_are_one_line(built, tmp_path, path, value) -> None:
    """The fuzz's findings, kept as plain cases (each was an AttributeError before)."""
    root, model, meta = built
    directory = tmp_path / "idx"
    directory.mkdir()
    shutil.copy(root / "idx" / EMBEDDINGS_FILE, directory / EMBEDDINGS_FILE)
    (directory / INDEX_FILE).write_text(json.dumps(mutate(meta, path, value, drop=False)))
    with pytest.raises(UclipError, match=f"field {path[0]}[ .[]"):
        SearchIndex.load(directory, model, images_root=root / "images")


# -- extraction sidecars: shard-*.json and the merged bank's embeddings.json --------------------


@pytest.fixture(scope="module")
def extraction(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """Two finished shards of 23 texts, merged: what `uclip extract` and extract-merge write."""
    root = tmp_path_factory.mktemp("fuzz-extract") / "ex"
    for index in range(2):
        extract_shard(HashEncoder(), TEXTS, root, index, 2, batch_size=8, progress=False)
    merge_shards(root)
    shutil.rmtree(root / "cache")
    return root, np.load(root / MERGED_NAME)


SHARD_FIELDS = [
    *(f.name for f in dataclasses.fields(ShardInfo)),
    "extra",
]


@FUZZ
@given(
    key=st.sampled_from(SHARD_FIELDS),
    value=JSON_VALUES,
    drop=st.booleans(),
    which=st.integers(0, 1),
)
def test_shard_sidecars_merge_resume_or_refuse_in_one_line(
    extraction, key, value, drop, which
) -> None:
    root, merged = extraction
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "ex"
        shutil.copytree(root, directory)
        sidecar = directory / f"shard-{which:05d}-of-00002.json"
        record = json.loads(sidecar.read_text())
        changed = mutate(record, [key], value, drop) if key in record or not drop else record
        sidecar.write_text(json.dumps(changed))
        for step in (
            lambda: shard_status(directory),
            lambda: merge_shards(directory, Path(tmp) / "merged.npy"),
        ):
            try:
                step()
            except UclipError as exc:
                one_line(exc)
        if (Path(tmp) / "merged.npy").is_file():  # accepted: then it must be the same bank
            np.testing.assert_array_equal(np.load(Path(tmp) / "merged.npy"), merged)
        # A worker rerun over the damaged sidecar keeps or redoes its shard, never crashes.
        extract_shard(HashEncoder(), TEXTS, directory, which, 2, batch_size=8, progress=False)
        np.testing.assert_array_equal(np.load(merge_shards(directory)), merged)


BANK_MODEL = SimpleNamespace(
    image_encoder=None, anchor_encoder="hash-encoder", multilingual_encoder="hash-encoder"
)


@FUZZ
@given(
    key=st.sampled_from(["encoder", "weights_id", "dim", "dtype", "count", "format_version", "x"]),
    value=JSON_VALUES,
    drop=st.booleans(),
)
def test_bank_sidecar_checks_pass_or_refuse_in_one_line(extraction, key, value, drop) -> None:
    root, _ = extraction
    record = json.loads((root / "embeddings.json").read_text())
    changed = mutate(record, [key], value, drop) if key in record or not drop else record
    with tempfile.TemporaryDirectory() as tmp:
        npy = Path(tmp) / MERGED_NAME
        shutil.copy(root / MERGED_NAME, npy)
        npy.with_suffix(".json").write_text(json.dumps(changed))
        for bank in ("text_bank", "image_bank"):
            try:
                meta = check_bank_file(npy, BANK_MODEL, bank)  # type: ignore[arg-type]
                check_bank_weights(meta, HashEncoder(), npy, bank)
            except UclipError as exc:
                one_line(exc)


# -- export manifests ----------------------------------------------------------------------------


def _export(directory: Path, kind: str) -> dict[str, Any]:
    """The files and manifest of one export format, with checksums that match."""
    names = {
        "sentence-transformers": [
            f"{side}/{name}"
            for side in ("multilingual", "anchor")
            for name in ("modules.json", "config_sentence_transformers.json", "model.safetensors")
        ],
        "onnx": ["f_c.onnx", "f_m.onnx"],
        "onnx-full": ["text_encoder.onnx", "tokenizer.json"],
        "hf": ["model.safetensors"],
    }[kind]
    for name in names:
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_bytes(name.encode() * 3)
    digest = {name: sha256(directory / name) for name in names}
    if kind == "sentence-transformers":
        return {"export_format_version": 1, "format": kind, "files": digest}
    if kind == "onnx":
        heads = {n[:-5]: {"in_dim": 8, "out_dim": 8, "file": n, "sha256": digest[n]} for n in names}
        return {"export_format_version": 1, "opset": 17, "heads": heads}
    if kind == "onnx-full":
        return {"export_format_version": 1, "opset": 17, "prefix": "passage: ", "sha256": digest}
    return {"model": {"embed_dim": 8}, "model_safetensors_sha256": digest["model.safetensors"]}


MANIFEST_FILE = {
    "sentence-transformers": "manifest.json",
    "onnx": "onnx.json",
    "onnx-full": "onnx.json",
    "hf": "config.json",
}


@FUZZ
@given(data=st.data(), kind=st.sampled_from(sorted(MANIFEST_FILE)), drop=st.booleans())
def test_export_manifests_verify_or_refuse_in_one_line(data, kind, drop) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        manifest = _export(directory, kind)
        (directory / MANIFEST_FILE[kind]).write_text(json.dumps(manifest))
        assert verify_export(directory)["format"] == kind  # the unchanged export verifies
        path = data.draw(st.sampled_from([*field_paths(manifest), ("extra",)]))
        value = data.draw(JSON_VALUES)
        changed = manifest if drop and path == ("extra",) else mutate(manifest, path, value, drop)
        (directory / MANIFEST_FILE[kind]).write_text(json.dumps(changed))
        try:
            result = verify_export(directory)
        except UclipError as exc:
            one_line(exc)
            return
        assert isinstance(result["files"], int) and result["files"] > 0


@pytest.mark.parametrize(("key", "value"), [("dim", 6.0), ("num_shards", None), ("index", 1)])
def test_damaged_shard_sidecar_is_one_line_at_merge(extraction, tmp_path, key, value) -> None:
    """The issue's `"dim": 384.0` sidecar (a TypeError at extract-merge before), and kin."""
    directory = tmp_path / "ex"
    shutil.copytree(extraction[0], directory)
    sidecar = directory / "shard-00000-of-00002.json"
    sidecar.write_text(json.dumps({**json.loads(sidecar.read_text()), key: value}))
    with pytest.raises(UclipError, match=r"shard-00000-of-00002\.json is unreadable"):
        merge_shards(directory)
