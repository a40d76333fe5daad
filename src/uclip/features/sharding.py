"""Sharded embedding extraction: split the inputs over independent workers, then merge.

``uclip extract --shard i/n`` (or one rank of ``torchrun``) embeds the contiguous range
:func:`shard_range` ``(N, i, n)`` of the inputs and writes ``shard-IIIII-of-NNNNN.npy`` plus a JSON
sidecar into the output directory. The embedding itself goes through the
:class:`~uclip.features.cache.EmbeddingCache` (checksummed cache shards, atomic writes), so a worker
that is killed resumes from its last finished cache shard, and the ``.npy`` is written under a
temporary name and renamed when complete. A shard counts as done only when its sidecar exists and
describes the same encoder, inputs and split; rerunning every worker therefore redoes exactly the
shards that were missing or stale and keeps the others. ``uclip extract-merge`` checks that all
``n`` shards are present and consistent and streams them into one memory-mappable
``embeddings.npy`` (never holding the bank in RAM), openable with ``MemoryBank.from_npy``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from uclip.data.io import is_stale_temporary, write_text_atomic
from uclip.errors import UclipError
from uclip.features.banks import image_files, read_text_files
from uclip.features.cache import EmbeddingCache, write_npy_atomic

MERGED_NAME = "embeddings.npy"
MERGED_META = "embeddings.json"
FORMAT_VERSION = 1
_SHARD_RE = re.compile(r"^shard-(\d{5})-of-(\d{5})\.json$")


def shard_range(n_items: int, index: int, num_shards: int) -> tuple[int, int]:
    """``[start, stop)`` of shard ``index`` of ``num_shards`` contiguous near-equal parts of
    ``n_items`` (the first ``n_items % num_shards`` parts one longer; same rule as
    ``MemoryBank.shard``). Consecutive shards tile ``[0, n_items)`` in order."""
    if isinstance(num_shards, bool) or not isinstance(num_shards, int) or num_shards < 1:
        raise UclipError(f"number of shards must be an integer >= 1, got {num_shards!r}")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < num_shards:
        raise UclipError(f"shard index must be in [0, {num_shards}), got {index!r}")
    base, extra = divmod(n_items, num_shards)
    start = index * base + min(index, extra)
    return start, start + base + (1 if index < extra else 0)


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> ``(i, n)``, checked (0 <= i < n)."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not match:
        raise UclipError(f"--shard must look like i/n (e.g. 0/8), got {text!r}")
    index, num_shards = int(match.group(1)), int(match.group(2))
    shard_range(0, index, num_shards)  # validates
    return index, num_shards


def shard_from_env() -> tuple[int, int] | None:
    """``(rank, world_size)`` set by ``torchrun`` (RANK/WORLD_SIZE) or SLURM's ``srun``
    (SLURM_PROCID/SLURM_NTASKS); ``None`` outside a launcher."""
    for rank_var, world_var in (("RANK", "WORLD_SIZE"), ("SLURM_PROCID", "SLURM_NTASKS")):
        if rank_var in os.environ and world_var in os.environ:
            try:
                rank, world = int(os.environ[rank_var]), int(os.environ[world_var])
            except ValueError:
                raise UclipError(
                    f"{rank_var}={os.environ[rank_var]!r} / {world_var}={os.environ[world_var]!r}"
                    " are not integers: fix the launcher environment"
                ) from None
            shard_range(0, rank, world)
            return rank, world
    return None


def read_inputs(path: str | os.PathLike[str], modality: str) -> list[str]:
    """The inputs of an extraction: texts (one per line of a UTF-8 file, ``.gz`` allowed) or
    image paths (a folder, or a file listing one path per line, relative to the file's folder).

    The order is the file's (or the sorted folder's), so every worker sees the same list.
    """
    source = Path(path)
    if modality == "image":
        if source.is_dir():
            return [str(p) for p in image_files(source)]
        return [str(source.parent / line) for line in read_text_files(source)]
    if modality != "text":
        raise UclipError(f"modality {modality!r} cannot be extracted: expected 'text' or 'image'")
    if source.is_dir():
        raise UclipError(f"{source} is a folder: text inputs come from a file, one text per line")
    return read_text_files(source)


def inputs_digest(inputs: Sequence[Any]) -> str:
    """sha256 of the ordered input list (texts or paths as given), to tell one job from another."""
    h = hashlib.sha256(b"uclip-extract-inputs-v1\0")
    for item in inputs:
        data = os.fspath(item).encode("utf-8", errors="surrogatepass")
        h.update(len(data).to_bytes(8, "little") + data)
    return h.hexdigest()


@dataclass(frozen=True)
class ShardInfo:
    """The sidecar of one finished shard (``shard-IIIII-of-NNNNN.json``)."""

    index: int
    num_shards: int
    start: int
    stop: int
    n_inputs: int
    inputs_sha256: str
    encoder: str
    weights_id: str
    dim: int
    dtype: str
    array_sha256: str
    format_version: int = FORMAT_VERSION

    @property
    def stem(self) -> str:
        return shard_stem(self.index, self.num_shards)

    def same_job(self, other: ShardInfo) -> bool:
        """Whether two shards belong to one extraction (same encoder, inputs and split)."""
        keys = ("num_shards", "n_inputs", "inputs_sha256", "encoder", "weights_id", "dim", "dtype")
        return all(getattr(self, k) == getattr(other, k) for k in keys)


@dataclass
class ShardResult:
    info: ShardInfo
    path: Path
    computed: bool
    """False when a finished shard from an earlier run was kept."""


def shard_stem(index: int, num_shards: int) -> str:
    return f"shard-{index:05d}-of-{num_shards:05d}"


def extract_shard(
    encoder: Any,
    inputs: Sequence[Any],
    out_dir: str | os.PathLike[str],
    index: int,
    num_shards: int,
    *,
    cache: EmbeddingCache | None = None,
    batch_size: int = 64,
    shard_size: int = 4096,
    dtype: str = "float32",
    progress: bool = True,
) -> ShardResult:
    """Embed shard ``index`` of ``num_shards`` of ``inputs`` into ``out_dir`` (skip if done).

    ``cache`` defaults to ``out_dir/cache``: a worker killed mid-shard keeps its finished cache
    shards (``shard_size`` rows each). Returns the shard's sidecar and whether it was computed.
    """
    out = Path(out_dir)
    if len(inputs) == 0:
        raise UclipError("no inputs to extract: the input list is empty")
    if len(inputs) < num_shards:
        raise UclipError(
            f"{len(inputs)} inputs cannot fill {num_shards} shards: use at most {len(inputs)}"
        )
    start, stop = shard_range(len(inputs), index, num_shards)
    expected = _expected_info(encoder, inputs, index, num_shards, start, stop, dtype)
    existing = _read_info(out / f"{shard_stem(index, num_shards)}.json")
    npy = out / f"{shard_stem(index, num_shards)}.npy"
    if existing is not None and existing.same_job(expected) and _array_ok(npy, existing):
        return ShardResult(existing, npy, computed=False)
    out.mkdir(parents=True, exist_ok=True)
    # A stale sidecar must not vouch for the array about to be rewritten, and a killed worker's
    # half-written array (the cache's host~pid temporary naming) is removed once its pid is dead.
    (out / f"{expected.stem}.json").unlink(missing_ok=True)
    for tmp in out.glob(f".{expected.stem}.npy~*.tmp"):
        if is_stale_temporary(tmp):
            tmp.unlink(missing_ok=True)
    cache = cache or EmbeddingCache(out / "cache")
    cache.extract_to_bank(
        encoder,
        list(inputs[start:stop]),
        npy,
        batch_size=batch_size,
        shard_size=shard_size,
        dtype=dtype,
        progress=progress,
        desc=f"shard {index}/{num_shards}",
    )
    info = ShardInfo(**{**asdict(expected), "array_sha256": array_sha256(npy)})
    # The sidecar is written last: its presence is what marks the shard as finished.
    write_text_atomic(out / f"{info.stem}.json", json.dumps(asdict(info), indent=2) + "\n")
    return ShardResult(info, npy, computed=True)


def shard_status(out_dir: str | os.PathLike[str]) -> tuple[int, list[int]]:
    """``(num_shards, missing shard indices)`` of the extraction in ``out_dir``."""
    infos = _all_infos(Path(out_dir))
    num_shards = infos[0].num_shards
    done = {i.index for i in infos if i.num_shards == num_shards}
    return num_shards, [i for i in range(num_shards) if i not in done]


def merge_shards(
    out_dir: str | os.PathLike[str], out_path: str | os.PathLike[str] | None = None
) -> Path:
    """Concatenate all shards of ``out_dir`` into one ``.npy`` (default ``out_dir/embeddings.npy``).

    Every shard must be present, belong to the same job and pass its checksum; the result is
    streamed shard by shard into a memory-mapped temporary file, renamed when complete, with a
    JSON description beside it. Returns the ``.npy`` path.
    """
    root = Path(out_dir)
    infos = _all_infos(root)
    first = infos[0]
    if any(not info.same_job(first) for info in infos):
        raise UclipError(
            f"{root} holds shards of different extractions (encoder, inputs or shard count "
            "differ): delete the stale shard-*.json/.npy files and rerun the workers"
        )
    by_index = {info.index: info for info in infos}
    missing = [i for i in range(first.num_shards) if i not in by_index]
    if missing:
        raise UclipError(
            f"{len(missing)} of {first.num_shards} shards are missing in {root} "
            f"(indices {_abbrev(missing)}): run `uclip extract --shard i/{first.num_shards}` "
            "for them, then merge again"
        )
    ordered = [by_index[i] for i in range(first.num_shards)]
    for prev, info in itertools.pairwise(ordered):
        if info.start != prev.stop:
            raise UclipError(f"shards {prev.stem} and {info.stem} do not tile the inputs: rerun")
    for info in ordered:
        if not _array_ok(root / f"{info.stem}.npy", info):
            raise UclipError(
                f"{info.stem}.npy is missing or does not match its checksum: delete "
                f"{info.stem}.json and rerun `uclip extract --shard {info.index}/{info.num_shards}`"
            )
    target = Path(out_path) if out_path is not None else root / MERGED_NAME
    write_npy_atomic(
        target,
        (first.n_inputs, first.dim),
        np.dtype(first.dtype),
        _blocks(root, ordered),
    )
    meta = {
        "format_version": FORMAT_VERSION,
        "encoder": first.encoder,
        "weights_id": first.weights_id,
        "dim": first.dim,
        "dtype": first.dtype,
        "count": first.n_inputs,
        "inputs_sha256": first.inputs_sha256,
        "num_shards": first.num_shards,
    }
    write_text_atomic(target.with_suffix(".json"), json.dumps(meta, indent=2) + "\n")
    return target


# -- internals -----------------------------------------------------------------------------


def _expected_info(
    encoder: Any,
    inputs: Sequence[Any],
    index: int,
    num_shards: int,
    start: int,
    stop: int,
    dtype: str,
) -> ShardInfo:
    for attr in ("name", "weights_id", "dim"):
        if not hasattr(encoder, attr):
            raise UclipError(f"encoder has no .{attr}: it must follow uclip.encoders.Encoder")
    return ShardInfo(
        index=index,
        num_shards=num_shards,
        start=start,
        stop=stop,
        n_inputs=len(inputs),
        inputs_sha256=inputs_digest(inputs),
        encoder=str(encoder.name),
        weights_id=str(encoder.weights_id),
        dim=int(encoder.dim),
        dtype=dtype,
        array_sha256="",
    )


def _read_info(path: Path) -> ShardInfo | None:
    """The sidecar at ``path``, or ``None`` when it is unreadable, holds a field of the wrong type
    or an unknown dtype, or describes another shard than its file name says."""
    try:
        info = ShardInfo(**json.loads(path.read_text(encoding="utf-8")))
        np.dtype(info.dtype)
    except (OSError, ValueError, TypeError):  # JSON and UTF-8 decoding errors are ValueErrors
        return None
    for field in fields(info):
        value = getattr(info, field.name)
        if type(value) is not (int if field.type == "int" else str):
            return None
    return info if info.stem == path.stem else None


def _all_infos(root: Path) -> list[ShardInfo]:
    if not root.is_dir():
        raise UclipError(f"extraction directory {root} does not exist: run `uclip extract` first")
    infos = []
    for path in sorted(root.glob("shard-*-of-*.json")):
        if not _SHARD_RE.match(path.name):
            continue
        info = _read_info(path)
        if info is None:
            raise UclipError(f"{path} is unreadable: delete it and rerun that shard")
        infos.append(info)
    if not infos:
        raise UclipError(f"no finished shards in {root}: run `uclip extract --shard i/n` first")
    return infos


def _array_ok(path: Path, info: ShardInfo) -> bool:
    """The shard's ``.npy`` exists with the expected shape/dtype and checksum."""
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError):
        return False
    if arr.shape != (info.stop - info.start, info.dim) or arr.dtype != np.dtype(info.dtype):
        return False
    return array_sha256(path) == info.array_sha256


def array_sha256(path: Path) -> str:
    """sha256 of a ``.npy``'s array bytes (not the header), read in 64 MiB blocks."""
    h = hashlib.sha256()
    for block in npy_blocks(path):
        h.update(np.ascontiguousarray(block).tobytes())
    return h.hexdigest()


def npy_blocks(path: Path) -> Iterator[np.ndarray]:
    """The rows of a ``.npy`` in consecutive blocks of about 64 MiB, memory-mapped."""
    arr = np.load(path, mmap_mode="r", allow_pickle=False)
    rows = max(1, (64 << 20) // max(1, arr.shape[1] * arr.itemsize))
    for start in range(0, arr.shape[0], rows):
        yield np.asarray(arr[start : start + rows])


def _blocks(root: Path, infos: Sequence[ShardInfo]) -> Iterator[np.ndarray]:
    for info in infos:
        yield from npy_blocks(root / f"{info.stem}.npy")


def _abbrev(values: list[int], limit: int = 10) -> str:
    shown = ", ".join(map(str, values[:limit]))
    return shown + (f", ... (+{len(values) - limit})" if len(values) > limit else "")
