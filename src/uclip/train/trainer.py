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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from tqdm.auto import tqdm

from uclip.data.io import write_text_atomic
from uclip.errors import UclipError
from uclip.train import distributed
from uclip.train.args import TrainArgs
from uclip.train.checkpoint import (
    latest_checkpoint,
    load_newest_checkpoint,
    save_checkpoint,
)
from uclip.train.gather import convert_sync_batchnorm, revert_sync_batchnorm

log = logging.getLogger(__name__)
LOG_FILE = "log.jsonl"
DEV_LOG_FILE = "dev.jsonl"
# Tensors of the best-so-far model ride in the checkpoint's model file under this prefix, so a
# resumed run keeps the state that early stopping will return.
BEST_PREFIX = "best/"

Evaluator = Callable[[nn.Module], dict[str, float]]
"""Scores the model on dev data: a dict of metrics whose key ``"score"`` is maximised."""


class Objective(Protocol):
    """What a method supplies to the :class:`Trainer`.

    Data-parallel runs additionally need a ``gather`` attribute (a
    :class:`uclip.train.gather.FeatureGather` of the process group) with which ``loss`` turns
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
    best_step: int | None = None  # with an evaluator: the step whose weights the model holds
    best_score: float | None = None
    stopped_early: bool = False


@dataclass
class BestState:
    """Early-stopping bookkeeping; saved in every checkpoint."""

    step: int | None = None
    score: float = -math.inf
    evals_since: int = 0
    stopped: bool = False
    weights: dict[str, torch.Tensor] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "score": self.score if math.isfinite(self.score) else None,
            "evals_since": self.evals_since,
            "stopped": self.stopped,
        }


def step_generator(seed: int, step: int) -> torch.Generator:
    """The RNG of one optimiser step, a pure function of (seed, step) so resume is exact."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def epoch_permutation(num_examples: int, seed: int, epoch: int) -> torch.Tensor:
    return torch.randperm(
        num_examples, generator=torch.Generator().manual_seed(seed * 7919 + epoch)
    )


class Trainer:
    """Runs an :class:`Objective`; with an ``evaluator`` and ``args.eval_every`` it scores the
    model on dev data every so many steps, logs the curve to ``dev.jsonl``, stops after
    ``args.early_stopping_patience`` evaluations without improvement and ends holding the best
    evaluated weights."""

    def __init__(
        self,
        objective: Objective,
        args: TrainArgs,
        out_dir: str | Path,
        evaluator: Evaluator | None = None,
    ) -> None:
        if objective.num_examples < 1:
            raise UclipError("no training examples: check the training captions / data mode")
        if args.eval_every and evaluator is None:
            raise UclipError("eval_every is set but there is no dev evaluator: give dev data")
        self.objective = objective
        self.args = args
        self.out_dir = Path(out_dir)
        self.evaluator = evaluator if args.eval_every else None
        self.best = BestState()
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
        progress = min(1.0, (step - self.args.warmup_steps) / max(1, remaining))
        if self.args.schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return max(0.0, 1.0 - progress)

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
        """Load the newest checkpoint that verifies and trim the log to it; 0 on a fresh run.

        Never restarts quietly: if checkpoints or logged steps exist but nothing can be
        loaded, it raises instead of training again from step 0."""
        found = load_newest_checkpoint(self.out_dir)
        if found is None:
            logged = read_log(self.out_dir)
            if logged:
                raise UclipError(
                    f"cannot resume: {self.out_dir / LOG_FILE} records {len(logged)} step(s) but "
                    "no checkpoint was saved; rerun without --resume to start over"
                )
            return 0
        path, ckpt = found
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
        model_state = {k: v for k, v in ckpt.model_state.items() if not k.startswith(BEST_PREFIX)}
        self.objective.model.load_state_dict(model_state)
        self.optimizer.load_state_dict(ckpt.optimizer_state)
        self.scheduler.load_state_dict(ckpt.trainer_state["scheduler"])
        best = ckpt.trainer_state.get("best") or {}
        weights = {
            k.removeprefix(BEST_PREFIX): v
            for k, v in ckpt.model_state.items()
            if k.startswith(BEST_PREFIX)
        }
        self.best = BestState(
            step=best.get("step"),
            score=-math.inf if best.get("score") is None else float(best["score"]),
            evals_since=int(best.get("evals_since", 0)),
            stopped=bool(best.get("stopped", False)),
            weights=weights or None,
        )
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
        for name in (LOG_FILE, DEV_LOG_FILE):
            path = self.out_dir / name
            if not path.is_file():
                continue
            kept = [r for r in _log_records(path) if r.get("step", 0) <= step]
            write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in kept))

    def _checkpoint(self, step: int) -> None:
        """Rank 0 writes (model, optimiser and schedule are replicated on every rank)."""
        if self.dist.is_main:
            state = dict(self.objective.model.state_dict())
            for k, v in (self.best.weights or {}).items():
                state[BEST_PREFIX + k] = v
            save_checkpoint(
                self.out_dir,
                step,
                state,
                self.optimizer.state_dict(),
                {
                    "total_steps": self.total_steps,
                    "scheduler": self.scheduler.state_dict(),
                    "global_batch": self.global_batch,
                    "world_size": self.dist.world_size,
                    "best": self.best.to_json(),
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
            (self.out_dir / DEV_LOG_FILE).unlink(missing_ok=True)
        model = self.objective.model.to(self.device).train()
        if self.evaluator is not None and start == 0:
            self._evaluate(0)  # the starting point is a candidate (e.g. a closed-form init)
        with self._data_parallel(model) as step_model:
            last, done = self._loop(start, step_model)
        self.objective.model.eval()
        if self.evaluator is not None and self.best.weights is not None:
            self.objective.model.load_state_dict(self.best.weights)
        return TrainResult(
            done,
            last.get("loss", float("nan")),
            self.out_dir,
            start or None,
            best_step=self.best.step if self.evaluator is not None else None,
            best_score=self.best.score if self.evaluator is not None else None,
            stopped_early=self.best.stopped,
        )

    def _evaluate(self, step: int) -> None:
        """Score the model on dev data; keep its weights if best so far; log the point."""
        assert self.evaluator is not None
        model = self.objective.model
        was_training = model.training
        model.eval()
        with torch.no_grad():
            metrics = {k: float(v) for k, v in self.evaluator(model).items()}
        model.train(was_training)
        if "score" not in metrics:
            raise UclipError("the dev evaluator must return a 'score' metric")
        improved = metrics["score"] > self.best.score
        if improved:
            self.best.step, self.best.score, self.best.evals_since = step, metrics["score"], 0
            self.best.weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        else:
            self.best.evals_since += 1
        patience = self.args.early_stopping_patience
        self.best.stopped = bool(patience) and self.best.evals_since >= patience
        if self.dist.is_main:
            record = {"step": step, **metrics, "best_step": self.best.step}
            with (self.out_dir / DEV_LOG_FILE).open("a") as fh:
                fh.write(json.dumps(record) + "\n")

    def _loop(self, start: int, step_model: Any) -> tuple[dict[str, float], int]:
        """The optimiser steps from ``start``; returns the last step's loss terms and the number
        of steps done (fewer than ``total_steps`` after early stopping)."""
        use_amp = self.args.amp and self.device.type == "cuda"
        main = self.dist.is_main
        last: dict[str, float] = {}
        done = start
        if self.best.stopped:  # resumed after early stopping: nothing left to do
            return last, done
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
                eval_every = self.args.eval_every
                if (
                    self.evaluator is not None
                    and eval_every
                    and (done % eval_every == 0 or done == self.total_steps)
                ):
                    self._evaluate(done)
                if (
                    done % self.args.checkpoint_every == 0
                    or done == self.total_steps
                    or self.best.stopped
                ):
                    self._checkpoint(done)
                if self.best.stopped:
                    log.info("early stop at step %d: best dev score at %s", done, self.best.step)
                    break
        bar.close()
        return last, done

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
    return _log_records(path) if path.is_file() else []


def _log_records(path: Path) -> list[dict[str, Any]]:
    """Parsed log lines; a line cut short by a kill mid-write is skipped (it is redone)."""
    records = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records
