"""CLT as an :class:`uclip.train.trainer.Objective`: batches of examples -> the contrastive loss.

Image–caption modes (``eng_only``, ``multilingual``, ``multilingual_plus``): captions query the
images of the batch, ``CrossEntropy(E_c · E_iᵀ · t, I)``. ``eng_pivot``: each translation queries
the English sentences of the batch (text–text, LaBSE-style, as the paper's Eng-Pivot model);
``pivot_image_weight > 0`` adds the English-caption–image term (image and text pairs together).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from PIL import Image
from torch import Tensor

from uclip.clt.data import CaptionCorpus, Example
from uclip.clt.loss import clt_loss
from uclip.clt.model import CLTModel
from uclip.clt.schedule import ThawSchedule
from uclip.encoders.base import load_image
from uclip.errors import UclipError
from uclip.validation import check_mapping


@dataclass
class CLTMethod:
    """The ``method`` section of a CLT config."""

    symmetric: bool = False  # the paper: captions -> images only
    mask_duplicates: bool = True  # a no-op with one example per image (the paper's data)
    pivot_image_weight: float = 0.0  # eng_pivot: 0 = text-text only, as the paper's Eng-Pivot
    adapter_lr: float | None = None  # None: one lr for everything (the paper)
    thaw_at_epochs: float = 0.5
    thaw_text: bool = True
    thaw_image: bool = True
    freeze_text_word_embeddings: bool = False

    def __post_init__(self) -> None:
        if self.adapter_lr is not None and self.adapter_lr <= 0:
            raise UclipError(f"adapter_lr must be > 0 (or null), got {self.adapter_lr}")
        if self.pivot_image_weight < 0:
            raise UclipError(f"pivot_image_weight must be >= 0, got {self.pivot_image_weight}")

    def schedule(self) -> ThawSchedule:
        return ThawSchedule(
            self.thaw_at_epochs, self.thaw_text, self.thaw_image, self.freeze_text_word_embeddings
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CLTMethod:
        return cls(**check_mapping(data, cls, "method"))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _group_ids(keys: Sequence[Any]) -> Tensor:
    ids: dict[Any, int] = {}
    return torch.tensor([ids.setdefault(k, len(ids)) for k in keys], dtype=torch.long)


class CLTObjective:
    """Supplies the CLT loss to the shared Trainer and thaws the encoders on schedule."""

    def __init__(
        self,
        model: CLTModel,
        examples: Sequence[Example],
        corpus: CaptionCorpus,
        method: CLTMethod,
        *,
        pixel_cache_size: int = 4096,
    ) -> None:
        self.model = model
        self.examples = list(examples)
        self.num_examples = len(self.examples)
        self.corpus = corpus
        self.method = method
        self.schedule = method.schedule()
        self.pivot = any(ex.pivot_text is not None for ex in self.examples)
        if self.pivot and not all(ex.pivot_text is not None for ex in self.examples):
            raise UclipError("mix of eng_pivot and image-caption examples: build one data mode")
        self.uses_images = not self.pivot or method.pivot_image_weight > 0
        if self.uses_images and not corpus.has_images:
            raise UclipError(
                f"corpus {corpus.name} has no image files but the data mode trains on images: "
                "set data.images_dir or use text-only eng_pivot"
            )
        self.pixel_cache_size = pixel_cache_size
        self._pixels: dict[int, Tensor] = {}
        self._frozen_features: dict[int, Tensor] = {}
        self.thawed = False

    # Objective protocol --------------------------------------------------------------------
    def trainable_parameters(self) -> list[Any]:
        """Every parameter that trains at some step. With ``method.adapter_lr`` set, two torch
        parameter groups instead: adapters + t at that rate, encoders at ``train.lr``."""
        params = self.schedule.trainable_parameters(self.model)
        if self.method.adapter_lr is None:
            return params
        adapters = {id(p) for p in self.model.adapter_parameters()}
        groups = [
            {"params": [p for p in params if id(p) in adapters], "lr": self.method.adapter_lr},
            {"params": [p for p in params if id(p) not in adapters]},
        ]
        return [g for g in groups if g["params"]]

    def on_step_begin(self, step: int, steps_per_epoch: int) -> None:
        self.thawed = self.schedule.apply(self.model, step, steps_per_epoch)

    def loss(self, indices: Tensor, step: int, generator: torch.Generator) -> dict[str, Tensor]:
        batch = [self.examples[int(i)] for i in indices]
        # Dropout draws from the global RNG: seed it from the step's generator so that a resumed
        # run repeats the same masks (the Trainer derives every other random choice that way).
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        with torch.random.fork_rng(devices=self._devices()):
            torch.manual_seed(seed)
            return self._loss(batch)

    # internals -----------------------------------------------------------------------------
    def _devices(self) -> list[Any]:
        device = next(self.model.parameters()).device
        return [device] if device.type == "cuda" else []

    def _loss(self, batch: list[Example]) -> dict[str, Tensor]:
        m = self.method
        model = self.model
        captions = model.embed_text(model.text_features([ex.text for ex in batch]))
        terms: dict[str, Tensor] = {}
        image_groups = _group_ids([ex.image for ex in batch]) if m.mask_duplicates else None
        if self.pivot:
            english = model.embed_text(model.text_features([ex.pivot_text or "" for ex in batch]))
            pivot_groups = (
                _group_ids([ex.pivot_text for ex in batch]) if m.mask_duplicates else None
            )
            loss = clt_loss(
                captions,
                english,
                self.model.logit_scale,
                symmetric=m.symmetric,
                groups=pivot_groups,
            )
            terms["loss_text_text"] = loss.detach()
            if m.pivot_image_weight > 0:
                images = self._image_embeddings([ex.image for ex in batch])
                image_term = clt_loss(
                    english,
                    images,
                    self.model.logit_scale,
                    symmetric=m.symmetric,
                    groups=image_groups,
                )
                terms["loss_image_text"] = image_term.detach()
                loss = loss + m.pivot_image_weight * image_term
        else:
            images = self._image_embeddings([ex.image for ex in batch])
            loss = clt_loss(
                captions, images, self.model.logit_scale, symmetric=m.symmetric, groups=image_groups
            )
            terms["loss_image_text"] = loss.detach()
        terms["temperature"] = self.model.temperature.detach()
        terms["thawed"] = torch.tensor(float(self.thawed))
        return {"loss": loss, **terms}

    def _load_pixels(self, index: int) -> Tensor:
        cached = self._pixels.get(index)
        if cached is None:
            path = self.corpus.images[index].image_path
            image: Image.Image = load_image(path, name="CLT training image")
            cached = self.model.image_tower.preprocess.one(image)
            if len(self._pixels) < self.pixel_cache_size:
                self._pixels[index] = cached
        return cached

    def _image_embeddings(self, image_indices: list[int]) -> Tensor:
        device = next(self.model.image_adapter.parameters()).device
        if not self.schedule.thaw_image:
            # The image tower never trains: compute each image's features once, in eval mode.
            missing = sorted({i for i in image_indices if i not in self._frozen_features})
            if missing:
                pixels = torch.stack([self._load_pixels(i) for i in missing]).to(device)
                tower = self.model.image_tower
                was = tower.training
                tower.eval()
                with torch.no_grad():
                    feats = tower(pixels)
                tower.train(was)
                self._frozen_features.update(zip(missing, feats, strict=True))
                for i in missing:
                    self._pixels.pop(i, None)
            features = torch.stack([self._frozen_features[i] for i in image_indices])
            return self.model.embed_image(features)
        pixels = torch.stack([self._load_pixels(i) for i in image_indices]).to(device)
        return self.model.embed_image(self.model.image_features(pixels))
