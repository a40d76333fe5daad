"""Training arguments shared by both methods (uCLIP heads, CLT towers)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from uclip.errors import UclipError
from uclip.validation import Allowed, above, at_least, between, check_fields, check_mapping, one_of

# Ranges beyond the field types (a field without an entry is type-checked only).
TRAIN_ALLOWED: dict[str, Allowed] = {
    "lr": above(0),
    "weight_decay": at_least(0),
    "optimizer": one_of("adamw", "adam"),
    "batch_size": at_least(1),
    "epochs": at_least(1),
    "max_steps": at_least(1),
    "warmup_steps": at_least(0),
    "schedule": one_of("linear", "cosine", "constant"),
    "grad_accum": at_least(1),
    "seed": between(0, 2**32 - 1),
    "checkpoint_every": at_least(1),
    "keep_checkpoints": at_least(1),
    "log_every": at_least(1),
    "eval_every": at_least(1),
    "early_stopping_patience": at_least(1),
}


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
    schedule: str = "linear"  # "linear" | "cosine" (decay to 0 after warm-up) | "constant"
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
    # Dev evaluation (needs dev data): score every eval_every steps, stop after
    # early_stopping_patience evaluations without a better score, end with the best weights.
    eval_every: int | None = None
    early_stopping_patience: int | None = None

    def __post_init__(self) -> None:
        check_fields(self, TRAIN_ALLOWED, "train")
        try:
            torch.device(self.device)
        except RuntimeError:
            raise UclipError(
                f"train.device = {json.dumps(self.device)} is not allowed: expected a torch "
                'device such as "cpu", "cuda" or "cuda:0"'
            ) from None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainArgs:
        return cls(**check_mapping(data, cls, "train", TRAIN_ALLOWED))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_device(device: str) -> None:
    """Refuse a device this torch cannot use (``cuda:99``, ``cuda`` on a CPU-only build) with
    one line, before any encoding; the config check only parses the name, so a config written
    for a GPU still loads (and validates) on a laptop."""
    target = torch.device(device)
    if target.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (target.index is not None and target.index >= count):
            raise UclipError(
                f"train.device = {json.dumps(device)} is not available: this torch sees {count} "
                "CUDA device(s); pass --set train.device=cpu or a device that exists"
            )
    elif target.type == "mps" and not torch.backends.mps.is_available():
        raise UclipError(
            f"train.device = {json.dumps(device)} is not available here: pass --set "
            "train.device=cpu"
        )


# A config is a few hundred values; YAML aliases could expand a 1 KB file to billions (an alias
# bomb), so the expanded document is bounded before it is built.
MAX_YAML_NODES = 100_000


def _load_yaml(text: str, path: Path) -> Any:
    import yaml

    class BoundedLoader(yaml.SafeLoader):
        def construct_document(self, node: Any) -> Any:
            if _expanded_nodes(node, {}) > MAX_YAML_NODES:
                raise UclipError(
                    f"config {path} expands to more than {MAX_YAML_NODES:,} values through YAML "
                    "aliases (&anchor / *alias): write the values out instead"
                )
            return super().construct_document(node)

    return yaml.load(text, Loader=BoundedLoader)


def _expanded_nodes(node: Any, memo: dict[int, int]) -> int:
    """Nodes of a composed YAML document with every alias expanded (memoised per node, so the
    count is cheap even when the expansion is huge; a recursive alias counts as too many)."""
    key = id(node)
    if key in memo:
        if memo[key] < 0:  # an alias inside its own anchor: infinite
            return MAX_YAML_NODES + 1
        return memo[key]
    memo[key] = -1
    children: list[Any] = []
    if isinstance(node.value, list):
        for item in node.value:
            children.extend(item if isinstance(item, tuple) else (item,))
    total = 1
    for child in children:
        total += _expanded_nodes(child, memo)
        if total > MAX_YAML_NODES:
            break
    memo[key] = total
    return total


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a JSON or YAML config file into a dict (sections: model, data, method, train)."""
    p = Path(path)
    import yaml

    try:
        if not p.is_file():
            raise UclipError(f"config file {p} not found (see configs/ for examples)")
        text = p.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UclipError(
            f"config {p} is not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from None
    except OSError as exc:  # e.g. a name too long, a directory, no permission
        raise UclipError(f"cannot read config {p}: {exc.strerror or exc}") from None
    try:
        data = _load_yaml(text, p) if p.suffix in {".yaml", ".yml"} else json.loads(text)
    # RecursionError: absurdly nested input; yaml's errors are not ValueErrors.
    except (ValueError, RecursionError, yaml.YAMLError) as exc:
        message = " ".join(str(exc).split())
        raise UclipError(f"cannot parse config {p}: {message}") from None
    if not isinstance(data, dict):
        raise UclipError(f"config {p} must be a mapping of sections, got {type(data).__name__}")
    return data
