"""Tatoeba sentence pairs (``text_bank/tatoeba_<lang>-en.tsv.gz``, cs/fi/hr/hu/ro <-> English),
and their fixed cut into dev pairs, bank-M sentences and English training text."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

from uclip.data.languages import TARGET_LANGUAGES
from uclip.errors import UclipError

TATOEBA_LANGS = TARGET_LANGUAGES  # the data folder's Tatoeba files are the paper's five


def tatoeba_pairs(data_dir: Path, lang: str) -> list[tuple[str, str]]:
    """The ``(foreign, english)`` Tatoeba pairs of ``lang`` in ``text_bank/``, file order."""
    path = data_dir / "text_bank" / f"tatoeba_{lang}-en.tsv.gz"
    if not path.is_file():
        raise UclipError(f"missing {path}: Tatoeba bank text exists for {', '.join(TATOEBA_LANGS)}")
    with gzip.open(path, "rb") as fh:
        reader = csv.DictReader(
            io.TextIOWrapper(fh, encoding="utf-8"), delimiter="\t", quoting=csv.QUOTE_NONE
        )
        pairs = [(row["text"].strip(), row["eng"].strip()) for row in reader]
    return [(f, e) for f, e in pairs if f and e]


# Shares of the distinct English Tatoeba sentences (in %): dev pairs, bank-M rows, English training
# text. Fixed, not seeded, so the dev set never changes between runs.
TATOEBA_ROLES = (("dev", 8), ("bank", 42), ("train", 50))


def tatoeba_role(english: str) -> str:
    """Which disjoint part a Tatoeba pair belongs to, decided by its English sentence alone.

    Keying on the English side keeps every translation of one English sentence in one part, so
    a dev pair's English never appears as training text and no training sentence has its
    translation in bank M.
    """
    key = " ".join(english.lower().split()).encode("utf-8")
    bucket = int.from_bytes(hashlib.sha256(key).digest()[:4], "big") % 100
    for role, share in TATOEBA_ROLES:
        if bucket < share:
            return role
        bucket -= share
    raise AssertionError("TATOEBA_ROLES shares must add up to 100")


@dataclass
class TatoebaSplit:
    """Tatoeba cut into three disjoint parts (see :func:`tatoeba_role`)."""

    dev: dict[str, list[tuple[str, str]]]  # lang -> (foreign, english) pairs
    bank: dict[str, list[str]]  # lang -> foreign sentences for bank M
    english: list[str]  # distinct English sentences, training text only


def split_tatoeba(data_dir: Path) -> TatoebaSplit:
    """Split every Tatoeba language into dev pairs, bank-M sentences and English training text.

    A foreign sentence that also occurs in a dev or training pair (under another English
    wording) is kept out of the bank, so the three parts share no sentence in either language.
    """
    pairs = {lang: tatoeba_pairs(data_dir, lang) for lang in TATOEBA_LANGS}
    roles = {lang: [tatoeba_role(e) for _, e in rows] for lang, rows in pairs.items()}
    not_bank = {
        f
        for lang, rows in pairs.items()
        for (f, _), r in zip(rows, roles[lang], strict=True)
        if r != "bank"
    }
    dev: dict[str, list[tuple[str, str]]] = {}
    bank: dict[str, list[str]] = {}
    english: dict[str, None] = {}
    for lang, rows in pairs.items():
        dev[lang] = [p for p, r in zip(rows, roles[lang], strict=True) if r == "dev"]
        bank[lang] = list(
            dict.fromkeys(f for (f, _), r in zip(rows, roles[lang], strict=True) if r == "bank")
        )
        bank[lang] = [f for f in bank[lang] if f not in not_bank]
        english.update(
            (e, None) for (_, e), r in zip(rows, roles[lang], strict=True) if r == "train"
        )
    # A seed-independent order, so growing n_general only appends sentences.
    ordered = sorted(english, key=lambda e: hashlib.sha256(e.encode("utf-8")).digest())
    return TatoebaSplit(dev=dev, bank=bank, english=ordered)
