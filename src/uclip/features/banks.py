"""Memory banks: the (N, d) embedding sets that uCLIP retrieves from.

uCLIP (Sec. 3, Eq. 1-2) softly retrieves, for each training embedding, a convex combination of
the rows of a memory bank: the image bank V (CLIP image embeddings of unlabelled images) and the
multilingual text bank M (sentence-encoder embeddings of unpaired text in many languages). Banks
can be millions of rows, so a :class:`MemoryBank` may live memory-mapped on disk and is consumed
chunk by chunk (:meth:`MemoryBank.chunks`); the retrieval code streams a log-sum-exp over those
chunks and never needs the whole bank as one tensor.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from uclip.data.io import IMAGE_SUFFIXES, list_images, write_text_atomic
from uclip.errors import UclipError
from uclip.features.cache import EmbeddingCache, write_npy_atomic

DEFAULT_CHUNK_SIZE = 65536

_FLOAT_DTYPES = (np.float16, np.float32, np.float64)


class MemoryBank:
    """An (N, d) bank of embeddings, in memory or memory-mapped from a ``.npy`` file.

    Build one with :meth:`from_tensor` or :meth:`from_npy`. Views (:meth:`subset`,
    :meth:`sample`, :meth:`shard`) share the underlying storage: they keep row indices, not
    copies, so sampling a memory-mapped bank reads only the sampled rows, chunk by chunk.
    Rows are read-only: chunks of an in-memory float32 bank are views of its tensor.
    """

    def __init__(
        self,
        data: torch.Tensor | np.ndarray,
        *,
        rows: np.ndarray | None = None,
        source: str = "tensor",
    ) -> None:
        """Wrap ``data`` (N, d); ``rows`` selects and orders rows of it. Prefer the constructors."""
        if data.ndim != 2:
            raise UclipError(
                f"memory bank {source} has shape {tuple(data.shape)}: expected a 2-D (N, d) array"
            )
        is_float = (
            data.dtype.is_floating_point
            if isinstance(data, torch.Tensor)
            else data.dtype in _FLOAT_DTYPES
        )
        if not is_float:
            raise UclipError(f"memory bank {source} has dtype {data.dtype}: expected float16/32/64")
        n = data.shape[0] if rows is None else len(rows)
        if n == 0 or data.shape[1] == 0:
            raise UclipError(
                f"memory bank {source} has shape {(n, data.shape[1])}: it needs at least one "
                "row and one column"
            )
        self._data = data
        self._rows = rows
        self.source = source

    # -- constructors ----------------------------------------------------------------------

    @classmethod
    def from_tensor(cls, embeddings: torch.Tensor | np.ndarray) -> MemoryBank:
        """An in-memory bank sharing ``embeddings``' storage; NaN/inf rows are rejected now."""
        if isinstance(embeddings, np.ndarray):
            embeddings = torch.from_numpy(embeddings)
        embeddings = embeddings.detach().cpu()
        bank = cls(embeddings)
        finite = torch.isfinite(embeddings).all(dim=1)
        if not finite.all():
            raise UclipError(
                f"memory bank has NaN/inf in row {int((~finite).nonzero()[0, 0])}: "
                "rebuild the embeddings"
            )
        return bank

    @classmethod
    def from_npy(cls, path: str | os.PathLike[str], *, mmap: bool = True) -> MemoryBank:
        """A bank read from a ``.npy`` file, memory-mapped read-only by default.

        A memory-mapped bank is checked for NaN/inf lazily, chunk by chunk, as it is read
        (:meth:`validate` scans it all now).
        """
        path = Path(path)
        try:
            data = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        except FileNotFoundError:
            raise UclipError(f"memory bank file {path} not found: build it first") from None
        except (ValueError, OSError) as exc:
            raise UclipError(f"cannot read memory bank {path} ({exc}): rebuild it") from None
        if not isinstance(data, np.ndarray):
            raise UclipError(f"memory bank file {path} holds no single array: rebuild it")
        bank = cls(data, source=str(path))
        if not mmap:
            bank.validate()
        return bank

    # -- properties ------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._data.shape[0] if self._rows is None else len(self._rows)

    @property
    def dim(self) -> int:
        """Embedding dimension d."""
        return int(self._data.shape[1])

    @property
    def dtype(self) -> torch.dtype:
        """Storage dtype (chunks are always float32)."""
        if isinstance(self._data, torch.Tensor):
            return self._data.dtype
        return torch.from_numpy(np.empty(0, dtype=self._data.dtype)).dtype

    @property
    def is_memmap(self) -> bool:
        """Whether rows are read from disk on demand."""
        return isinstance(self._data, np.memmap)

    def __repr__(self) -> str:
        where = "memmap" if self.is_memmap else "in-memory"
        return (
            f"MemoryBank(n={len(self)}, dim={self.dim}, dtype={self.dtype}, {where}, {self.source})"
        )

    # -- reading ---------------------------------------------------------------------------

    def chunks(self, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[torch.Tensor]:
        """Yield the rows in order as float32 (n_chunk, d) tensors of at most ``chunk_size`` rows.

        Only one chunk is converted (and, for a memory-mapped bank, read) at a time. A chunk
        with NaN/inf raises :class:`UclipError` naming the row.
        """
        if not isinstance(chunk_size, int) or chunk_size < 1:
            raise UclipError(f"chunk_size must be a positive integer, got {chunk_size!r}")
        for start in range(0, len(self), chunk_size):
            chunk = self._read(start, min(start + chunk_size, len(self)))
            finite = torch.isfinite(chunk).all(dim=1)
            if not finite.all():
                row = start + int((~finite).nonzero()[0, 0])
                raise UclipError(
                    f"memory bank {self.source} has NaN/inf in row {row}: rebuild the embeddings"
                )
            yield chunk

    def to_tensor(self) -> torch.Tensor:
        """The whole bank as one float32 (N, d) tensor; only for banks that fit in RAM."""
        return torch.cat(list(self.chunks()))

    def validate(self, chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        """Scan every row now; raises :class:`UclipError` on NaN/inf."""
        for _ in self.chunks(chunk_size):
            pass

    def _read(self, start: int, stop: int) -> torch.Tensor:
        index: slice | np.ndarray = (
            slice(start, stop) if self._rows is None else self._rows[start:stop]
        )
        if isinstance(self._data, torch.Tensor):
            block = self._data[index if isinstance(index, slice) else torch.from_numpy(index)]
            return block.to(torch.float32).contiguous()
        # np.array copies: a memmap slice must not escape as a view of the file.
        return torch.from_numpy(np.array(self._data[index], dtype=np.float32))

    # -- views -----------------------------------------------------------------------------

    def subset(self, indices: Sequence[int] | np.ndarray | torch.Tensor) -> MemoryBank:
        """The rows ``indices`` (in that order) as a bank sharing this bank's storage."""
        if isinstance(indices, torch.Tensor):
            indices = indices.cpu().numpy()
        idx = np.asarray(indices)
        if idx.ndim != 1 or idx.size == 0 or not np.issubdtype(idx.dtype, np.integer):
            raise UclipError("subset indices must be a non-empty 1-D list of integers")
        idx = idx.astype(np.int64, copy=False)
        if idx.min() < 0 or idx.max() >= len(self):
            raise UclipError(
                f"subset index out of range [0, {len(self)}): "
                f"got {int(idx.min())}..{int(idx.max())}"
            )
        rows = idx if self._rows is None else self._rows[idx]
        return MemoryBank(self._data, rows=rows, source=self.source)

    def sample(self, n: int, seed: int) -> MemoryBank:
        """``n`` distinct rows drawn uniformly with ``seed`` (for bank-size ablations).

        Deterministic for a given (bank size, n, seed); rows keep bank order, so a
        memory-mapped bank is read front to back.
        """
        if not isinstance(n, int) or not 1 <= n <= len(self):
            raise UclipError(
                f"cannot sample {n!r} rows from a bank of {len(self)}: use 1..{len(self)}"
            )
        rng = np.random.default_rng(seed)
        return self.subset(np.sort(rng.choice(len(self), size=n, replace=False)))

    def shard(self, rank: int, world_size: int) -> MemoryBank:
        """Contiguous slice ``rank`` of ``world_size`` near-equal slices (the first ones larger).

        The slices of ranks 0..world_size-1 partition the rows in order.
        """
        if not isinstance(world_size, int) or world_size < 1:
            raise UclipError(f"world_size must be a positive integer, got {world_size!r}")
        if not isinstance(rank, int) or not 0 <= rank < world_size:
            raise UclipError(f"rank must be in [0, {world_size}), got {rank!r}")
        if len(self) < world_size:
            raise UclipError(
                f"a bank of {len(self)} rows cannot be split across {world_size} ranks: "
                "use a larger bank or fewer ranks"
            )
        base, extra = divmod(len(self), world_size)
        start = rank * base + min(rank, extra)
        stop = start + base + (1 if rank < extra else 0)
        if self._rows is None:
            return MemoryBank(self._data[start:stop], source=self.source)
        return MemoryBank(self._data, rows=self._rows[start:stop], source=self.source)

    def save_npy(self, path: str | os.PathLike[str], *, dtype: str = "float32") -> Path:
        """Write the rows to a new ``.npy`` chunk by chunk (atomically), e.g. a sampled bank."""
        if dtype not in ("float32", "float16"):
            raise UclipError(f"bank dtype {dtype!r} is not supported: use float32 or float16")
        blocks = (chunk.numpy() for chunk in self.chunks())
        return write_npy_atomic(path, (len(self), self.dim), np.dtype(dtype), blocks)


def build_image_bank(
    encoder: Any,
    image_paths: Sequence[str | os.PathLike[str]],
    cache: EmbeddingCache,
    *,
    out_path: str | os.PathLike[str] | None = None,
    batch_size: int = 64,
    shard_size: int = 4096,
    dtype: str = "float32",
    progress: bool = True,
) -> MemoryBank:
    """The image bank V: ``encoder`` (a CLIP image tower) over ``image_paths``, via ``cache``.

    With ``out_path`` the bank is written to that ``.npy`` and memory-mapped (for banks larger
    than RAM); without it, it is held in memory.
    """
    return _build_bank(
        encoder, image_paths, cache, "image", out_path, batch_size, shard_size, dtype, progress
    )


def build_text_bank(
    encoder: Any,
    texts: Sequence[str],
    cache: EmbeddingCache,
    *,
    out_path: str | os.PathLike[str] | None = None,
    batch_size: int = 64,
    shard_size: int = 4096,
    dtype: str = "float32",
    progress: bool = True,
) -> MemoryBank:
    """The multilingual text bank M: ``encoder`` (the sentence encoder) over ``texts``.

    See :func:`build_image_bank` for ``out_path``.
    """
    return _build_bank(
        encoder, texts, cache, "text", out_path, batch_size, shard_size, dtype, progress
    )


def _build_bank(
    encoder: Any,
    inputs: Sequence[Any],
    cache: EmbeddingCache,
    modality: str,
    out_path: str | os.PathLike[str] | None,
    batch_size: int,
    shard_size: int,
    dtype: str,
    progress: bool,
) -> MemoryBank:
    if getattr(encoder, "modality", None) != modality:
        raise UclipError(
            f"the {modality} bank needs an encoder with modality {modality!r}, but "
            f"{getattr(encoder, 'name', encoder)} has {getattr(encoder, 'modality', None)!r}"
        )
    kwargs = dict(batch_size=batch_size, shard_size=shard_size, dtype=dtype, progress=progress)
    if out_path is None:
        return MemoryBank.from_tensor(cache.embed(encoder, inputs, **kwargs))
    path = cache.extract_to_bank(encoder, inputs, out_path, **kwargs)
    write_bank_meta(path, encoder.name, encoder.weights_id, len(inputs), encoder.dim, dtype)
    return MemoryBank.from_npy(path)


def bank_meta_path(npy: str | os.PathLike[str]) -> Path:
    """The JSON sidecar of a bank ``.npy``: same name, ``.json`` (``embeddings.npy`` ->
    ``embeddings.json``)."""
    return Path(npy).with_suffix(".json")


def write_bank_meta(
    npy: str | os.PathLike[str],
    encoder: str,
    weights_id: str,
    count: int,
    dim: int,
    dtype: str,
    **extra: object,
) -> Path:
    """Bind a bank file to the encoder that made it: its registry name and weights id (what
    ``uclip train`` checks against the config's towers), written beside the ``.npy``."""
    meta = {
        "encoder": encoder,
        "weights_id": weights_id,
        "count": count,
        "dim": dim,
        "dtype": dtype,
        **extra,
    }
    path = bank_meta_path(npy)
    write_text_atomic(path, json.dumps(meta, indent=2) + "\n")
    return path


def read_bank_meta(npy: str | os.PathLike[str]) -> dict[str, object] | None:
    """The sidecar of a bank ``.npy`` (``None`` when there is none); one that is unreadable or
    names no encoder is an error, since the bank cannot then be checked."""
    path = bank_meta_path(npy)
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UclipError(f"cannot read bank sidecar {path} ({exc}): re-extract the bank") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("encoder"), str):
        raise UclipError(f"bank sidecar {path} names no encoder: re-extract the bank")
    return meta


def read_text_files(
    paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], *, dedup: bool = False
) -> list[str]:
    """Sentences for the text bank M: one per line, UTF-8 in any language, ``.gz`` decompressed.

    Lines are stripped of surrounding whitespace and a leading BOM; blank lines are skipped;
    with ``dedup`` only the first occurrence of each sentence is kept (order preserved).
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    sentences: list[str] = []
    seen: set[str] = set()
    for path in map(Path, paths):
        opener = gzip.open if path.suffix == ".gz" else open
        try:
            with opener(path, "rt", encoding="utf-8-sig") as f:
                for line in f:
                    text = line.strip()
                    if not text or (dedup and text in seen):
                        continue
                    if dedup:
                        seen.add(text)
                    sentences.append(text)
        except FileNotFoundError:
            raise UclipError(f"text file {path} not found: check the path") from None
        except UnicodeDecodeError as exc:
            raise UclipError(
                f"text file {path} is not UTF-8 (byte {exc.start}): re-encode it as UTF-8"
            ) from None
        except (OSError, EOFError) as exc:
            raise UclipError(f"cannot read text file {path} ({exc}): check the file") from None
    if not sentences:
        raise UclipError(f"no non-blank lines in {[str(p) for p in paths]}: give files with text")
    return sentences


def image_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The images of a bank-V folder (:func:`uclip.data.io.list_images`: recursive,
    :data:`~uclip.data.io.IMAGE_SUFFIXES`, hidden files and links out of the folder left out),
    sorted by relative path; an empty or missing folder is an error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UclipError(f"image folder {folder} does not exist: check the path")
    relative, _ = list_images(folder)
    if not relative:
        raise UclipError(
            f"no images ({', '.join(IMAGE_SUFFIXES)}) under {folder}: check the folder"
        )
    return [folder / rel for rel in relative]
