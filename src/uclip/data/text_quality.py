"""Text quality: what is wrong with a caption list, measured, and the optional clean-up.

Loaders keep the text exactly as in the sources (so numbers stay comparable with uCLIP's code)
and report what is wrong with it in ``notes``: repetition loops, duplicate captions, mixed
Romanian letter forms, HTML entities, over-shortened translations. ``normalize=True`` in a loader
applies :func:`clean_text` (Romanian ş/ţ -> ș/ț, HTML entities unescaped). :func:`text_quality`
measures a whole translation against its English source (empty, repeated, looping and
untranslated lines; letters outside the code's script) and says when it is too broken to average.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from uclip.data.languages import is_romanian, script_of
from uclip.errors import UclipError

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
    """True if ``text`` holds a degenerate machine-translation loop
    (:func:`find_repetition_loops`)."""
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
ALPHABETIC_SCRIPTS = frozenset({"Latn", "Cyrl", "Grek"})


def clean_text(text: str, romanian: bool) -> str:
    """HTML entities unescaped and, in Romanian, :func:`normalize_romanian` (``normalize=True``)."""
    text = html.unescape(text)
    return normalize_romanian(text) if romanian else text


def snippet(text: str, width: int = 40) -> str:
    """``text`` cut to ``width`` characters with an ellipsis, for one-line notes."""
    return text if len(text) <= width else text[: width - 1] + "…"


def text_notes(
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
            f"source (e.g. image {image_of(i)}: {snippet(captions[i])!r})"
        )
    counts = Counter(captions)
    repeated = [c for c, k in counts.items() if k > 1]
    if repeated:
        total = sum(counts[c] for c in repeated)
        common = max(repeated, key=lambda c: counts[c])
        notes.append(
            f"{total} of {n} captions share their exact text with another caption "
            f"({len(repeated)} distinct texts, e.g. {snippet(common)!r} x{counts[common]}); "
            "identical texts tie in image->text ranking"
        )
    if is_romanian(lang):
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
    if english_sources is not None and script_of(lang) in ALPHABETIC_SCRIPTS:
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


# Unicode character-name prefixes of the letters each ISO 15924 script of FLORES-200 writes with.
# Japanese and Korean text mixes kana/hangul with Han characters, so those count as native too.
SCRIPT_LETTERS: dict[str, tuple[str, ...]] = {
    "Arab": ("ARABIC",),
    "Armn": ("ARMENIAN",),
    "Beng": ("BENGALI",),
    "Cyrl": ("CYRILLIC",),
    "Deva": ("DEVANAGARI",),
    "Ethi": ("ETHIOPIC",),
    "Geor": ("GEORGIAN",),
    "Grek": ("GREEK",),
    "Gujr": ("GUJARATI",),
    "Guru": ("GURMUKHI",),
    "Hang": ("HANGUL", "CJK"),
    "Hans": ("CJK",),
    "Hant": ("CJK",),
    "Hebr": ("HEBREW",),
    "Jpan": ("CJK", "HIRAGANA", "KATAKANA"),
    "Khmr": ("KHMER",),
    "Knda": ("KANNADA",),
    "Laoo": ("LAO",),
    "Latn": ("LATIN",),
    "Mlym": ("MALAYALAM",),
    "Mymr": ("MYANMAR",),
    "Olck": ("OL CHIKI",),
    "Orya": ("ORIYA",),
    "Sinh": ("SINHALA",),
    "Taml": ("TAMIL",),
    "Telu": ("TELUGU",),
    "Tfng": ("TIFINAGH",),
    "Thai": ("THAI",),
    "Tibt": ("TIBETAN",),
}

# A language's text for one data set is flagged (shown, but left out of every mean) when more
# than MAX_BAD_LINES of its lines are empty, repeat another line, hold a repetition loop or are
# the English source untranslated, or when under MIN_SCRIPT_SHARE of its letters are in the
# code's script. Fixed by reading the shared data, not by any model's score: human FLORES text
# has at most 0.6% such lines and >= 0.87 of its letters in its script (names and numbers in
# Latin letters make up the rest); NLLB's Flickr30k-200 has languages with 5-13% looping lines.
MAX_BAD_LINES = 0.05
MIN_SCRIPT_SHARE = 0.8


# Letters and symbols that render as blank space: the Hangul fillers (category Lo) and the empty
# braille pattern (So). Text made of them alone looks empty, and so is not a query.
BLANK_GLYPHS = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def has_visible_text(text: str) -> bool:
    """Whether ``text`` shows something: a letter, digit, punctuation mark or symbol (Unicode L*,
    N*, P*, S*) other than a :data:`BLANK_GLYPHS` character. Spaces and separators (Z*),
    controls, format characters such as zero-width spaces (C*), and combining marks (M*), which
    show only on a base character, do not count."""
    return any(unicodedata.category(c)[0] in "LNPS" and c not in BLANK_GLYPHS for c in text)


def script_share(texts: Iterable[str], script: str) -> float:
    """Fraction of the letters (Unicode category L*) in ``texts`` that belong to ``script``."""
    prefixes = SCRIPT_LETTERS.get(script)
    if prefixes is None:
        raise UclipError(f"no letter table for script {script!r}: add it to SCRIPT_LETTERS")
    counts = Counter(char for text in texts for char in text)
    native = letters = 0
    for char, count in counts.items():  # Unicode look-ups once per distinct character
        if unicodedata.category(char).startswith("L"):
            letters += count
            native += count * unicodedata.name(char, "").startswith(prefixes)
    return native / letters if letters else 0.0


@dataclass(frozen=True)
class TextQuality:
    """What is wrong with one language's text for one data set, measured (fractions of lines;
    ``bad_lines`` counts a line once whatever is wrong with it)."""

    lines: int
    empty: float
    duplicated: float
    loops: float
    copied_english: float
    bad_lines: float
    script_share: float

    def problems(self) -> list[str]:
        """Every problem found, however small."""
        out = []
        for value, what in (
            (self.empty, "empty lines"),
            (self.duplicated, "lines repeat another line"),
            (self.loops, "lines hold repetition loops"),
            (self.copied_english, "lines are the English source, untranslated"),
        ):
            if value > 0:
                out.append(f"{value:.1%} {what}")
        if self.script_share < 1:
            out.append(f"{self.script_share:.1%} of letters in the code's script")
        return out

    @property
    def flagged(self) -> bool:
        """Broken enough to keep out of the means (see ``MAX_BAD_LINES``)."""
        return self.bad_lines > MAX_BAD_LINES or self.script_share < MIN_SCRIPT_SHARE

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "flagged": self.flagged}


def text_quality(texts: Sequence[str], english: Sequence[str], script: str) -> TextQuality:
    """Measure ``texts`` (translations of the line-aligned ``english``) written in ``script``."""
    if len(texts) != len(english):
        raise UclipError(f"{len(texts)} texts but {len(english)} English lines: not aligned")
    n = len(texts)
    if n == 0:
        raise UclipError("no text to check")
    stripped = [t.strip() for t in texts]
    counts = Counter(t for t in stripped if t)
    empty = {i for i, t in enumerate(stripped) if not t}
    duplicated = {i for i, t in enumerate(stripped) if t and counts[t] > 1}
    loops = set(find_repetition_loops(stripped))
    copied = {i for i, (t, e) in enumerate(zip(stripped, english, strict=True)) if t == e.strip()}
    copied -= empty
    return TextQuality(
        lines=n,
        empty=len(empty) / n,
        duplicated=len(duplicated) / n,
        loops=len(loops) / n,
        copied_english=len(copied) / n,
        bad_lines=len(empty | duplicated | loops | copied) / n,
        script_share=script_share(stripped, script),
    )
