"""The records loaders return: retrieval sets, classification sets and prompts, bitext; and the
helpers that build them from per-image caption lists."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from uclip.data.io import read_json, require_field
from uclip.errors import UclipError

if TYPE_CHECKING:
    from PIL import Image


@dataclass
class RetrievalDataset:
    """Images and captions for image<->text retrieval.

    Attributes:
        name: data set name, e.g. ``"xm3600"``.
        lang: language of ``captions``: the XM3600 code (``"cs"``) for XM3600, COCO and the six
            Flickr30k jsonl languages, the FLORES-200 code (``"deu_Latn"``) for Flickr30k-200.
        image_ids: one stable id per image: the image file name as in the source
            (``"000411001ff7dd4f.jpg"``, ``"COCO_val2014_000000391895.jpg"``).
        captions: all captions, grouped by image in source order.
        caption_to_image: for each caption, the index of its image in ``image_ids``.
        first_caption_index: for each image, the index in ``captions`` of its first caption
            (the only one kept by the ``protocol="first"`` retrieval setting).
        image_paths: one resolved path per image, or ``None`` when no ``images_dir`` was given.
        english_captions: the English caption each caption was translated from (or is), aligned
            with ``captions``, for text->text cross-lingual retrieval; ``None`` if unknown.
        notes: data-quality findings to report next to the metrics.
    """

    name: str
    lang: str
    image_ids: list[str]
    captions: list[str]
    caption_to_image: list[int]
    first_caption_index: list[int]
    image_paths: list[Path] | None = None
    english_captions: list[str] | None = None
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        n_img, n_cap = len(self.image_ids), len(self.captions)
        if n_img == 0 or n_cap == 0:
            raise UclipError(f"{self.name} ({self.lang}) is empty: check the data files.")
        if len(self.caption_to_image) != n_cap:
            raise UclipError(
                f"{self.name}: caption_to_image has {len(self.caption_to_image)} "
                f"entries for {n_cap} captions."
            )
        if any(not 0 <= i < n_img for i in self.caption_to_image):
            raise UclipError(f"{self.name}: caption_to_image points outside the {n_img} images.")
        firsts = first_caption_index_of(self.caption_to_image, n_img)
        if list(self.first_caption_index) != firsts:
            raise UclipError(f"{self.name}: first_caption_index does not match caption_to_image.")
        if self.image_paths is not None and len(self.image_paths) != n_img:
            raise UclipError(
                f"{self.name}: {len(self.image_paths)} image paths for {n_img} images."
            )
        if self.english_captions is not None and len(self.english_captions) != n_cap:
            raise UclipError(
                f"{self.name}: {len(self.english_captions)} English captions for {n_cap} captions."
            )

    @property
    def num_images(self) -> int:
        return len(self.image_ids)

    @property
    def num_captions(self) -> int:
        return len(self.captions)

    def first_captions_only(self) -> RetrievalDataset:
        """The one-caption-per-image view (uCLIP's setting): each image keeps its first caption."""
        keep = self.first_caption_index
        english = (
            None if self.english_captions is None else [self.english_captions[i] for i in keep]
        )
        return RetrievalDataset(
            name=self.name,
            lang=self.lang,
            image_ids=list(self.image_ids),
            captions=[self.captions[i] for i in keep],
            caption_to_image=list(range(self.num_images)),
            first_caption_index=list(range(self.num_images)),
            image_paths=None if self.image_paths is None else list(self.image_paths),
            english_captions=english,
            notes=list(self.notes),
        )


@dataclass
class ClassificationDataset:
    """Labelled images for zero-shot classification.

    Either ``image_paths`` (files) or ``images`` ((N, H, W, 3) uint8, e.g. the STL-10 binary
    layout, possibly memory-mapped) holds the images; :meth:`load_image` reads either.
    ``labels[i]`` indexes ``class_names_en``.
    """

    name: str
    class_names_en: list[str]
    image_paths: list[Path] | None
    labels: list[int]
    images: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.labels)
        if n == 0:
            raise UclipError(f"{self.name} is empty: check the image folder.")
        if (self.image_paths is None) == (self.images is None):
            raise UclipError(f"{self.name}: give exactly one of image_paths and images.")
        n_images = len(self.image_paths) if self.image_paths is not None else len(self.images)
        if n_images != n:
            raise UclipError(f"{self.name}: {n_images} images for {n} labels.")
        if any(not 0 <= y < len(self.class_names_en) for y in self.labels):
            raise UclipError(f"{self.name}: a label is outside 0..{len(self.class_names_en) - 1}.")

    def __len__(self) -> int:
        return len(self.labels)

    def load_image(self, index: int) -> Image.Image:
        """Image ``index`` as an RGB PIL image."""
        from PIL import Image

        if self.image_paths is not None:
            with Image.open(self.image_paths[index]) as img:
                return img.convert("RGB")
        return Image.fromarray(np.ascontiguousarray(self.images[index], dtype=np.uint8))


@dataclass
class BitextDataset:
    """Line-aligned sentences: ``src[i]`` translates ``tgt[i]``."""

    name: str
    src_lang: str
    tgt_lang: str
    src: list[str]
    tgt: list[str]
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(self.src) != len(self.tgt):
            raise UclipError(
                f"{self.name} {self.src_lang}-{self.tgt_lang}: {len(self.src)} "
                f"source lines but {len(self.tgt)} target lines."
            )
        if not self.src:
            raise UclipError(f"{self.name} {self.src_lang}-{self.tgt_lang} is empty.")

    def __len__(self) -> int:
        return len(self.src)


@dataclass
class ClassificationPrompts:
    """One prompt per class, in the data set's class order."""

    dataset: str
    lang: str
    class_names_en: list[str]
    prompts: list[str]
    notes: list[str] = field(default_factory=list)


def read_uclip_captions(path: Path, what: str) -> tuple[list[str], list[str], list[str]]:
    """uCLIP's caption JSON -> (file names, translated captions, English captions)."""
    records = read_json(path, what)
    if not isinstance(records, list):
        raise UclipError(f"{what} file {path} must hold a JSON list of records")
    if not records:
        raise UclipError(f"{what} file {path} holds no records: the data set is empty")
    names, captions, english = [], [], []
    for i, record in enumerate(records):
        where = f"{path.name} record {i}"
        names.append(require_field(record, "filename", where))
        captions.append(require_field(record, "captions_translated", where))
        english.append(require_field(record, "captions_en", where))
    return names, captions, english


def first_caption_index_of(caption_to_image: Sequence[int], num_images: int) -> list[int]:
    """For each image, the index of its first caption (``-1`` if it has none)."""
    firsts = [-1] * num_images
    for t, i in enumerate(caption_to_image):
        if firsts[i] < 0:
            firsts[i] = t
    return firsts


def grouped(per_image: Sequence[Sequence[str]]) -> tuple[list[str], list[int], list[int]]:
    """Per-image caption lists -> (flat captions, caption_to_image, first_caption_index)."""
    captions, caption_to_image, firsts = [], [], []
    for i, group in enumerate(per_image):
        firsts.append(len(captions))
        captions.extend(group)
        caption_to_image.extend([i] * len(group))
    return captions, caption_to_image, firsts


def check_captions_per_image(what: str, requested: int | None, available: int) -> int:
    """``requested`` captions per image if the data set has that many (``None``: all)."""
    if requested is None:
        return available
    if isinstance(requested, bool) or not isinstance(requested, int) or requested < 1:
        raise UclipError(f"captions_per_image must be an integer >= 1, got {requested!r}")
    if requested > available:
        raise UclipError(
            f"{what} has {available} caption(s) per image, not {requested}: "
            f"use captions_per_image={available} or None"
        )
    return requested


def check_same_ids(ids: list[str], reference: list[str], what: str, ref_what: str) -> list[str]:
    """``[]`` if ``ids == reference``; a note if only the order differs; else raise, naming
    how many ids differ and one example."""
    if ids == reference:
        return []
    if len(set(ids)) != len(ids):
        raise UclipError(f"{what} lists an image twice: use files from one data release")
    only_here = sorted(set(ids) - set(reference))
    only_ref = sorted(set(reference) - set(ids))
    if only_here or only_ref or len(ids) != len(reference):
        example = (only_here or only_ref or ["(duplicate ids)"])[0]
        raise UclipError(
            f"{what} image ids differ from {ref_what}: {len(only_here)} only in {what}, "
            f"{len(only_ref)} only in {ref_what} (e.g. {example}): use files from one data release"
        )
    return [f"{what} lists the images in a different order from {ref_what}; reordered to match"]
