"""Image banks from WebDataset shards (``uclip extract --inputs 'shards/{00000..00199}.tar'``).

The tars of a pattern are the units of work: worker ``i`` of ``n`` (``--shard i/n``, a torchrun
rank) embeds the contiguous range :func:`~uclip.features.sharding.shard_range` of the tar list,
and each tar becomes ``OUT/tars/tar-PPPPP.npy`` (its decodable images, in stored order),
``tar-PPPPP.captions.txt`` (the captions of those samples that have one) and, written last, the
sidecar ``tar-PPPPP.json`` (encoder, weights id, the tar list's digest, counts, array sha256).
A tar whose sidecar matches the job and whose array passes its checksum is skipped, so rerunning
the workers resumes at the first unfinished tar. An image that does not decode is counted and
skipped, never fatal, and so is a tar that is cut short (its samples up to the damage are kept and
the sidecar records the error). :func:`merge_webdataset` concatenates the tars in pattern order
into one memory-mappable ``.npy`` with its bank sidecar and the captions beside it.

Tar members are not files, so these embeddings bypass the :class:`EmbeddingCache`; a tar
(img2dataset writes 10,000 images per tar) is the unit of resumption instead.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from uclip.data.io import write_text_atomic
from uclip.data.webdataset import iter_samples
from uclip.errors import UclipError
from uclip.features.banks import write_bank_meta
from uclip.features.cache import write_npy_atomic
from uclip.features.sharding import array_sha256, inputs_digest, npy_blocks, shard_range

TARS_DIR = "tars"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class TarInfo:
    """The sidecar of one finished tar."""

    position: int
    source: str
    n_tars: int
    tars_sha256: str
    encoder: str
    weights_id: str
    dim: int
    dtype: str
    rows: int
    decode_errors: int
    without_image: int
    captions: int
    read_error: str | None
    array_sha256: str
    format_version: int = FORMAT_VERSION

    def job(self) -> tuple[Any, ...]:
        """What every tar of one extraction shares: the shard list, encoder and storage."""
        return (self.n_tars, self.tars_sha256, self.encoder, self.weights_id, self.dim, self.dtype)


@dataclass
class TarResult:
    info: TarInfo
    computed: bool
    """False when a finished tar from an earlier run was kept."""


def tar_stem(position: int) -> str:
    return f"tar-{position:05d}"


def extract_webdataset(
    encoder: Any,
    tars: Sequence[str],
    out_dir: str | os.PathLike[str],
    index: int,
    num_shards: int,
    *,
    batch_size: int = 64,
    dtype: str = "float32",
    progress: bool = True,
) -> list[TarResult]:
    """Embed the images of worker ``index``'s share of ``tars`` into ``out_dir/tars`` (finished
    tars are kept). ``encoder`` is an image tower; returns one result per tar of the share."""
    if getattr(encoder, "modality", None) != "image":
        raise UclipError(
            f"WebDataset shards hold images: use an image encoder, not {encoder.name} "
            "(e.g. --encoder clip-b32-datacomp:image)"
        )
    if dtype not in ("float32", "float16"):
        raise UclipError(f"bank dtype {dtype!r} is not supported: use float32 or float16")
    if len(tars) < num_shards:
        raise UclipError(
            f"{len(tars)} WebDataset shards cannot be split over {num_shards} workers: "
            f"use at most {len(tars)} workers"
        )
    root = Path(out_dir) / TARS_DIR
    root.mkdir(parents=True, exist_ok=True)
    digest = inputs_digest(tars)
    start, stop = shard_range(len(tars), index, num_shards)
    results = []
    for position in range(start, stop):
        stem = tar_stem(position)
        done = _read_info(root / f"{stem}.json")
        expected = dict(
            position=position,
            source=tars[position],
            n_tars=len(tars),
            tars_sha256=digest,
            encoder=str(encoder.name),
            weights_id=str(encoder.weights_id),
            dim=int(encoder.dim),
            dtype=dtype,
        )
        if (
            done is not None
            and all(getattr(done, k) == v for k, v in expected.items())
            and _npy_sha256(root / f"{stem}.npy") == done.array_sha256
        ):
            results.append(TarResult(done, computed=False))
            continue
        (root / f"{stem}.json").unlink(missing_ok=True)
        results.append(
            TarResult(_embed_tar(encoder, root, stem, expected, batch_size, progress), True)
        )
    return results


def _embed_tar(
    encoder: Any,
    root: Path,
    stem: str,
    expected: dict[str, Any],
    batch_size: int,
    progress: bool,
) -> TarInfo:
    blocks: list[np.ndarray] = []
    captions: list[str] = []
    batch: list[Any] = []
    counts = {"decode_errors": 0, "without_image": 0}
    read_error = None

    def flush() -> None:
        with torch.no_grad():
            emb = torch.as_tensor(encoder.encode(batch)).detach().to("cpu", torch.float32)
        blocks.append(emb.numpy().astype(expected["dtype"]))
        batch.clear()

    samples = iter_samples(expected["source"])
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(desc=f"{stem} {expected['source']}", unit="img", leave=False)
    try:
        for sample in samples:
            if sample.image is None:
                counts["without_image"] += 1
                continue
            image = _decode(sample.image)
            if image is None:
                counts["decode_errors"] += 1
                continue
            batch.append(image)
            if sample.caption:
                captions.append(sample.caption)
            if len(batch) == batch_size:
                flush()
            if bar is not None:
                bar.update(1)
    except UclipError as exc:  # a tar cut short: keep what was read, say so
        read_error = str(exc)
    finally:
        if bar is not None:
            bar.close()
    if batch:
        flush()
    rows = sum(b.shape[0] for b in blocks)
    npy = write_npy_atomic(
        root / f"{stem}.npy", (rows, expected["dim"]), np.dtype(expected["dtype"]), iter(blocks)
    )
    write_text_atomic(root / f"{stem}.captions.txt", "".join(f"{c}\n" for c in captions))
    info = TarInfo(
        **expected,
        rows=rows,
        decode_errors=counts["decode_errors"],
        without_image=counts["without_image"],
        captions=len(captions),
        read_error=read_error,
        array_sha256=_npy_sha256(npy),
    )
    # The sidecar is written last: its presence is what marks the tar as finished.
    write_text_atomic(root / f"{stem}.json", json.dumps(asdict(info), indent=2) + "\n")
    return info


def _decode(data: bytes) -> Any:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return image.convert("RGB")
    # PIL reports corrupt data as OSError, some decoders as SyntaxError/ValueError.
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None


def webdataset_status(out_dir: str | os.PathLike[str]) -> tuple[int, list[int]]:
    """``(number of tars, positions not finished)`` of the WebDataset extraction in ``out_dir``."""
    infos = _all_infos(Path(out_dir))
    n_tars = infos[0].n_tars
    done = {i.position for i in infos}
    return n_tars, [p for p in range(n_tars) if p not in done]


def is_webdataset_extraction(out_dir: str | os.PathLike[str]) -> bool:
    return (Path(out_dir) / TARS_DIR).is_dir()


def merge_webdataset(
    out_dir: str | os.PathLike[str], out_path: str | os.PathLike[str] | None = None
) -> tuple[Path, dict[str, Any]]:
    """Concatenate every tar of the extraction in ``out_dir`` (pattern order) into one ``.npy``
    (default ``out_dir/embeddings.npy``) with its bank sidecar (encoder, weights id, counts) and
    ``<name>.captions.txt``. Returns the path and the sidecar."""
    root = Path(out_dir)
    infos = _all_infos(root)
    first = infos[0]
    if any(i.job() != first.job() for i in infos):
        raise UclipError(
            f"{root / TARS_DIR} holds tars of different extractions (encoder or shard list "
            "differ): delete the stale tar-*.json files and rerun the workers"
        )
    by_position = {i.position: i for i in infos}
    missing = [p for p in range(first.n_tars) if p not in by_position]
    if missing:
        raise UclipError(
            f"{len(missing)} of {first.n_tars} WebDataset shards are not extracted yet in {root} "
            f"(positions {missing[:10]}): rerun `uclip extract` with the same workers for them"
        )
    ordered = [by_position[p] for p in range(first.n_tars)]
    for info in ordered:
        if _npy_sha256(root / TARS_DIR / f"{tar_stem(info.position)}.npy") != info.array_sha256:
            raise UclipError(
                f"{tar_stem(info.position)}.npy does not match its checksum: delete its .json "
                "and rerun `uclip extract`"
            )
    target = Path(out_path) if out_path is not None else root / "embeddings.npy"
    rows = sum(i.rows for i in ordered)
    if rows == 0:
        raise UclipError(f"no image in {first.n_tars} WebDataset shards decoded: check the shards")
    write_npy_atomic(target, (rows, first.dim), np.dtype(first.dtype), _blocks(root, ordered))
    captions = "".join(
        (root / TARS_DIR / f"{tar_stem(i.position)}.captions.txt").read_text(encoding="utf-8")
        for i in ordered
    )
    write_text_atomic(target.with_suffix(".captions.txt"), captions)
    counts = {
        "source": "webdataset",
        "n_tars": first.n_tars,
        "decode_errors": sum(i.decode_errors for i in ordered),
        "without_image": sum(i.without_image for i in ordered),
        "captions": sum(i.captions for i in ordered),
        "tars_with_read_errors": [i.source for i in ordered if i.read_error],
    }
    write_bank_meta(target, first.encoder, first.weights_id, rows, first.dim, first.dtype, **counts)
    return target, {"encoder": first.encoder, "count": rows, "dim": first.dim, **counts}


# -- internals -----------------------------------------------------------------------------


def _read_info(path: Path) -> TarInfo | None:
    try:
        return TarInfo(**json.loads(path.read_text()))
    except (OSError, json.JSONDecodeError, TypeError):
        return None


def _all_infos(root: Path) -> list[TarInfo]:
    folder = root / TARS_DIR
    if not folder.is_dir():
        raise UclipError(f"{root} holds no WebDataset extraction: run `uclip extract` first")
    infos = []
    for path in sorted(folder.glob("tar-*.json")):
        info = _read_info(path)
        if info is None:
            raise UclipError(f"{path} is unreadable: delete it and rerun `uclip extract`")
        infos.append(info)
    if not infos:
        raise UclipError(f"no finished tars in {folder}: run `uclip extract` first")
    return infos


def _npy_sha256(path: Path) -> str | None:
    """The array checksum, ``None`` for a missing or unreadable file (then the tar is redone)."""
    try:
        return array_sha256(path)
    except (OSError, ValueError):
        return None


def _blocks(root: Path, infos: Sequence[TarInfo]) -> Iterator[np.ndarray]:
    for info in infos:
        yield from npy_blocks(root / TARS_DIR / f"{tar_stem(info.position)}.npy")
