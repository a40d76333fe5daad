"""The ``data`` section of a uCLIP run config: what the heads train on, and the dev data.

Two settings share the section: the text-anchor setting (``corpus = "multi30k"``: training text
and banks sampled from Multi30K + Tatoeba, :func:`uclip.features.corpora.split_training_corpora`)
and the paper setting (``train_captions`` + ``image_bank`` + ``text_bank`` files, resolved by
:mod:`uclip.app.train_inputs`). Every default lives here, once; consumers read attributes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from uclip.validation import Allowed, at_least, between, check_fields, check_mapping

# Ranges beyond the field types (a field without an entry is type-checked only).
DATA_ALLOWED: dict[str, Allowed] = {
    "n_train": at_least(1),
    "n_bank_v": at_least(1),
    "n_bank_m": at_least(1),
    "n_general": at_least(0),
    "n_news": at_least(0),
    "seed": between(0, 2**32 - 1),
    "dev_multi30k_per_lang": at_least(1),
    "dev_tatoeba_per_lang": at_least(1),
    "dev_news_per_lang": at_least(0),
}


@dataclass(frozen=True)
class UCLIPData:
    """The ``data`` section; paths are relative to the data directory unless absolute."""

    corpus: Literal["multi30k"] | None = None
    """``"multi30k"``: the text-anchor setting; ``None``: the paper setting (``train_captions``)."""

    n_train: int = 12000
    """Multi30K English training captions (the queries e^C, e^M)."""

    n_bank_v: int = 4000
    """Bank V size: one English caption per held-out image stands in for the image."""

    n_bank_m: int = 4000
    """Bank M size: half Multi30K de/fr/cs captions, half Tatoeba sentences."""

    n_general: int = 0
    """English Tatoeba sentences (train part, no translation anywhere) added as training text."""

    n_news: int = 0
    """English WMT news sentences added to the training text, after the general text."""

    seed: int = 0
    """Seed of the Multi30K image split and the Tatoeba bank sample."""

    dev: bool = True
    """Embed the dev sets: ridge lambda chosen on dev, dev scoring and early stopping."""

    dev_multi30k_per_lang: int | None = None
    """First N Multi30K val captions per dev language; ``None``: all 1,014."""

    dev_tatoeba_per_lang: int = 200
    """At most N Tatoeba dev pairs per language."""

    dev_news_per_lang: int = 0
    """WMT newstest dev pairs per language; 0: no news dev domain (configs before issue 22)."""

    train_captions: list[str] | None = None
    """Paper setting: English caption files (one per line, ``.gz`` allowed) and folders of them."""

    image_bank: str | None = None
    """Paper setting: an image folder, or a ``.npy`` bank made by ``uclip extract``."""

    text_bank: str | list[str] | None = None
    """Paper setting: a folder of per-language text files, a list of files, or one ``.npy``."""

    general_text: list[str] | None = None
    """Paper setting: optional extra English text for the heads (like ``train_captions``)."""

    def __post_init__(self) -> None:
        check_fields(self, DATA_ALLOWED, "data")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UCLIPData:
        """The section as parsed from a config: an unknown key or a bad value is one line."""
        return cls(**check_mapping(data, cls, "data", DATA_ALLOWED))

    @property
    def paper_setting(self) -> bool:
        """Whether the run trains on the paper setting's files (``corpus`` wins if both are set)."""
        return self.corpus != "multi30k" and self.train_captions is not None
