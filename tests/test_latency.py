"""Latency benchmark (uCLIP Table 4 analogue, benchmarks/latency.py): timing protocol, every
caption timed, consistent columns, peers from the registry, Table 4 as data, CLI --quick."""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import pytest
import torch

from uclip.app import latency, timing
from uclip.app.commands import bench
from uclip.encoders.registry import get_peer, list_peers
from uclip.errors import UclipError
from uclip.eval.reported import load_reported

TEXTS = [
    "Žena jede na kole po ulici.",
    "Koira juoksee rannalla.",
    "Muškarac svira gitaru na pozornici.",
    "Két gyerek focizik a parkban.",
    "Un copil se joacă în parc.",
]
ENGLISH = [
    "A woman rides a bike down the street.",
    "A dog runs on the beach.",
    "A man plays guitar on stage.",
    "Two children play football in the park.",
    "A child plays in the park.",
]
PAPERS = Path(__file__).resolve().parents[2] / "shared" / "papers"


pytestmark = pytest.mark.usefixtures("one_thread")


def test_time_interleaved_rotates_order_and_warms_up() -> None:
    calls: list[tuple[str, int]] = []
    fns = {name: (lambda r, name=name: calls.append((name, r))) for name in "abc"}
    times = timing.time_interleaved(fns, repeats=3, warmup=2)
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3, "c": 3}
    # warm-up: every function twice (r = 0, 1), then repeats in rotated order
    assert calls[:6] == [("a", 0), ("a", 1), ("b", 0), ("b", 1), ("c", 0), ("c", 1)]
    assert [n for n, _ in calls[6:]] == list("abc" + "bca" + "cab")
    assert [r for _, r in calls[6:]] == [0] * 3 + [1] * 3 + [2] * 3


def test_time_interleaved_rejects_bad_arguments() -> None:
    with pytest.raises(UclipError, match="at least one function"):
        timing.time_interleaved({}, repeats=1)
    with pytest.raises(UclipError, match="repeats must be >= 1"):
        timing.time_interleaved({"a": lambda r: None}, repeats=0)


def test_paired_ratio_is_median_of_within_repeat_ratios() -> None:
    # ratios 2, 4, 2 -> median 2 (the ratio of medians would be 4 / 1 = 4)
    assert timing.paired_ratio([2.0, 4.0, 6.0], [1.0, 1.0, 3.0]) == 2.0
    with pytest.raises(UclipError, match="equally long"):
        timing.paired_ratio([1.0], [1.0, 2.0])


def test_caption_batches_cover_every_caption_once() -> None:
    assert [list(b) for b in latency.caption_batches(5, 2)] == [[0, 1], [2, 3], [4]]
    assert [list(b) for b in latency.caption_batches(5, 1)] == [[i] for i in range(5)]
    assert [list(b) for b in latency.caption_batches(3, 64)] == [[0, 1, 2]]


class FakeClock:
    """A clock that only moves when a fake model 'works': costs are exact."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _counting(key: str, kind: str, clock: FakeClock, cost: dict[str, float], seen: list[str]):
    """A contender that records every caption it encodes and advances ``clock`` by
    ``cost[caption]`` seconds per caption."""

    def encode(texts, english):
        assert len(texts) == len(english)
        seen.extend(texts)
        clock.now += sum(cost[t] for t in texts)
        return torch.zeros(len(texts), 4)

    return latency.Contender(
        key=key,
        label=key.upper(),
        kind=kind,
        architecture="fake",
        weights="random-init",
        tokenizer="none",
        parameters=2_000_000,
        encode=encode,
        paper_system="uCLIP" if kind == "uclip" else "M-CLIP",
    )


@pytest.mark.parametrize(("size", "passes"), [(1, 1), (2, 2), (64, 1)])
def test_every_caption_is_timed_and_the_columns_agree(size: int, passes: int) -> None:
    """The batch-1 repair (issue 15): every caption is timed, not ``repeats`` of them, and the
    ratio column is the ratio of the ms/sample column; the paired median ratio is separate."""
    clock = FakeClock()
    # the reference costs 1 s per caption; the peer 2 s for short captions and 6 s for the two
    # long ones, so the ratio of means differs from the median of per-caption ratios
    ref_cost = dict.fromkeys(TEXTS, 1.0)
    peer_cost = {t: 6.0 if len(t) > 28 else 2.0 for t in TEXTS}
    seen: dict[str, list[str]] = {"uclip-mpnet": [], "mclip": []}
    contenders = [
        _counting("uclip-mpnet", "uclip", clock, ref_cost, seen["uclip-mpnet"]),
        _counting("mclip", "peer", clock, peer_cost, seen["mclip"]),
    ]
    warmup = 1
    times = latency.measure_latency(
        contenders, TEXTS, ENGLISH, batch_sizes=(size,), passes=passes, warmup=warmup, clock=clock
    )
    first_batch = TEXTS[:size]
    for key, texts in seen.items():
        timed = texts[len(first_batch) * warmup :]  # warm-up calls come first
        assert sorted(timed) == sorted(TEXTS * passes), key
    batch = times[size]
    assert sum(batch.samples) == len(TEXTS) * passes
    assert sum(batch.seconds["uclip-mpnet"]) == pytest.approx(len(TEXTS) * passes)
    assert sum(batch.seconds["mclip"]) == pytest.approx(sum(peer_cost.values()) * passes)

    rows = {r["key"]: r for r in latency.latency_rows(contenders, times)}
    ref, peer = rows["uclip-mpnet"], rows["mclip"]
    assert ref["captions timed"] == peer["captions timed"] == len(TEXTS) * passes
    assert ref["ms/sample"] == pytest.approx(1000.0)
    mean_peer = 1000.0 * sum(peer_cost.values()) / len(TEXTS)
    assert peer["ms/sample"] == pytest.approx(mean_peer)
    assert peer["ratio vs uCLIP"] == pytest.approx(peer["ms/sample"] / ref["ms/sample"], abs=1e-3)
    per_call = [
        p / r for p, r in zip(batch.seconds["mclip"], batch.seconds["uclip-mpnet"], strict=True)
    ]
    assert peer["paired median ratio vs uCLIP"] == pytest.approx(statistics.median(per_call))
    if size == 1:  # per caption: ratios 2, 2, 6, 6, 2 -> median 2; ratio of means 18 / 5
        assert peer["paired median ratio vs uCLIP"] == pytest.approx(2.0)
        assert peer["ratio vs uCLIP"] == pytest.approx(3.6)
    assert ref["ratio vs uCLIP"] == ref["paired median ratio vs uCLIP"] == 1.0
    assert peer["paper ms/sample"] == 94.4
    assert peer["paper ratio vs uCLIP"] == pytest.approx(94.4 / 23.56, abs=1e-3)
    assert peer["params (M)"] == 2.0


def test_measure_latency_feeds_every_contender_the_same_batches() -> None:
    clock = FakeClock()
    seen: dict[str, list[str]] = {"a": [], "b": []}
    cost = dict.fromkeys(TEXTS, 1.0)
    contenders = [_counting(k, "uclip", clock, cost, seen[k]) for k in seen]
    latency.measure_latency(
        contenders, TEXTS, ENGLISH, batch_sizes=(3,), passes=1, warmup=0, clock=clock
    )
    assert seen["a"] == seen["b"] == TEXTS
    with pytest.raises(UclipError, match="one English caption each"):
        latency.measure_latency(contenders, TEXTS, ENGLISH[:2])
    with pytest.raises(UclipError, match="passes must be >= 1"):
        latency.measure_latency(contenders, TEXTS, ENGLISH, passes=0)


def test_unknown_contender_is_a_clear_error() -> None:
    with pytest.raises(UclipError, match="unknown latency contender"):
        latency.build_contenders(["clip-xxl"])


def test_peers_come_from_the_encoder_registry() -> None:
    peers = {p.name: p for p in list_peers()}
    assert set(peers) == {"mclip", "altclip", "siglip2", "nllb-clip", "translate-clip"}
    assert latency.all_keys() == latency.UCLIP_KEYS + tuple(peers)
    for peer in peers.values():
        if peer.projection is not None:  # the registry's projection fits its architecture
            width = peer.arch.get("project_dim") if peer.pooling == "pooler" else None
            width = width or peer.arch.get("hidden_size") or peer.arch.get("d_model")
            assert width == peer.projection[0], peer.name
    assert get_peer("mclip").arch["num_hidden_layers"] == 24
    assert get_peer("translate-clip").target_lang_token_id == 256047  # eng_Latn
    with pytest.raises(UclipError, match="unknown latency peer"):
        get_peer("clip-xxl")


def test_every_peer_builds_quick_and_encodes_unit_rows() -> None:
    contenders = latency.build_contenders(list(latency.peer_keys()), quick=True)
    for c in contenders:
        out = c.encode(TEXTS[:2], ENGLISH[:2])
        assert out.shape[0] == 2, c.key
        torch.testing.assert_close(out.norm(dim=1), torch.ones(2), msg=c.key)
        assert c.weights == "random-init" and c.paper_system is not None


def test_table4_is_reported_data() -> None:
    table = latency.paper_table4()
    assert table["CLIP + Translator"] == {
        "translation_ms": 459.02,
        "encoding_ms": 21.11,
        "total_ms": 480.13,
    }
    assert table["uCLIP"]["total_ms"] == 23.56 and table["M-CLIP"]["total_ms"] == 94.4
    assert {p.paper_system for p in list_peers()} <= set(table)
    numbers = load_reported(task="latency")
    assert numbers and all(n.unit == "ms/sample" and n.table == 4 for n in numbers)
    if PAPERS.is_dir():  # every figure appears on its row of the paper's Table 4
        text = (PAPERS / "uclip-2511.13036.txt").read_text("utf-8")
        section = text[: text.index("Table 4:")]
        for n in numbers:
            line = next(s for s in section.splitlines()[::-1] if s.startswith(n.paper_label))
            assert f"{n.value:g}" in line.replace("<u>", "").replace("</u>", ""), n


def test_installed_package_imports_no_checkout_file() -> None:
    # `uclip bench latency` once imported benchmarks/latency.py by path, which an installed uclip
    # does not have: the package imports only itself and its dependencies
    import uclip

    package = Path(uclip.__file__).resolve().parent
    for path in package.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for needle in ("spec_from_file_location", "sys.path"):
            assert needle not in text, f"{path.relative_to(package)} uses {needle}"
    assert Path(latency.__file__).resolve().is_relative_to(package)


def test_quick_run_through_cli_writes_table_with_ratios(tmp_path, monkeypatch) -> None:
    # --threads also sets OMP_NUM_THREADS (torch's count is restored by one_thread)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    captured = {}
    real = latency.run_latency

    def run_on_fixed_texts(**kwargs):
        captured.update(kwargs)
        return real(**kwargs, texts=TEXTS[:3], english=ENGLISH[:3])

    monkeypatch.setattr(latency, "run_latency", run_on_fixed_texts)
    parser = argparse.ArgumentParser()
    bench.register(parser.add_subparsers(dest="command"))
    keys = "uclip-mpnet,nllb-clip,translate-clip"
    ns = parser.parse_args(
        ["bench", "latency", "--quick", "--out", str(tmp_path), "--systems", keys,
         "--batch-sizes", "1,2", "--warmup", "0", "--threads", "1"]
    )  # fmt: skip
    assert ns.func(ns) == 0
    assert captured["quick"] is True and captured["passes"] == 1
    payload = json.loads((tmp_path / "latency.json").read_text())
    rows = payload["rows"]
    assert [(r["batch"], r["key"]) for r in rows] == [
        (b, k) for b in (1, 2) for k in keys.split(",")
    ]
    for r in rows:
        assert r["captions timed"] == 3
        assert r["ms/sample"] > 0 and r["paired median ratio vs uCLIP"] > 0
        reference = next(x for x in rows if x["batch"] == r["batch"] and x["key"] == "uclip-mpnet")
        assert r["ratio vs uCLIP"] == pytest.approx(r["ms/sample"] / reference["ms/sample"], 1e-2)
        if r["key"] == "uclip-mpnet":
            assert r["ratio vs uCLIP"] == 1.0 and r["paper ms/sample"] == 23.56
    assert payload["raw_seconds"]["1"]["samples"] == [1, 1, 1]
    assert payload["raw_seconds"]["2"]["samples"] == [2, 1]
    translate = [r for r in rows if r["key"] == "translate-clip"]
    assert all(0 < r["translation ms/sample"] <= r["ms/sample"] for r in translate)
    assert payload["device"].startswith("cpu") and payload["torch_threads"] == 1
    assert payload["quick"] is True and payload["reference"].startswith("uCLIP")
    assert payload["command"].startswith("uclip ")
    md = (tmp_path / "latency.md").read_text()
    assert "ratio vs uCLIP" in md and "paper ms/sample" in md and "TITAN Xp" in md
    assert "every caption timed" in md and "paired median ratio" in md
    assert "xlm-r pieces → NLLB vocab*" in md  # unavailable tokenizers are disclosed
