"""One --set parser (issue 23): ``section.key=value`` means the same in train, quickstart, ablate
and clt train, and an unknown section or key is one line in every command."""

from __future__ import annotations

from pathlib import Path

import pytest

from uclip.app import ablate, clt, quickstart, train
from uclip.errors import UclipError

ROOT = Path(__file__).resolve().parents[1]
UCLIP_CONFIG = ROOT / "configs" / "uclip-text-anchor.json"
CLT_CONFIG = ROOT / "configs" / "clt-tiny.json"

BAD = [
    ("trian.lr=5", "unknown config section 'trian'"),
    ("TRAIN.max_steps=1", "unknown config section 'TRAIN'"),
    ("description.note=hi", "section 'description'"),
    ("train.nonsense=1", "unknown key 'nonsense' in section 'train'"),
    ("train.lr", "must look like section.key=value"),
]


def _train(specs: list[str]) -> object:
    return train.apply_run_overrides(train.load_run_config(UCLIP_CONFIG).raw, specs)


def _quickstart(specs: list[str]) -> object:
    return quickstart.quickstart_config(
        quickstart.QuickstartArgs(config=UCLIP_CONFIG, out=Path("unused"), overrides=tuple(specs))
    )


def _ablate(specs: list[str]) -> object:
    return ablate.apply_variation_overrides(train.load_run_config(UCLIP_CONFIG).raw, specs)


def _clt(specs: list[str]) -> object:
    return clt.load_clt_config(CLT_CONFIG, specs)


COMMANDS = {"train": _train, "quickstart": _quickstart, "ablate": _ablate, "clt": _clt}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(("spec", "message"), BAD)
def test_unknown_section_or_key_is_one_line_in_every_command(
    command: str, spec: str, message: str
) -> None:
    with pytest.raises(UclipError, match=message) as info:
        COMMANDS[command]([spec])
    assert "\n" not in str(info.value)


def test_the_same_override_means_the_same_everywhere() -> None:
    assert _train(["train.lr=0.0005"])["train"]["lr"] == 0.0005
    assert _quickstart(["train.lr=0.0005"])["train"]["lr"] == 0.0005
    assert _ablate(["train.lr=5e-4"])["train"]["lr"] == 0.0005
    assert _clt(["train.lr=5e-4"]).train.lr == 0.0005
    # The ablation's shorthands expand to the same grammar first.
    expanded = _ablate(["sigma2=0.001"])["method"]
    assert expanded["noise_variance"] == 0.001 and expanded["perturb"] is True
    assert _train(["data.n_train=20", "data.n_train=30"])["data"]["n_train"] == 30


def test_cli_train_refuses_an_unknown_section(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from uclip.cli import main

    code = main(["train", str(UCLIP_CONFIG), "--out", str(tmp_path / "run"), "--set", "trian.lr=5"])
    assert code == 2
    assert "unknown config section 'trian'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
