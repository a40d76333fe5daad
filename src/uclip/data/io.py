"""Files: checksums, atomic writes, permissions, the cache folder, image files, JSON/text readers.

Every module that writes a file the project reads back writes it here, the same way: to a
temporary sibling named ``.<name>~<host>~<pid>.tmp`` that is renamed into place, so a reader (or
a kill) sees the old content or the new, never a mixture, and a later run can tell a dead
writer's leftovers from a live one's (:func:`is_stale_temporary`).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from uclip.errors import UclipError
from uclip.paths import existing_dir

PathLike = str | os.PathLike[str]

IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".webp")
"""Image files the project picks up from a folder (case-insensitive): bank V sources, search
collections, class folders of zero-shot data sets. One list, so every command agrees."""

TMP_SUFFIX = ".tmp"
# A temporary file of another host cannot be checked for a live writer; after this long no
# single write can still be running, so it is safe to remove.
STALE_TMP_AGE_S = 24 * 3600


# --------------------------------------------------------------------------------------------
# checksums, permissions, cache folder


def file_sha256(path: PathLike) -> str:
    """Hex sha256 of a file's bytes, read now (no memo: it is used to verify files on read)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def default_permissions(path: PathLike) -> None:
    """Give ``path`` (and, for a directory, everything below it) the permissions a plain
    ``open``/``mkdir`` would under the current umask: ``mkdtemp`` makes 0700 directories and
    safetensors writes 0600 files, which would hide saved models from other users."""
    umask = os.umask(0)
    os.umask(umask)
    root = Path(path)
    for item in [root, *root.rglob("*")] if root.is_dir() else [root]:
        item.chmod((0o777 if item.is_dir() else 0o666) & ~umask)


def default_cache_dir() -> Path:
    """The project's cache folder, ``$XDG_CACHE_HOME/uclip`` (``~/.cache/uclip`` by default):
    ``data/`` (extracted archives), ``embeddings/``, ``e5-small-float/`` below it."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "uclip"


# --------------------------------------------------------------------------------------------
# atomic writes


def temporary_sibling(path: PathLike) -> Path:
    """``.<name>~<host>~<pid>.tmp`` beside ``path``: where :func:`atomic_target` writes first."""
    target = Path(path)
    host = socket.gethostname().replace("~", "_")
    return target.with_name(f".{target.name}~{host}~{os.getpid()}{TMP_SUFFIX}")


def is_stale_temporary(tmp: Path) -> bool:
    """A :func:`temporary_sibling` whose writer is dead (same host) or that is too old to be in
    use."""
    parts = tmp.name[: -len(TMP_SUFFIX)].split("~")
    try:
        if time.time() - tmp.stat().st_mtime > STALE_TMP_AGE_S:
            return True
    except FileNotFoundError:
        return False
    if len(parts) < 3 or not parts[-1].isdigit():
        return False
    host, pid = parts[-2], int(parts[-1])
    return host == socket.gethostname().replace("~", "_") and not _pid_alive(pid)


def _pid_alive(pid: int) -> bool:
    if os.name != "posix":
        # os.kill(pid, 0) would terminate the process on Windows; rely on the age rule there.
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def atomic_target(path: PathLike, *, fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write; when the block ends without an error it
    is renamed onto ``path`` (after an ``fsync`` if asked), and otherwise removed."""
    target = Path(path)
    tmp = temporary_sibling(target)
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(path: PathLike, data: bytes, *, fsync: bool = False) -> None:
    """Write ``data`` to ``path`` through :func:`atomic_target`."""
    with atomic_target(path, fsync=fsync) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: PathLike, text: str, *, fsync: bool = False) -> None:
    """Write UTF-8 ``text`` to ``path`` through :func:`atomic_target`."""
    write_bytes_atomic(path, text.encode("utf-8"), fsync=fsync)


def write_with_atomic(path: PathLike, write: Callable[[Any], object]) -> None:
    """Call ``write(binary file handle)`` on a temporary sibling, then rename it onto ``path``."""
    with atomic_target(path) as tmp, open(tmp, "wb") as fh:
        write(fh)


# --------------------------------------------------------------------------------------------
# image files


def list_images(images_dir: PathLike) -> tuple[list[str], list[str]]:
    """Image files (:data:`IMAGE_SUFFIXES`) under ``images_dir``, as sorted relative POSIX paths.

    Returns ``(paths, skipped)``. Hidden files and folders (``.name``) are not visited; a symlink
    whose target lies outside the folder is skipped (listed in ``skipped``) so no listing refers
    to a file outside its root. Directory symlinks are not followed (no cycles).
    """
    root = Path(images_dir)
    if not root.is_dir():
        raise UclipError(f"images folder {root} does not exist or is not a directory")
    root_real = root.resolve()
    paths: list[str] = []
    skipped: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if name.startswith(".") or Path(name).suffix.lower() not in IMAGE_SUFFIXES:
                continue
            full = Path(dirpath) / name
            rel = full.relative_to(root).as_posix()
            try:
                real = full.resolve(strict=True)
            except (OSError, RuntimeError):
                skipped.append(rel)  # dangling or looping symlink
                continue
            if not real.is_relative_to(root_real) or not real.is_file():
                skipped.append(rel)
                continue
            paths.append(rel)
    paths.sort()
    skipped.sort()
    return paths, skipped


class _DirIndex:
    """File names per folder, listed once, so thousands of lookups cost no stat() each."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._names: dict[str, frozenset[str]] = {}

    def has(self, relative: str) -> bool:
        parent, _, name = relative.rpartition("/")
        if parent not in self._names:
            folder = self.root / parent if parent else self.root
            try:
                self._names[parent] = frozenset(os.listdir(folder))
            except (FileNotFoundError, NotADirectoryError):
                self._names[parent] = frozenset()
        return name in self._names[parent]


def resolve_image_paths(
    images_dir: PathLike,
    file_names: Sequence[str],
    what: str,
    candidates: Callable[[str], Sequence[str]] = lambda name: (name,),
) -> list[Path]:
    """Find every image under ``images_dir``, or raise ONE line saying how many are missing.

    ``candidates(name)`` lists the relative paths tried for one file name, first match wins
    (e.g. ``name`` and ``"val2014/" + name``), so users can point at the folder they have.
    """
    root = Path(images_dir).expanduser()
    if not root.is_dir():
        raise UclipError(
            f"{what} images folder {root} does not exist: pass --images DIR with the {what} images"
        )
    index = _DirIndex(root)
    paths: list[Path] = []
    missing: list[str] = []
    for name in file_names:
        found = next((rel for rel in candidates(name) if index.has(rel)), None)
        if found is None:
            missing.append(name)
        else:
            paths.append(root / found)
    if missing:
        raise UclipError(
            f"{len(missing)} of {len(file_names)} {what} images are missing under {root} "
            f"(e.g. {missing[0]}): pass --images DIR with the {what} images"
        )
    return paths


def maybe_image_paths(
    images_dir: PathLike | None,
    names: Sequence[str],
    what: str,
    candidates: Callable[[str], Sequence[str]],
) -> list[Path] | None:
    """:func:`resolve_image_paths`, or ``None`` when no ``images_dir`` is given."""
    return None if images_dir is None else resolve_image_paths(images_dir, names, what, candidates)


# --------------------------------------------------------------------------------------------
# reading data files


def data_root(data_dir: PathLike | None, what: str) -> Path:
    """``data_dir`` as a :class:`Path`. Loaders are given their data directory; they never look
    for it (the CLI resolves ``--data-dir`` / ``UCLIP_DATA``)."""
    if data_dir is None:
        raise UclipError(
            f"{what} needs the data directory: pass data_dir (CLI: --data-dir DIR or UCLIP_DATA)"
        )
    return existing_dir(Path(data_dir), "data directory", "pass --data-dir DIR or set UCLIP_DATA")


def _missing(what: str, path: Path) -> UclipError:
    return UclipError(
        f"{what} file {path} is missing: pass --data-dir DIR with the uclip data (see MANIFEST.md)"
    )


def read_json(path: Path, what: str) -> Any:
    """A UTF-8 JSON file; missing or malformed -> one-line :class:`UclipError` naming ``what``."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _missing(what, path) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UclipError(
            f"{what} file {path} is not valid UTF-8 JSON ({exc}): restore it from the data release"
        ) from None


def read_jsonl(path: Path, what: str) -> list[dict[str, Any]]:
    """One JSON record per non-blank line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise _missing(what, path) from None
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise UclipError(
                f"{what} file {path} line {number} is not JSON ({exc}): restore it "
                "from the data release"
            ) from None
    return records


def read_lines(path: Path, what: str) -> list[str]:
    """Every line of a UTF-8 text file, blank ones included (line-aligned data such as FLORES)."""
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise _missing(what, path) from None


def read_nonblank_lines(path: Path) -> list[str]:
    """Non-empty stripped lines of a UTF-8 text file (``.gz`` read transparently)."""
    import gzip

    if not path.is_file():
        raise UclipError(
            f"missing data file {path}: check --data-dir (see MANIFEST.md for the layout)"
        )
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return [line.strip() for line in fh if line.strip()]


def require_field(record: Any, key: str, where: str, kind: type = str) -> Any:
    """``record[key]`` if ``record`` is a dict holding a ``kind`` there; else one line saying
    the file is not in the documented format."""
    if not isinstance(record, dict) or not isinstance(record.get(key), kind):
        raise UclipError(
            f"{where} lacks a {kind.__name__} {key!r}: the file is not in the "
            "format MANIFEST.md describes"
        )
    return record[key]
