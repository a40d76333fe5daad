"""Latency benchmark (uCLIP Table 4 analogue): timing protocol, ratios, table, CLI --quick."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from uclip.errors import UclipError
from uclip.eval import latency
from uclip.eval.latency import (
    PAPER_TABLE4_MS,
    Contender,
    latency_rows,
    measure_latency,
    paired_ratio,
    time_interleaved,
)

TEXTS = [
    "Žena jede na kole po ulici.",
    "Koira juoksee rannalla.",
    "Muškarac svira gitaru na pozornici.",
    "Két gyerek focizik a parkban.",
]
ENGLISH = [
    "A woman rides a bike down the street.",
    "A dog runs on the beach.",
    "A man plays guitar on stage.",
    "Two children play football in the park.",
]


pytestmark = pytest.mark.usefixtures("one_thread")


def test_time_interleaved_rotates_order_and_warms_up() -> None:
    calls: list[tuple[str, int]] = []
    fns = {name: (lambda r, name=name: calls.append((name, r))) for name in "abc"}
    times = time_interleaved(fns, repeats=3, warmup=2)
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3, "c": 3}
    # warm-up: every function twice (r = 0, 1), then repeats in rotated order
    assert calls[:6] == [("a", 0), ("a", 1), ("b", 0), ("b", 1), ("c", 0), ("c", 1)]
    assert [n for n, _ in calls[6:]] == list("abc" + "bca" + "cab")
    assert [r for _, r in calls[6:]] == [0] * 3 + [1] * 3 + [2] * 3


def test_time_interleaved_rejects_bad_arguments() -> None:
    with pytest.raises(UclipError, match="at least one function"):
        time_interleaved({}, repeats=1)
    with pytest.raises(UclipError, match="repeats must be >= 1"):
        time_interleaved({"a": lambda r: None}, repeats=0)


def test_paired_ratio_is_median_of_within_repeat_ratios() -> None:
    # ratios 2, 4, 2 -> median 2 (the ratio of medians would be 4 / 1 = 4)
    assert paired_ratio([2.0, 4.0, 6.0], [1.0, 1.0, 3.0]) == 2.0
    with pytest.raises(UclipError, match="equally long"):
        paired_ratio([1.0], [1.0, 2.0])


def _fake(key: str, kind: str, paper_key: str | None) -> Contender:
    return Contender(
        key=key,
        label=key.upper(),
        kind=kind,
        architecture="fake",
        weights="random-init",
        tokenizer="none",
        parameters=2_000_000,
        encode=lambda texts, english: torch.zeros(len(texts), 4),
        paper_key=paper_key,
    )


def test_latency_rows_hand_computed() -> None:
    contenders = [_fake("uclip-mpnet", "uclip", "uclip"), _fake("mclip", "peer", "mclip")]
    times = {
        4: {"uclip-mpnet": [0.4, 0.8, 0.4], "mclip": [1.2, 1.6, 2.0]},
        1: {"uclip-mpnet": [0.1, 0.1, 0.1], "mclip": [0.3, 0.2, 0.5]},
    }
    rows = {(r["batch"], r["key"]): r for r in latency_rows(contenders, times)}
    ref, peer = rows[4, "uclip-mpnet"], rows[4, "mclip"]
    assert ref["ms/sample"] == pytest.approx(100.0)  # median 0.4 s / 4 samples
    assert peer["ms/sample"] == pytest.approx(400.0)
    assert ref["ratio vs uCLIP"] == 1.0
    assert peer["ratio vs uCLIP"] == pytest.approx(3.0)  # ratios 3, 2, 5 -> 3
    assert rows[1, "mclip"]["ratio vs uCLIP"] == pytest.approx(3.0)
    assert peer["paper ms/sample"] == PAPER_TABLE4_MS["mclip"]["total"]
    assert peer["paper ratio vs uCLIP"] == pytest.approx(94.4 / 23.56, abs=1e-3)
    assert peer["params (M)"] == 2.0


def test_measure_latency_feeds_every_contender_the_same_batches() -> None:
    seen: dict[str, list[list[str]]] = {"a": [], "b": []}

    def make(key: str) -> Contender:
        c = _fake(key, "uclip", None)
        c.encode = lambda texts, english: seen[key].append(list(texts)) or torch.zeros(1)
        return c

    times = measure_latency(
        [make("a"), make("b")], TEXTS, ENGLISH, batch_sizes=(3,), repeats=2, warmup=0
    )
    assert set(times[3]) == {"a", "b"}
    assert seen["a"] == seen["b"] == [TEXTS[:3], [TEXTS[3], TEXTS[0], TEXTS[1]]]
    with pytest.raises(UclipError, match="one English caption each"):
        measure_latency([make("a")], TEXTS, ENGLISH[:2])


def test_unknown_contender_is_a_clear_error() -> None:
    with pytest.raises(UclipError, match="unknown latency contender"):
        latency.build_contenders(["clip-xxl"])


def test_quick_run_through_cli_writes_table_with_ratios(tmp_path, monkeypatch) -> None:
    from uclip.app import cli_bench

    # --threads also sets OMP_NUM_THREADS (torch's count is restored by _one_thread)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    captured = {}
    real = latency.run_latency

    def run_on_fixed_texts(**kwargs):
        captured.update(kwargs)
        return real(**kwargs, texts=TEXTS, english=ENGLISH)

    monkeypatch.setattr(latency, "run_latency", run_on_fixed_texts)
    parser = argparse.ArgumentParser()
    cli_bench.add_commands(parser.add_subparsers(dest="command"))
    keys = "uclip-mpnet,nllb-clip,translate-clip"
    ns = parser.parse_args(
        ["bench", "latency", "--quick", "--out", str(tmp_path), "--systems", keys,
         "--batch-sizes", "1,2", "--repeats", "2", "--warmup", "0", "--threads", "1"]
    )  # fmt: skip
    assert ns.func(ns) == 0
    assert captured["quick"] is True
    payload = json.loads((tmp_path / "latency.json").read_text())
    rows = payload["rows"]
    assert [(r["batch"], r["key"]) for r in rows] == [
        (b, k) for b in (1, 2) for k in keys.split(",")
    ]
    for r in rows:
        assert r["ms/sample"] > 0 and r["ratio vs uCLIP"] > 0
        if r["key"] == "uclip-mpnet":
            assert r["ratio vs uCLIP"] == 1.0 and r["paper ms/sample"] == 23.56
    translate = [r for r in rows if r["key"] == "translate-clip"]
    assert all(0 < r["translation ms/sample"] <= r["ms/sample"] for r in translate)
    assert payload["device"].startswith("cpu") and payload["torch_threads"] == 1
    assert payload["quick"] is True and payload["reference"].startswith("uCLIP")
    md = (tmp_path / "latency.md").read_text()
    assert "ratio vs uCLIP" in md and "paper ms/sample" in md and "TITAN Xp" in md
    assert "xlm-r pieces → NLLB vocab*" in md  # unavailable tokenizers are disclosed
