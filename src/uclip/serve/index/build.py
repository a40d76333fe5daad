"""Build a search index: embed every image of a folder once and write the index directory.

The collection is embedded either

* ``mode="image"``: each image through the CLIP image tower and f_C (the paper's setting), or
* ``mode="caption"``: each image's caption text(s) through the English anchor tower and f_C,
  averaged and renormalised. This is the offline, text-anchor setting where no real image tower
  exists: images are found *through their captions*.

Both land in the unit sphere the multilingual queries are mapped to (``uclip.serve.index.query``
searches it). The files written are described in ``uclip.serve.index.files``.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from uclip.data.io import IMAGE_SUFFIXES, file_sha256, list_images, write_with_atomic
from uclip.encoders.base import EmbeddingModel
from uclip.errors import UclipError
from uclip.features.faiss_index import import_faiss, inner_product_index
from uclip.features.scoring import (
    COSINE,
    ReferenceQueries,
    ScorerSpec,
    candidate_penalty,
    check_reference,
    parse_scorer,
)
from uclip.serve.index.files import (
    EMBEDDINGS_FILE,
    FAISS_FILE,
    INDEX_FILE,
    INDEX_FORMAT,
    INDEX_VERSION,
    PARTIAL_DIR,
    PENALTY_FILE,
    as_float32,
    image_name_problem,
    model_fingerprint,
    model_spec,
    searchable_rows,
)
from uclip.serve.index.query import SearchIndex

DEFAULT_FAISS_THRESHOLD = 50_000
"""``backend="auto"``: exact numpy search below this many images, FAISS from here on."""
DEFAULT_IVF_THRESHOLD = 100_000
"""``backend="auto"``/``"faiss"``: above this many images FAISS uses an IVF (approximate) index."""
DEFAULT_NPROBE = 32

Mode = Literal["image", "caption"]
Backend = Literal["auto", "numpy", "faiss"]
Captions = Mapping[str, "str | Sequence[str]"]


def _sha256_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def _write_json(path: Path, obj: Any) -> None:
    data = json.dumps(obj, indent=1, ensure_ascii=False).encode()
    write_with_atomic(path, lambda fh: fh.write(data))


def _write_npy(path: Path, array: np.ndarray) -> None:
    write_with_atomic(path, lambda fh: np.save(fh, array, allow_pickle=False))


def _normalize_rows(x: np.ndarray) -> np.ndarray:
    # Guards cosine = dot product even for a model that forgets to normalise (or a caption mean).
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


def load_captions(source: str | os.PathLike[str] | Captions | None) -> Captions | None:
    """Captions as ``{relative image path: caption or [captions]}``.

    ``source`` may be that mapping, a JSON file holding it, or None (then each image's sidecar
    text file ``<image stem>.txt``, one caption per line, is used at build time)."""
    if source is None or isinstance(source, Mapping):
        return source
    path = Path(source)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UclipError(f"cannot read captions file {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise UclipError(
            f"captions file {path} must hold a JSON object {{relative image path: caption or "
            "[captions]}}"
        )
    return data


def _captions_for(root: Path, paths: Sequence[str], captions: Captions | None) -> list[list[str]]:
    out: list[list[str]] = []
    missing: list[str] = []
    for rel in paths:
        if captions is None:
            sidecar = (root / rel).with_suffix(".txt")
            try:
                texts = (
                    sidecar.read_text(encoding="utf-8").splitlines() if sidecar.is_file() else []
                )
            except (OSError, UnicodeDecodeError) as exc:
                raise UclipError(
                    f"cannot read caption file {sidecar} ({exc}): save it as UTF-8"
                ) from exc
        else:
            value = captions.get(rel, [])
            texts = [value] if isinstance(value, str) else list(value)
        texts = [t.strip() for t in texts if isinstance(t, str) and t.strip()]
        if not texts:
            missing.append(rel)
        out.append(texts)
    if missing:
        where = "a sidecar <image stem>.txt file" if captions is None else "the captions mapping"
        raise UclipError(
            f"caption mode needs a caption for every image, {len(missing)} of {len(paths)} have "
            f"none in {where} (first: {missing[0]}); add captions or use mode='image'"
        )
    return out


def resolve_backend(
    backend: Backend, n: int, faiss_threshold: int, ivf_threshold: int
) -> Literal["numpy", "faiss-flat", "faiss-ivf"]:
    """The concrete backend for ``n`` images (see the module constants for the defaults)."""
    if backend not in ("auto", "numpy", "faiss"):
        raise UclipError(f"backend must be 'auto', 'numpy' or 'faiss', got {backend!r}")
    if backend == "numpy" or (backend == "auto" and n < faiss_threshold):
        return "numpy"
    return "faiss-ivf" if n > ivf_threshold else "faiss-flat"


def build_index(
    model: EmbeddingModel,
    images_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    mode: Mode = "image",
    captions: str | os.PathLike[str] | Captions | None = None,
    backend: Backend = "auto",
    faiss_threshold: int = DEFAULT_FAISS_THRESHOLD,
    ivf_threshold: int = DEFAULT_IVF_THRESHOLD,
    nprobe: int = DEFAULT_NPROBE,
    batch_size: int = 32,
    chunk_size: int = 512,
    progress: bool = True,
    scorer: ScorerSpec | str = COSINE,
    reference: ReferenceQueries | None = None,
) -> SearchIndex:
    """Embed every image of ``images_dir`` and write a search index directory to ``out``.

    ``mode="image"``: ``model.encode_image`` on each image (PIL RGB), ``batch_size`` at a time.
    ``mode="caption"``: ``model.encode_english`` on each image's captions (``captions``: a
    mapping or JSON file ``{relative path: caption | [captions]}``; default: sidecar
    ``<stem>.txt`` files), mean per image, renormalised.

    Resumable: images are processed in chunks of ``chunk_size``; each finished chunk is saved
    atomically under ``out/.partial``. Re-running the same build (same folder content, model,
    mode, captions, chunk size) after a kill skips finished chunks; anything else starts over.
    ``index.json`` is written last, so ``out`` is either a complete index or not one.

    ``scorer`` ``"csls[:k=N]"`` or ``"qbnorm[:beta=B]"`` with ``reference`` (queries that are not
    the test queries: bank M's texts, a log of queries) stores each image's penalty from those
    queries (``penalty.npy``); search then ranks by ``weight * cos - penalty`` at no extra cost
    per query. The transductive scorer needs the test batch and cannot serve an index.
    """
    if mode not in ("image", "caption"):
        raise UclipError(f"mode must be 'image' or 'caption', got {mode!r}")
    for name, value in (("batch_size", batch_size), ("chunk_size", chunk_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UclipError(f"{name} must be a positive integer, got {value!r}")
    spec_scorer = parse_scorer(scorer)
    if spec_scorer.transductive:
        raise UclipError(
            f"{spec_scorer.name} needs the test queries, which an index never sees: build with "
            "csls or qbnorm and a reference query file"
        )
    check_reference(spec_scorer, reference)
    root = Path(images_dir)
    paths, skipped = list_images(root)
    if not paths:
        raise UclipError(
            f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found in {root}; check the folder"
        )
    unservable = [(rel, problem) for rel in paths if (problem := image_name_problem(rel))]
    if unservable:
        rel, problem = unservable[0]
        raise UclipError(
            f"{len(unservable)} image name(s) in {root} could not be served, e.g. {rel!r} "
            f"({problem}); rename them and build again"
        )
    texts = _captions_for(root, paths, load_captions(captions)) if mode == "caption" else None
    kind = resolve_backend(backend, len(paths), faiss_threshold, ivf_threshold)

    out_dir = Path(out)
    _prepare_out_dir(out_dir, root)
    spec = model_spec(model)
    heads_fingerprint = model_fingerprint(model)
    key = _sha256_json(
        {
            "version": INDEX_VERSION,
            "mode": mode,
            "spec": spec,
            "heads": heads_fingerprint,
            "paths": paths,
            # stat is cheap and catches files edited between a killed build and its resume
            "stat": [_stat_key(root / p) for p in paths],
            "captions": texts,
            "chunk_size": chunk_size,
        }
    )
    chunks = _ChunkStore(out_dir / PARTIAL_DIR, key)

    n_chunks = (len(paths) + chunk_size - 1) // chunk_size
    bar = tqdm(total=len(paths), desc=f"indexing ({mode})", unit="img", disable=not progress)
    parts: list[np.ndarray] = []
    image_sha: list[str] = []
    try:
        for c in range(n_chunks):
            lo, hi = c * chunk_size, min((c + 1) * chunk_size, len(paths))
            done = chunks.read(c)
            if done is None:
                emb, shas = _embed_chunk(
                    model, root, paths[lo:hi], texts[lo:hi] if texts else None, mode, batch_size
                )
                chunks.write(c, emb, shas)
            else:
                emb, shas = done
            parts.append(emb)
            image_sha.extend(shas)
            bar.update(hi - lo)
    finally:
        bar.close()

    embeddings = np.concatenate(parts, axis=0)
    if not np.isfinite(embeddings).all():
        raise UclipError("the model produced non-finite embeddings; check the model and images")
    _write_npy(out_dir / EMBEDDINGS_FILE, embeddings)
    penalty, scorer_meta = None, None
    if reference is not None:
        queries = reference.embed(model.encode_text)
        penalty = candidate_penalty(
            torch.from_numpy(embeddings), queries.detach().float().cpu(), spec_scorer
        )
        penalty = penalty.numpy().astype(np.float32)
        _write_npy(out_dir / PENALTY_FILE, penalty[:, None])
        scorer_meta = {
            "name": spec_scorer.name,
            "describe": spec_scorer.describe(),
            "weight": spec_scorer.weight,
            "reference": reference.description,
            "file": PENALTY_FILE,
            "sha256": file_sha256(out_dir / PENALTY_FILE),
        }
    else:
        (out_dir / PENALTY_FILE).unlink(missing_ok=True)
    backend_meta: dict[str, Any] = {"kind": kind}
    faiss_index = None
    if kind != "numpy":
        rows = searchable_rows(embeddings, penalty, spec_scorer.weight)
        faiss_index = inner_product_index(
            [rows],
            rows.shape[1],
            len(rows),
            kind="ivf" if kind == "faiss-ivf" else "flat",
            train=rows,
            nprobe=nprobe,
        )
        if kind == "faiss-ivf":
            backend_meta.update(nlist=int(faiss_index.nlist), nprobe=int(nprobe))
        serialized = import_faiss().serialize_index(faiss_index)
        write_with_atomic(out_dir / FAISS_FILE, lambda fh: fh.write(serialized.tobytes()))
        backend_meta["file"] = FAISS_FILE
        backend_meta["sha256"] = file_sha256(out_dir / FAISS_FILE)
    else:
        (out_dir / FAISS_FILE).unlink(missing_ok=True)

    meta = {
        "format": INDEX_FORMAT,
        "version": INDEX_VERSION,
        "mode": mode,
        "images_root": str(root.resolve()),
        "count": len(paths),
        "dim": int(embeddings.shape[1]),
        "image_fingerprint": "sha256 of file bytes",
        "images": [{"path": p, "sha256": s} for p, s in zip(paths, image_sha, strict=True)],
        "skipped": skipped,
        "embeddings": {
            "file": EMBEDDINGS_FILE,
            "dtype": "float32",
            "sha256": file_sha256(out_dir / EMBEDDINGS_FILE),
        },
        "backend": backend_meta,
        "model": {"spec": spec, "heads_fingerprint": heads_fingerprint},
        "captions_sha256": _sha256_json(texts) if texts else None,
        "scorer": scorer_meta,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    _write_json(out_dir / INDEX_FILE, meta)
    shutil.rmtree(out_dir / PARTIAL_DIR, ignore_errors=True)
    return SearchIndex(
        root=root,
        paths=paths,
        embeddings=embeddings,
        meta=meta,
        faiss_index=faiss_index,
        penalty=penalty,
    )


def _stat_key(file: Path) -> tuple[int, int]:
    st = file.stat()
    return st.st_size, st.st_mtime_ns


def _prepare_out_dir(out_dir: Path, images_root: Path) -> None:
    """Refuse to write into a folder that holds something other than an index (or nothing)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UclipError(f"index output {out_dir} exists and is not a directory")
    if out_dir.resolve() == images_root.resolve():
        raise UclipError("the index output must not be the images folder itself; pick another")
    if out_dir.is_dir():
        ours = {INDEX_FILE, EMBEDDINGS_FILE, FAISS_FILE, PENALTY_FILE, PARTIAL_DIR}
        foreign = [p.name for p in out_dir.iterdir() if p.name not in ours]
        if foreign:
            raise UclipError(
                f"index output {out_dir} is not empty and not an index (holds {foreign[0]!r}); "
                "choose an empty or new directory"
            )
        # An old complete index is replaced: drop its marker first so a kill mid-build never
        # leaves an index.json that describes half-new files.
        (out_dir / INDEX_FILE).unlink(missing_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)


def _embed_chunk(
    model: EmbeddingModel,
    root: Path,
    paths: Sequence[str],
    texts: Sequence[Sequence[str]] | None,
    mode: str,
    batch_size: int,
) -> tuple[np.ndarray, list[str]]:
    """Embeddings (n, D) and sha256 of each image file for one chunk."""
    shas: list[str] = []
    parts: list[np.ndarray] = []
    if mode == "image":
        for lo in range(0, len(paths), batch_size):
            images = []
            for rel in paths[lo : lo + batch_size]:
                try:
                    data = (root / rel).read_bytes()
                except OSError as exc:
                    raise UclipError(
                        f"cannot read image {root / rel} ({exc}); rerun the build"
                    ) from exc
                shas.append(hashlib.sha256(data).hexdigest())
                try:
                    with Image.open(io.BytesIO(data)) as img:
                        images.append(img.convert("RGB"))
                except (UnidentifiedImageError, OSError) as exc:
                    raise UclipError(
                        f"cannot decode image {root / rel} ({exc}); remove or fix it and rerun "
                        "(finished chunks are kept)"
                    ) from exc
            parts.append(as_float32(model.encode_image(images)))
    else:
        assert texts is not None
        shas = [file_sha256(root / rel) for rel in paths]
        flat = [t for caps in texts for t in caps]
        encoded = np.concatenate(
            [
                as_float32(model.encode_english(flat[lo : lo + batch_size]))
                for lo in range(0, len(flat), batch_size)
            ]
        )
        # Mean of an image's caption embeddings, renormalised: the centroid direction on the
        # sphere, so an image with many captions is not favoured over one with a single caption.
        bounds = np.cumsum([0] + [len(caps) for caps in texts])
        parts.append(np.stack([encoded[a:b].mean(0) for a, b in itertools.pairwise(bounds)]))
    emb = np.concatenate(parts, axis=0)
    if emb.ndim != 2 or emb.shape[0] != len(paths):
        raise UclipError(
            f"the model returned embeddings of shape {emb.shape} for {len(paths)} inputs"
        )
    return _normalize_rows(emb), shas


class _ChunkStore:
    """Finished chunks of an interrupted build: ``chunk_<i>.npy`` + ``chunk_<i>.json``.

    The json (sha256 of the npy + image hashes) is written after the npy, so a chunk counts as
    finished only when both are complete and agree. A different build key wipes the store."""

    def __init__(self, directory: Path, key: str) -> None:
        self.dir = directory
        state = directory / "state.json"
        try:
            stale = json.loads(state.read_text()).get("key") != key
        except (OSError, ValueError, AttributeError):
            stale = True
        if stale:
            shutil.rmtree(directory, ignore_errors=True)
            directory.mkdir(parents=True)
            _write_json(state, {"key": key})

    def read(self, c: int) -> tuple[np.ndarray, list[str]] | None:
        npy, info = self.dir / f"chunk_{c:06d}.npy", self.dir / f"chunk_{c:06d}.json"
        try:
            meta = json.loads(info.read_text())
            if file_sha256(npy) != meta["sha256"]:
                return None
            return np.load(npy, allow_pickle=False), list(meta["image_sha256"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def write(self, c: int, emb: np.ndarray, shas: list[str]) -> None:
        npy = self.dir / f"chunk_{c:06d}.npy"
        _write_npy(npy, emb)
        _write_json(
            self.dir / f"chunk_{c:06d}.json", {"sha256": file_sha256(npy), "image_sha256": shas}
        )
