"""Training arguments shared by both methods (uCLIP heads, CLT towers)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from uclip.errors import UclipError


@dataclass
class TrainArgs:
    """Optimisation settings. Defaults are the uCLIP reference run (HF Trainer defaults there):
    AdamW, lr 1e-3, no weight decay, batch 512, 5 epochs, linear decay to zero, no warm-up.

    ``batch_size`` is the global batch of one micro-step: under torchrun each of W processes
    takes ``batch_size / W`` rows (it must divide), so the run does not depend on W."""

    lr: float = 1e-3
    weight_decay: float = 0.0  # the reference run used HF TrainingArguments' default
    optimizer: str = "adamw"  # "adamw" | "adam"
    batch_size: int = 512
    epochs: int = 5
    max_steps: int | None = None  # overrides epochs when set
    warmup_steps: int = 0
    schedule: str = "linear"  # "linear" (decay to 0 after warm-up) | "constant"
    grad_accum: int = 1
    seed: int = 0
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    log_every: int = 10
    amp: bool = True  # bf16 autocast, only ever on CUDA
    device: str = "cpu"
    progress: bool = True
    # Data-parallel runs only (torchrun, world size > 1): normalise BatchNorm over the global
    # batch (SyncBatchNorm on GPU, GatheredBatchNorm1d on CPU) so W processes train exactly like
    # one process with the same global batch; false keeps per-rank statistics (no extra
    # communication, but a different model).
    sync_batchnorm: bool = True

    def __post_init__(self) -> None:
        checks = {
            "lr must be > 0": self.lr > 0,
            "batch_size must be >= 1": self.batch_size >= 1,
            "epochs must be >= 1": self.epochs >= 1,
            "grad_accum must be >= 1": self.grad_accum >= 1,
            "checkpoint_every must be >= 1": self.checkpoint_every >= 1,
            "optimizer must be 'adamw' or 'adam'": self.optimizer in {"adamw", "adam"},
            "schedule must be 'linear' or 'constant'": self.schedule in {"linear", "constant"},
        }
        for message, ok in checks.items():
            if not ok:
                raise UclipError(f"invalid training argument: {message}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainArgs:
        return cls(**_known(cls, data, "train"))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _known(cls: type, data: dict[str, Any], section: str) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise UclipError(
            f"unknown key(s) {sorted(unknown)} in config section '{section}'; "
            f"known: {sorted(names)}"
        )
    return dict(data)


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a JSON or YAML config file into a dict (sections: model, data, method, train)."""
    p = Path(path)
    if not p.is_file():
        raise UclipError(f"config file {p} not found (see configs/ for examples)")
    text = p.read_text()
    try:
        if p.suffix in {".yaml", ".yml"}:
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except (json.JSONDecodeError, ValueError) as exc:
        raise UclipError(f"cannot parse config {p}: {exc}") from exc
    if not isinstance(data, dict):
        raise UclipError(f"config {p} must be a mapping of sections, got {type(data).__name__}")
    return data
