"""Atomic, resumable checkpoints: ``checkpoints/step-NNNNNNN/`` + a ``latest`` pointer.

A checkpoint directory is written under a temporary name and renamed into place, and the pointer
is replaced atomically, so a process killed at any moment leaves either the previous or the new
checkpoint, never a half-written one. ``state.json`` records the sha256 of the other two files,
checked on load. Readers go by the ``step-*`` directories, not by the pointer (kept for people),
so a deleted or damaged newest checkpoint falls back to the next older one that verifies.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from uclip.data.io import default_permissions, file_sha256, write_text_atomic
from uclip.errors import UclipError

MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
STATE_FILE = "state.json"
LATEST = "latest"
_STEP_DIR = re.compile(r"step-(\d+)")

log = logging.getLogger(__name__)


@dataclass
class Checkpoint:
    step: int
    model_state: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any]
    trainer_state: dict[str, Any]


def save_checkpoint(
    root: Path,
    step: int,
    model_state: dict[str, torch.Tensor],
    optimizer_state: dict[str, Any],
    trainer_state: dict[str, Any],
    keep: int = 2,
) -> Path:
    """Write checkpoint ``step`` under ``root/checkpoints`` and keep only the newest ``keep``
    (at least this one).

    Checkpoints of later steps are deleted: they are from before a resume that could not read
    them, and keeping them would let retention delete this run's good ones in their place."""
    ckpt_root = root / "checkpoints"
    ckpt_root.mkdir(parents=True, exist_ok=True)
    final = ckpt_root / f"step-{step:07d}"
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-step-", dir=ckpt_root))
    tensors = {k: v.detach().cpu().contiguous() for k, v in model_state.items()}
    save_file(tensors, str(tmp / MODEL_FILE))
    torch.save(optimizer_state, tmp / OPTIMIZER_FILE)
    files = {name: file_sha256(tmp / name) for name in (MODEL_FILE, OPTIMIZER_FILE)}
    state = {"step": step, **trainer_state, "files_sha256": files}
    (tmp / STATE_FILE).write_text(json.dumps(state, indent=2))
    default_permissions(tmp)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    write_text_atomic(ckpt_root / LATEST, final.name)
    for path in list_checkpoints(root):
        if _step_of(path) > step:
            log.warning("deleting %s: it is newer than the checkpoint just written", path)
            shutil.rmtree(path, ignore_errors=True)
    older = [p for p in list_checkpoints(root) if _step_of(p) < step]
    for old in older[max(0, keep - 1) :]:
        shutil.rmtree(old, ignore_errors=True)
    for stale in ckpt_root.glob(".tmp-step-*"):
        if stale != tmp:
            shutil.rmtree(stale, ignore_errors=True)
    return final


def _step_of(path: Path) -> int:
    match = _STEP_DIR.fullmatch(path.name)
    return int(match.group(1)) if match else -1


def list_checkpoints(root: Path) -> list[Path]:
    """The checkpoint directories under ``root/checkpoints``, newest step first (not verified)."""
    ckpt_root = root / "checkpoints"
    if not ckpt_root.is_dir():
        return []
    found = [p for p in ckpt_root.iterdir() if _step_of(p) >= 0 and p.is_dir()]
    return sorted(found, key=_step_of, reverse=True)


def latest_checkpoint(root: Path) -> Path | None:
    """The newest checkpoint directory under ``root``, or ``None`` (not verified; see
    :func:`load_newest_checkpoint`)."""
    found = list_checkpoints(root)
    return found[0] if found else None


def load_checkpoint(path: Path) -> Checkpoint:
    """Read and verify one checkpoint; a one-line :class:`UclipError` if it does not verify."""
    try:
        state = json.loads((path / STATE_FILE).read_text(encoding="utf-8"))
        for name, digest in state.pop("files_sha256", {}).items():
            if file_sha256(path / name) != digest:
                raise UclipError(f"checkpoint {path} is corrupt: {name} fails its sha256")
        model_state = load_file(str(path / MODEL_FILE))
        optimizer_state = torch.load(path / OPTIMIZER_FILE, weights_only=True)
        step = int(state.pop("step"))
    # Checkpoints written before checksums were recorded fail in any of these ways when damaged
    # (a pickle, a zip, a JSON file); to the user they all mean the same.
    except (
        AttributeError,
        OSError,
        ValueError,
        KeyError,
        TypeError,
        EOFError,
        SafetensorError,
        RuntimeError,
        pickle.UnpicklingError,
        zipfile.BadZipFile,
    ) as exc:
        raise UclipError(f"checkpoint {path} is unreadable ({exc})") from exc
    return Checkpoint(step, model_state, optimizer_state, state)


def load_newest_checkpoint(root: Path) -> tuple[Path, Checkpoint] | None:
    """The newest checkpoint under ``root`` that verifies, skipping (with a warning) newer ones
    that do not; ``None`` if there are none at all. Raises :class:`UclipError` when checkpoints
    exist but none verifies, so a caller never mistakes lost progress for a fresh start."""
    candidates = list_checkpoints(root)
    for path in candidates:
        try:
            return path, load_checkpoint(path)
        except UclipError as exc:
            log.warning("skipping checkpoint: %s", exc)
    ckpt_root = root / "checkpoints"
    if candidates or (ckpt_root / LATEST).is_file():
        raise UclipError(
            f"cannot resume: none of the {len(candidates)} checkpoint(s) in {ckpt_root} is "
            f"readable; delete {root} to start over, or train into a new --out"
        )
    return None
