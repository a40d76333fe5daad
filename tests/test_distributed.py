"""Data-parallel training and rank-split retrieval on 2 gloo processes (CPU, 127.0.0.1).

One ``torch.multiprocessing.spawn`` of two ranks (module fixture) runs every distributed check and
saves what it measured; the tests compare that with the same computations in one process.
"""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from safetensors.torch import load_file

from test_trainer import final_weights, make_objective, small_args
from uclip.errors import UclipError
from uclip.features.banks import MemoryBank
from uclip.method.bank_search import soft_retrieve_distributed, soft_retrieve_partial
from uclip.method.losses import symmetric_info_nce
from uclip.method.objective import UCLIPObjective
from uclip.method.perturb import perturb, perturb_local_rows
from uclip.method.retrieval import soft_retrieve
from uclip.train.distributed import DistEnv, launcher_env
from uclip.train.gather import (
    FeatureGather,
    GatheredBatchNorm1d,
    convert_sync_batchnorm,
    revert_sync_batchnorm,
)
from uclip.train.trainer import Trainer, read_log

WORLD = 2
# 12 steps of Adam at lr 1e-2 over the 2-rank gathered batch; see test_two_processes_match_one.
ARGS = dict(epochs=3, batch_size=16)


def _objective(gather: FeatureGather | None = None) -> UCLIPObjective:
    """test_trainer's small objective, built for ``gather``'s process group.

    The Linear bias in front of each head's BatchNorm is frozen: BatchNorm subtracts the batch
    mean, so that bias has an exactly zero gradient and what autograd returns is rounding noise
    (~1e-9), which Adam normalises into steps of ~0.1 lr. Its trained value is therefore set by
    summation order: one process on 1 vs 2 threads already ends 0.11 apart there (and in the
    running mean that absorbs it) while every other tensor agrees to 1e-7 (docs/scaling.md).
    """
    base = make_objective()
    for head in (base.model.f_c, base.model.f_m):
        head.net[0].bias.requires_grad_(False)
    return UCLIPObjective(base.model, base.e_c, base.e_m, base.v_c, base.m_m, base.hp, gather)


class _BypassesForward(UCLIPObjective):
    def __init__(self, gather: FeatureGather) -> None:
        base = _objective(gather)
        super().__init__(base.model, base.e_c, base.e_m, base.v_c, base.m_m, base.hp, gather)

    def loss(self, indices, step, gen):
        return {"loss": self.gather(self.model.f_c(self.e_c[indices])).sum()}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gather_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return torch.randn(8, 5, generator=g), torch.randn(5, 4, generator=g)


def _retrieval_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(4)
    bank = F.normalize(torch.randn(37, 6, generator=g), dim=-1)
    queries = F.normalize(torch.randn(9, 6, generator=g), dim=-1)
    queries[0] = bank[30]  # this query's largest logit lies in rank 1's slice
    return queries, bank


class _StopAt:
    """Wraps an objective's loss to raise at ``step`` (a run killed mid-training)."""

    def __init__(self, objective, step: int) -> None:
        self.inner, self.step = objective.loss, step

    def __call__(self, indices, step, gen):
        if step == self.step:
            raise KeyboardInterrupt
        return self.inner(indices, step, gen)


def _worker(rank: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(WORLD),
        LOCAL_RANK=str(rank),
    )
    from uclip.train.distributed import destroy_distributed, init_distributed

    env = init_distributed(timeout_s=120)
    root = Path(out)
    try:
        # 1. the gather keeps gradients: loss over gathered (W*b, d) features of a linear map
        x, w = _gather_inputs()
        rows = env.gather.local_rows(x.shape[0] // WORLD)
        local = x[rows].clone().requires_grad_(True)
        weight = w.clone().requires_grad_(True)
        loss = symmetric_info_nce(*env.gather(local @ weight).chunk(2, dim=1), tau=0.1)
        loss.backward()
        torch.save(
            {"x_grad": local.grad, "w_grad": weight.grad, "loss": loss.detach()},
            root / f"gather-{rank}.pt",
        )
        # 2. exact retrieval with the bank split across ranks
        queries, bank = _retrieval_inputs()
        shard = MemoryBank.from_tensor(bank).shard(env.rank, env.world_size)
        for tau in (0.05, 0.002):
            result = soft_retrieve_distributed(
                queries, shard, tau, chunk_size=5, query_chunk_size=4
            )
            torch.save(result, root / f"retrieve-{tau}-{rank}.pt")
        # 3. training: a full run, and one stopped at step 7 (checkpoint at step 6)
        Trainer(_objective(env.gather), small_args(**ARGS), root / "ddp-full").train()
        obj = _objective(env.gather)
        obj.loss = _StopAt(obj, 7)
        with contextlib.suppress(KeyboardInterrupt):
            Trainer(obj, small_args(**ARGS), root / "ddp-part").train()
        # 4. resume on 2 ranks a run that one process started (saved at step 6)
        obj = _objective(env.gather)
        Trainer(obj, small_args(**ARGS), root / "single-part").train(resume=True)
        # 5. a loss that calls a submodule instead of self.model(...) bypasses DDP: refused
        try:
            Trainer(
                _BypassesForward(env.gather), small_args(**ARGS), root / f"bypass-{rank}"
            ).train()
        except UclipError as exc:
            (root / f"bypass-{rank}.txt").write_text(str(exc))
    finally:
        destroy_distributed()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ddp")
    # A one-process run stopped at step 7, for rank-count-changing resume (part 4 above).
    obj = _objective()
    obj.loss = _StopAt(obj, 7)
    with pytest.raises(KeyboardInterrupt):
        Trainer(obj, small_args(**ARGS), out / "single-part").train()
    mp.spawn(_worker, args=(_free_port(), str(out)), nprocs=WORLD, join=True)
    return out


def test_gather_keeps_the_gradient_of_the_local_rows(two_ranks: Path) -> None:
    """Per rank: W x the single-process gradient of its rows; DDP's averaging over ranks of the
    weight gradient gives the single-process weight gradient."""
    x, w = _gather_inputs()
    x.requires_grad_(True)
    weight = w.clone().requires_grad_(True)
    loss = symmetric_info_nce(*(x @ weight).chunk(2, dim=1), tau=0.1)
    loss.backward()
    results = [torch.load(two_ranks / f"gather-{r}.pt") for r in range(WORLD)]
    for rank, res in enumerate(results):
        torch.testing.assert_close(res["loss"], loss.detach(), rtol=0, atol=1e-6)
        rows = slice(rank * 4, rank * 4 + 4)
        torch.testing.assert_close(res["x_grad"], WORLD * x.grad[rows], rtol=1e-5, atol=1e-6)
    averaged = sum(r["w_grad"] for r in results) / WORLD
    torch.testing.assert_close(averaged, weight.grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("tau", [0.05, 0.002])
def test_rank_split_retrieval_equals_single_process(two_ranks: Path, tau: float) -> None:
    queries, bank = _retrieval_inputs()
    expected = soft_retrieve(queries, bank, tau)
    for rank in range(WORLD):
        got = torch.load(two_ranks / f"retrieve-{tau}-{rank}.pt")
        assert (got - expected).abs().max() < 1e-6


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


def test_two_processes_match_one(two_ranks: Path, tmp_path: Path) -> None:
    """2 gloo ranks x 8 rows == 1 process x 16 rows: same weights, BN statistics and log."""
    Trainer(_objective(), small_args(**ARGS), tmp_path / "single").train()
    single = final_weights(tmp_path / "single")
    assert _max_diff(final_weights(two_ranks / "ddp-full"), single) < 1e-5
    log_1, log_2 = read_log(tmp_path / "single"), read_log(two_ranks / "ddp-full")
    assert [r["step"] for r in log_2] == [r["step"] for r in log_1]
    # float32 losses of magnitude ~5: relative agreement
    assert [r["loss"] for r in log_2] == pytest.approx([r["loss"] for r in log_1], rel=1e-5)
    # A checkpoint of a 2-rank run resumes on 1 process (global batch and step are what count).
    result = Trainer(_objective(), small_args(**ARGS), two_ranks / "ddp-part").train(resume=True)
    assert result.resumed_from == 6
    assert _max_diff(final_weights(two_ranks / "ddp-part"), single) < 1e-5
    # ... and a 1-process checkpoint resumed on 2 ranks (part 4 of the worker).
    assert _max_diff(final_weights(two_ranks / "single-part"), single) < 1e-5


def test_a_loss_that_bypasses_ddp_forward_is_refused(two_ranks: Path) -> None:
    for rank in range(WORLD):
        message = (two_ranks / f"bypass-{rank}.txt").read_text()
        assert "never called self.model(...)" in message


def test_checkpoint_records_world_and_global_batch(two_ranks: Path) -> None:
    import json

    from uclip.train.checkpoint import latest_checkpoint

    state = json.loads((latest_checkpoint(two_ranks / "ddp-full") / "state.json").read_text())
    assert state["world_size"] == WORLD and state["global_batch"] == 16
    keys = load_file(str(latest_checkpoint(two_ranks / "ddp-full") / "model.safetensors")).keys()
    assert not any(k.startswith("module.") for k in keys), "DDP's prefix must not leak"


def test_resume_with_another_global_batch_is_refused(two_ranks: Path) -> None:
    # 12 steps of batch 8: the step count matches, only the global batch differs.
    args = small_args(batch_size=8, max_steps=12)
    trainer = Trainer(make_objective(), args, two_ranks / "ddp-full")
    with pytest.raises(UclipError, match="global batch"):
        trainer.train(resume=True)


# -- single-process pieces ------------------------------------------------------------------------


def test_perturb_local_rows_draws_the_single_process_noise() -> None:
    x = F.normalize(torch.randn(6, 4), dim=-1)
    full = perturb(x, 0.01, torch.Generator().manual_seed(1))
    for rank in range(3):
        rows = slice(2 * rank, 2 * rank + 2)
        part = perturb_local_rows(
            x[rows], 0.01, torch.Generator().manual_seed(1), FeatureGather(rank, 3)
        )
        torch.testing.assert_close(part, full[rows], rtol=0, atol=0)


def test_single_process_gather_is_the_identity() -> None:
    x = torch.randn(3, 2)
    assert FeatureGather.from_process_group()(x) is x
    assert DistEnv().gather.world_size == 1 and DistEnv().is_main


def test_batchnorm_conversion_shares_parameters_and_reverts() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    bn = model[1]
    converted = convert_sync_batchnorm(model, FeatureGather(0, 2))
    assert isinstance(converted[1], GatheredBatchNorm1d)
    assert converted[1].weight is bn.weight and converted[1].running_mean is bn.running_mean
    assert converted.state_dict().keys() == model.state_dict().keys()
    reverted = revert_sync_batchnorm(converted)
    assert type(reverted[1]) is torch.nn.BatchNorm1d and reverted[1].weight is bn.weight
    with pytest.raises(UclipError, match="BatchNorm2d"):
        convert_sync_batchnorm(torch.nn.Sequential(torch.nn.BatchNorm2d(2)), FeatureGather(0, 2))


def test_partial_retrieval_of_whole_bank_is_soft_retrieve() -> None:
    queries, bank = _retrieval_inputs()
    _, s, a = soft_retrieve_partial(queries, bank, 0.05, chunk_size=7)
    torch.testing.assert_close(a / s[:, None], soft_retrieve(queries, bank, 0.05))


def test_trainer_refuses_uneven_or_local_only_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    from uclip.train import distributed

    monkeypatch.setattr(distributed, "current_env", lambda: DistEnv(0, 2))
    with pytest.raises(UclipError, match="multiple of 2"):
        Trainer(_objective(FeatureGather(0, 2)), small_args(batch_size=15), "unused")
    with pytest.raises(UclipError, match="gather="):
        Trainer(make_objective(), small_args(), "unused")


def test_launcher_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_PROCID", "SLURM_NTASKS"):
        monkeypatch.delenv(name, raising=False)
    assert launcher_env() == (0, 1, 0)
    monkeypatch.setenv("SLURM_PROCID", "3")
    monkeypatch.setenv("SLURM_NTASKS", "8")
    assert launcher_env()[:2] == (3, 8)
    monkeypatch.setenv("RANK", "9")
    monkeypatch.setenv("WORLD_SIZE", "4")
    with pytest.raises(UclipError, match="torchrun"):
        launcher_env()
