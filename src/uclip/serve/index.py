"""Search index for multilingual image search (uCLIP, "Multilingual Image–Text Retrieval").

At query time a text in any language goes through the multilingual tower and f_M; the collection
was embedded once, either

* ``mode="image"``: each image through the CLIP image tower and f_C (the paper's setting), or
* ``mode="caption"``: each image's caption text(s) through the English anchor tower and f_C,
  averaged and renormalised. This is the offline, text-anchor setting where no real image tower
  exists: images are found *through their captions*.

Both land in the shared unit sphere, so ranking is by cosine similarity = dot product, or, for an
index built with a scorer, by ``weight * cos - penalty(image)`` with the stored penalty.

On disk an index is a directory::

    index.json        format, version, mode, relative image paths + sha256 of each image, model
                      spec + sha256 of the head weights, sha256 of every data file; also the
                      folder it was built from, as a hint only: the index never chooses which
                      folder is served (a shared index.json could name "/")
    embeddings.npy    (N, D) float32, L2-normalised rows, row i = image i
    index.faiss       only for the FAISS backends
    penalty.npy       only for a hubness-aware scorer (CSLS / querybank normalisation): (N, 1)
                      float32, each image's penalty from a reference query set, computed once
                      at build time (see ``uclip.features.scoring``)
    .partial/         only while a build runs: finished chunks, so a killed build resumes

Images are fingerprinted by the sha256 of their bytes rather than size+mtime: mtimes change on
copy/rsync and a rewritten file can keep its mtime, while hashing reads each file once more, which
is cheap next to decoding and encoding it (same choice as ``features.cache``). The server checks
an image's hash each time it serves it, so a replaced image is refused rather than served under
the old ranking.
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
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from uclip.data.io import IMAGE_SUFFIXES, file_sha256, list_images, write_with_atomic
from uclip.encoders.base import EmbeddingModel
from uclip.errors import UclipError
from uclip.features.scoring import (
    COSINE,
    ReferenceQueries,
    ScorerSpec,
    candidate_penalty,
    check_reference,
    parse_scorer,
)

INDEX_FORMAT = "uclip-search-index"
INDEX_VERSION = 1
INDEX_FILE = "index.json"
EMBEDDINGS_FILE = "embeddings.npy"
FAISS_FILE = "index.faiss"
PENALTY_FILE = "penalty.npy"
PARTIAL_DIR = ".partial"

DEFAULT_FAISS_THRESHOLD = 50_000
"""``backend="auto"``: exact numpy search below this many images, FAISS from here on."""
DEFAULT_IVF_THRESHOLD = 100_000
"""``backend="auto"``/``"faiss"``: above this many images FAISS uses an IVF (approximate) index."""
DEFAULT_NPROBE = 32

Mode = Literal["image", "caption"]
Backend = Literal["auto", "numpy", "faiss"]
Captions = Mapping[str, "str | Sequence[str]"]


class UnknownImageError(UclipError):
    """An image id outside ``0 .. len(index) - 1``."""


class MissingImageError(UclipError):
    """The index lists the image but its file is gone from the images folder."""


class UnsafeImagePathError(UclipError):
    """A stored path that escapes the images folder (``..``, absolute, symlink out)."""


class ChangedImageError(UclipError):
    """The image file's bytes differ from the sha256 recorded when the index was built."""


# --------------------------------------------------------------------------------------------
# small helpers


def _sha256_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def _json_roundtrip(obj: Any) -> Any:
    """The value as it will read back from index.json (tuples -> lists, etc.)."""
    try:
        return json.loads(json.dumps(obj, ensure_ascii=False))
    except (TypeError, ValueError) as exc:
        raise UclipError(
            f"the model's describe()['config'] is not JSON-serialisable ({exc}); fix the model"
        ) from exc


def model_spec(model: EmbeddingModel) -> dict[str, Any]:
    """What the index records of the model it was built with (and checks on load): the
    ``"config"`` of ``model.describe()`` (for a uCLIP model its :meth:`UCLIPModel.spec`:
    encoders, dims, weights), as it reads back from JSON."""
    config = model.describe().get("config")
    if not isinstance(config, dict):
        raise UclipError(
            f"{model.name} does not describe its config (describe()['config']): search needs "
            "a model that does, such as a uCLIP model"
        )
    return _json_roundtrip(config)


def _write_json(path: Path, obj: Any) -> None:
    data = json.dumps(obj, indent=1, ensure_ascii=False).encode()
    write_with_atomic(path, lambda fh: fh.write(data))


def _write_npy(path: Path, array: np.ndarray) -> None:
    write_with_atomic(path, lambda fh: np.save(fh, array, allow_pickle=False))


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


def _normalize_rows(x: np.ndarray) -> np.ndarray:
    # Guards cosine = dot product even for a model that forgets to normalise (or a caption mean).
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


def image_name_problem(rel: str) -> str | None:
    """Why ``rel`` cannot be an indexed image path, or None: the one rule that ``build_index``
    applies to the names it finds and the server to the names it reads from ``index.json``.

    A path must be a non-empty relative POSIX path of UTF-8 text, with an image suffix, no
    backslash or NUL, no ``..``, hidden (``.name``) or home-like (``~name``) part."""
    if not isinstance(rel, str) or not rel:
        return "it is empty or not text"
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        return "it is not UTF-8 (rename the file)"
    if "\x00" in rel or "\\" in rel:
        return "it holds a NUL or a backslash"
    pure = PurePosixPath(rel)
    if pure.is_absolute() or ".." in pure.parts:
        return "it points outside the images folder"
    if any(part.startswith((".", "~")) for part in pure.parts):
        return "a part of it starts with '.' or '~'"
    if pure.suffix.lower() not in IMAGE_SUFFIXES:
        return f"it is not an image file ({', '.join(IMAGE_SUFFIXES)})"
    return None


def check_relative_path(rel: str) -> PurePosixPath:
    """A stored image path that passes :func:`image_name_problem`; else raise."""
    problem = image_name_problem(rel)
    if problem is not None:
        raise UnsafeImagePathError(
            f"invalid image path {rel!r} in the index ({problem}): rebuild the index"
        )
    return PurePosixPath(rel)


def model_fingerprint(model: Any) -> str | None:
    """sha256 over the head weights (``model.heads.state_dict()``), or None if there are none.

    The spec says *which* encoders and dims a model has; two trainings of the same spec differ
    only in their heads, and an index embedded with one must not be queried with the other."""
    heads = getattr(model, "heads", None)
    if heads is None or not hasattr(heads, "state_dict"):
        return None
    digest = hashlib.sha256()
    for name, tensor in sorted(heads.state_dict().items()):
        array = tensor.detach().cpu().contiguous().numpy()
        digest.update(f"{name}:{array.dtype}:{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# collecting images and captions


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


# --------------------------------------------------------------------------------------------
# the index


class SearchIndex:
    """Embeddings of an image folder plus what is needed to search and serve it safely.

    Use :func:`build_index` to make one and :meth:`load` to open one. ``paths[i]`` is the image of
    row ``i`` relative to ``root``.
    """

    def __init__(
        self,
        *,
        root: Path,
        paths: list[str],
        embeddings: np.ndarray,
        meta: dict[str, Any],
        faiss_index: Any = None,
        penalty: np.ndarray | None = None,
    ) -> None:
        self.root = Path(root)
        self.paths = paths
        self.embeddings = embeddings
        self.meta = meta
        self._faiss = faiss_index
        self._root_real = self.root.resolve()
        self.penalty = penalty
        """(N,) per-image penalty of the index's scorer, or None (cosine)."""

    # properties ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.paths)

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    @property
    def mode(self) -> str:
        return str(self.meta["mode"])

    @property
    def spec(self) -> dict[str, Any]:
        return dict(self.meta["model"]["spec"])

    @property
    def backend(self) -> str:
        """``"numpy"`` (exact), ``"faiss-flat"`` (exact) or ``"faiss-ivf"`` (approximate)."""
        return "numpy" if self._faiss is None else str(self.meta["backend"]["kind"])

    @property
    def scorer(self) -> dict[str, Any]:
        """The scorer the index ranks by: ``{"name": "cosine"}`` or the stored penalty's fields
        (name, weight, reference description, file, sha256)."""
        return dict(self.meta.get("scorer") or {"name": COSINE.name})

    def banner(self) -> str:
        """One human sentence: how images are found and with which towers (for the web page)."""
        scorer = self.scorer
        if scorer["name"] == COSINE.name:
            return describe_index(self.mode, self.spec)
        return (
            f"{describe_index(self.mode, self.spec)}; ranked by {scorer['describe']}, penalty "
            f"from {scorer['reference']}"
        )

    # loading ------------------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        model: Any = None,
        *,
        images_root: str | os.PathLike[str] | None = None,
        backend: Literal["numpy", "faiss"] | None = None,
        nprobe: int | None = None,
    ) -> SearchIndex:
        """Open an index directory, verifying its files and (if given) that ``model`` matches.

        Raises :class:`UclipError` for a missing or corrupt file (sha256 mismatch, truncation),
        an unknown format version, a stored path that is not a plain image path inside the root,
        or a model whose spec or head weights differ from the ones the index was built with
        (queries would land in a different space). ``images_root`` is the folder the images are
        served from, by default the index directory itself: the folder recorded in
        ``index.json`` is never used, since whoever wrote that file would choose what is served.
        The embeddings (and FAISS index) are read into memory, so a file rewritten under a
        running server cannot change or crash it. ``backend="numpy"`` searches exactly even when
        a FAISS file exists.
        """
        directory = Path(path)
        meta_file = directory / INDEX_FILE
        if not meta_file.is_file():
            hint = (
                " (a build was interrupted: run the build again to resume)"
                if (directory / PARTIAL_DIR).is_dir()
                else ""
            )
            raise UclipError(f"no search index at {directory}: {INDEX_FILE} is missing{hint}")
        try:
            meta = json.loads(meta_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UclipError(f"{meta_file} is corrupt ({exc}); rebuild the index") from exc
        if not isinstance(meta, dict) or meta.get("format") != INDEX_FORMAT:
            raise UclipError(f"{meta_file} is not a uclip search index; rebuild the index")
        if meta.get("version") != INDEX_VERSION:
            raise UclipError(
                f"index format version {meta.get('version')} is not supported (this uclip reads "
                f"version {INDEX_VERSION}); rebuild the index"
            )
        wrong = _wrong_field(meta)
        if wrong:
            raise UclipError(
                f"{meta_file} field {wrong} is missing or has the wrong type; rebuild the index"
            )
        try:
            paths = [entry["path"] for entry in meta["images"]]
            emb_meta = meta["embeddings"]
            count, dim = int(meta["count"]), int(meta["dim"])
            stored_root = meta.get("images_root")
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise UclipError(f"{meta_file} lacks field {exc}; rebuild the index") from exc
        for rel in paths:
            check_relative_path(rel)

        embeddings = _load_checked_npy(directory / EMBEDDINGS_FILE, emb_meta.get("sha256"))
        if embeddings.shape != (count, dim) or len(paths) != count:
            raise UclipError(
                f"{directory / EMBEDDINGS_FILE} has shape {embeddings.shape}, index.json says "
                f"({count}, {dim}) for {len(paths)} paths; rebuild the index"
            )

        if model is not None:
            check_model(meta, model, directory)

        root = Path(images_root) if images_root is not None else directory
        if not root.is_dir() or (count and not (root / paths[0]).exists()):
            built_from = f" (built from {stored_root})" if isinstance(stored_root, str) else ""
            raise UclipError(
                f"the images of index {directory} are not in {root}: pass images_root= "
                f"(CLI: --images) with the folder the index was built from{built_from}"
            )

        penalty = None
        scorer = meta.get("scorer") or {}
        if scorer.get("file"):
            stored_penalty = _load_checked_npy(directory / PENALTY_FILE, scorer.get("sha256"))
            if stored_penalty.shape != (count, 1):
                raise UclipError(
                    f"{directory / PENALTY_FILE} has shape {stored_penalty.shape}, expected "
                    f"({count}, 1); rebuild the index"
                )
            penalty = stored_penalty[:, 0]

        faiss_index = None
        stored = meta.get("backend", {})
        if stored.get("kind", "numpy") != "numpy" and backend != "numpy":
            faiss_index = _load_faiss(directory / FAISS_FILE, stored.get("sha256"))
            if nprobe is not None or "nprobe" in stored:
                _set_nprobe(faiss_index, nprobe or stored["nprobe"])
        elif backend == "faiss":
            faiss_index = _faiss_index_for(
                _searchable(embeddings, penalty, scorer.get("weight", 1.0)), kind="faiss-flat"
            )
            meta = {**meta, "backend": {"kind": "faiss-flat"}}
        return cls(
            root=root,
            paths=paths,
            embeddings=embeddings,
            meta=meta,
            faiss_index=faiss_index,
            penalty=penalty,
        )

    # searching ----------------------------------------------------------------------------
    def search(self, query_emb: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` rows by cosine similarity for each query, or by the index's scorer
        (``weight * cos - penalty``, :attr:`scorer`) when it was built with one.

        ``query_emb``: (D,) or (B, D) L2-normalised (numpy or torch). ``k`` larger than the index
        is clamped to its size. Returns ``(scores, ids)``, each (B, k'), best first; ties are
        broken by the smaller id so results are deterministic. Exact for "numpy" and
        "faiss-flat"; "faiss-ivf" visits ``nprobe`` clusters only.
        """
        q = _to_numpy(query_emb)
        if q.ndim == 1:
            q = q[None, :]
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise UclipError(
                f"query embedding has shape {tuple(q.shape)}, this index holds {self.dim}-d "
                "embeddings: encode queries with the model the index was built with"
            )
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise UclipError(f"k must be a positive integer, got {k!r}")
        k = min(int(k), len(self))
        weight = float(self.scorer.get("weight", 1.0))
        if self._faiss is not None:
            if self.penalty is not None:  # rows are [y, -penalty / weight]: see _searchable
                q = np.hstack([q, np.ones((q.shape[0], 1), dtype=np.float32)])
            scores, ids = self._faiss.search(np.ascontiguousarray(q, dtype=np.float32), k)
            return (weight * scores).astype(np.float32), ids.astype(np.int64)
        sims = q @ self.embeddings.T  # (B, N)
        if self.penalty is not None:
            sims = weight * sims - self.penalty[None, :]
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < sims.shape[1] else None
        if top is None:
            top = np.broadcast_to(np.arange(sims.shape[1]), sims.shape)
        rows = []
        for b in range(q.shape[0]):
            cand = top[b]
            order = np.lexsort((cand, -sims[b, cand]))  # primary: score desc, then id asc
            rows.append(cand[order])
        ids = np.stack(rows).astype(np.int64)
        return np.take_along_axis(sims, ids, axis=1).astype(np.float32), ids

    # serving ------------------------------------------------------------------------------
    def image_file(self, image_id: int) -> Path:
        """The real path of image ``image_id``, re-validated to lie inside the images root.

        Raises :class:`UnknownImageError` (bad id), :class:`MissingImageError` (file gone) or
        :class:`UnsafeImagePathError` (stored path or a symlink leads outside the root).
        """
        if isinstance(image_id, bool) or not 0 <= int(image_id) < len(self):
            raise UnknownImageError(
                f"no image with id {image_id}: ids run from 0 to {len(self) - 1}"
            )
        rel = self.paths[int(image_id)]
        check_relative_path(rel)
        try:
            real = (self.root / rel).resolve(strict=True)
        except FileNotFoundError as exc:
            raise MissingImageError(
                f"image {image_id} ({rel}) is no longer in the images folder; rebuild the index"
            ) from exc
        except (OSError, RuntimeError) as exc:
            raise UnsafeImagePathError(f"image {image_id} ({rel}) cannot be resolved") from exc
        if not real.is_relative_to(self._root_real):
            raise UnsafeImagePathError(
                f"image {image_id} ({rel}) resolves outside the images folder; refusing to serve it"
            )
        if not real.is_file():
            raise MissingImageError(f"image {image_id} ({rel}) is not a regular file")
        return real

    def image_bytes(self, image_id: int) -> bytes:
        """The bytes of image ``image_id``, checked against the sha256 recorded at build time.

        Checked on every request, on the bytes that are then served: a file rewritten in place
        can keep its size and mtime, so a check cached by stat would miss it, and hashing costs
        less than sending the bytes. Raises what :meth:`image_file` raises, or
        :class:`ChangedImageError`.
        """
        file = self.image_file(image_id)
        try:
            data = file.read_bytes()
        except OSError as exc:  # removed or made unreadable since image_file looked
            raise MissingImageError(f"image {image_id} cannot be read ({exc.strerror})") from exc
        if hashlib.sha256(data).hexdigest() != self.meta["images"][image_id].get("sha256"):
            raise ChangedImageError(
                f"image {image_id} has changed since the index was built; rebuild the index"
            )
        return data

    def changed_images(self) -> list[str]:
        """Relative paths whose file is missing or whose sha256 differs from build time."""
        changed = []
        for entry in self.meta["images"]:
            file = self.root / entry["path"]
            if not file.is_file() or file_sha256(file) != entry["sha256"]:
                changed.append(entry["path"])
        return changed


# --------------------------------------------------------------------------------------------
# validation helpers


def check_model(meta: Mapping[str, Any], model: EmbeddingModel, where: Path | str) -> None:
    """Raise if ``model`` is not the model the index in ``where`` was built with."""
    stored = meta["model"]
    current = model_spec(model)
    if current != stored["spec"]:
        keys = sorted(
            k for k in set(current) | set(stored["spec"]) if current.get(k) != stored["spec"].get(k)
        )
        raise UclipError(
            f"index {where} was built with a different model (spec differs in {keys}); "
            "load it with that model or rebuild the index with this one"
        )
    fingerprint = model_fingerprint(model)
    # "heads_sha256" is the key of indexes built before the rename (issue 21): one name, one
    # meaning; config.json's heads_sha256 is a file hash, this is a tensor fingerprint.
    built_with = stored.get("heads_fingerprint", stored.get("heads_sha256"))
    if built_with and fingerprint and fingerprint != built_with:
        raise UclipError(
            f"index {where} was built with different head weights (same spec, other training "
            "run); load it with that model or rebuild the index with this one"
        )


def _wrong_field(meta: dict[str, Any]) -> str | None:
    """The first field of ``index.json`` that is missing or not of the type that
    :meth:`SearchIndex.load` and the server read it as (a hand-edited or damaged file)."""
    checks: list[tuple[str, object, type | tuple[type, ...]]] = [
        ("mode", meta.get("mode"), str),
        ("images", meta.get("images"), list),
        ("embeddings", meta.get("embeddings"), dict),
        ("backend", meta.get("backend", {}), dict),
        ("scorer", meta.get("scorer"), (dict, type(None))),
        ("model", meta.get("model"), dict),
    ]
    for name, value, kind in checks:
        if not isinstance(value, kind):
            return name
    if not isinstance(meta["model"].get("spec"), dict):
        return "model.spec"
    for i, entry in enumerate(meta["images"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            return f"images[{i}].path"
        if not isinstance(entry.get("sha256"), str | None):
            return f"images[{i}].sha256"
    return None


def _read_checked(file: Path, expected_sha: str | None) -> bytes:
    """The bytes of ``file``, read once and checked against ``expected_sha``: what is verified
    is what is used, and nothing stays mapped to a file that may be rewritten later."""
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        raise UclipError(f"{file} is missing; rebuild the index") from None
    except OSError as exc:
        raise UclipError(f"{file} cannot be read ({exc}); rebuild the index") from exc
    if not expected_sha or hashlib.sha256(data).hexdigest() != expected_sha:
        raise UclipError(f"{file} is corrupt or truncated (sha256 mismatch); rebuild the index")
    return data


def _load_checked_npy(file: Path, expected_sha: str | None) -> np.ndarray:
    # In memory, not memory-mapped: a mapped file truncated or rewritten in place (cp, rsync
    # --inplace) under a running server kills it with SIGBUS or changes its results.
    data = _read_checked(file, expected_sha)
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise UclipError(f"{file} cannot be read ({exc}); rebuild the index") from exc
    if array.dtype != np.float32 or array.ndim != 2:
        raise UclipError(f"{file} holds {array.dtype} {array.shape}, expected float32 (N, D)")
    return array


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as exc:
        raise UclipError(
            "the FAISS backend needs faiss-cpu: pip install faiss-cpu, or use backend='numpy'"
        ) from exc
    return faiss


def _load_faiss(file: Path, expected_sha: str | None) -> Any:
    if not file.is_file():
        raise UclipError(f"{file} is missing; rebuild the index (or load with backend='numpy')")
    data = _read_checked(file, expected_sha)
    return _faiss().deserialize_index(np.frombuffer(data, dtype=np.uint8))


def _set_nprobe(index: Any, nprobe: int) -> None:
    if hasattr(index, "nprobe"):
        index.nprobe = int(nprobe)


def _searchable(embeddings: np.ndarray, penalty: np.ndarray | None, weight: float) -> np.ndarray:
    """The rows an inner-product FAISS index holds: the embeddings, or with a scorer
    ``[y, -penalty(y) / weight]``, whose inner product with ``[x, 1]`` is the score / weight
    (``uclip.features.scoring.dot_form``), so FAISS ranks by the scorer at cosine's cost."""
    if penalty is None:
        return embeddings
    return np.hstack([embeddings, (-penalty / weight)[:, None]]).astype(np.float32)


def _faiss_index_for(embeddings: np.ndarray, kind: str, nlist: int | None = None) -> Any:
    """IndexFlatIP (exact inner product) or IndexIVFFlat over inner product (approximate)."""
    faiss = _faiss()
    n, d = embeddings.shape
    data = np.ascontiguousarray(embeddings, dtype=np.float32)
    if kind == "faiss-flat":
        index = faiss.IndexFlatIP(d)
    else:
        # ~4 sqrt(N) lists, but k-means wants >= 39 training points per list.
        nlist = nlist or max(1, min(int(4 * np.sqrt(n)), n // 39))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(data)
    index.add(data)
    return index


def resolve_backend(
    backend: Backend, n: int, faiss_threshold: int, ivf_threshold: int
) -> Literal["numpy", "faiss-flat", "faiss-ivf"]:
    """The concrete backend for ``n`` images (see the module constants for the defaults)."""
    if backend not in ("auto", "numpy", "faiss"):
        raise UclipError(f"backend must be 'auto', 'numpy' or 'faiss', got {backend!r}")
    if backend == "numpy" or (backend == "auto" and n < faiss_threshold):
        return "numpy"
    return "faiss-ivf" if n > ivf_threshold else "faiss-flat"


def describe_index(mode: str, spec: Mapping[str, Any]) -> str:
    """Banner text: how images are found, the two towers in use, and whether weights are real."""
    if mode == "caption":
        head = "caption-indexed: images are found through their captions (no image tower used)"
        towers = (("anchor tower", "anchor_encoder"), ("query tower", "multilingual_encoder"))
    else:
        head = "image-indexed: images were embedded by the image tower"
        towers = (("image tower", "image_encoder"), ("query tower", "multilingual_encoder"))
    names = [f"{role} = {spec[key]}" for role, key in towers if spec.get(key)]
    tower_text = "; ".join(names) if names else "model " + json.dumps(dict(spec))[:200]
    weights = spec.get("weights", "unknown")
    text = f"{head}; {tower_text}; weights: {weights}"
    if weights == "random-init":
        text += " (random-init: results are meaningless, for testing only)"
    return text


# --------------------------------------------------------------------------------------------
# building


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
        faiss_index = _faiss_index_for(_searchable(embeddings, penalty, spec_scorer.weight), kind)
        if kind == "faiss-ivf":
            backend_meta.update(nlist=int(faiss_index.nlist), nprobe=int(nprobe))
            _set_nprobe(faiss_index, nprobe)
        serialized = _faiss().serialize_index(faiss_index)
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
            parts.append(_to_numpy(model.encode_image(images)))
    else:
        assert texts is not None
        shas = [file_sha256(root / rel) for rel in paths]
        flat = [t for caps in texts for t in caps]
        encoded = np.concatenate(
            [
                _to_numpy(model.encode_english(flat[lo : lo + batch_size]))
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
