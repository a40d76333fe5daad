"""One training loop for both methods: seeded batches, AdamW/Adam + linear decay, gradient
accumulation, bf16 autocast on CUDA, atomic checkpoints with exact resume, JSONL log, progress bar.

The method-specific part is an :class:`Objective`: it owns the model and computes a loss dict for a
batch of example indices. Everything random is derived from ``(seed, epoch)`` and ``(seed, step)``,
so a run resumed from a checkpoint produces the same weights as an uninterrupted one.

Under ``torchrun`` (an initialised process group, see :mod:`uclip.train.distributed`) the same loop
runs data-parallel: each rank takes its contiguous slice of every global micro-batch, the model is
wrapped in DDP (BatchNorm made cross-rank), the objective's ``gather`` makes the loss that of the
global batch, and rank 0 alone writes checkpoints and the log. ``batch_size`` stays the *global*
batch, so a config means the same run on any number of processes, and a checkpoint resumes on
another world size.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from tqdm.auto import tqdm

from uclip.errors import UclipError
from uclip.method.gather import convert_sync_batchnorm, revert_sync_batchnorm
from uclip.train import distributed
from uclip.train.args import TrainArgs
from uclip.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint

log = logging.getLogger(__name__)
LOG_FILE = "log.jsonl"


class Objective(Protocol):
    """What a method supplies to the :class:`Trainer`.

    Data-parallel runs additionally need a ``gather`` attribute (a
    :class:`uclip.method.gather.FeatureGather` of the process group) with which ``loss`` turns
    its rank's features into the global batch's, and ``loss`` must run the model through
    ``self.model(...)``: during ``loss`` the Trainer puts the DDP-wrapped model there.
    """

    model: nn.Module
    num_examples: int

    def trainable_parameters(self) -> list[nn.Parameter] | list[dict[str, Any]]:
        """Every parameter that may ever be optimised (a frozen-for-now one included), as a list
        or as torch optimiser parameter groups (e.g. a higher lr for CLT's adapters)."""
        ...

    def loss(
        self, indices: torch.Tensor, step: int, generator: torch.Generator
    ) -> dict[str, torch.Tensor]:
        """Loss terms for a batch of example indices; the key ``"loss"`` is optimised.

        Data-parallel: ``indices`` are this rank's slice of the global micro-batch, and the
        returned loss must be that of the whole global micro-batch (the same on every rank).
        """
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
        self.dist = distributed.current_env()
        self.device = distributed.device_for(args.device, self.dist)
        self.micro_batch = min(args.batch_size, objective.num_examples)
        self._local_rows = self._rank_rows()
        per_step = self.micro_batch * args.grad_accum
        self.steps_per_epoch = max(1, objective.num_examples // per_step)
        self.total_steps = args.max_steps or self.steps_per_epoch * args.epochs
        params = objective.trainable_parameters()
        if not params:
            raise UclipError("the objective has no trainable parameters")
        opt_cls = torch.optim.AdamW if args.optimizer == "adamw" else torch.optim.Adam
        self.optimizer = opt_cls(params, lr=args.lr, weight_decay=args.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)

    def _rank_rows(self) -> slice:
        """This rank's contiguous part of every global micro-batch (all of it on one process)."""
        world = self.dist.world_size
        if world == 1:
            return slice(0, self.micro_batch)
        if self.micro_batch % world:
            raise UclipError(
                f"the global batch of {self.micro_batch} cannot be split evenly over {world} "
                f"processes: set batch_size to a multiple of {world}"
            )
        gather = getattr(self.objective, "gather", None)
        if gather is None or gather.world_size != world:
            raise UclipError(
                f"the objective would compute its loss on one rank's rows only ({world} "
                "processes): build it with gather=FeatureGather.from_process_group()"
            )
        local = self.micro_batch // world
        return slice(self.dist.rank * local, (self.dist.rank + 1) * local)

    @property
    def global_batch(self) -> int:
        """Examples per optimiser step, summed over ranks and micro-batches."""
        return self.micro_batch * self.args.grad_accum

    def _lr_factor(self, step: int) -> float:
        if step < self.args.warmup_steps:
            return (step + 1) / self.args.warmup_steps
        if self.args.schedule == "constant":
            return 1.0
        remaining = self.total_steps - self.args.warmup_steps
        return max(0.0, 1.0 - (step - self.args.warmup_steps) / max(1, remaining))

    def _batches(self, start_step: int) -> Iterator[tuple[int, list[torch.Tensor]]]:
        """Yield (step, this rank's micro-batches of indices) from ``start_step`` on.

        The order is a function of (seed, global step) alone; every rank cuts the same global
        micro-batches and keeps its own contiguous rows of each.
        """
        per_step = self.global_batch
        for step in range(start_step, self.total_steps):
            epoch, within = divmod(step, self.steps_per_epoch)
            perm = epoch_permutation(self.objective.num_examples, self.args.seed, epoch)
            chunk = perm[within * per_step : (within + 1) * per_step]
            yield step, [mb[self._local_rows] for mb in chunk.split(self.micro_batch)]

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
        saved_batch = ckpt.trainer_state.get("global_batch")
        if saved_batch is not None and saved_batch != self.global_batch:
            raise UclipError(
                f"checkpoint {path} was made with a global batch of {saved_batch}, this run has "
                f"{self.global_batch} (batch_size x grad_accum): keep the global batch to resume"
            )
        self.objective.model.load_state_dict(ckpt.model_state)
        self.optimizer.load_state_dict(ckpt.optimizer_state)
        self.scheduler.load_state_dict(ckpt.trainer_state["scheduler"])
        if self.dist.is_main:
            self._truncate_log(ckpt.step)
        log.info(
            "resumed from %s (step %d, saved by %s process(es), now %d)",
            path,
            ckpt.step,
            ckpt.trainer_state.get("world_size", 1),
            self.dist.world_size,
        )
        return ckpt.step

    def _truncate_log(self, step: int) -> None:
        """Drop log lines written after the checkpoint we resume from (they will be redone)."""
        path = self.out_dir / LOG_FILE
        if not path.is_file():
            return
        kept = [ln for ln in path.read_text().splitlines() if ln and json.loads(ln)["step"] <= step]
        path.write_text("".join(f"{ln}\n" for ln in kept))

    def _checkpoint(self, step: int) -> None:
        """Rank 0 writes (model, optimiser and schedule are replicated on every rank)."""
        if self.dist.is_main:
            save_checkpoint(
                self.out_dir,
                step,
                self.objective.model.state_dict(),
                self.optimizer.state_dict(),
                {
                    "total_steps": self.total_steps,
                    "scheduler": self.scheduler.state_dict(),
                    "global_batch": self.global_batch,
                    "world_size": self.dist.world_size,
                },
                keep=self.args.keep_checkpoints,
            )
        distributed.barrier()

    def train(self, resume: bool = False) -> TrainResult:
        """Run (or continue) training; returns the number of steps and the last loss."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        start = self._resume() if resume else 0
        if not resume and latest_checkpoint(self.out_dir) is not None:
            raise UclipError(
                f"{self.out_dir} already holds checkpoints: "
                "pass --resume to continue, or a new --out"
            )
        if not resume and self.dist.is_main:
            (self.out_dir / LOG_FILE).unlink(missing_ok=True)
        model = self.objective.model.to(self.device).train()
        with self._data_parallel(model) as step_model:
            last = self._loop(start, step_model)
        self.objective.model.eval()
        return TrainResult(
            self.total_steps, last.get("loss", float("nan")), self.out_dir, start or None
        )

    def _loop(self, start: int, step_model: Any) -> dict[str, float]:
        """The optimiser steps from ``start``; returns the last step's loss terms."""
        use_amp = self.args.amp and self.device.type == "cuda"
        main = self.dist.is_main
        last: dict[str, float] = {}
        bar = tqdm(
            total=self.total_steps,
            initial=start,
            disable=not (self.args.progress and main),
            desc="train",
        )
        # Only rank 0 writes the log; the others write to the null device.
        log_path = self.out_dir / LOG_FILE if main else Path(os.devnull)
        with log_path.open("a") as log_file:
            for step, micro_batches in self._batches(start):
                self.objective.on_step_begin(step, self.steps_per_epoch)
                self.optimizer.zero_grad(set_to_none=True)
                gen = step_generator(self.args.seed, step)
                totals: dict[str, float] = {}
                for i, indices in enumerate(micro_batches):
                    with step_model(sync=i == len(micro_batches) - 1):
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
        return last

    @contextmanager
    def _data_parallel(self, model: nn.Module) -> Iterator[Any]:
        """Yield ``step_model(sync)``: a context in which ``objective.loss`` runs one micro-batch.

        On one process it does nothing. Data-parallel, BatchNorm is made cross-rank (if
        ``sync_batchnorm``), the model is wrapped in DDP (rebuilt when the set of trainable
        parameters changes), and during each micro-batch ``objective.model`` is the DDP wrapper;
        ``sync=False`` skips the gradient all-reduce (all but the last micro-batch of a step).
        Everything is undone on exit, also after an error.
        """
        if not self.dist.active:

            @contextmanager
            def plain(sync: bool) -> Iterator[None]:
                yield

            yield plain
            return
        if self.args.sync_batchnorm:
            model = convert_sync_batchnorm(model, self.objective.gather)
            self.objective.model = model
        wrapper: list[Any] = [None, None]  # (DDP wrapper, trainable signature it was built for)

        @contextmanager
        def wrapped(sync: bool) -> Iterator[None]:
            signature = distributed.trainable_signature(model)
            if wrapper[1] != signature:
                wrapper[:] = [distributed.wrap_ddp(model, self.device), signature]
            ddp = wrapper[0]
            ddp.forward_calls = 0
            self.objective.model = ddp
            try:
                with distributed.no_sync(ddp, sync):
                    yield
            finally:
                self.objective.model = model
            if ddp.forward_calls == 0:
                raise UclipError(
                    f"{type(self.objective).__name__}.loss never called self.model(...): under "
                    "DDP its gradients would not be averaged across ranks; route the forward "
                    "pass through the model's __call__"
                )

        try:
            yield wrapped
        finally:
            self.objective.model = revert_sync_batchnorm(model)


def read_log(out_dir: str | Path) -> list[dict[str, Any]]:
    """The JSONL training log as a list of records."""
    path = Path(out_dir) / LOG_FILE
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln] if path.is_file() else []
