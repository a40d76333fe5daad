"""Where data lives: ``--data-dir`` > ``UCLIP_DATA`` > ``../shared/data`` (the quickstart also
falls back to its bundled subset); and the permissions of what we write."""

from __future__ import annotations

import os
from pathlib import Path

from uclip.errors import UclipError

ASSETS_DIR = Path(__file__).parent / "assets"
"""Small data shipped in the package (quickstart subset, test fixtures); see its SOURCES.md."""


def default_data_dir() -> Path | None:
    """The data directory to use when none is given, or ``None`` if none exists."""
    env = os.environ.get("UCLIP_DATA")
    if env:
        return Path(env)
    for base in (Path.cwd(), Path(__file__).resolve().parents[3]):
        candidate = base.parent / "shared" / "data"
        if candidate.is_dir():
            return candidate
    return None


def resolve_data_dir(data_dir: str | os.PathLike[str] | None) -> Path:
    """Return an existing data directory, or raise a one-line :class:`UclipError`."""
    path = Path(data_dir) if data_dir is not None else default_data_dir()
    if path is None:
        raise UclipError(
            "no data directory: pass --data-dir DIR or set UCLIP_DATA "
            "(the full data lives in ../shared/data)"
        )
    if not path.is_dir():
        raise UclipError(
            f"data directory {path} does not exist: pass --data-dir DIR or set UCLIP_DATA"
        )
    return path


def default_permissions(path: str | os.PathLike[str]) -> None:
    """Give ``path`` (and, for a directory, everything below it) the permissions a plain
    ``open``/``mkdir`` would under the current umask: ``mkdtemp`` makes 0700 directories and
    safetensors writes 0600 files, which would hide saved models from other users."""
    umask = os.umask(0)
    os.umask(umask)
    root = Path(path)
    for item in [root, *root.rglob("*")] if root.is_dir() else [root]:
        item.chmod((0o777 if item.is_dir() else 0o666) & ~umask)
