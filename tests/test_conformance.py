"""One conformance suite for every EmbeddingModel (uCLIP, CLT, one encoder, dual towers): what
evaluators, the search index and the figures rely on, checked the same way on each. Tiny
random-init towers keep it fast; each model is also checked after a save -> uclip.load trip
where the kind can be saved."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from PIL import Image

import uclip
from uclip.clt.model import CLTConfig, build_clt_model
from uclip.encoders.base import RANDOM_INIT, REAL, EmbeddingModel
from uclip.encoders.registry import build_encoder, get_spec
from uclip.errors import UclipError
from uclip.eval.models import DualTowerModel, EncoderModel
from uclip.method.model import UCLIPConfig, UCLIPModel

SMALL = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
         "num_attention_heads": 2}  # fmt: skip
TINY = {
    "clip": {
        "text_config": SMALL,
        "vision_config": {**SMALL, "image_size": 32, "patch_size": 16},
        "projection_dim": 8,
    },
    "sentence-transformers": SMALL,
}
CLT = {
    "text": {
        "kind": "xlm-roberta",
        "weights": "random-init",
        "arch": {**SMALL, "vocab_size": 512, "max_position_embeddings": 40, "type_vocab_size": 1,
                 "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2},
        "max_length": 24,
    },
    "image": {"kind": "vit", "weights": "random-init", "arch": {**SMALL, "patch_size": 8},
              "pooling": "cls", "image_size": 16},
    "embed_dim": 8,
}  # fmt: skip
TEXTS = ["a dog runs on the beach", "Kočka spí na gauči.", "犬が走る", "un chat"]
KINDS = {"uclip", "clt", "encoder", "dual"}
WEIGHTS = (REAL, RANDOM_INIT)
MIXED = re.compile(r"^mixed: \w+=(real|random-init)(, \w+=(real|random-init))+$")


def tiny(name: str):
    overrides = TINY[get_spec(name).family]
    return build_encoder(name, random_init=True, config_overrides=overrides)


@pytest.fixture(scope="module")
def towers() -> dict[str, object]:
    names = ("clip-b32-openai:image", "clip-b32-openai:text", "minilm-l12-multilingual")
    return {name: tiny(name) for name in names}


def uclip_model(towers, tmp: Path) -> UCLIPModel:
    config = UCLIPConfig(
        anchor_encoder="clip-b32-openai:text",
        image_encoder="clip-b32-openai:image",
        multilingual_encoder="minilm-l12-multilingual",
        anchor_dim=8,
        multilingual_dim=16,
        embed_dim=8,
        random_init=True,
    )
    torch.manual_seed(0)
    model = UCLIPModel(config).eval()
    model.use_encoders(dict(towers))
    return model


def uclip_loaded(towers, tmp: Path) -> UCLIPModel:
    model = uclip.load(str(uclip_model(towers, tmp).save(tmp / "uclip")))
    model.use_encoders(dict(towers))
    return model


def clt_model(towers, tmp: Path):
    return build_clt_model(CLTConfig.from_dict(CLT)).eval()


def clt_loaded(towers, tmp: Path):
    return uclip.load(str(clt_model(towers, tmp).save(tmp / "clt")))


def encoder_model(towers, tmp: Path) -> EncoderModel:
    return EncoderModel(towers["minilm-l12-multilingual"])


def dual_model(towers, tmp: Path) -> DualTowerModel:
    return DualTowerModel(towers["clip-b32-openai:image"], towers["clip-b32-openai:text"])


def dual_projected(towers, tmp: Path) -> DualTowerModel:
    """A 16-d text tower beside an 8-d image tower: the M-CLIP-style random projection."""
    return DualTowerModel(towers["clip-b32-openai:image"], towers["minilm-l12-multilingual"])


FACTORIES: dict[str, Callable] = {
    "uclip": uclip_model,
    "uclip-loaded": uclip_loaded,
    "clt": clt_model,
    "clt-loaded": clt_loaded,
    "encoder": encoder_model,
    "dual": dual_model,
    "dual-projected": dual_projected,
}


@pytest.fixture(params=sorted(FACTORIES))
def model(request, towers, tmp_path: Path, one_thread) -> EmbeddingModel:
    return FACTORIES[request.param](towers, tmp_path)


def _images() -> list[Image.Image]:
    return [Image.new("RGB", (40, 30), (i * 60, 100, 200 - i * 50)) for i in range(3)]


def check_embeddings(x: torch.Tensor, rows: int) -> int:
    assert isinstance(x, torch.Tensor) and x.ndim == 2 and x.shape[0] == rows
    assert x.dtype == torch.float32 and x.device.type == "cpu" and not x.requires_grad
    torch.testing.assert_close(x.norm(dim=1), torch.ones(rows), atol=1e-5, rtol=0)
    return x.shape[1]


def test_every_model_follows_the_embedding_model_protocol(model: EmbeddingModel) -> None:
    assert isinstance(model, EmbeddingModel)
    assert isinstance(model.name, str) and model.name

    text = model.encode_text(TEXTS, "xx")
    dim = check_embeddings(text, len(TEXTS))
    assert check_embeddings(model.encode_english(TEXTS[:2]), 2) == dim
    try:
        images = model.encode_image(_images())
    except UclipError:  # a text-only model says so in one line; it never half-works
        assert isinstance(model, EncoderModel)
    else:
        assert check_embeddings(images, 3) == dim

    # Deterministic, and a row does not depend on its batch (padding, length sorting).
    torch.testing.assert_close(model.encode_text(TEXTS, "xx"), text)
    one = torch.cat([model.encode_text([t]) for t in TEXTS])
    torch.testing.assert_close(one, text, atol=1e-5, rtol=1e-4)


def test_describe_and_the_weights_vocabulary(model: EmbeddingModel) -> None:
    model.encode_text(TEXTS[:1])  # towers may be built on first use; describe() follows them
    info = model.describe()
    json.dumps(info)
    assert info["kind"] in KINDS
    assert isinstance(info["towers"], dict) and info["towers"]
    for tower in info["towers"].values():
        assert isinstance(tower["encoder"], str) and tower["weights"] in WEIGHTS
    if info["kind"] in ("uclip", "clt"):
        assert isinstance(info["config"], dict)

    weights = model.weights
    assert weights in WEIGHTS or MIXED.match(weights), weights
    labels = {tower["weights"] for tower in info["towers"].values()}
    if weights in WEIGHTS:
        assert labels == {weights}
    else:
        assert labels <= set(re.findall(r"=(real|random-init)", weights))
    # Every tower here is random-init: a model must never report such numbers as real.
    assert REAL not in labels and weights == RANDOM_INIT
