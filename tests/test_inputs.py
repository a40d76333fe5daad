"""Inputs checked before the expensive work (issue 23): the device, YAML aliases, stale torchrun
variables."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from uclip.app import train
from uclip.errors import UclipError
from uclip.train.args import load_config_file
from uclip.train.distributed import dist_timeout_s, init_distributed

ROOT = Path(__file__).resolve().parents[1]
UCLIP_CONFIG = ROOT / "configs" / "uclip-text-anchor.json"


def test_unavailable_device_refused_before_encoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = train.apply_run_overrides(
        train.load_run_config(UCLIP_CONFIG).raw, ["train.device=cuda:99"]
    )
    run = train.run_config(raw)  # a config written for a GPU still validates anywhere

    def encoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("encoding started before the device was checked")

    monkeypatch.setattr(train, "prepare_training_data", encoding)
    with pytest.raises(UclipError, match=r'train\.device = "cuda:99" is not available'):
        train.train_run(run, tmp_path, tmp_path / "out", cache=None)  # type: ignore[arg-type]


def test_yaml_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for i in range(1, 10):
        refs = ", ".join([f"*a{i - 1}"] * 9)
        lines.append(f"a{i}: &a{i} [{refs}]")
    lines.append("train: {lr: 0.001}")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    assert len(path.read_bytes()) < 1500
    started = time.perf_counter()
    with pytest.raises(UclipError, match="YAML aliases"):
        load_config_file(path)
    assert time.perf_counter() - started < 5
    # Ordinary aliases still load.
    path.write_text("base: &b {lr: 0.001}\ntrain: *b\n")
    assert load_config_file(path)["train"] == {"lr": 0.001}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_stale_torchrun_variables_say_what_the_run_waits_for(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(_free_port()))
    started = time.perf_counter()
    with pytest.raises(UclipError, match=r"waits up to 2 s .* for the other 1 rank") as info:
        init_distributed(timeout_s=2)
    assert time.perf_counter() - started < 60
    assert "unset WORLD_SIZE" in str(info.value) and "\n" not in str(info.value)
    assert "waits up to 2 s" in caplog.text  # said before the wait, not only after it


def test_distributed_wait_is_minutes_and_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UCLIP_DIST_TIMEOUT_S", raising=False)
    assert dist_timeout_s() == 300
    monkeypatch.setenv("UCLIP_DIST_TIMEOUT_S", "60")
    assert dist_timeout_s() == 60
    monkeypatch.setenv("UCLIP_DIST_TIMEOUT_S", "soon")
    with pytest.raises(UclipError, match="UCLIP_DIST_TIMEOUT_S"):
        dist_timeout_s()
