"""Gathering per-rank features into the global batch, with gradients, for data-parallel losses.

Under data parallelism each of W ranks embeds its own b rows of a global batch of B = W * b. The
contrastive losses (Eq. 5–6) need every pair of the *global* batch, so each rank all-gathers the
(b, d) features of all ranks into (B, d) and evaluates the whole loss. The gather must keep the
gradient of the rows each rank computed: ``torch.distributed.nn.functional.all_gather`` does (its
backward reduce-scatters, i.e. sums, the gradient of every rank's copy of the loss onto the rank
that produced the rows; on gloo through scatters, on NCCL through reduce-scatter).
Every rank then holds W times the gradient of the global loss for its own rows, and DDP's gradient
averaging divides it by W again: the optimiser sees exactly the gradient of a single process
holding the whole global batch. (The official uCLIP code gathers without gradients: the other
ranks' rows are constants there, so its update is not the single-process one.)

:class:`FeatureGather` is built by ``uclip.train.distributed`` from the initialised process group
and is the identity on one process; the method layer sees it only through
:class:`uclip.method.perturb.RowGather` (what ``UCLIPObjective`` and ``perturb_local_rows`` need).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn
from torch import Tensor, nn

from uclip.errors import UclipError


@dataclass(frozen=True)
class FeatureGather:
    """Concatenates a per-rank (b, ...) tensor into the global (W * b, ...) batch, in rank order.

    ``rank`` and ``world_size`` describe ``group`` (``None``: the default process group). With
    ``world_size == 1`` every method is the identity, so single-process code paths are unchanged.
    """

    rank: int = 0
    world_size: int = 1
    group: Any = None

    def __post_init__(self) -> None:
        if not isinstance(self.world_size, int) or self.world_size < 1:
            raise UclipError(f"world_size must be an integer >= 1, got {self.world_size!r}")
        if not isinstance(self.rank, int) or not 0 <= self.rank < self.world_size:
            raise UclipError(f"rank must be in [0, {self.world_size}), got {self.rank!r}")

    @classmethod
    def from_process_group(cls, group: Any = None) -> FeatureGather:
        """The gather of an initialised ``torch.distributed`` group (one process if none is)."""
        if not (dist.is_available() and dist.is_initialized()):
            return cls()
        return cls(dist.get_rank(group), dist.get_world_size(group), group)

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def __call__(self, x: Tensor) -> Tensor:
        """(b, ...) on every rank -> (W * b, ...), rows of rank r at ``[r * b, (r + 1) * b)``.

        Differentiable: the gradient of the gathered rows flows back to the rank that made them.
        Every rank must pass the same shape.
        """
        if not self.active:
            return x
        group = self.group if self.group is not None else dist.group.WORLD
        with warnings.catch_warnings():
            # torch 2.13 deprecates this public autograd gather in favour of the private
            # functional collective all_gather_tensor_autograd, whose gloo backward crashed
            # (SIGSEGV) here at (256, 512) per rank; the public one is kept until that settles.
            warnings.filterwarnings(
                "ignore", "torch.distributed.nn.functional.all_gather", FutureWarning
            )
            parts = dist_nn.all_gather(x, group=group)
        return torch.cat(parts, dim=0)

    def local_rows(self, n_local: int) -> slice:
        """Where this rank's ``n_local`` rows sit in the gathered batch."""
        return slice(self.rank * n_local, (self.rank + 1) * n_local)


class GatheredBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d whose training statistics are those of the global batch across ranks (CPU).

    The projection heads normalise a batch (Linear -> BatchNorm -> ReLU -> Linear). Under DDP each
    rank would normalise only its local b rows, so a W-process run would differ from one process
    with the global batch. ``torch.nn.SyncBatchNorm`` fixes that but only runs on GPU tensors;
    this module does the same on CPU (gloo), through the differentiable :class:`FeatureGather`:
    the global mean and the biased variance come from gathered per-rank sums (two passes, as
    ``F.batch_norm`` computes them), and the running statistics are updated with the global
    unbiased variance. Parameters and buffers have BatchNorm1d's names, so checkpoints are
    interchangeable. In eval mode, or on one process, it is plain BatchNorm1d.
    """

    def __init__(self, num_features: int, gather: FeatureGather, **kwargs: Any) -> None:
        super().__init__(num_features, **kwargs)
        self.gather = gather

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and self.gather.active):
            return super().forward(x)
        if x.ndim != 2:
            raise UclipError(f"GatheredBatchNorm1d expects (b, C) inputs, got {tuple(x.shape)}")
        n = x.shape[0] * self.gather.world_size
        mean = self.gather(x.sum(dim=0, keepdim=True)).sum(dim=0) / n
        var = self.gather((x - mean).pow(2).sum(dim=0, keepdim=True)).sum(dim=0) / n
        if self.track_running_stats:
            self._update_running_stats(mean.detach(), var.detach(), n)
        y = (x - mean) * torch.rsqrt(var + self.eps)
        return y * self.weight + self.bias if self.affine else y

    @torch.no_grad()
    def _update_running_stats(self, mean: Tensor, var: Tensor, n: int) -> None:
        self.num_batches_tracked.add_(1)
        factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        self.running_mean.mul_(1 - factor).add_(mean, alpha=factor)
        self.running_var.mul_(1 - factor).add_(var * (n / max(n - 1, 1)), alpha=factor)


def convert_sync_batchnorm(module: nn.Module, gather: FeatureGather) -> nn.Module:
    """Replace every BatchNorm with its cross-rank version (in place for children).

    CUDA parameters: ``torch.nn.SyncBatchNorm.convert_sync_batchnorm``; CPU parameters:
    :class:`GatheredBatchNorm1d` (SyncBatchNorm raises on CPU tensors). Returns the module (a new
    one if ``module`` itself is a BatchNorm). Undo with :func:`revert_sync_batchnorm`.
    """
    if not gather.active:
        return module
    param = next(module.parameters(), None)
    if param is not None and param.is_cuda:
        return _swap_batchnorms(module, lambda bn: _synced(bn, gather))
    return _swap_batchnorms(module, lambda bn: _gathered(bn, gather))


def _synced(bn: nn.modules.batchnorm._BatchNorm, gather: FeatureGather) -> nn.Module:
    new = nn.SyncBatchNorm.convert_sync_batchnorm(bn, gather.group)
    new._uclip_replaced = type(bn)  # for revert_sync_batchnorm
    return new


def _gathered(bn: nn.modules.batchnorm._BatchNorm, gather: FeatureGather) -> nn.Module:
    if type(bn) is not nn.BatchNorm1d:
        raise UclipError(
            f"{type(bn).__name__} cannot be synchronised across CPU ranks (only BatchNorm1d): "
            "train on GPUs (SyncBatchNorm) or set sync_batchnorm=false"
        )
    new = _rebuild(bn, GatheredBatchNorm1d, gather=gather)
    new._uclip_replaced = nn.BatchNorm1d
    return new


def revert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """Turn SyncBatchNorm / GatheredBatchNorm1d back into BatchNorm1d, sharing weights and stats."""

    def plain(bn: nn.modules.batchnorm._BatchNorm) -> nn.Module:
        original = getattr(bn, "_uclip_replaced", None)
        return bn if original is None else _rebuild(bn, original)

    return _swap_batchnorms(module, plain)


def _swap_batchnorms(module: nn.Module, make: Any) -> nn.Module:
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return make(module)
    for name, child in module.named_children():
        new = _swap_batchnorms(child, make)
        if new is not child:
            setattr(module, name, new)
    return module


def _rebuild(bn: nn.modules.batchnorm._BatchNorm, cls: type, **extra: Any) -> nn.Module:
    """A ``cls`` batch norm that shares ``bn``'s parameters and buffers (no copies)."""
    new = cls(
        bn.num_features,
        eps=bn.eps,
        momentum=bn.momentum,
        affine=bn.affine,
        track_running_stats=bn.track_running_stats,
        **extra,
    )
    if bn.affine:
        new.weight, new.bias = bn.weight, bn.bias
    if bn.track_running_stats:
        new.running_mean, new.running_var = bn.running_mean, bn.running_var
        new.num_batches_tracked = bn.num_batches_tracked
    new.train(bn.training)
    return new
