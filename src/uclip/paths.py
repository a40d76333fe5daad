"""Where things live: the package's own files (assets, configs), the data directory the CLI uses
(``--data-dir`` > ``UCLIP_DATA`` > ``../shared/data``; the quickstart also falls back to its
bundled subset), and checks that a folder to read or write is usable, done before any expensive
work.

Only the application layer (``uclip.app``, ``uclip.cli``) calls :func:`default_data_dir` /
:func:`resolve_data_dir`: library functions are given their paths (``tests/
test_import_direction.py`` checks it)."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from uclip.errors import UclipError

ASSETS_DIR = Path(__file__).parent / "assets"
CONFIGS_DIR = Path(__file__).parent / "configs"
"""Small data shipped in the package (quickstart subset, test fixtures); see its SOURCES.md."""


def default_data_dir() -> Path | None:
    """The data directory to use when none is given, or ``None`` if none exists."""
    env = os.environ.get("UCLIP_DATA")
    if env:
        return Path(env)
    # the working directory, then the checkout this file is in (<checkout>/src/uclip/paths.py):
    # ../shared/data beside either
    for base in (Path.cwd(), Path(__file__).resolve().parents[2]):
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
    return existing_dir(path, "data directory", "pass --data-dir DIR or set UCLIP_DATA")


def existing_dir(path: Path, what: str, fix: str) -> Path:
    """``path`` if it is a directory; otherwise a one-line :class:`UclipError` saying what it is
    instead (missing, a file, an unusable name) followed by ``fix``."""
    try:
        mode = path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        raise UclipError(f"{what} {path} does not exist: {fix}") from None
    except OSError as exc:  # e.g. a name too long, no permission on a parent
        raise UclipError(f"{what} {path} cannot be used ({exc.strerror}): {fix}") from None
    if not stat.S_ISDIR(mode):
        raise UclipError(f"{what} {path} is not a directory: {fix}")
    return path


def writable_dir(path: str | os.PathLike[str], flag: str) -> Path:
    """Create directory ``path`` if needed and prove it writable with a temporary file, so a run
    fails at once rather than when it saves its results; ``flag`` names the option."""
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".uclip-write-check-"):
            pass
    except FileExistsError:
        raise UclipError(
            f"{flag} {out} is a file, not a directory: choose another {flag}"
        ) from None
    except NotADirectoryError:
        raise UclipError(
            f"{flag} {out} cannot be created: part of its path is a file; choose another {flag}"
        ) from None
    except OSError as exc:
        raise UclipError(
            f"{flag} {out} is not writable ({exc.strerror}): choose another {flag} "
            "or fix its permissions"
        ) from None
    return out
