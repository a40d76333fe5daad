"""Embedding cache: sharded, checksummed, resumable.

uCLIP trains only two projection heads on top of frozen encoders, so every embedding the heads
see (image bank V, multilingual text bank M, caption embeddings) is computed once and reused
across runs. This module makes that computation safe to interrupt and cheap to repeat.

Layout on disk::

    root/
      <encoder-name>--<key16>/          key = sha256(encoder.name, encoder.weights_id, dtype)
        encoder.json                    who wrote this directory (for humans, never read back)
        <shard-sha256>.safetensors      one shard: tensor "embeddings" (count, dim) + metadata

Inputs are cut into consecutive shards of ``shard_size`` items. A shard's file name is the
sha256 of its inputs' *content*, so the same inputs with the same shard grouping hit the cache,
and changing one input recomputes only the shard that holds it (inserting or deleting an input
shifts the grouping of every later shard, so those are recomputed too).

Content of an input:

* text: its UTF-8 bytes;
* image: the sha256 of the file's bytes. We hash content rather than ``(path, size, mtime)``
  because mtimes change on copy/rsync/checkout (needless recomputation) and a file rewritten
  within the mtime granularity would keep a stale embedding (silently wrong). Hashing reads each
  file once more, which is cheap next to decoding and encoding it; as a bonus the same images
  under another folder reuse the cache.

Every shard carries its own checksum (sha256 of the tensor bytes), the digest of its inputs
(its own file name) and the encoder's name and weights id in the safetensors metadata; all are
verified on every read, and a shard that is truncated, bit-flipped, unreadable, or a valid shard
of other inputs or another encoder (copied or renamed over this one) is deleted with a logged
warning and recomputed. Shards are written to a temporary file in the same directory and moved
into place with :func:`os.replace`, so a kill leaves either the whole shard or none of it;
temporary files left by a killed process are removed on the next run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch
from safetensors import SafetensorError
from tqdm import tqdm

from uclip.data.io import (
    TMP_SUFFIX,
    atomic_target,
    file_sha256,
    is_stale_temporary,
    write_bytes_atomic,
)
from uclip.errors import UclipError

logger = logging.getLogger(__name__)

STORAGE_DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float16": torch.float16}
"""Supported on-disk dtypes; ``float16`` halves the disk size (embeddings are returned as fp32)."""

FORMAT_VERSION = "1"
_TENSOR_KEY = "embeddings"
_SHARD_SUFFIX = ".safetensors"


@dataclass
class CacheStats:
    """What the last :meth:`EmbeddingCache.embed` / ``extract_to_bank`` call did, in shards."""

    shards_total: int = 0
    shards_computed: int = 0
    shards_reused: int = 0
    shards_corrupt: int = 0
    """Shards found on disk but failing verification (deleted and recomputed; also in computed)."""
    rows_computed: int = 0


@dataclass
class EncoderWork:
    """Everything one :class:`EmbeddingCache` computed with one encoder so far (cache misses)."""

    rows: int = 0
    seconds: float = 0.0
    """Wall seconds of the forward passes and shard writes of those rows."""

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class _Plan:
    """A validated request: which encoder, which inputs, how they are cut and stored."""

    encoder: Any
    inputs: Sequence[Any]
    directory: Path
    dtype: str
    batch_size: int
    shard_size: int

    @property
    def n_shards(self) -> int:
        return -(-len(self.inputs) // self.shard_size)

    def shard_bounds(self) -> Iterator[tuple[int, int]]:
        for start in range(0, len(self.inputs), self.shard_size):
            yield start, min(start + self.shard_size, len(self.inputs))

    def n_batches(self, count: int) -> int:
        return -(-count // self.batch_size)


class EmbeddingCache:
    """Sharded on-disk cache of encoder outputs under ``root`` (see the module docstring)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.last_stats = CacheStats()
        # per encoder name, across calls: how fast this machine embedded (for timing reports)
        self.work: dict[str, EncoderWork] = {}

    def dir_for(self, encoder: Any, dtype: str = "float32") -> Path:
        """The directory holding ``encoder``'s shards stored as ``dtype``."""
        _check_dtype(dtype)
        key = hashlib.sha256(
            json.dumps([str(encoder.name), str(encoder.weights_id), dtype]).encode("utf-8")
        ).hexdigest()
        slug = "".join(c if c.isalnum() or c in "._-" else "_" for c in str(encoder.name))
        return self.root / f"{slug}--{key[:16]}"

    def embed(
        self,
        encoder: Any,
        inputs: Sequence[str] | Sequence[str | os.PathLike[str]],
        *,
        batch_size: int = 64,
        shard_size: int = 4096,
        dtype: str = "float32",
        progress: bool = True,
        desc: str | None = None,
    ) -> torch.Tensor:
        """Embed ``inputs`` with ``encoder``, reusing every shard already on disk.

        ``inputs`` are texts for a text encoder and image file paths for an image encoder
        (``encoder.modality``). Returns an (N, encoder.dim) float32 tensor in input order, also
        when shards are stored as float16 (then the values are the fp16-rounded ones, whether
        they came from disk or were just computed). :attr:`last_stats` says what was reused.
        """
        plan = self._plan(encoder, inputs, batch_size, shard_size, dtype)
        out = torch.empty(len(plan.inputs), int(encoder.dim), dtype=torch.float32)
        for start, emb in self._iter_shards(plan, progress=progress, desc=desc):
            out[start : start + emb.shape[0]] = emb.to(torch.float32)
        return out

    def extract_to_bank(
        self,
        encoder: Any,
        inputs: Sequence[str] | Sequence[str | os.PathLike[str]],
        out_path: str | os.PathLike[str],
        *,
        batch_size: int = 64,
        shard_size: int = 4096,
        dtype: str = "float32",
        progress: bool = True,
        desc: str | None = None,
    ) -> Path:
        """Write the embeddings of ``inputs`` to one contiguous ``.npy`` file for memory-mapping.

        Goes through the cache like :meth:`embed`, but writes shard by shard into a
        memory-mapped temporary ``.npy`` that is renamed to ``out_path`` at the end, so a
        million-row bank is never held in RAM (once or twice) and a kill never leaves a
        half-written ``out_path``. The file has ``dtype`` (float16 halves its size). Returns
        ``out_path``; open it with :meth:`uclip.features.banks.MemoryBank.from_npy`.
        """
        plan = self._plan(encoder, inputs, batch_size, shard_size, dtype)
        blocks = (emb.numpy() for _, emb in self._iter_shards(plan, progress=progress, desc=desc))
        shape = (len(plan.inputs), int(encoder.dim))
        return write_npy_atomic(out_path, shape, np.dtype(dtype), blocks)

    def has(
        self,
        encoder: Any,
        inputs: Sequence[str] | Sequence[str | os.PathLike[str]],
        *,
        shard_size: int = 4096,
        dtype: str = "float32",
    ) -> bool:
        """Whether every shard of ``inputs`` is on disk (checksums are verified only on read)."""
        plan = self._plan(encoder, inputs, 1, shard_size, dtype)
        return all(_shard_path(plan, start, stop).is_file() for start, stop in plan.shard_bounds())

    # -- internals -------------------------------------------------------------------------

    def _plan(
        self, encoder: Any, inputs: Any, batch_size: int, shard_size: int, dtype: str
    ) -> _Plan:
        name = getattr(encoder, "name", type(encoder).__name__)
        for attr in ("name", "weights_id", "dim", "modality"):
            if not hasattr(encoder, attr):
                raise UclipError(f"encoder {name} has no .{attr}: it must follow encoders.Encoder")
        if encoder.modality not in ("text", "image"):
            raise UclipError(
                f"encoder {name} has modality {encoder.modality!r}: expected 'text' or 'image'"
            )
        if isinstance(inputs, (str, bytes, os.PathLike)):
            raise UclipError(
                f"inputs to embed with {name} must be a list, not a single {type(inputs).__name__}"
            )
        if len(inputs) == 0:
            raise UclipError(f"no inputs to embed with {name}: pass at least one text or image")
        for label, value in (("batch_size", batch_size), ("shard_size", shard_size)):
            if not isinstance(value, int) or value < 1:
                raise UclipError(f"{label} must be a positive integer, got {value!r}")
        if not isinstance(encoder.dim, int) or encoder.dim < 1:
            raise UclipError(f"encoder {name} has .dim {encoder.dim!r}: expected a positive int")
        return _Plan(encoder, inputs, self.dir_for(encoder, dtype), dtype, batch_size, shard_size)

    def _iter_shards(
        self, plan: _Plan, *, progress: bool, desc: str | None
    ) -> Iterator[tuple[int, torch.Tensor]]:
        """Yield ``(start, embeddings)`` per shard in order, in the storage dtype."""
        stats = CacheStats(shards_total=plan.n_shards)
        self.last_stats = stats
        _prepare_dir(plan)
        n_batches = sum(plan.n_batches(stop - start) for start, stop in plan.shard_bounds())
        bar = tqdm(
            total=n_batches,
            disable=not progress,
            unit="batch",
            desc=desc
            or f"embedding {len(plan.inputs)} {plan.encoder.modality}s with {plan.encoder.name}",
        )
        try:
            for start, stop in plan.shard_bounds():
                path = _shard_path(plan, start, stop)
                emb = _read_shard(path, plan, stop - start, stats) if path.exists() else None
                if emb is not None:
                    stats.shards_reused += 1
                    bar.update(plan.n_batches(stop - start))
                else:
                    began = time.perf_counter()
                    emb = _compute_shard(plan, start, stop, bar)
                    _write_shard(path, emb, plan)
                    work = self.work.setdefault(str(plan.encoder.name), EncoderWork())
                    work.seconds += time.perf_counter() - began
                    work.rows += stop - start
                    stats.shards_computed += 1
                    stats.rows_computed += stop - start
                bar.set_postfix(cached=stats.shards_reused, computed=stats.shards_computed)
                yield start, emb
        finally:
            bar.close()


def write_npy_atomic(
    path: str | os.PathLike[str],
    shape: tuple[int, int],
    dtype: np.dtype,
    blocks: Iterable[np.ndarray],
) -> Path:
    """Write consecutive row ``blocks`` into a new ``.npy`` of ``shape`` without holding it in RAM.

    The file is written through :func:`np.lib.format.open_memmap` under a temporary name in the
    same directory and moved to ``path`` only when complete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_target(path, fsync=True) as tmp:
        arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
        row = 0
        for block in blocks:
            arr[row : row + block.shape[0]] = block
            row += block.shape[0]
        if row != shape[0]:
            raise UclipError(f"wrote {row} rows to {path} but expected {shape[0]}")
        arr.flush()
        del arr
    return path


def _check_dtype(dtype: str) -> None:
    if dtype not in STORAGE_DTYPES:
        raise UclipError(
            f"cache dtype {dtype!r} is not supported: use one of {list(STORAGE_DTYPES)}"
        )


def _prepare_dir(plan: _Plan) -> None:
    plan.directory.mkdir(parents=True, exist_ok=True)
    info = plan.directory / "encoder.json"
    if not info.exists():
        enc = plan.encoder
        record = {
            "name": str(enc.name),
            "weights_id": str(enc.weights_id),
            "weights": str(getattr(enc, "weights", "")),
            "modality": str(enc.modality),
            "dim": int(enc.dim),
            "dtype": plan.dtype,
            "format_version": FORMAT_VERSION,
        }
        write_bytes_atomic(info, (json.dumps(record, indent=2) + "\n").encode("utf-8"), fsync=True)
    for tmp in plan.directory.glob(f".*{TMP_SUFFIX}"):
        if is_stale_temporary(tmp):
            logger.info("removing temporary file %s left by an interrupted run", tmp)
            tmp.unlink(missing_ok=True)


def _shard_path(plan: _Plan, start: int, stop: int) -> Path:
    """The shard file for ``inputs[start:stop]``, named by the sha256 of their content."""
    h = hashlib.sha256(f"uclip-shard-v{FORMAT_VERSION}\0{plan.encoder.modality}\0".encode())
    for i in range(start, stop):
        h.update(_input_digest(plan.encoder.modality, plan.inputs[i], i))
    return plan.directory / f"{h.hexdigest()}{_SHARD_SUFFIX}"


def _input_digest(modality: str, item: Any, index: int) -> bytes:
    if modality == "text":
        if not isinstance(item, str):
            raise UclipError(
                f"input {index} is a {type(item).__name__}, not a str: a text encoder takes texts"
            )
        # Length-prefixed so that ["ab", "c"] and ["a", "bc"] hash differently.
        data = item.encode("utf-8", errors="surrogatepass")
        return len(data).to_bytes(8, "little") + data
    if not isinstance(item, (str, os.PathLike)):
        raise UclipError(
            f"input {index} is a {type(item).__name__}: an image encoder takes image file paths"
        )
    return _file_sha256(Path(item))


def _file_sha256(path: Path) -> bytes:
    try:
        return bytes.fromhex(file_sha256(path))
    except FileNotFoundError:
        raise UclipError(f"image file {path} not found: fix the image list or folder") from None
    except IsADirectoryError:
        raise UclipError(f"image path {path} is a directory: pass image files") from None


def _load_image(path: Path) -> Any:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    # PIL reports corrupt files as OSError, some decoders as SyntaxError/ValueError.
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise UclipError(f"cannot read image {path} ({exc}): remove it or re-save it") from None


def _compute_shard(plan: _Plan, start: int, stop: int, bar: tqdm) -> torch.Tensor:
    """Encode ``inputs[start:stop]`` batch by batch; returns (count, dim) in the storage dtype."""
    enc = plan.encoder
    out = torch.empty(stop - start, enc.dim, dtype=torch.float32)
    for b0 in range(start, stop, plan.batch_size):
        b1 = min(b0 + plan.batch_size, stop)
        batch = list(plan.inputs[b0:b1])
        if enc.modality == "image":
            batch = [_load_image(Path(p)) for p in batch]
        with torch.no_grad():
            emb = torch.as_tensor(enc.encode(batch))
        if emb.ndim != 2 or tuple(emb.shape) != (b1 - b0, enc.dim):
            raise UclipError(
                f"encoder {enc.name} returned shape {tuple(emb.shape)} for {b1 - b0} inputs, "
                f"expected ({b1 - b0}, {enc.dim}) from its .dim={enc.dim}: fix the encoder"
            )
        emb = emb.detach().to(device="cpu", dtype=torch.float32)
        if not torch.isfinite(emb).all():
            bad = b0 + int((~torch.isfinite(emb)).any(dim=1).nonzero()[0, 0])
            raise UclipError(
                f"encoder {enc.name} returned NaN/inf for input {bad}: check that input "
                "and the encoder weights"
            )
        out[b0 - start : b1 - start] = emb
        bar.update(1)
    return out.to(STORAGE_DTYPES[plan.dtype])


def _write_shard(path: Path, emb: torch.Tensor, plan: _Plan) -> None:
    emb = emb.contiguous()
    metadata = {
        "format_version": FORMAT_VERSION,
        "count": str(emb.shape[0]),
        "dim": str(emb.shape[1]),
        "dtype": plan.dtype,
        "encoder": str(plan.encoder.name),
        "weights_id": str(plan.encoder.weights_id),
        "inputs_sha256": path.stem,
        "sha256": hashlib.sha256(emb.numpy()).hexdigest(),
    }
    write_bytes_atomic(
        path, safetensors.torch.save({_TENSOR_KEY: emb}, metadata=metadata), fsync=True
    )


def _read_shard(path: Path, plan: _Plan, count: int, stats: CacheStats) -> torch.Tensor | None:
    """The verified shard at ``path``, or ``None`` (after deleting it) if it fails verification."""
    try:
        data = path.read_bytes()
        problem, emb = _verify_shard(data, plan, count, path.stem)
    except (OSError, ValueError, KeyError, SafetensorError) as exc:
        problem, emb = f"unreadable: {exc}", None
    if problem is None:
        return emb
    logger.warning("corrupt cache shard %s (%s): deleting it and recomputing", path, problem)
    stats.shards_corrupt += 1
    path.unlink(missing_ok=True)
    return None


def _verify_shard(
    data: bytes, plan: _Plan, count: int, inputs_sha256: str
) -> tuple[str | None, torch.Tensor | None]:
    header_len = int.from_bytes(data[:8], "little")
    meta = json.loads(data[8 : 8 + header_len]).get("__metadata__") or {}
    emb = safetensors.torch.load(data)[_TENSOR_KEY]
    if "inputs_sha256" not in meta:
        return "written by an older uclip without the digest of its inputs", None
    # The digest ties the file to the inputs it embeds: a valid shard of other inputs copied or
    # renamed over this one passes its own checksum but not this.
    expected = {
        "inputs_sha256": inputs_sha256,
        "format_version": FORMAT_VERSION,
        "count": str(count),
        "dim": str(plan.encoder.dim),
        "dtype": plan.dtype,
        "encoder": str(plan.encoder.name),
        "weights_id": str(plan.encoder.weights_id),
    }
    for key, value in expected.items():
        if meta.get(key) != value:
            return f"metadata {key}={meta.get(key)!r}, expected {value!r}", None
    if tuple(emb.shape) != (count, plan.encoder.dim) or emb.dtype != STORAGE_DTYPES[plan.dtype]:
        return f"tensor {tuple(emb.shape)} {emb.dtype} does not match its metadata", None
    if hashlib.sha256(emb.numpy()).hexdigest() != meta.get("sha256"):
        return "sha256 mismatch", None
    return None, emb


# --------------------------------------------------------------------------------------------
# a frozen tower behind the cache: what an EmbeddingModel embeds with

CacheLike = EmbeddingCache | str | os.PathLike[str] | None


def as_cache(cache: CacheLike) -> EmbeddingCache | None:
    """An :class:`EmbeddingCache` from a cache, a folder, or ``None`` (no cache)."""
    if cache is None or isinstance(cache, EmbeddingCache):
        return cache
    return EmbeddingCache(cache)


@dataclass(frozen=True)
class TowerOptions:
    """How a model's frozen towers embed: through ``cache`` (texts and image file paths) in
    shards of ``shard_size`` (``None``: :meth:`EmbeddingCache.embed`'s default) and batches of
    ``batch_size``; without a cache (or for PIL images, which the cache cannot content-hash
    cheaply) ``chunk_size`` inputs per encoder call (``None``: all in one call)."""

    cache: EmbeddingCache | None = None
    batch_size: int = 64
    shard_size: int | None = None
    chunk_size: int | None = None
    progress: bool = False


class CachedTower:
    """A frozen encoder, optionally behind an :class:`EmbeddingCache` (see :class:`TowerOptions`):
    ``tower(items, desc)`` -> (N, encoder.dim) float32 CPU unit rows, in input order."""

    def __init__(self, encoder: Any, options: TowerOptions = TowerOptions()) -> None:
        self.encoder = encoder
        self.options = options

    def __call__(self, items: Sequence[Any], desc: str | None = None) -> torch.Tensor:
        items = list(items)
        if not items:
            raise UclipError(f"nothing to encode with {self.encoder.name}: the data set is empty")
        opt = self.options
        if opt.cache is not None and (
            self.encoder.modality == "text"
            or all(isinstance(item, str | os.PathLike) for item in items)
        ):
            sharding = {} if opt.shard_size is None else {"shard_size": opt.shard_size}
            return opt.cache.embed(
                self.encoder,
                [str(i) if isinstance(i, os.PathLike) else i for i in items],
                batch_size=opt.batch_size,
                progress=opt.progress,
                desc=desc,
                **sharding,
            )
        step = opt.chunk_size or len(items)
        parts = [self.encoder.encode(items[i : i + step]) for i in range(0, len(items), step)]
        return torch.cat(parts).float().cpu()

    def describe(self) -> dict[str, Any]:
        enc = self.encoder
        return {"encoder": enc.name, "weights": enc.weights, "weights_id": enc.weights_id}
