"""Trainer: deterministic training, atomic checkpoints, exact resume after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from uclip.errors import UclipError
from uclip.method.model import UCLIPHeads
from uclip.method.objective import UCLIPHyperParams, UCLIPObjective, retrieve_pseudo_pairs
from uclip.train.args import TrainArgs
from uclip.train.checkpoint import latest_checkpoint
from uclip.train.trainer import Trainer, read_log

SCRIPT = """
import sys, time, torch
sys.path.insert(0, {tests!r})
from test_trainer import make_objective
from uclip.train.args import TrainArgs
from uclip.train.trainer import Trainer
slow = {slow}
obj = make_objective()
if slow:
    inner = obj.loss
    def loss(indices, step, gen):
        time.sleep(0.15)
        return inner(indices, step, gen)
    obj.loss = loss
args = TrainArgs(batch_size=16, epochs=6, checkpoint_every=3, log_every=1, progress=False, lr=1e-2)
Trainer(obj, args, {out!r}).train(resume={resume})
"""


def make_objective(seed: int = 0, n: int = 64, d_c: int = 12, d_m: int = 10) -> UCLIPObjective:
    g = torch.Generator().manual_seed(seed)
    norm = torch.nn.functional.normalize
    e_c, e_m = (
        norm(torch.randn(n, d_c, generator=g), dim=-1),
        norm(torch.randn(n, d_m, generator=g), dim=-1),
    )
    bank_v, bank_m = (
        norm(torch.randn(40, d_c, generator=g), dim=-1),
        norm(torch.randn(50, d_m, generator=g), dim=-1),
    )
    hp = UCLIPHyperParams(tau_retrieval=0.05)
    v_c, m_m = retrieve_pseudo_pairs(e_c, e_m, bank_v, bank_m, hp)
    torch.manual_seed(seed)
    heads = UCLIPHeads(d_c, d_m, embed_dim=8)
    return UCLIPObjective(heads, e_c, e_m, v_c, m_m, hp)


def small_args(**kw) -> TrainArgs:
    base = dict(batch_size=16, epochs=6, checkpoint_every=3, log_every=1, progress=False, lr=1e-2)
    return TrainArgs(**{**base, **kw})


def final_weights(out: Path) -> dict[str, torch.Tensor]:
    ckpt = latest_checkpoint(out)
    assert ckpt is not None
    return load_file(str(ckpt / "model.safetensors"))


def test_training_lowers_the_loss_and_logs(tmp_path: Path) -> None:
    result = Trainer(make_objective(), small_args(epochs=20), tmp_path).train()
    log = read_log(tmp_path)
    assert result.steps == 20 * 4
    assert log[-1]["loss"] < log[0]["loss"]
    assert log[-1]["step"] == result.steps
    assert {"text", "pseudo", "intra", "lr"} <= set(log[0])
    # linear decay reaches zero at the last step
    assert log[-1]["lr"] == pytest.approx(0.0, abs=1e-12)


def test_same_seed_same_weights(tmp_path: Path) -> None:
    Trainer(make_objective(), small_args(), tmp_path / "a").train()
    Trainer(make_objective(), small_args(), tmp_path / "b").train()
    a, b = final_weights(tmp_path / "a"), final_weights(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_in_process_matches_uninterrupted(tmp_path: Path) -> None:
    Trainer(make_objective(), small_args(), tmp_path / "full").train()
    # stop after 9 steps by training a copy whose objective raises at step 10
    obj = make_objective()
    inner = obj.loss

    def failing(indices, step, gen):
        if step == 10:
            raise KeyboardInterrupt
        return inner(indices, step, gen)

    obj.loss = failing
    with pytest.raises(KeyboardInterrupt):
        Trainer(obj, small_args(), tmp_path / "part").train()
    assert latest_checkpoint(tmp_path / "part").name == "step-0000009"
    result = Trainer(make_objective(seed=0), small_args(), tmp_path / "part").train(resume=True)
    assert result.resumed_from == 9
    a, b = final_weights(tmp_path / "full"), final_weights(tmp_path / "part")
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed run differs from uninterrupted run"
    steps = [r["step"] for r in read_log(tmp_path / "part")]
    assert steps == sorted(set(steps)) == list(range(1, 25))


def test_kill_mid_training_and_resume(tmp_path: Path) -> None:
    """SIGKILL a real training process, resume it, and get the uninterrupted run's weights."""
    tests = str(Path(__file__).parent)
    env = {**os.environ, "PYTHONPATH": tests}
    full = tmp_path / "full"
    subprocess.run(
        [sys.executable, "-c", SCRIPT.format(tests=tests, out=str(full), resume=False, slow=False)],
        check=True,
        env=env,
        timeout=120,
    )
    part = tmp_path / "part"
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT.format(tests=tests, out=str(part), resume=False, slow=True)],
        env=env,
    )
    deadline = time.time() + 90
    while time.time() < deadline and (
        latest_checkpoint(part) is None or latest_checkpoint(part).name < "step-0000006"
    ):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = latest_checkpoint(part)
    assert killed_at is not None and killed_at.name < "step-0000024", (
        "the run finished before the kill"
    )
    subprocess.run(
        [sys.executable, "-c", SCRIPT.format(tests=tests, out=str(part), resume=True, slow=False)],
        check=True,
        env=env,
        timeout=120,
    )
    a, b = final_weights(full), final_weights(part)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_refuses_to_overwrite_without_resume(tmp_path: Path) -> None:
    Trainer(make_objective(), small_args(epochs=1), tmp_path).train()
    with pytest.raises(UclipError, match="--resume"):
        Trainer(make_objective(), small_args(epochs=1), tmp_path).train()


def test_resume_with_other_schedule_is_refused(tmp_path: Path) -> None:
    Trainer(make_objective(), small_args(epochs=1), tmp_path).train()
    with pytest.raises(UclipError, match="steps"):
        Trainer(make_objective(), small_args(epochs=2), tmp_path).train(resume=True)


def test_checkpoint_state_is_complete(tmp_path: Path) -> None:
    Trainer(make_objective(), small_args(epochs=1), tmp_path).train()
    ckpt = latest_checkpoint(tmp_path)
    state = json.loads((ckpt / "state.json").read_text())
    assert state["step"] == 4 and "scheduler" in state
    keys = load_file(str(ckpt / "model.safetensors")).keys()
    assert any("running_mean" in k for k in keys), "BatchNorm running stats must be checkpointed"
    assert not list((tmp_path / "checkpoints").glob(".tmp-*"))


def test_bad_arguments() -> None:
    with pytest.raises(UclipError, match="batch_size"):
        TrainArgs(batch_size=0)
    with pytest.raises(UclipError, match="optimizer"):
        TrainArgs(optimizer="sgd")
    with pytest.raises(UclipError, match="unknown key"):
        TrainArgs.from_dict({"learning_rate": 1.0})


def test_objective_dim_mismatch() -> None:
    obj = make_objective()
    with pytest.raises(UclipError, match="f_C expects"):
        UCLIPObjective(UCLIPHeads(7, 10, 8), obj.e_c, obj.e_m, obj.v_c, obj.m_m, obj.hp)
    with pytest.raises(UclipError, match="one row per"):
        UCLIPObjective(obj.model, obj.e_c[:3], obj.e_m, obj.v_c, obj.m_m, obj.hp)
