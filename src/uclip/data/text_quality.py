"""Text quality: what is wrong with a caption list, measured, and the optional clean-up.

Loaders keep the text exactly as in the sources (so numbers stay comparable with uCLIP's code)
and report what is wrong with it in ``notes``: repetition loops, duplicate captions, mixed
Romanian letter forms, HTML entities, over-shortened translations. ``normalize=True`` in a loader
applies :func:`clean_text` (Romanian ş/ţ -> ș/ț, HTML entities unescaped).
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np

from uclip.data.languages import is_romanian, script_of

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
