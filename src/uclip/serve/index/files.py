"""The on-disk format of a search index, shared by its writer (``build``) and reader (``query``).

An index is a directory::

    index.json        format, version, mode, relative image paths + sha256 of each image, model
                      spec + fingerprint of the head weights, sha256 of every data file; also the
                      folder it was built from, as a hint only: the index never chooses which
                      folder is served (a shared index.json could name "/")
    embeddings.npy    (N, D) float32, L2-normalised rows, row i = image i
    index.faiss       only for the FAISS backends: the rows of :func:`searchable_rows`
    penalty.npy       only for a hubness-aware scorer (CSLS / querybank normalisation): (N, 1)
                      float32, each image's penalty from a reference query set, computed once
                      at build time (see ``uclip.features.scoring``)
    .partial/         only while a build runs: finished chunks, so a killed build resumes

Images are fingerprinted by the sha256 of their bytes rather than size+mtime: mtimes change on
copy/rsync and a rewritten file can keep its mtime, while hashing reads each file once more, which
is cheap next to decoding and encoding it (same choice as ``features.cache``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import PurePosixPath
from typing import Any

import numpy as np

from uclip.data.io import IMAGE_SUFFIXES
from uclip.encoders.base import EmbeddingModel
from uclip.errors import UclipError

INDEX_FORMAT = "uclip-search-index"
INDEX_VERSION = 1
INDEX_FILE = "index.json"
EMBEDDINGS_FILE = "embeddings.npy"
FAISS_FILE = "index.faiss"
PENALTY_FILE = "penalty.npy"
PARTIAL_DIR = ".partial"


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


def as_float32(x: Any) -> np.ndarray:
    """Embeddings (numpy or torch) as the float32 numpy the index stores and compares."""
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


def searchable_rows(
    embeddings: np.ndarray, penalty: np.ndarray | None, weight: float
) -> np.ndarray:
    """The rows an inner-product FAISS index holds: the embeddings, or with a scorer
    ``[y, -penalty(y) / weight]``, whose inner product with ``[x, 1]`` is the score / weight
    (``uclip.features.scoring.dot_form``), so FAISS ranks by the scorer at cosine's cost."""
    if penalty is None:
        return embeddings
    return np.hstack([embeddings, (-penalty / weight)[:, None]]).astype(np.float32)
