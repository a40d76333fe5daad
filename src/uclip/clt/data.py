"""CLT's training data: captioned images, and the paper's four data modes built from them.

Paper §3.1 (MS-COCO, English captions machine-translated into es, ja, hi and Quechua):
1. ``eng_only``: image + English caption.
2. ``eng_pivot``: English caption + its translation, the language rotated over the pivot set
   (text–text contrastive pairs, LaBSE-style; the image side is optional here, see
   ``pivot_image_weight`` in :mod:`uclip.clt.objective`).
3. ``multilingual``: image + one caption whose language is rotated over the set (en, es, ja, hi),
   one language per example.
4. ``multilingual_plus``: as 3 with one more language in the rotation (Quechua in the paper).

A :class:`CaptionCorpus` holds, per image, captions by language and, for every non-English
caption, the English sentence it translates (or, for XM3600, the English caption of the same
image). Corpora here: ``coco_mini`` (the 239 shipped COCO images; English captions for 170,
and cs/fi/hr/hu/ro translations for the 22 that are in the Karpathy 5k test), ``xm3600`` (36
languages incl. Cusco Quechua ``quz``; images not shipped), ``multi30k`` (train split; en +
de/fr/cs; Flickr30k images not shipped, text-only ``eng_pivot`` works without them) and
``jsonl`` (your own file: one ``{"image": path, "captions": {lang: [...]}}`` per line).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from uclip.data.archives import extract_archive
from uclip.data.io import resolve_image_paths
from uclip.data.languages import TARGET_LANGUAGES
from uclip.data.multi30k import multi30k_english, multi30k_foreign, multi30k_images
from uclip.data.xm3600 import load_xm3600
from uclip.errors import UclipError

MODES = ("eng_only", "eng_pivot", "multilingual", "multilingual_plus")
PAPER_LANGUAGES = ("en", "es", "ja", "hi")
PAPER_EXTRA_LANGUAGE = "quz"
ENGLISH = "en"


@dataclass
class CaptionedImage:
    """One image: ``captions[lang]`` (``"en"`` = English) and, for each non-English caption,
    ``english_source[lang][j]``: the English sentence caption j translates (its pivot)."""

    image_id: str
    image_path: Path | None
    captions: dict[str, list[str]]
    english_source: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for lang, caps in self.captions.items():
            if lang == ENGLISH:
                continue
            sources = self.english_source.get(lang)
            if sources is None:
                english = self.captions.get(ENGLISH)
                if not english:
                    raise UclipError(
                        f"image {self.image_id}: {lang} captions need English pivots "
                        "(an 'en' caption or english_source)"
                    )
                # 5-way parallel data: caption j translates English caption j.
                self.english_source[lang] = [english[j % len(english)] for j in range(len(caps))]
            elif len(sources) != len(caps):
                raise UclipError(
                    f"image {self.image_id}: {len(caps)} {lang} captions but {len(sources)} "
                    "English sources"
                )


@dataclass
class CaptionCorpus:
    name: str
    images: list[CaptionedImage]
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images)

    def languages(self) -> list[str]:
        return sorted({lang for img in self.images for lang, caps in img.captions.items() if caps})

    def language_counts(self) -> dict[str, int]:
        """Images that have at least one caption in each language."""
        counts: dict[str, int] = {}
        for img in self.images:
            for lang, caps in img.captions.items():
                if caps:
                    counts[lang] = counts.get(lang, 0) + 1
        return dict(sorted(counts.items()))

    def subset(self, indices: Iterable[int], name: str | None = None) -> CaptionCorpus:
        return CaptionCorpus(name or self.name, [self.images[i] for i in indices], list(self.notes))

    @property
    def has_images(self) -> bool:
        return all(img.image_path is not None for img in self.images)


@dataclass(frozen=True)
class Example:
    """One contrastive pair: ``text`` (language ``lang``) with image ``image`` (an index into the
    corpus) or, in ``eng_pivot``, with the English sentence ``pivot_text``."""

    image: int
    text: str
    lang: str
    pivot_text: str | None = None


# ------------------------------------------------------------------------------------ data modes


def _rotation(languages: Sequence[str]) -> list[str]:
    langs = list(dict.fromkeys(languages))
    if not langs:
        raise UclipError("the language rotation is empty: list languages, e.g. en, es, ja, hi")
    return langs


def build_examples(
    corpus: CaptionCorpus,
    mode: str,
    languages: Sequence[str] = PAPER_LANGUAGES,
    extra_language: str | None = None,
    captions_per_image: int = 1,
) -> list[Example]:
    """The examples of one data mode (paper §3.1, the four data sets).

    Each image contributes ``captions_per_image`` examples ("slots"; the paper: 1). Slot k of
    the whole corpus (counted in corpus order) takes language ``rotation[k % len(rotation)]``;
    an image without a caption in that language takes the next language of the rotation it has,
    so every language keeps its share wherever the data allows. ``multilingual_plus`` appends
    ``extra_language`` to the rotation. ``eng_pivot`` rotates over the non-English ``languages``
    and pairs each translation with its English source; images with no such translation are
    left out.
    """
    if mode not in MODES:
        raise UclipError(f"unknown data mode {mode!r}: use one of {', '.join(MODES)}")
    if captions_per_image < 1:
        raise UclipError(f"captions_per_image must be >= 1, got {captions_per_image}")
    if mode == "eng_only":
        rotation = [ENGLISH]
    elif mode == "eng_pivot":
        rotation = [lang for lang in _rotation(languages) if lang != ENGLISH]
        if not rotation:
            raise UclipError("eng_pivot needs at least one non-English language to pivot to")
    else:
        rotation = _rotation(languages)
        if mode == "multilingual_plus":
            if not extra_language:
                raise UclipError(
                    "multilingual_plus needs data.extra_language (the paper adds Quechua, quz)"
                )
            if extra_language in rotation:
                raise UclipError(f"extra_language {extra_language} is already in the rotation")
            rotation.append(extra_language)
    examples: list[Example] = []
    k = 0
    for index, image in enumerate(corpus.images):
        available = [lang for lang in rotation if image.captions.get(lang)]
        if not available:
            continue
        for slot in range(captions_per_image):
            lang = next(
                rotation[(k + j) % len(rotation)]
                for j in range(len(rotation))
                if image.captions.get(rotation[(k + j) % len(rotation)])
            )
            k += 1
            caps = image.captions[lang]
            text = caps[slot % len(caps)]
            pivot = image.english_source[lang][slot % len(caps)] if mode == "eng_pivot" else None
            examples.append(Example(index, text, lang, pivot))
    if not examples:
        raise UclipError(
            f"data mode {mode} found no captions in {', '.join(rotation)} in corpus "
            f"{corpus.name} (it has {', '.join(corpus.languages()) or 'none'})"
        )
    return examples


def language_shares(examples: Sequence[Example]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for ex in examples:
        counts[ex.lang] = counts.get(ex.lang, 0) + 1
    return dict(sorted(counts.items()))


# ------------------------------------------------------------------------------------ splits


def split_images(
    corpus: CaptionCorpus,
    n_eval: int,
    seed: int = 0,
    *,
    eval_candidates: Sequence[int] | None = None,
    exclude_ids: Iterable[str] = (),
) -> tuple[CaptionCorpus, CaptionCorpus | None]:
    """Split by *image* into (train, held-out eval); no image is on both sides.

    ``eval_candidates`` limits which images may be held out (e.g. English-only ones, so the few
    multilingual images stay in training); ``exclude_ids`` drops images from both sides (e.g. the
    Karpathy 5k test when the model will later be scored on COCO-5k).
    """
    excluded = set(exclude_ids)
    keep = [i for i, img in enumerate(corpus.images) if img.image_id not in excluded]
    pool = [i for i in (eval_candidates if eval_candidates is not None else keep) if i in set(keep)]
    if n_eval > len(pool):
        raise UclipError(
            f"cannot hold out {n_eval} images: only {len(pool)} candidates in {corpus.name}"
        )
    held = set(random.Random(seed).sample(sorted(pool), n_eval)) if n_eval else set()
    train = corpus.subset([i for i in keep if i not in held], f"{corpus.name}-train")
    held_out = corpus.subset(sorted(held), f"{corpus.name}-eval") if held else None
    if held_out is not None:
        check_disjoint(train, held_out)
    return train, held_out


def check_disjoint(train: CaptionCorpus, other: CaptionCorpus) -> None:
    """Raise if any image id is in both corpora."""
    shared = {img.image_id for img in train.images} & {img.image_id for img in other.images}
    if shared:
        raise UclipError(
            f"{len(shared)} images are in both {train.name} and {other.name} "
            f"(e.g. {sorted(shared)[0]}): training and evaluation images must be disjoint"
        )


# ------------------------------------------------------------------------------------ corpora


def load_coco_mini_corpus(
    data_dir: Path,
    *,
    translation_langs: Sequence[str] = TARGET_LANGUAGES,
    cache_dir: Path | None = None,
) -> CaptionCorpus:
    """The 170 captioned images of ``images/coco_mini_images.tar.gz`` (real COCO photos).

    English: their 5 COCO captions. The 22 that are in the Karpathy 5k test also get uCLIP's
    machine translations (``coco/captions_<lang>.json``) of their first Karpathy caption, with
    that raw English caption as pivot. The archive is extracted once into the data cache.
    """
    captions_file = data_dir / "images" / "coco_mini_captions.jsonl"
    if not captions_file.is_file():
        raise UclipError(f"missing {captions_file}: pass --data-dir with the uclip data")
    root = extract_archive(data_dir / "images" / "coco_mini_images.tar.gz", cache_dir)
    translations: dict[str, dict[int, tuple[str, str]]] = {}
    for lang in translation_langs:
        path = data_dir / "coco" / f"captions_{lang}.json"
        if not path.is_file():
            raise UclipError(f"missing {path}: COCO translations exist for cs, fi, hr, hu, ro")
        records = json.loads(path.read_text(encoding="utf-8"))
        translations[lang] = {
            int(r["filename"].rsplit("_", 1)[-1].split(".")[0]): (
                r["captions_translated"],
                r["captions_en"],
            )
            for r in records
        }
    images: list[CaptionedImage] = []
    with captions_file.open(encoding="utf-8") as fh:
        for line in fh:
            record = json.loads(line)
            if not record.get("captions"):
                continue  # 69 val images have no captions here
            captions: dict[str, list[str]] = {ENGLISH: [c.strip() for c in record["captions"]]}
            sources: dict[str, list[str]] = {}
            for lang, table in translations.items():
                if record["image_id"] in table:
                    text, english = table[record["image_id"]]
                    captions[lang], sources[lang] = [text], [english]
            path = root / record["file_name"]
            if not path.is_file():
                raise UclipError(f"{path} missing from the extracted COCO mini archive")
            images.append(CaptionedImage(str(record["image_id"]), path, captions, sources))
    n_multi = sum(len(img.captions) > 1 for img in images)
    notes = [
        f"COCO mini: {len(images)} real COCO images with 5 English captions; {n_multi} of them "
        f"(the Karpathy 5k test ones) also have uCLIP's {'/'.join(translation_langs)} machine "
        "translations of one caption",
    ]
    return CaptionCorpus("coco_mini", images, notes)


def load_xm3600_corpus(
    data_dir: Path, images_dir: Path | None, languages: Sequence[str]
) -> CaptionCorpus:
    """XM3600 (uCLIP's files: one caption per image per language; 36 languages incl. ``quz``).

    XM3600 captions were written in each language, not translated: the English pivot of a
    caption is the English caption of the same image.
    """
    langs = list(dict.fromkeys([ENGLISH, *languages]))
    sets = {lang: load_xm3600(lang, data_dir, images_dir) for lang in langs}
    english = sets[ENGLISH]
    images = []
    for i, image_id in enumerate(english.image_ids):
        captions = {lang: [ds.captions[i]] for lang, ds in sets.items()}
        sources = {lang: [english.captions[i]] for lang in langs if lang != ENGLISH}
        path = english.image_paths[i] if english.image_paths is not None else None
        images.append(CaptionedImage(image_id, path, captions, sources))
    notes = ["XM3600 captions are written per language; pivots are same-image English captions"]
    if images_dir is None:
        notes.append("XM3600 images are not shipped: only text-only eng_pivot can run")
    return CaptionCorpus("xm3600", images, notes)


def load_multi30k_corpus(
    data_dir: Path,
    images_dir: Path | None,
    languages: Sequence[str] = ("de", "fr", "cs"),
    split: str = "train",
) -> CaptionCorpus:
    """Multi30K ``split`` (train: 29,000 Flickr30k images, none in the Flickr30k 1k test).

    English: the 5 task-2 captions; ``de``/``fr``/``cs``: task-1 professional translations of the
    task-1 English caption, which is their pivot.
    """
    names = multi30k_images(data_dir, split)
    english5 = multi30k_english(data_dir, split)
    task1_en = multi30k_foreign(data_dir, ENGLISH, split)
    foreign = {lang: multi30k_foreign(data_dir, lang, split) for lang in languages}
    for lang, lines in {ENGLISH: task1_en, **foreign}.items():
        if len(lines) != len(names):
            raise UclipError(f"Multi30K {split}.{lang}: {len(lines)} lines for {len(names)} images")
    paths: list[Path | None] = [None] * len(names)
    if images_dir is not None:
        paths = list(resolve_image_paths(images_dir, names, "Flickr30k"))
    images = [
        CaptionedImage(
            name,
            paths[i],
            {ENGLISH: english5[i], **{lang: [foreign[lang][i]] for lang in languages}},
            {lang: [task1_en[i]] for lang in languages},
        )
        for i, name in enumerate(names)
    ]
    notes = [f"Multi30K {split}: 5 English captions + professional {'/'.join(languages)}"]
    if images_dir is None:
        notes.append("Flickr30k images are not shipped: only text-only eng_pivot can run")
    return CaptionCorpus(f"multi30k-{split}", images, notes)


def load_jsonl_corpus(path: Path, images_dir: Path | None = None) -> CaptionCorpus:
    """Your own corpus: one JSON object per line, ``{"image": "<file>", "captions": {"en": [...],
    "es": [...], ...}}`` and optionally ``"english_source": {"es": [...]}``; without it caption j
    of every language translates English caption j (5-way parallel, as the paper's COCO).
    Image paths are relative to ``images_dir`` (default: the file's folder)."""
    if not path.is_file():
        raise UclipError(
            f"caption file {path} not found: write one JSON object per line with 'image' and "
            "'captions' (see docs/clt.md)"
        )
    root = images_dir or path.parent
    images = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record: dict[str, Any] = json.loads(line)
                name, captions = record["image"], record["captions"]
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise UclipError(f"{path} line {n}: needs 'image' and 'captions' ({exc})") from None
            image_path = Path(name) if Path(name).is_absolute() else root / name
            sources = dict(record.get("english_source", {}))
            images.append(CaptionedImage(str(name), image_path, dict(captions), sources))
    if not images:
        raise UclipError(f"caption file {path} holds no records")
    return CaptionCorpus(path.stem, images, [f"user corpus {path}"])


def image_check(corpus: CaptionCorpus, mode: str, needs_images: bool) -> None:
    """Fail early, in one line, when a mode needs images the corpus does not have."""
    if not needs_images:
        return
    missing = [img.image_id for img in corpus.images if img.image_path is None]
    if missing:
        raise UclipError(
            f"data mode {mode} trains on images but {len(missing)} of {len(corpus)} images of "
            f"{corpus.name} have no file (e.g. {missing[0]}): set data.images_dir, or use "
            "eng_pivot with method.pivot_image_weight 0 (text only)"
        )
    absent = [img.image_path for img in corpus.images if not img.image_path.is_file()]
    if absent:
        raise UclipError(
            f"{len(absent)} image files of {corpus.name} do not exist (e.g. {absent[0]}): "
            "check data.images_dir"
        )
