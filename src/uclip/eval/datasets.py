"""Evaluation data sets: XM3600, COCO-5k, Flickr30k-1k, CIFAR-10, STL-10, FLORES-200.

The files and their known problems are described in ``shared/data/MANIFEST.md``. Every loader
takes ``data_dir`` (resolved by :func:`uclip.paths.resolve_data_dir`: ``--data-dir`` >
``UCLIP_DATA`` > ``../shared/data``) and, for sets whose images are not shipped, ``images_dir``.

Loaders keep the text exactly as in the sources (so numbers stay comparable with uCLIP's code)
and report what is wrong with it in ``notes``: repetition loops, duplicate captions, mixed
Romanian letter forms, HTML entities, over-shortened translations. ``normalize=True`` unifies
Romanian ş/ţ -> ș/ț and unescapes HTML entities for those who prefer clean text.

Retrieval sets use uCLIP's Table 1 setting (cs, fi, hr, hu, ro; one caption per image per
language for the translated sets), plus the full English 5-caption sets and every language the
files hold.
"""

from __future__ import annotations

import difflib
import html
import json
import os
import re
import shutil
import tarfile
import tempfile
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from uclip.errors import UclipError
from uclip.paths import file_sha256, resolve_data_dir

if TYPE_CHECKING:
    from PIL import Image

PathLike = str | os.PathLike[str]

# XM3600 language codes in the uCLIP files (captions_<lang>.json).
XM3600_LANGUAGES: tuple[str, ...] = (
    "ar", "bn", "cs", "da", "de", "el", "en", "es", "fa", "fi", "fil", "fr", "he", "hi", "hr",
    "hu", "id", "it", "ja", "ko", "mi", "nl", "no", "pl", "pt", "quz", "ro", "ru", "sv", "sw",
    "te", "th", "tr", "uk", "vi", "zh",
)  # fmt: skip

# MANIFEST.md, flores200 table. FLORES has Ayacucho Quechua (quy), not Cusco Quechua (quz).
XM3600_TO_FLORES: dict[str, str] = {
    "ar": "arb_Arab", "bn": "ben_Beng", "cs": "ces_Latn", "da": "dan_Latn", "de": "deu_Latn",
    "el": "ell_Grek", "en": "eng_Latn", "es": "spa_Latn", "fa": "pes_Arab", "fi": "fin_Latn",
    "fil": "tgl_Latn", "fr": "fra_Latn", "he": "heb_Hebr", "hi": "hin_Deva", "hr": "hrv_Latn",
    "hu": "hun_Latn", "id": "ind_Latn", "it": "ita_Latn", "ja": "jpn_Jpan", "ko": "kor_Hang",
    "mi": "mri_Latn", "nl": "nld_Latn", "no": "nob_Latn", "pl": "pol_Latn", "pt": "por_Latn",
    "quz": "quy_Latn", "ro": "ron_Latn", "ru": "rus_Cyrl", "sv": "swe_Latn", "sw": "swh_Latn",
    "te": "tel_Telu", "th": "tha_Thai", "tr": "tur_Latn", "uk": "ukr_Cyrl", "vi": "vie_Latn",
    "zh": "zho_Hans",
}  # fmt: skip
_FLORES_TO_XM3600 = {flores: xm for xm, flores in XM3600_TO_FLORES.items()}

# The source repository's symlinked aliases, left out of the data folder (MANIFEST.md).
FLORES_ALIASES: dict[str, str] = {
    "msa": "zsm_Latn",
    "ara": "arb_Arab",
    "ara_Latn": "arb_Latn",
    "cmn_Hans": "zho_Hans",
    "cmn_Hant": "zho_Hant",
}

# The five low-resource languages of uCLIP's Table 1, with the names used by its JSON files.
UCLIP_LANGUAGES: dict[str, str] = {
    "cs": "czech",
    "fi": "finnish",
    "hr": "croatian",
    "hu": "hungarian",
    "ro": "romanian",
}

CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
STL10_CLASSES: tuple[str, ...] = (
    "airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck",
)  # fmt: skip
ENGLISH_PROMPT_TEMPLATE = "a photo of a {}."

_IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".ppm", ".tif"})
_STL10_SIDE = 96


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
        firsts = _first_caption_index(self.caption_to_image, n_img)
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


@dataclass(frozen=True)
class TranslationIssue:
    """A known problem in uCLIP's translated class prompts, and our correction."""

    found: str
    problem: str
    corrected: str


# Keys: (dataset, ISO language, English class name). The corrected strings are ours, not
# uCLIP's: they are used only with ``fix_translations=True``.
KNOWN_TRANSLATION_ISSUES: dict[tuple[str, str, str], TranslationIssue] = {
    ("cifar10", "fi", "deer"): TranslationIssue(
        "Eläimen kuva", "means 'a picture of an animal', not a deer", "Kuva peurasta"
    ),
    ("stl10", "fi", "deer"): TranslationIssue(
        "Eläimen kuva", "means 'a picture of an animal', not a deer", "Kuva peurasta"
    ),
    ("cifar10", "hr", "frog"): TranslationIssue(
        "Fotografija žaba", "uses the plural 'žaba' (frogs)", "Fotografija žabe"
    ),
    ("cifar10", "ro", "automobile"): TranslationIssue(
        "O fotografie a maşinii",
        "uses cedilla ş where the STL-10 file uses comma-below ș",
        "O fotografie a mașinii",
    ),
}


@dataclass
class ClassificationPrompts:
    """One prompt per class, in the data set's class order."""

    dataset: str
    lang: str
    class_names_en: list[str]
    prompts: list[str]
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# Text helpers


_ROMANIAN_COMMA = str.maketrans({"ş": "ș", "Ş": "Ș", "ţ": "ț", "Ţ": "Ț"})
_ROMANIAN_CEDILLA = frozenset("şŞţŢ")
_ROMANIAN_COMMA_LETTERS = frozenset("șȘțȚ")
_HTML_ENTITY = re.compile(r"&(?:[A-Za-z]+|#\d+|#x[0-9A-Fa-f]+);")
# A degenerate loop: a unit of 1-40 characters repeated >= 4 times in a row, >= 16 characters in
# all, not only whitespace ("nuori nuori nuori nuori", "fel de fel de ...", "- - - - ...").
# The 16-character floor keeps "......" and "hahaha" out. On the shared data this flags exactly
# MANIFEST.md's COCO list (cs 1, fi 4, hu 2, ro 1) and nothing in the human-written XM3600,
# COCO-en, Flickr-en or FLORES text.
_MAX_LOOP_UNIT = 40
_MIN_LOOP_REPEATS = 4
_MIN_LOOP_CHARS = 16


def normalize_romanian(text: str) -> str:
    """Replace Romanian cedilla letters ş/ţ (and Ş/Ţ) by the correct comma-below ș/ț (Ș/Ț).

    Decomposed forms (s + U+0327) are composed first. Only for Romanian text: ş is the correct
    letter in Turkish and Azerbaijani.
    """
    return unicodedata.normalize("NFC", text).translate(_ROMANIAN_COMMA)


def has_repetition_loop(text: str) -> bool:
    """True if ``text`` holds a degenerate machine-translation loop (see ``_MAX_LOOP_UNIT``)."""
    return bool(find_repetition_loops([text]))


def find_repetition_loops(texts: Sequence[str]) -> list[int]:
    """Indices of the texts (case-folded) that hold a degenerate repetition loop.

    A unit of period ``L`` repeated 4 times means ``s[i] == s[i + L]`` for ``3L - 1``
    consecutive ``i`` (the last copy may lack its trailing separator). All texts are joined
    into one code-point array (a unique sentinel after each text, so no run crosses two texts)
    and each period 1..40 is one vectorised shift-and-compare: 25,000 COCO captions take a
    fraction of a second, where a backtracking regex takes seconds.
    """
    lowered = [t.lower() for t in texts]
    if not lowered:
        return []
    lengths = np.fromiter(map(len, lowered), dtype=np.int64, count=len(lowered))
    starts = np.concatenate([[0], np.cumsum(lengths + 1)[:-1]])
    chars = np.frombuffer("".join(lowered).encode("utf-32-le"), dtype=np.uint32)
    codes = np.empty(int(lengths.sum()) + len(lowered), dtype=np.int64)
    sentinel_at = starts + lengths
    is_char = np.ones(len(codes), dtype=bool)
    is_char[sentinel_at] = False
    codes[is_char] = chars
    codes[sentinel_at] = 0x110000 + np.arange(len(lowered))  # above every Unicode code point
    found: set[int] = set()
    for period in range(1, _MAX_LOOP_UNIT + 1):
        # A stretch of period L spanning 4L - 1 characters: 4 copies of the unit, the last one
        # allowed to lack its trailing separator ("pirítós pirítós pirítós pirítós").
        need = max((_MIN_LOOP_REPEATS - 1) * period - 1, _MIN_LOOP_CHARS - period)
        equal = codes[:-period] == codes[period:]
        if len(equal) < need:
            break
        ones = np.concatenate([[0], np.cumsum(equal, dtype=np.int32)])
        hits = np.flatnonzero(ones[need:] - ones[:-need] == need)
        for position in hits:
            index = int(np.searchsorted(starts, position, side="right")) - 1
            if index in found:
                continue
            local = int(position - starts[index])
            if lowered[index][local : local + need + period].strip():
                found.add(index)
    return sorted(found)


# Scripts whose character counts are comparable with English; in CJK or Thai a faithful
# translation is routinely under half the English length.
_ALPHABETIC_SCRIPTS = frozenset({"Latn", "Cyrl", "Grek"})


def _script(lang: str) -> str:
    """ISO 15924 script of a FLORES or XM3600 code (``"ces_Latn"``/``"cs"`` -> ``"Latn"``)."""
    return XM3600_TO_FLORES.get(lang, lang).rpartition("_")[2]


def _is_romanian(lang: str) -> bool:
    return lang in {"ro", "ron_Latn"}


def _clean(text: str, romanian: bool) -> str:
    text = html.unescape(text)
    return normalize_romanian(text) if romanian else text


def _snippet(text: str, width: int = 40) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _text_notes(
    captions: Sequence[str],
    image_of: Callable[[int], str],
    lang: str,
    english_sources: Sequence[str] | None,
) -> list[str]:
    """Data-quality findings for a caption list (the MANIFEST's "known problems", measured).

    ``english_sources``: the English text each caption was machine-translated from, if it was.
    """
    notes = []
    n = len(captions)
    loops = find_repetition_loops(captions)
    if loops:
        i = loops[0]
        notes.append(
            f"{len(loops)} of {n} captions contain degenerate repetition loops, kept as in the "
            f"source (e.g. image {image_of(i)}: {_snippet(captions[i])!r})"
        )
    counts = Counter(captions)
    repeated = [c for c, k in counts.items() if k > 1]
    if repeated:
        total = sum(counts[c] for c in repeated)
        common = max(repeated, key=lambda c: counts[c])
        notes.append(
            f"{total} of {n} captions share their exact text with another caption "
            f"({len(repeated)} distinct texts, e.g. {_snippet(common)!r} x{counts[common]}); "
            "identical texts tie in image->text ranking"
        )
    if _is_romanian(lang):
        cedilla = sum(bool(_ROMANIAN_CEDILLA.intersection(c)) for c in captions)
        comma = sum(bool(_ROMANIAN_COMMA_LETTERS.intersection(c)) for c in captions)
        if cedilla:
            notes.append(
                f"Romanian text mixes letter forms: {cedilla} captions use cedilla ş/ţ and {comma} "
                "use comma-below ș/ț; pass normalize=True to unify them"
            )
    entities = sum(bool(_HTML_ENTITY.search(c)) for c in captions)
    if entities:
        notes.append(
            f"{entities} of {n} captions contain HTML entities (e.g. &amp;); normalize=True "
            "unescapes them"
        )
    if english_sources is not None and _script(lang) in _ALPHABETIC_SCRIPTS:
        short = sum(
            len(c.strip()) < 0.5 * len(e.strip())
            for c, e in zip(captions, english_sources, strict=True)
        )
        if short:
            notes.append(
                f"{short} of {n} captions are under half the length (characters) of "
                "their English source: likely shortened translations"
            )
    return notes


# --------------------------------------------------------------------------------------------
# File helpers


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UclipError(
            f"{what} file {path} is missing: pass --data-dir DIR with the uclip "
            "data (see MANIFEST.md)"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UclipError(
            f"{what} file {path} is not valid UTF-8 JSON ({exc}): restore it from the data release"
        ) from None


def _read_jsonl(path: Path, what: str) -> list[dict[str, Any]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise UclipError(
            f"{what} file {path} is missing: pass --data-dir DIR with the uclip "
            "data (see MANIFEST.md)"
        ) from None
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise UclipError(
                f"{what} file {path} line {number} is not JSON ({exc}): restore it "
                "from the data release"
            ) from None
    return records


def _read_lines(path: Path, what: str) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise UclipError(
            f"{what} file {path} is missing: pass --data-dir DIR with the uclip "
            "data (see MANIFEST.md)"
        ) from None


def _field(record: Any, key: str, where: str, kind: type = str) -> Any:
    if not isinstance(record, dict) or not isinstance(record.get(key), kind):
        raise UclipError(
            f"{where} lacks a {kind.__name__} {key!r}: the file is not in the "
            "format MANIFEST.md describes"
        )
    return record[key]


def _uclip_records(path: Path, what: str) -> tuple[list[str], list[str], list[str]]:
    """uCLIP's caption JSON -> (file names, translated captions, English captions)."""
    records = _read_json(path, what)
    if not isinstance(records, list):
        raise UclipError(f"{what} file {path} must hold a JSON list of records")
    if not records:
        raise UclipError(f"{what} file {path} holds no records: the data set is empty")
    names, captions, english = [], [], []
    for i, record in enumerate(records):
        where = f"{path.name} record {i}"
        names.append(_field(record, "filename", where))
        captions.append(_field(record, "captions_translated", where))
        english.append(_field(record, "captions_en", where))
    return names, captions, english


def _first_caption_index(caption_to_image: Sequence[int], num_images: int) -> list[int]:
    firsts = [-1] * num_images
    for t, i in enumerate(caption_to_image):
        if firsts[i] < 0:
            firsts[i] = t
    return firsts


def _grouped(per_image: Sequence[Sequence[str]]) -> tuple[list[str], list[int], list[int]]:
    """Per-image caption lists -> (flat captions, caption_to_image, first_caption_index)."""
    captions, caption_to_image, firsts = [], [], []
    for i, group in enumerate(per_image):
        firsts.append(len(captions))
        captions.extend(group)
        caption_to_image.extend([i] * len(group))
    return captions, caption_to_image, firsts


def _short_code(lang: str) -> str:
    """Accept FLORES codes for the 2-letter sets: ``ces_Latn`` -> ``cs``."""
    return _FLORES_TO_XM3600.get(lang, lang)


def _unknown_language(what: str, lang: str, available: Iterable[str], hint: str = "") -> UclipError:
    available = sorted(available)
    close = difflib.get_close_matches(lang, available, n=3, cutoff=0.6)
    near = f" (did you mean {', '.join(close)}?)" if close else ""
    listing = ", ".join(available) if len(available) <= 40 else f"{len(available)} codes"
    return UclipError(f"unknown {what} language {lang!r}{near}: available {listing}{hint}")


def _check_captions_per_image(what: str, requested: int | None, available: int) -> int:
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


# --------------------------------------------------------------------------------------------
# Image paths


class _DirIndex:
    """File names per folder, listed once, so thousands of lookups cost no stat() each."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._names: dict[str, frozenset[str]] = {}

    def has(self, relative: str) -> bool:
        parent, _, name = relative.rpartition("/")
        if parent not in self._names:
            folder = self.root / parent if parent else self.root
            try:
                self._names[parent] = frozenset(os.listdir(folder))
            except (FileNotFoundError, NotADirectoryError):
                self._names[parent] = frozenset()
        return name in self._names[parent]


def resolve_image_paths(
    images_dir: PathLike,
    file_names: Sequence[str],
    what: str,
    candidates: Callable[[str], Sequence[str]] = lambda name: (name,),
) -> list[Path]:
    """Find every image under ``images_dir``, or raise ONE line saying how many are missing.

    ``candidates(name)`` lists the relative paths tried for one file name, first match wins
    (e.g. ``name`` and ``"val2014/" + name``), so users can point at the folder they have.
    """
    root = Path(images_dir).expanduser()
    if not root.is_dir():
        raise UclipError(
            f"{what} images folder {root} does not exist: pass --images DIR with the {what} images"
        )
    index = _DirIndex(root)
    paths: list[Path] = []
    missing: list[str] = []
    for name in file_names:
        found = next((rel for rel in candidates(name) if index.has(rel)), None)
        if found is None:
            missing.append(name)
        else:
            paths.append(root / found)
    if missing:
        raise UclipError(
            f"{len(missing)} of {len(file_names)} {what} images are missing under {root} "
            f"(e.g. {missing[0]}): pass --images DIR with the {what} images"
        )
    return paths


def _xm3600_candidates(name: str) -> tuple[str, ...]:
    return (name, f"images/{name}")


def _coco_candidates(name: str) -> tuple[str, ...]:
    # COCO 2014 names ("COCO_val2014_<12 digits>.jpg") and 2017 names ("<12 digits>.jpg"); the
    # Karpathy test images are spread over train2017 and val2017.
    short = name.rsplit("_", 1)[-1]
    return (
        name,
        f"val2014/{name}",
        short,
        f"val2017/{short}",
        f"train2017/{short}",
    )


def _flickr_candidates(name: str) -> tuple[str, ...]:
    return (name, f"flickr30k-images/{name}", f"Images/{name}", f"images/{name}")


# --------------------------------------------------------------------------------------------
# Retrieval loaders


def available_xm3600_languages(data_dir: PathLike | None = None) -> list[str]:
    """The XM3600 languages with a ``xm3600/captions_<lang>.json`` file under ``data_dir``."""
    folder = resolve_data_dir(data_dir) / "xm3600"
    return sorted(p.stem.removeprefix("captions_") for p in folder.glob("captions_*.json"))


def resolve_xm3600_language(lang: str, data_dir: PathLike | None = None) -> str:
    """The XM3600 code of ``lang`` (an XM3600 or FLORES code) if its captions are under
    ``data_dir``; otherwise a one-line :class:`UclipError` listing the available ones. Never
    builds a path from ``lang`` (a long or odd value is just unknown)."""
    root = resolve_data_dir(data_dir)
    available = available_xm3600_languages(root)
    code = _short_code(lang)
    if code in available:
        return code
    if not available:
        raise UclipError(
            f"no XM3600 captions under {root / 'xm3600'}: pass --data-dir DIR with the "
            "uclip data (see MANIFEST.md)"
        )
    shown = lang if len(lang) <= 40 else lang[:37] + "..."
    raise _unknown_language("XM3600", shown, available, f" (files under {root / 'xm3600'})")


def load_xm3600(
    lang: str,
    data_dir: PathLike | None = None,
    images_dir: PathLike | None = None,
    *,
    normalize: bool = False,
) -> RetrievalDataset:
    """Crossmodal-3600 as used by uCLIP: 3,600 images, one caption per image per language.

    ``lang`` is an XM3600 code (``"cs"``) or its FLORES code (``"ces_Latn"``). ``english_captions``
    is the English caption of the same image (not a source of the translation: XM3600 captions
    were written in each language).
    """
    root = resolve_data_dir(data_dir)
    folder = root / "xm3600"
    code = _short_code(lang)
    path = folder / f"captions_{code}.json"
    if not path.is_file():
        available = available_xm3600_languages(root)
        if not available:
            raise UclipError(
                f"no XM3600 captions under {folder}: pass --data-dir DIR with the "
                "uclip data (see MANIFEST.md)"
            )
        raise _unknown_language("XM3600", lang, available, f" (files under {folder})")
    names, captions, english = _uclip_records(path, "XM3600")
    if normalize:
        captions = [_clean(c, _is_romanian(code)) for c in captions]
        english = [_clean(e, False) for e in english]
    notes = [
        "uCLIP's XM3600 files keep one of the ~2 captions per image per language",
        *_text_notes(captions, names.__getitem__, code, None),
    ]
    return RetrievalDataset(
        name="xm3600",
        lang=code,
        image_ids=names,
        captions=captions,
        caption_to_image=list(range(len(names))),
        first_caption_index=list(range(len(names))),
        image_paths=_maybe_paths(images_dir, names, "XM3600", _xm3600_candidates),
        english_captions=english,
        notes=notes,
    )


def _maybe_paths(
    images_dir: PathLike | None,
    names: Sequence[str],
    what: str,
    candidates: Callable[[str], Sequence[str]],
) -> list[Path] | None:
    return None if images_dir is None else resolve_image_paths(images_dir, names, what, candidates)


def _check_same_ids(ids: list[str], reference: list[str], what: str, ref_what: str) -> list[str]:
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


def load_coco5k(
    lang: str,
    data_dir: PathLike | None = None,
    images_dir: PathLike | None = None,
    *,
    captions_per_image: int | None = None,
    normalize: bool = False,
) -> RetrievalDataset:
    """MSCOCO Karpathy 5k test.

    ``"en"``: the 5 SCAN-tokenised Karpathy captions per image (``captions_per_image=1`` keeps
    the first). ``cs``/``fi``/``hr``/``hu``/``ro``: uCLIP's machine translation of each image's
    first caption (one per image), with that raw English caption in ``english_captions``.
    Image ids are checked against the Karpathy file; its order is the reference.
    ``images_dir`` may hold ``COCO_val2014_*.jpg`` (or ``val2014/``) or 2017-named files
    (``<id>.jpg``, ``val2017/``, ``train2017/``).
    """
    root = resolve_data_dir(data_dir)
    folder = root / "coco"
    code = _short_code(lang)
    karpathy_path = folder / "coco_karpathy_test5k_en.jsonl"
    karpathy = _read_jsonl(karpathy_path, "COCO Karpathy") if karpathy_path.is_file() else None
    if karpathy is not None and not karpathy:
        raise UclipError(f"COCO file {karpathy_path} holds no records: the data set is empty")
    ref_ids = None
    if karpathy is not None:
        ref_ids = [
            _field(record, "file_name", f"{karpathy_path.name} line {i + 1}")
            for i, record in enumerate(karpathy)
        ]

    if code == "en":
        if karpathy is None:
            raise UclipError(
                f"COCO file {karpathy_path} is missing: pass --data-dir DIR with "
                "the uclip data (see MANIFEST.md)"
            )
        groups = []
        for i, record in enumerate(karpathy):
            caps = _field(record, "captions", f"{karpathy_path.name} line {i + 1}", list)
            if not caps:
                raise UclipError(f"{karpathy_path.name} line {i + 1} has no captions")
            groups.append(caps)
        k = _check_captions_per_image("COCO-5k en", captions_per_image, min(map(len, groups)))
        groups = [[_clean(c, False) if normalize else c for c in g[:k]] for g in groups]
        captions, caption_to_image, firsts = _grouped(groups)
        notes = [
            "COCO-5k English captions are SCAN-tokenised (a space before punctuation)",
            *_text_notes(captions, lambda t: ref_ids[caption_to_image[t]], "en", None),
        ]
        return RetrievalDataset(
            name="coco5k",
            lang="en",
            image_ids=ref_ids,
            captions=captions,
            caption_to_image=caption_to_image,
            first_caption_index=firsts,
            image_paths=_maybe_paths(images_dir, ref_ids, "COCO", _coco_candidates),
            english_captions=list(captions),
            notes=notes,
        )

    path = folder / f"captions_{code}.json"
    if not path.is_file():
        available = ["en"] if karpathy is not None else []
        available += [p.stem.removeprefix("captions_") for p in folder.glob("captions_*.json")]
        if not available:
            raise UclipError(
                f"no COCO captions under {folder}: pass --data-dir DIR with the "
                "uclip data (see MANIFEST.md)"
            )
        raise _unknown_language("COCO-5k", lang, available)
    _check_captions_per_image(f"COCO-5k {code}", captions_per_image, 1)
    names, captions, english = _uclip_records(path, "COCO")
    notes = ["COCO-5k translations are uCLIP's machine translations of each image's first caption"]
    if ref_ids is not None:
        order_note = _check_same_ids(names, ref_ids, path.name, karpathy_path.name)
        if order_note:
            position = {name: i for i, name in enumerate(names)}
            perm = [position[name] for name in ref_ids]
            names = [names[i] for i in perm]
            captions = [captions[i] for i in perm]
            english = [english[i] for i in perm]
            notes += order_note
    if normalize:
        captions = [_clean(c, _is_romanian(code)) for c in captions]
        english = [_clean(e, False) for e in english]
    notes += _text_notes(captions, names.__getitem__, code, english)
    return RetrievalDataset(
        name="coco5k",
        lang=code,
        image_ids=names,
        captions=captions,
        caption_to_image=list(range(len(names))),
        first_caption_index=list(range(len(names))),
        image_paths=_maybe_paths(images_dir, names, "COCO", _coco_candidates),
        english_captions=english,
        notes=notes,
    )


_FLICKR_JSONL_LANGS = ("en", "cs", "fi", "hr", "hu", "ro")
_FLICKR_TAR = "flickr30k-200_nllb.tar.gz"
_FLICKR_TAR_DIR = "flickr30k-200"


def _read_tar_members(path: Path, names: Sequence[str]) -> dict[str, str]:
    """Read text members straight from a .tar.gz (no extraction); missing ones are absent."""
    wanted = set(names)
    found: dict[str, str] = {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar:
                if member.name in wanted and member.isfile():
                    found[member.name] = tar.extractfile(member).read().decode("utf-8")
                    if len(found) == len(wanted):
                        break
    except FileNotFoundError:
        raise UclipError(
            f"Flickr30k-200 archive {path} is missing: pass --data-dir DIR with the "
            "uclip data (see MANIFEST.md)"
        ) from None
    except (tarfile.TarError, OSError, UnicodeDecodeError) as exc:
        raise UclipError(f"cannot read {path} ({exc}): restore it from the data release") from None
    return found


def _tar_codes(path: Path) -> list[str]:
    with tarfile.open(path, "r:gz") as tar:
        names = [m.name for m in tar if m.isfile()]
    prefix = f"{_FLICKR_TAR_DIR}/"
    return sorted(
        n.removeprefix(prefix).removesuffix(".txt")
        for n in names
        if n.startswith(prefix)
        and n.endswith(".txt")
        and "_" in n.removeprefix(prefix)
        and not n.endswith(("eng_captions.txt",))
    )


def available_flickr200_codes(data_dir: PathLike | None = None) -> list[str]:
    """FLORES-200 codes with captions in ``flickr30k/flickr30k-200_nllb.tar.gz`` (English too)."""
    path = resolve_data_dir(data_dir) / "flickr30k" / _FLICKR_TAR
    try:
        return _tar_codes(path)
    except FileNotFoundError:
        raise UclipError(
            f"Flickr30k-200 archive {path} is missing: pass --data-dir DIR with the uclip "
            "data (see MANIFEST.md)"
        ) from None
    except (tarfile.TarError, OSError) as exc:
        raise UclipError(f"cannot read {path} ({exc}): restore it from the data release") from None


def load_flickr30k(
    lang: str,
    data_dir: PathLike | None = None,
    images_dir: PathLike | None = None,
    *,
    captions_per_image: int | None = None,
    normalize: bool = False,
) -> RetrievalDataset:
    """Flickr30k 1k test (Karpathy split = Multi30K test2016 images).

    ``"en"``: the 5 original captions per image (``captions_per_image=1``: the first).
    ``cs``/``fi``/``hr``/``hu``/``ro``: NLLB-3.3B translations of the first caption, from
    ``flickr30k_test1k.jsonl``. Any FLORES-200 code (``"deu_Latn"``, or an XM3600 code such as
    ``"de"``) is read from ``flickr30k-200_nllb.tar.gz`` without extracting it. Translations have
    one caption per image; ``english_captions`` holds the first English caption.
    """
    root = resolve_data_dir(data_dir)
    folder = root / "flickr30k"
    jsonl_path = folder / "flickr30k_test1k.jsonl"
    if lang in _FLICKR_JSONL_LANGS:
        records = _read_jsonl(jsonl_path, "Flickr30k")
        if not records:
            raise UclipError(f"Flickr30k file {jsonl_path} holds no records: the data set is empty")
        names, groups, english = [], [], []
        for i, record in enumerate(records):
            where = f"{jsonl_path.name} line {i + 1}"
            names.append(_field(record, "image", where))
            per_lang = _field(record, "captions", where, dict)
            first_en = _field(per_lang, "en", where + " captions", list)
            english.append(first_en[0] if first_en else "")
            if lang == "en":
                # en_5[0] is captions.en[0], so captions_per_image=1 keeps that first caption.
                groups.append(_field(record, "en_5", where, list))
            else:
                groups.append(_field(per_lang, lang, where + " captions", list))
        if any(not g for g in groups):
            raise UclipError(f"{jsonl_path.name}: an image has no {lang} caption")
        k = _check_captions_per_image(
            f"Flickr30k {lang}", captions_per_image, min(map(len, groups))
        )
        groups = [g[:k] for g in groups]
        source = (
            "Flickr30k English captions"
            if lang == "en"
            else ("Flickr30k translations are NLLB-3.3B machine translations of the first caption")
        )
    else:
        code = resolve_flores_code(lang, _tar_codes(folder / _FLICKR_TAR), what="Flickr30k-200")
        members = [f"{_FLICKR_TAR_DIR}/{n}.txt" for n in ("filenames", "eng_captions", code)]
        texts = _read_tar_members(folder / _FLICKR_TAR, members)
        for member in members:
            if member not in texts:
                raise UclipError(
                    f"{member} is missing from {folder / _FLICKR_TAR}: restore the "
                    "archive from the data release"
                )
        names, english, translated = (texts[m].splitlines() for m in members)
        if not names:
            raise UclipError(f"{folder / _FLICKR_TAR} lists no images: the data set is empty")
        if not len(names) == len(english) == len(translated):
            raise UclipError(
                f"{_FLICKR_TAR}: {code}.txt has {len(translated)} lines for "
                f"{len(names)} images: restore the archive"
            )
        _check_captions_per_image(f"Flickr30k {code}", captions_per_image, 1)
        groups = [[t] for t in translated]
        source = "Flickr30k translations are NLLB-3.3B machine translations of the first caption"
        if jsonl_path.is_file():
            ref = [_field(r, "image", jsonl_path.name) for r in _read_jsonl(jsonl_path, "Flickr")]
            _check_same_ids(names, ref, f"{_FLICKR_TAR} filenames.txt", jsonl_path.name)
        lang = code
    notes = [source]
    if code_note := _quechua_note(lang):
        notes.append(code_note)
    if normalize:
        groups = [[_clean(c, _is_romanian(lang)) for c in g] for g in groups]
        english = [_clean(e, False) for e in english]
    captions, caption_to_image, firsts = _grouped(groups)
    is_english = lang in {"en", "eng_Latn"}
    aligned_english = list(captions) if is_english else [english[i] for i in caption_to_image]
    notes += _text_notes(
        captions,
        lambda t: names[caption_to_image[t]],
        lang,
        None if is_english else aligned_english,
    )
    return RetrievalDataset(
        name="flickr30k",
        lang=lang,
        image_ids=names,
        captions=captions,
        caption_to_image=caption_to_image,
        first_caption_index=firsts,
        image_paths=_maybe_paths(images_dir, names, "Flickr30k", _flickr_candidates),
        english_captions=aligned_english,
        notes=notes,
    )


def _quechua_note(lang: str) -> str | None:
    if lang in {"quz", "quy_Latn"}:
        return "FLORES-200 has Ayacucho Quechua (quy_Latn), not XM3600's Cusco Quechua (quz)"
    return None


# --------------------------------------------------------------------------------------------
# FLORES-200


def resolve_flores_code(lang: str, available: Sequence[str], *, what: str = "FLORES-200") -> str:
    """Map a FLORES-200 code, alias (``cmn_Hans``) or XM3600 code (``cs``, ``quz``) to a code in
    ``available``; unknown -> :class:`UclipError` with close matches."""
    if lang in available:
        return lang
    for candidate in (FLORES_ALIASES.get(lang), XM3600_TO_FLORES.get(lang.lower())):
        if candidate in available:
            return candidate
    by_lower = {code.lower(): code for code in available}
    if lang.lower() in by_lower:
        return by_lower[lang.lower()]
    if not available:
        raise UclipError(f"no {what} files found: pass --data-dir DIR with the uclip data")
    choices = sorted({*available, *XM3600_TO_FLORES})
    close = difflib.get_close_matches(lang, choices, n=5, cutoff=0.5)
    near = f"; close matches: {', '.join(close)}" if close else ""
    raise UclipError(
        f"unknown {what} language code {lang!r}{near}: use a FLORES-200 code such as ces_Latn "
        f"({len(available)} available) or an XM3600 code such as cs"
    )


def available_flores_codes(data_dir: PathLike | None = None) -> list[str]:
    """FLORES-200 codes with a ``flores200/<code>.devtest`` file under ``data_dir``."""
    folder = resolve_data_dir(data_dir) / "flores200"
    return sorted(p.name.removesuffix(".devtest") for p in folder.glob("*.devtest"))


def load_flores(
    src_lang: str, tgt_lang: str = "eng_Latn", data_dir: PathLike | None = None
) -> BitextDataset:
    """FLORES-200 devtest, ``src_lang`` -> ``tgt_lang`` (1,012 aligned sentences).

    Codes may be FLORES-200 codes, their aliases, or XM3600 codes (``cs`` -> ``ces_Latn``,
    ``quz`` -> ``quy_Latn``, ``zh`` -> ``zho_Hans``).
    """
    folder = resolve_data_dir(data_dir) / "flores200"
    available = available_flores_codes(folder.parent)
    src = resolve_flores_code(src_lang, available)
    tgt = resolve_flores_code(tgt_lang, available)
    src_lines = _read_lines(folder / f"{src}.devtest", "FLORES-200")
    tgt_lines = _read_lines(folder / f"{tgt}.devtest", "FLORES-200")
    notes = [n for n in (_quechua_note(src_lang), _quechua_note(tgt_lang)) if n]
    return BitextDataset("flores200", src, tgt, src_lines, tgt_lines, notes)


# --------------------------------------------------------------------------------------------
# Classification


def default_cache_dir() -> Path:
    """Where extracted archives are kept: ``$XDG_CACHE_HOME/uclip/data`` (``~/.cache/...``)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "uclip" / "data"


def _safe_members(tar: tarfile.TarFile, archive: Path) -> list[tarfile.TarInfo]:
    members = []
    for member in tar.getmembers():
        parts = Path(member.name).parts
        if member.name.startswith("/") or ".." in parts or not (member.isfile() or member.isdir()):
            raise UclipError(
                f"{archive} holds an unsafe entry {member.name!r}: restore the "
                "archive from the data release"
            )
        members.append(member)
    return members


def extract_archive(archive: Path, cache_dir: PathLike | None = None) -> Path:
    """Extract a .tar.gz once into the cache and return the folder.

    The folder name holds the archive's sha256, so a changed archive is extracted afresh. The
    extraction goes to a temporary sibling folder that is renamed into place, so a crash or a
    concurrent process never leaves (or sees) a half-written folder.
    """
    if not archive.is_file():
        raise UclipError(
            f"archive {archive} is missing: pass --data-dir DIR with the uclip data "
            "(see MANIFEST.md)"
        )
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    stem = archive.name.removesuffix(".tar.gz").removesuffix(".tgz")
    target = cache / f"{stem}-{file_sha256(archive)[:16]}"
    if target.is_dir():
        return target
    try:
        cache.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{stem}-", dir=cache))
    except OSError as exc:
        raise UclipError(
            f"cannot write the cache folder {cache} ({exc}): pass a writable cache_dir"
        ) from None
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = _safe_members(tar, archive)
            if hasattr(tarfile, "data_filter"):
                tar.extractall(tmp, members=members, filter="data")
            else:  # pragma: no cover - Python without PEP 706; members were checked above
                tar.extractall(tmp, members=members)
        try:
            tmp.rename(target)
        except OSError:
            # Another process renamed its copy first; theirs is complete, so use it.
            if not target.is_dir():
                raise
    except (tarfile.TarError, OSError) as exc:
        raise UclipError(
            f"cannot extract {archive} into {cache} ({exc}): check the archive and free disk space"
        ) from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _check_limit(limit_per_class: int | None) -> None:
    if limit_per_class is not None and (
        isinstance(limit_per_class, bool)
        or not isinstance(limit_per_class, int)
        or limit_per_class < 1
    ):
        raise UclipError(f"limit_per_class must be an integer >= 1, got {limit_per_class!r}")


def _load_class_folders(
    root: Path, classes: Sequence[str], name: str, limit_per_class: int | None
) -> ClassificationDataset:
    """One sub-folder per class (``root/<class>/*.jpg`` or ``root/test/<class>/*.jpg``)."""
    if not root.is_dir():
        raise UclipError(
            f"{name} images folder {root} does not exist: pass --images DIR with "
            "one folder per class"
        )
    if not (root / classes[0]).is_dir() and (root / "test").is_dir():
        root = root / "test"
    missing = [c for c in classes if not (root / c).is_dir()]
    if missing:
        raise UclipError(
            f"{len(missing)} of {len(classes)} {name} class folders are missing under {root} "
            f"(e.g. {missing[0]}/): pass --images DIR with one folder per class "
            f"({', '.join(classes)})"
        )
    paths: list[Path] = []
    labels: list[int] = []
    for label, cls in enumerate(classes):
        files = sorted(p for p in (root / cls).iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
        if not files:
            raise UclipError(
                f"{name} class folder {root / cls} holds no images: pass --images "
                "DIR with the test images"
            )
        files = files[:limit_per_class] if limit_per_class else files
        paths.extend(files)
        labels.extend([label] * len(files))
    return ClassificationDataset(name, list(classes), paths, labels)


def load_cifar10(
    data_dir: PathLike | None = None,
    images_dir: PathLike | None = None,
    *,
    limit_per_class: int | None = None,
    cache_dir: PathLike | None = None,
) -> ClassificationDataset:
    """CIFAR-10 test set (10,000 32x32 JPEGs), classes in torchvision order.

    With ``images_dir``: a folder with one sub-folder per class. Otherwise the shipped
    ``images/cifar10_test_jpg.tar.gz`` is extracted once into ``cache_dir`` (default
    :func:`default_cache_dir`). Within a class, files are taken in sorted name order.
    """
    _check_limit(limit_per_class)
    if images_dir is not None:
        return _load_class_folders(
            Path(images_dir).expanduser(), CIFAR10_CLASSES, "CIFAR-10", limit_per_class
        )
    archive = resolve_data_dir(data_dir) / "images" / "cifar10_test_jpg.tar.gz"
    folder = extract_archive(archive, cache_dir)
    return _load_class_folders(folder, CIFAR10_CLASSES, "CIFAR-10", limit_per_class)


def load_stl10(
    images_dir: PathLike | None, *, limit_per_class: int | None = None
) -> ClassificationDataset:
    """STL-10 test set (8,000 96x96 images). Not shipped: ``images_dir`` is required.

    Accepts the standard binary release (``stl10_binary/test_X.bin`` + ``test_y.bin``: uint8,
    each image 3x96x96 stored channel by channel in column-major order, labels 1..10;
    memory-mapped, not loaded) or one sub-folder per class.
    """
    _check_limit(limit_per_class)
    if images_dir is None:
        raise UclipError(
            "STL-10 is not shipped with uclip: pass --images DIR with stl10_binary/ "
            "(test_X.bin, test_y.bin) or one folder per class"
        )
    root = Path(images_dir).expanduser()
    for folder in (root, root / "stl10_binary"):
        if (folder / "test_X.bin").is_file() or (folder / "test_y.bin").is_file():
            return _load_stl10_binary(folder, limit_per_class)
    return _load_class_folders(root, STL10_CLASSES, "STL-10", limit_per_class)


def _load_stl10_binary(folder: Path, limit_per_class: int | None) -> ClassificationDataset:
    x_path, y_path = folder / "test_X.bin", folder / "test_y.bin"
    for path in (x_path, y_path):
        if not path.is_file():
            raise UclipError(
                f"STL-10 file {path} is missing: pass --images DIR with both "
                "test_X.bin and test_y.bin"
            )
    labels = np.fromfile(y_path, dtype=np.uint8).astype(np.int64) - 1
    per_image = 3 * _STL10_SIDE * _STL10_SIDE
    if labels.size == 0:
        raise UclipError(f"STL-10 file {y_path} is empty: the data set is empty")
    if labels.min() < 0 or labels.max() >= len(STL10_CLASSES):
        raise UclipError(f"STL-10 labels in {y_path} must be 1..10: is it the STL-10 binary?")
    if x_path.stat().st_size != labels.size * per_image:
        raise UclipError(
            f"STL-10 {x_path} holds {x_path.stat().st_size} bytes, expected "
            f"{labels.size} x {per_image} for {labels.size} labels: restore the "
            "files"
        )
    raw = np.memmap(
        x_path, dtype=np.uint8, mode="r", shape=(labels.size, 3, _STL10_SIDE, _STL10_SIDE)
    )
    # Column-major per channel: raw[n, c, x, y]; transposing gives (N, row, column, channel).
    images = raw.transpose(0, 3, 2, 1)
    if limit_per_class:
        keep = np.concatenate(
            [np.flatnonzero(labels == c)[:limit_per_class] for c in range(len(STL10_CLASSES))]
        )
        keep.sort()
        images, labels = images[keep], labels[keep]
    return ClassificationDataset("stl10", list(STL10_CLASSES), None, labels.tolist(), images)


def load_classification_prompts(
    dataset: str,
    lang: str,
    data_dir: PathLike | None = None,
    *,
    fix_translations: bool = False,
) -> ClassificationPrompts:
    """uCLIP's zero-shot class prompts for ``"cifar10"`` or ``"stl10"``.

    ``lang`` is ``"en"`` (``"a photo of a {class}."``) or one of cs/fi/hr/hu/ro (uCLIP's
    translations from ``classification/translations_<dataset>.json``). Known wrong translations
    (:data:`KNOWN_TRANSLATION_ISSUES`) are kept and noted unless ``fix_translations=True``,
    which swaps in our corrections.
    """
    classes = {"cifar10": CIFAR10_CLASSES, "stl10": STL10_CLASSES}.get(dataset)
    if classes is None:
        raise UclipError(f"unknown classification data set {dataset!r}: use cifar10 or stl10")
    code = _short_code(lang)
    code = {name: iso for iso, name in UCLIP_LANGUAGES.items()}.get(code.lower(), code)
    if code == "en":
        prompts = [ENGLISH_PROMPT_TEMPLATE.format(c) for c in classes]
        return ClassificationPrompts(dataset, "en", list(classes), prompts)
    if code not in UCLIP_LANGUAGES:
        raise _unknown_language(f"{dataset} prompt", lang, ["en", *UCLIP_LANGUAGES])
    path = resolve_data_dir(data_dir) / "classification" / f"translations_{dataset}.json"
    table = _read_json(path, "classification prompts")
    prompts = table.get(UCLIP_LANGUAGES[code]) if isinstance(table, dict) else None
    if not isinstance(prompts, list) or len(prompts) != len(classes):
        raise UclipError(
            f"{path} lacks {len(classes)} {UCLIP_LANGUAGES[code]!r} prompts: restore "
            "it from the data release"
        )
    prompts = list(prompts)
    notes = []
    for index, cls in enumerate(classes):
        issue = KNOWN_TRANSLATION_ISSUES.get((dataset, code, cls))
        if issue is None:
            continue
        if prompts[index] != issue.found:
            notes.append(
                f"known issue for {cls!r} no longer applies: found {prompts[index]!r}, "
                f"expected {issue.found!r}"
            )
        elif fix_translations:
            prompts[index] = issue.corrected
            notes.append(
                f"{cls!r}: replaced {issue.found!r} ({issue.problem}) by our correction "
                f"{issue.corrected!r}"
            )
        else:
            notes.append(
                f"{cls!r}: {issue.found!r} {issue.problem}; fix_translations=True uses "
                f"{issue.corrected!r}"
            )
    with_period = sum(p.rstrip().endswith(".") for p in prompts)
    if 0 < with_period < len(prompts):
        notes.append(f"{with_period} of {len(prompts)} prompts end with a period, the rest do not")
    return ClassificationPrompts(dataset, code, list(classes), prompts, notes)
