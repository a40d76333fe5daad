"""Data-parallel training on several processes with ``torch.distributed`` (launched by torchrun).

One process per device; ``torchrun`` (or ``srun`` under SLURM) sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``, and :func:`init_distributed` turns them into an
initialised default process group: NCCL on GPUs, gloo on CPUs. Everything else is torch's own
machinery: ``DistributedDataParallel`` averages gradients, ``torch.distributed.nn`` gathers
features with gradients (:class:`uclip.train.gather.FeatureGather`), SyncBatchNorm keeps batch
statistics global. How the :class:`~uclip.train.trainer.Trainer` uses it:

* data: every rank builds the same global permutation from ``(seed, epoch)`` and takes its
  contiguous slice of each global micro-batch, so global batch = per-rank batch x world size
  and the data order depends only on the global step (resume with another world size works);
* loss: the objective gathers the projected features of all ranks and evaluates the loss of the
  whole global batch; with DDP's averaging the update equals one process on the global batch;
* rank 0 alone writes checkpoints and the log; all ranks read a checkpoint to resume.
"""

from __future__ import annotations

import datetime
import logging
import os
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from uclip.errors import UclipError
from uclip.train.gather import FeatureGather

_LAUNCH_HINT = "launch with `torchrun --nproc-per-node N ...` (see docs/scaling.md)"
# How long rank 0 waits for the other ranks to join (seconds): minutes, not gloo's 30, so stale
# torchrun variables in a shell do not hang a run silently for half an hour.
DIST_TIMEOUT_ENV = "UCLIP_DIST_TIMEOUT_S"
DEFAULT_DIST_TIMEOUT_S = 300.0

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits: ``rank`` of ``world_size`` processes, ``local_rank`` on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes checkpoints, logs and results."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def gather(self) -> FeatureGather:
        """The feature gather of the default process group (identity on one process)."""
        return FeatureGather(self.rank, self.world_size) if self.active else FeatureGather()


def _env_int(*names: str) -> int | None:
    for name in names:
        value = os.environ.get(name)
        if value is not None:
            try:
                return int(value)
            except ValueError:
                raise UclipError(f"{name}={value!r} is not an integer: {_LAUNCH_HINT}") from None
    return None


def launcher_env() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from torchrun's or SLURM's variables; ``(0, 1, 0)``
    when neither launched this process."""
    world = _env_int("WORLD_SIZE", "SLURM_NTASKS") or 1
    rank = _env_int("RANK", "SLURM_PROCID") or 0
    local_rank = _env_int("LOCAL_RANK", "SLURM_LOCALID") or 0
    if world < 1 or not 0 <= rank < world:
        raise UclipError(f"rank {rank} is not in [0, {world}): {_LAUNCH_HINT}")
    return rank, world, local_rank


def init_distributed(
    backend: str | None = None, device: str = "cpu", timeout_s: float | None = None
) -> DistEnv:
    """Initialise the default process group from the launcher's environment (idempotent).

    ``backend`` defaults to ``"nccl"`` for a CUDA ``device`` and ``"gloo"`` otherwise. With a
    world size of 1 (no launcher) nothing is initialised and the single-process code paths run.
    ``timeout_s`` (default ``$UCLIP_DIST_TIMEOUT_S`` or 300) bounds the wait for the other ranks:
    a warning says what the run waits for, and a rank that never comes is one error line.
    """
    if dist.is_available() and dist.is_initialized():
        return current_env()
    rank, world, local_rank = launcher_env()
    if world == 1:
        return DistEnv()
    if not dist.is_available():
        raise UclipError("this torch build has no torch.distributed: install a standard build")
    backend = backend or ("nccl" if str(device).startswith("cuda") else "gloo")
    if backend == "nccl":
        if not torch.cuda.is_available():
            raise UclipError(
                "backend nccl needs CUDA GPUs but none is visible: use backend gloo on CPUs"
            )
        torch.cuda.set_device(local_rank)
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if name not in os.environ:
            raise UclipError(f"{name} is not set: {_LAUNCH_HINT}")
    timeout_s = dist_timeout_s() if timeout_s is None else timeout_s
    where = f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}"
    waits = (
        f"rank {rank} of WORLD_SIZE={world} waits up to {timeout_s:g} s at {where} for the other "
        f"{world - 1} rank(s) (set by torchrun, or stale in this shell: unset WORLD_SIZE RANK "
        f"MASTER_ADDR MASTER_PORT for a single-process run; {DIST_TIMEOUT_ENV} sets the wait)"
    )
    log.warning(waits)
    try:
        dist.init_process_group(
            backend,
            rank=rank,
            world_size=world,
            timeout=datetime.timedelta(seconds=timeout_s),
        )
    except (RuntimeError, ValueError) as exc:  # DistStoreError/DistNetworkError are RuntimeErrors
        reason = " ".join(str(exc).split())[:200]
        raise UclipError(f"distributed start failed: {waits}; none came ({reason})") from None
    return DistEnv(rank, world, local_rank, backend)


def dist_timeout_s() -> float:
    """``$UCLIP_DIST_TIMEOUT_S`` (seconds > 0), else :data:`DEFAULT_DIST_TIMEOUT_S`."""
    text = os.environ.get(DIST_TIMEOUT_ENV)
    if text is None:
        return DEFAULT_DIST_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise UclipError(f"{DIST_TIMEOUT_ENV}={text!r} is not a positive number of seconds")
    return value


def current_env() -> DistEnv:
    """The process group this process is in (a single-process env if none is initialised)."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistEnv()
    _, _, local_rank = launcher_env()
    return DistEnv(dist.get_rank(), dist.get_world_size(), local_rank, dist.get_backend())


def destroy_distributed() -> None:
    """Tear the default process group down (no-op on one process)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (no-op on one process)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def device_for(device: str, env: DistEnv) -> torch.device:
    """The device of this rank: ``cuda`` without an index becomes ``cuda:LOCAL_RANK``."""
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None and env.active:
        return torch.device("cuda", env.local_rank)
    return dev


class DataParallel(DistributedDataParallel):
    """``DistributedDataParallel`` that also exposes the wrapped module's attributes, so an
    objective can keep reading ``self.model.some_attribute`` while the Trainer has wrapped it.

    Only ``forward`` (``self.model(...)``) goes through DDP's bookkeeping: a backward pass after
    a forward that bypassed it (``self.model.some_method(x)``) is *not* averaged across ranks, so
    the ranks would silently drift apart. ``forward_calls`` counts the calls through DDP, and the
    Trainer refuses a micro-batch that made none.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.forward_calls = 0

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        self.forward_calls += 1
        return super().forward(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.module, name)


def wrap_ddp(model: nn.Module, device: torch.device) -> DataParallel:
    """DDP over the parameters that currently require gradients."""
    ids = [device.index] if device.type == "cuda" else None
    return DataParallel(model, device_ids=ids, output_device=ids[0] if ids else None)


def trainable_signature(model: nn.Module) -> tuple[bool, ...]:
    """Which parameters require gradients; DDP must be rebuilt when this changes (e.g. when
    CLT thaws its encoders), because it registers its gradient hooks once, at construction."""
    return tuple(p.requires_grad for p in model.parameters())


def no_sync(model: nn.Module, sync: bool) -> Any:
    """DDP's ``no_sync`` for the micro-batches of a step before the last (gradient accumulation
    then all-reduces once per step); a plain context otherwise."""
    if isinstance(model, DistributedDataParallel) and not sync:
        return model.no_sync()
    return nullcontext()
