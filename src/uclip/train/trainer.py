"""One training loop for both methods: seeded batches, AdamW/Adam + linear decay, gradient
accumulation, bf16 autocast on CUDA, atomic checkpoints with exact resume, JSONL log, progress bar.

The method-specific part is an :class:`Objective`: it owns the model and computes a loss dict for a
batch of example indices. Everything random is derived from ``(seed, epoch)`` and ``(seed, step)``,
so a run resumed from a checkpoint produces the same weights as an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from tqdm.auto import tqdm

from uclip.errors import UclipError
from uclip.train.args import TrainArgs
from uclip.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint

log = logging.getLogger(__name__)
LOG_FILE = "log.jsonl"


class Objective(Protocol):
    """What a method supplies to the :class:`Trainer`."""

    model: nn.Module
    num_examples: int

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Every parameter that may ever be optimised (a frozen-for-now one included)."""
        ...

    def loss(
        self, indices: torch.Tensor, step: int, generator: torch.Generator
    ) -> dict[str, torch.Tensor]:
        """Loss terms for a batch of example indices; the key ``"loss"`` is optimised."""
        ...

    def on_step_begin(self, step: int, steps_per_epoch: int) -> None:
        """Called before every optimiser step (e.g. CLT thaws its encoders here)."""
        ...


@dataclass
class TrainResult:
    steps: int
    final_loss: float
    out_dir: Path
    resumed_from: int | None


def step_generator(seed: int, step: int) -> torch.Generator:
    """The RNG of one optimiser step, a pure function of (seed, step) so resume is exact."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def epoch_permutation(num_examples: int, seed: int, epoch: int) -> torch.Tensor:
    return torch.randperm(
        num_examples, generator=torch.Generator().manual_seed(seed * 7919 + epoch)
    )


class Trainer:
    def __init__(self, objective: Objective, args: TrainArgs, out_dir: str | Path) -> None:
        if objective.num_examples < 1:
            raise UclipError("no training examples: check the training captions / data mode")
        self.objective = objective
        self.args = args
        self.out_dir = Path(out_dir)
        self.device = torch.device(args.device)
        self.micro_batch = min(args.batch_size, objective.num_examples)
        per_step = self.micro_batch * args.grad_accum
        self.steps_per_epoch = max(1, objective.num_examples // per_step)
        self.total_steps = args.max_steps or self.steps_per_epoch * args.epochs
        params = objective.trainable_parameters()
        if not params:
            raise UclipError("the objective has no trainable parameters")
        opt_cls = torch.optim.AdamW if args.optimizer == "adamw" else torch.optim.Adam
        self.optimizer = opt_cls(params, lr=args.lr, weight_decay=args.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)

    def _lr_factor(self, step: int) -> float:
        if step < self.args.warmup_steps:
            return (step + 1) / self.args.warmup_steps
        if self.args.schedule == "constant":
            return 1.0
        remaining = self.total_steps - self.args.warmup_steps
        return max(0.0, 1.0 - (step - self.args.warmup_steps) / max(1, remaining))

    def _batches(self, start_step: int) -> Iterator[tuple[int, list[torch.Tensor]]]:
        """Yield (step, micro-batches of indices) from ``start_step`` on, deterministically."""
        per_step = self.micro_batch * self.args.grad_accum
        for step in range(start_step, self.total_steps):
            epoch, within = divmod(step, self.steps_per_epoch)
            perm = epoch_permutation(self.objective.num_examples, self.args.seed, epoch)
            chunk = perm[within * per_step : (within + 1) * per_step]
            yield step, list(chunk.split(self.micro_batch))

    def _resume(self) -> int:
        path = latest_checkpoint(self.out_dir)
        if path is None:
            return 0
        ckpt = load_checkpoint(path)
        if ckpt.trainer_state.get("total_steps") != self.total_steps:
            raise UclipError(
                f"checkpoint {path} was made for {ckpt.trainer_state.get('total_steps')} steps, "
                f"this run has {self.total_steps}: resume with the same config or a new --out"
            )
        self.objective.model.load_state_dict(ckpt.model_state)
        self.optimizer.load_state_dict(ckpt.optimizer_state)
        self.scheduler.load_state_dict(ckpt.trainer_state["scheduler"])
        self._truncate_log(ckpt.step)
        log.info("resumed from %s (step %d)", path, ckpt.step)
        return ckpt.step

    def _truncate_log(self, step: int) -> None:
        """Drop log lines written after the checkpoint we resume from (they will be redone)."""
        path = self.out_dir / LOG_FILE
        if not path.is_file():
            return
        kept = [ln for ln in path.read_text().splitlines() if ln and json.loads(ln)["step"] <= step]
        path.write_text("".join(f"{ln}\n" for ln in kept))

    def _checkpoint(self, step: int) -> None:
        save_checkpoint(
            self.out_dir,
            step,
            self.objective.model.state_dict(),
            self.optimizer.state_dict(),
            {"total_steps": self.total_steps, "scheduler": self.scheduler.state_dict()},
            keep=self.args.keep_checkpoints,
        )

    def train(self, resume: bool = False) -> TrainResult:
        """Run (or continue) training; returns the number of steps and the last loss."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        start = self._resume() if resume else 0
        if not resume and latest_checkpoint(self.out_dir) is not None:
            raise UclipError(
                f"{self.out_dir} already holds checkpoints: "
                "pass --resume to continue, or a new --out"
            )
        if not resume:
            (self.out_dir / LOG_FILE).unlink(missing_ok=True)
        model = self.objective.model.to(self.device).train()
        use_amp = self.args.amp and self.device.type == "cuda"
        last: dict[str, float] = {}
        bar = tqdm(
            total=self.total_steps, initial=start, disable=not self.args.progress, desc="train"
        )
        with (self.out_dir / LOG_FILE).open("a") as log_file:
            for step, micro_batches in self._batches(start):
                self.objective.on_step_begin(step, self.steps_per_epoch)
                self.optimizer.zero_grad(set_to_none=True)
                gen = step_generator(self.args.seed, step)
                totals: dict[str, float] = {}
                for indices in micro_batches:
                    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
                        terms = self.objective.loss(indices, step, gen)
                    (terms["loss"] / len(micro_batches)).backward()
                    for k, v in terms.items():
                        totals[k] = totals.get(k, 0.0) + float(v.detach()) / len(micro_batches)
                if not math.isfinite(totals["loss"]):
                    raise UclipError(f"loss became {totals['loss']} at step {step}: lower the lr")
                self.optimizer.step()
                self.scheduler.step()
                last = totals
                done = step + 1
                bar.update(1)
                bar.set_postfix(loss=f"{totals['loss']:.4f}")
                if done % self.args.log_every == 0 or done == self.total_steps:
                    record = {"step": done, "lr": self.scheduler.get_last_lr()[0], **totals}
                    log_file.write(json.dumps(record) + "\n")
                    log_file.flush()
                if done % self.args.checkpoint_every == 0 or done == self.total_steps:
                    self._checkpoint(done)
        bar.close()
        model.eval()
        return TrainResult(
            self.total_steps, last.get("loss", float("nan")), self.out_dir, start or None
        )


def read_log(out_dir: str | Path) -> list[dict[str, Any]]:
    """The JSONL training log as a list of records."""
    path = Path(out_dir) / LOG_FILE
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln] if path.is_file() else []
