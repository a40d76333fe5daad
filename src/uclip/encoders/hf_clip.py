"""CLIP and SigLIP towers through ``transformers`` (one tower per encoder).

uCLIP uses the frozen CLIP text tower for e^C and the frozen CLIP image tower for v^C (paper §3,
Fig. 3); SigLIP2 is the multilingual baseline of Fig. 2. Each encoder keeps only its own tower:

- CLIP text: ``text_projection(text_model(ids).pooler_output)`` — the EOS-token state projected
  to the joint space, i.e. ``CLIPModel.get_text_features(...).pooler_output`` in transformers 5
  (which returns a ``BaseModelOutputWithPooling`` whose ``pooler_output`` is the projection).
- CLIP image: ``visual_projection(vision_model(pixels).pooler_output)``.
- SigLIP text / image: ``text_model(...).pooler_output`` / ``vision_model(...).pooler_output``
  (the last-token head and the attention-pooling head are inside the towers).

Images are preprocessed with the PIL image processors (``CLIPImageProcessorPil``,
``SiglipImageProcessorPil``), which need no torchvision.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
import transformers
from PIL import Image

from uclip.encoders.base import (
    IMAGE,
    RANDOM_INIT,
    REAL,
    TEXT,
    TorchEncoder,
    dir_weights_id,
    load_failed,
    random_init_weights_id,
    resolve_weights_dir,
)
from uclip.encoders.tokenizers import PretrainedTokenizer, TextTokenizer, fallback_tokenizer
from uclip.errors import UclipError

if TYPE_CHECKING:
    from uclip.encoders.base import EncoderSpec


def _pil_image_processor(name: str) -> type:
    """transformers 5 names the torchvision-free processors ``*Pil`` (the plain name then needs
    torchvision and warns); in 4.x the plain classes are the PIL ones."""
    pil_name = f"{name}Pil"
    return getattr(transformers, pil_name if hasattr(transformers, pil_name) else name)


CLIPImageProcessor = _pil_image_processor("CLIPImageProcessor")
SiglipImageProcessor = _pil_image_processor("SiglipImageProcessor")

_FAMILY = {
    "clip": (transformers.CLIPConfig, transformers.CLIPModel),
    "siglip": (transformers.SiglipConfig, transformers.SiglipModel),
}


class ProjectedTower(torch.nn.Module):
    """A transformer tower followed by an optional projection to the joint space."""

    def __init__(self, body: torch.nn.Module, projection: torch.nn.Module | None) -> None:
        super().__init__()
        self.body = body
        self.projection = projection if projection is not None else torch.nn.Identity()

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        return self.projection(self.body(**inputs).pooler_output)


class HFTextTower(TorchEncoder):
    """Text tower of a CLIP/SigLIP model; ``tokenizer`` is "pretrained" or "fallback".

    SigLIP was trained on text padded to a fixed length without an attention mask, so it gets
    ``use_attention_mask=False``.
    """

    modality = TEXT

    def __init__(
        self,
        *,
        tokenize: TextTokenizer | PretrainedTokenizer,
        use_attention_mask: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.tokenize = tokenize
        self.tokenizer = tokenize.kind
        self.use_attention_mask = use_attention_mask

    def _forward(self, items: list[str]) -> torch.Tensor:
        batch = self.tokenize(items)
        inputs = {"input_ids": batch["input_ids"].to(self.device)}
        if self.use_attention_mask:
            inputs["attention_mask"] = batch["attention_mask"].to(self.device)
        return self.module(**inputs)


class HFImageTower(TorchEncoder):
    """Image tower of a CLIP/SigLIP model; accepts PIL images and image file paths."""

    modality = IMAGE

    def __init__(self, *, processor: Any, **kwargs: Any) -> None:
        kwargs.setdefault("batch_size", 32)
        super().__init__(**kwargs)
        self.processor = processor

    def _forward(self, items: list[Image.Image]) -> torch.Tensor:
        pixels = self.processor(images=items, return_tensors="pt")["pixel_values"]
        return self.module(pixel_values=pixels.to(self.device))


def _split(model: transformers.PreTrainedModel, family: str, tower: str) -> ProjectedTower:
    """The tower's body and projection, from a full two-tower model or a one-tower model."""
    # transformers 5's SiglipTextModel/SiglipVisionModel are the transformer itself; the CLIP
    # tower classes and 4.x SigLIP towers wrap it as .text_model / .vision_model.
    if tower == TEXT:
        projection = model.text_projection if family == "clip" else None
        return ProjectedTower(getattr(model, "text_model", model), projection)
    projection = model.visual_projection if family == "clip" else None
    return ProjectedTower(getattr(model, "vision_model", model), projection)


def _tower_model_class(family: str, tower: str) -> type[transformers.PreTrainedModel]:
    if family == "clip":
        return (
            transformers.CLIPTextModelWithProjection
            if tower == TEXT
            else transformers.CLIPVisionModelWithProjection
        )
    return transformers.SiglipTextModel if tower == TEXT else transformers.SiglipVisionModel


def _tower_config(config: Any, family: str, tower: str) -> Any:
    sub = copy.deepcopy(config.text_config if tower == TEXT else config.vision_config)
    if family == "clip":
        # CLIPConfig does not pass projection_dim down to its sub-configs.
        sub.projection_dim = config.projection_dim
    return sub


def _output_dim(config: Any, family: str, tower: str) -> int:
    if family == "clip":
        return int(config.projection_dim)
    sub = config.text_config if tower == TEXT else config.vision_config
    projection_size = getattr(sub, "projection_size", None)
    return int(projection_size or sub.hidden_size)


def _image_processor(family: str, image_size: int) -> Any:
    if family == "clip":
        return CLIPImageProcessor(
            size={"shortest_edge": image_size},
            crop_size={"height": image_size, "width": image_size},
        )
    return SiglipImageProcessor(size={"height": image_size, "width": image_size})


def build_hf_tower(
    spec: EncoderSpec,
    *,
    random_init: bool,
    path: str | os.PathLike[str] | None,
    device: str,
    seed: int,
    arch: Mapping[str, Any],
) -> HFTextTower | HFImageTower:
    """Build the CLIP/SigLIP tower named by ``spec`` (real weights or random init from ``arch``)."""
    if spec.family not in _FAMILY or spec.tower not in (TEXT, IMAGE):
        raise UclipError(f"spec {spec.name} is not a CLIP/SigLIP tower (family={spec.family})")
    config_cls, model_cls = _FAMILY[spec.family]
    family, tower = spec.family, spec.tower
    is_siglip = family == "siglip"
    if random_init:
        config = config_cls(**{k: v for k, v in arch.items() if k != "model_type"})
        sub = _tower_config(config, family, tower)
        # fork_rng: seeding must not disturb the caller's global RNG stream.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = _tower_model_class(family, tower)(sub)
        module = _split(model, family, tower)
        weights, tokenizer_kind = RANDOM_INIT, "fallback" if tower == TEXT else "none"
        weights_id = random_init_weights_id(seed, spec.arch_name, dict(arch), tokenizer_kind)
        if tower == TEXT:
            tokenize: TextTokenizer | PretrainedTokenizer = fallback_tokenizer(
                vocab_size=sub.vocab_size,
                bos_id=sub.bos_token_id,
                eos_id=sub.eos_token_id,
                pad_id=sub.pad_token_id,
                max_length=min(spec.max_length, sub.max_position_embeddings),
                # SigLIP pools the last position, so it is always fed max-length padded text.
                pad_to_max_length=is_siglip,
                lowercase=is_siglip,
            )
        else:
            processor = _image_processor(family, sub.image_size)
    else:
        source = resolve_weights_dir(spec.name, spec.hf_id, path)
        try:
            config = config_cls.from_pretrained(source, local_files_only=True)
            model = model_cls.from_pretrained(source, config=config, local_files_only=True)
            if tower == TEXT:
                hf_tokenizer = transformers.AutoTokenizer.from_pretrained(
                    source, local_files_only=True
                )
                tokenize = PretrainedTokenizer(
                    hf_tokenizer,
                    max_length=spec.max_length,
                    pad_to_max_length=is_siglip,
                    lowercase=is_siglip,
                )
            else:
                image_cls = SiglipImageProcessor if is_siglip else CLIPImageProcessor
                processor = image_cls.from_pretrained(source, local_files_only=True)
        # transformers signals missing/unreadable files with OSError, malformed configs with
        # ValueError.
        except (OSError, ValueError) as err:
            raise load_failed(spec.name, spec.hf_id, path, err) from None
        module = _split(model, family, tower)
        weights, weights_id = REAL, dir_weights_id(spec.hf_id, source)
    dim = _output_dim(config, family, tower)
    common = dict(
        name=spec.name,
        dim=dim,
        weights=weights,
        weights_id=weights_id,
        module=module,
        device=device,
    )
    if tower == TEXT:
        return HFTextTower(tokenize=tokenize, use_attention_mask=not is_siglip, **common)
    return HFImageTower(processor=processor, **common)
