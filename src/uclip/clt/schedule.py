"""When CLT's encoders thaw (paper §3.1, "Training").

"We allow these linear layers to warm up for a certain number of steps before fine-tuning the
encoders themselves. In our case, we chose to 'thaw' the encoders halfway through the first
epoch." Until step ``ceil(thaw_at_epochs * steps_per_epoch)`` only the two adapters and the
temperature have ``requires_grad``; from that step on the encoders do too. The optimizer holds
every parameter from the start (Adam skips a parameter whose ``.grad`` is None), so nothing is
rebuilt at the thaw and a resumed run thaws at the same step.

A frozen tower also runs in eval mode (no dropout, BatchNorm statistics fixed), so the adapters
warm up on the pretrained features themselves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import nn

from uclip.clt.model import CLTModel
from uclip.errors import UclipError


@dataclass
class ThawSchedule:
    """``thaw_at_epochs``: 0.5 (the paper). ``thaw_text`` / ``thaw_image``: whether each encoder
    ever trains (both in the paper). ``freeze_text_word_embeddings`` keeps the (250k x d) word
    table fixed even after the thaw (a CPU-budget option; the paper tunes it)."""

    thaw_at_epochs: float = 0.5
    thaw_text: bool = True
    thaw_image: bool = True
    freeze_text_word_embeddings: bool = False

    def __post_init__(self) -> None:
        if self.thaw_at_epochs < 0:
            raise UclipError(f"thaw_at_epochs must be >= 0, got {self.thaw_at_epochs}")

    def thaw_step(self, steps_per_epoch: int) -> int:
        """The first optimiser step at which the encoders train."""
        if steps_per_epoch < 1:
            raise UclipError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
        return math.ceil(self.thaw_at_epochs * steps_per_epoch)

    def thawed(self, step: int, steps_per_epoch: int) -> bool:
        return step >= self.thaw_step(steps_per_epoch)

    def _word_embeddings(self, model: CLTModel) -> list[nn.Parameter]:
        get = getattr(model.text_tower.encoder, "get_input_embeddings", None)
        module = get() if callable(get) else None
        return list(module.parameters()) if module is not None else []

    def trainable_parameters(self, model: CLTModel) -> list[nn.Parameter]:
        """Every parameter that trains at some step: adapters, t, and each encoder that thaws."""
        params = list(model.adapter_parameters())
        frozen_forever = {id(p) for p in self._word_embeddings(model)}
        if not self.freeze_text_word_embeddings:
            frozen_forever = set()
        if self.thaw_text:
            params += [p for p in model.text_tower.parameters() if id(p) not in frozen_forever]
        if self.thaw_image:
            params += list(model.image_tower.parameters())
        return params

    def apply(self, model: CLTModel, step: int, steps_per_epoch: int) -> bool:
        """Set ``requires_grad`` and train/eval mode of both towers for ``step``; returns whether
        the encoders are thawed."""
        thawed = self.thawed(step, steps_per_epoch)
        for tower, may_train in (
            (model.text_tower, self.thaw_text),
            (model.image_tower, self.thaw_image),
        ):
            on = thawed and may_train
            tower.requires_grad_(on)
            tower.train(on and model.training)
        if self.freeze_text_word_embeddings:
            for p in self._word_embeddings(model):
                p.requires_grad_(False)
        for p in model.adapter_parameters():
            p.requires_grad_(True)
        return thawed
