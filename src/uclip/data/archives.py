"""Archives of the data release: safe extraction into the cache, and reading members in place."""

from __future__ import annotations

import shutil
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path

from uclip.data.io import PathLike, default_cache_dir, file_sha256
from uclip.errors import UclipError


def _safe_members(tar: tarfile.TarFile, archive: Path) -> list[tarfile.TarInfo]:
    members = []
    for member in tar.getmembers():
        parts = Path(member.name).parts
        if member.name.startswith("/") or ".." in parts or not (member.isfile() or member.isdir()):
            raise UclipError(
                f"{archive} holds an unsafe entry {member.name!r}: restore the "
                "archive from the data release"
            )
        members.append(member)
    return members


def extract_archive(archive: Path, cache_dir: PathLike | None = None) -> Path:
    """Extract a .tar.gz once into the cache and return the folder.

    ``cache_dir`` defaults to ``data/`` in :func:`~uclip.data.io.default_cache_dir`. The folder
    name holds the archive's sha256, so a changed archive is extracted afresh. The extraction goes
    to a temporary sibling folder that is renamed into place, so a crash or a concurrent process
    never leaves (or sees) a half-written folder.
    """
    if not archive.is_file():
        raise UclipError(
            f"archive {archive} is missing: pass --data-dir DIR with the uclip data "
            "(see MANIFEST.md)"
        )
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "data"
    stem = archive.name.removesuffix(".tar.gz").removesuffix(".tgz")
    target = cache / f"{stem}-{file_sha256(archive)[:16]}"
    if target.is_dir():
        return target
    try:
        cache.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{stem}-", dir=cache))
    except OSError as exc:
        raise UclipError(
            f"cannot write the cache folder {cache} ({exc}): pass a writable cache_dir"
        ) from None
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = _safe_members(tar, archive)
            if hasattr(tarfile, "data_filter"):
                tar.extractall(tmp, members=members, filter="data")
            else:  # pragma: no cover - Python without PEP 706; members were checked above
                tar.extractall(tmp, members=members)
        try:
            tmp.rename(target)
        except OSError:
            # Another process renamed its copy first; theirs is complete, so use it.
            if not target.is_dir():
                raise
    except (tarfile.TarError, OSError) as exc:
        raise UclipError(
            f"cannot extract {archive} into {cache} ({exc}): check the archive and free disk space"
        ) from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def read_tar_members(path: Path, names: Sequence[str], what: str) -> dict[str, str]:
    """Read text members straight from a .tar.gz (no extraction); missing ones are absent."""
    wanted = set(names)
    found: dict[str, str] = {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar:
                if member.name in wanted and member.isfile():
                    found[member.name] = tar.extractfile(member).read().decode("utf-8")
                    if len(found) == len(wanted):
                        break
    except FileNotFoundError:
        raise UclipError(
            f"{what} archive {path} is missing: pass --data-dir DIR with the "
            "uclip data (see MANIFEST.md)"
        ) from None
    except (tarfile.TarError, OSError, UnicodeDecodeError) as exc:
        raise UclipError(f"cannot read {path} ({exc}): restore it from the data release") from None
    return found


def tar_file_names(path: Path) -> list[str]:
    """The names of the regular files in a .tar.gz, in archive order."""
    with tarfile.open(path, "r:gz") as tar:
        return [m.name for m in tar if m.isfile()]
