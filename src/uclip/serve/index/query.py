"""Open and search a search index; serve its images safely.

At query time a text in any language goes through the multilingual tower and f_M; the collection
was embedded once (``uclip.serve.index.build``) into the same unit sphere, so ranking is by cosine
similarity = dot product, or, for an index built with a scorer, by ``weight * cos - penalty(image)``
with the stored penalty.

:meth:`SearchIndex.load` verifies every file it reads (``uclip.serve.index.files``) and that the
model is the one the index was built with. The server checks an image's hash each time it serves
it, so a replaced image is refused rather than served under the old ranking.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import numpy as np

from uclip.data.io import file_sha256
from uclip.encoders.base import EmbeddingModel
from uclip.errors import UclipError
from uclip.features.faiss_index import import_faiss, inner_product_index, set_nprobe
from uclip.features.scoring import COSINE
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


class UnknownImageError(UclipError):
    """An image id outside ``0 .. len(index) - 1``."""


class MissingImageError(UclipError):
    """The index lists the image but its file is gone from the images folder."""


class UnsafeImagePathError(UclipError):
    """A stored path that escapes the images folder (``..``, absolute, symlink out)."""


class ChangedImageError(UclipError):
    """The image file's bytes differ from the sha256 recorded when the index was built."""


def check_relative_path(rel: str) -> PurePosixPath:
    """A stored image path that passes :func:`image_name_problem`; else raise."""
    problem = image_name_problem(rel)
    if problem is not None:
        raise UnsafeImagePathError(
            f"invalid image path {rel!r} in the index ({problem}): rebuild the index"
        )
    return PurePosixPath(rel)


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
                set_nprobe(faiss_index, nprobe or stored["nprobe"])
        elif backend == "faiss":
            rows = searchable_rows(embeddings, penalty, scorer.get("weight", 1.0))
            faiss_index = inner_product_index([rows], rows.shape[1], len(rows))
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
        q = as_float32(query_emb)
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
            if self.penalty is not None:  # rows are [y, -penalty / weight]: see searchable_rows
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


def _load_faiss(file: Path, expected_sha: str | None) -> Any:
    if not file.is_file():
        raise UclipError(f"{file} is missing; rebuild the index (or load with backend='numpy')")
    data = _read_checked(file, expected_sha)
    return import_faiss().deserialize_index(np.frombuffer(data, dtype=np.uint8))
