"""Atomic, resumable checkpoints: ``checkpoints/step-NNNNNNN/`` + a ``latest`` pointer.

A checkpoint directory is written under a temporary name and renamed into place, and the pointer
is replaced atomically, so a process killed at any moment leaves either the previous or the new
checkpoint, never a half-written one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from uclip.errors import UclipError
from uclip.paths import default_permissions

MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
STATE_FILE = "state.json"
LATEST = "latest"


@dataclass
class Checkpoint:
    step: int
    model_state: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any]
    trainer_state: dict[str, Any]


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def save_checkpoint(
    root: Path,
    step: int,
    model_state: dict[str, torch.Tensor],
    optimizer_state: dict[str, Any],
    trainer_state: dict[str, Any],
    keep: int = 2,
) -> Path:
    """Write checkpoint ``step`` under ``root/checkpoints`` and keep only the newest ``keep``."""
    ckpt_root = root / "checkpoints"
    ckpt_root.mkdir(parents=True, exist_ok=True)
    final = ckpt_root / f"step-{step:07d}"
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-step-", dir=ckpt_root))
    tensors = {k: v.detach().cpu().contiguous() for k, v in model_state.items()}
    save_file(tensors, str(tmp / MODEL_FILE))
    torch.save(optimizer_state, tmp / OPTIMIZER_FILE)
    (tmp / STATE_FILE).write_text(json.dumps({"step": step, **trainer_state}, indent=2))
    default_permissions(tmp)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    write_text_atomic(ckpt_root / LATEST, final.name)
    steps = sorted(p for p in ckpt_root.glob("step-*") if p.is_dir())
    for old in steps[: max(0, len(steps) - keep)]:
        shutil.rmtree(old, ignore_errors=True)
    for stale in ckpt_root.glob(".tmp-step-*"):
        if stale != tmp:
            shutil.rmtree(stale, ignore_errors=True)
    return final


def latest_checkpoint(root: Path) -> Path | None:
    pointer = root / "checkpoints" / LATEST
    if not pointer.is_file():
        return None
    path = pointer.parent / pointer.read_text().strip()
    return path if path.is_dir() else None


def load_checkpoint(path: Path) -> Checkpoint:
    try:
        state = json.loads((path / STATE_FILE).read_text())
        model_state = load_file(str(path / MODEL_FILE))
        optimizer_state = torch.load(path / OPTIMIZER_FILE, weights_only=True)
    except (OSError, json.JSONDecodeError, SafetensorError, RuntimeError) as exc:
        raise UclipError(
            f"checkpoint {path} is unreadable ({exc}); delete it to resume from an older one"
        ) from exc
    return Checkpoint(int(state.pop("step")), model_state, optimizer_state, state)
