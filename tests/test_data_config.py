"""The ``data`` section of a uCLIP run config (issue "Design II", item 3): one typed dataclass,
its defaults written once, parsed once, and read as attributes by every consumer."""

from __future__ import annotations

import dataclasses
import json
from functools import partialmethod
from pathlib import Path
from typing import Any

import pytest
import torch

from uclip.app import train
from uclip.errors import UclipError
from uclip.method.data import UCLIPData

ROOT = Path(__file__).resolve().parents[1]
UCLIP_CONFIG = ROOT / "configs" / "uclip-text-anchor.json"
MODEL = json.loads(UCLIP_CONFIG.read_text())["model"]


class Stop(Exception):
    """Raised by a recording stand-in once it has seen its arguments."""


def test_an_empty_section_parses_to_the_dataclass_defaults() -> None:
    parsed = train.run_config({"model": MODEL}).data
    assert parsed == UCLIPData.from_dict({}) == UCLIPData()
    for f in dataclasses.fields(UCLIPData):
        assert getattr(parsed, f.name) == f.default, f.name
    with pytest.raises(dataclasses.FrozenInstanceError):
        parsed.n_train = 1  # type: ignore[misc]


def test_a_default_changed_in_the_dataclass_reaches_the_corpora_dev_sets_and_plan(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Change the defaults where they are written (the dataclass): every consumer must follow.
    changed = {"n_train": 77, "n_bank_v": 33, "n_bank_m": 22, "n_news": 5}
    changed |= {"seed": 3, "dev_tatoeba_per_lang": 9, "dev_news_per_lang": 4}
    monkeypatch.setattr(UCLIPData, "__init__", partialmethod(UCLIPData.__init__, **changed))
    run = train.run_config({"model": MODEL, "data": {"corpus": "multi30k"}}, random_init=True)
    seen: dict[str, Any] = {}

    def corpora(data_dir: Path, n_train: int, n_bank_v: int, n_bank_m: int, **kw: Any) -> None:
        seen.update(n_train=n_train, n_bank_v=n_bank_v, n_bank_m=n_bank_m, **kw)
        raise Stop

    monkeypatch.setattr(train, "split_training_corpora", corpora)
    towers = {run.model.anchor_encoder: object(), run.model.multilingual_encoder: object()}
    with pytest.raises(Stop):
        train.prepare_training_data(run, Path("unused"), cache=None, encoders=towers)  # type: ignore[arg-type]
    assert seen == {"n_general": 0, **{k: v for k, v in changed.items() if not k.startswith("dev")}}

    monkeypatch.setattr(train, "dev_sets", lambda data_dir, **kw: seen.update(dev=kw))
    train.data_dev_sets(run.data, Path("unused"))
    assert seen["dev"] == {"tatoeba_per_lang": 9, "multi30k_per_lang": None, "news_per_lang": 4}

    from uclip.app.train_inputs import plan_training

    sizes = plan_training(run, Path("unused"))["sizes"]
    assert sizes == {"captions": 77 + 5, "bank_v": 33, "bank_m": 22}


@pytest.mark.parametrize(
    "data", [{"n_nwes": 5}, {"corpus": "multi30k", "train_caption": ["c.txt"]}]
)
def test_an_unknown_data_key_is_refused_in_one_line(data: dict[str, Any], tmp_path: Path) -> None:
    (key,) = set(data) - {"corpus"}
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"model": MODEL, "data": data}))
    with pytest.raises(UclipError, match=rf"unknown key\(s\) \['{key}'\] in config section 'data'"):
        train.load_run_config(config)
    with pytest.raises(UclipError) as info:
        train.run_config({"model": MODEL, "data": data})
    message = str(info.value)
    assert "\n" not in message and "known: [" in message and "'n_news'" in message
    with pytest.raises(UclipError, match=rf"unknown key '{key}' in section 'data'"):
        train.apply_run_overrides(train.load_run_config(UCLIP_CONFIG).raw, [f"data.{key}=1"])


class RandomCache:
    """An embedding cache stand-in: random unit rows, one per text (no tower runs)."""

    def embed(self, encoder: Any, texts: list[str], **_: Any) -> torch.Tensor:
        return torch.nn.functional.normalize(torch.randn(len(texts), 8), dim=-1)


def test_set_data_n_news_reaches_the_built_training_corpora(shared_data: Path) -> None:
    small = ["data.n_train=50", "data.n_general=7", "data.n_bank_v=20", "data.n_bank_m=20"]
    raw = train.apply_run_overrides(
        train.load_run_config(UCLIP_CONFIG).raw, [*small, "data.n_news=5"]
    )
    run = train.run_config(raw)
    assert run.data.n_news == 5
    towers = {run.model.anchor_encoder: object(), run.model.multilingual_encoder: object()}
    e_c, e_m, _, _, sources = train.prepare_training_data(
        run,
        shared_data,
        RandomCache(),
        progress=False,
        encoders=towers,  # type: ignore[arg-type]
    )
    sizes = {"train": 50, "general": 7, "news": 5, "bank_v": 20, "bank_m": 20}
    assert sources["sizes"] == sizes
    assert len(e_c) == len(e_m) == 50 + 7 + 5


def test_set_data_n_news_is_counted_in_the_dry_run_plan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from uclip.cli import main

    argv = ["train", str(UCLIP_CONFIG), "--dry-run", "--random-init", "--data-dir", str(tmp_path)]
    assert main([*argv, "--set", "data.n_news=5"]) == 0
    sizes = json.loads(capsys.readouterr().out)["sizes"]
    data = json.loads(UCLIP_CONFIG.read_text())["data"]
    assert sizes["captions"] == data["n_train"] + data["n_general"] + 5
