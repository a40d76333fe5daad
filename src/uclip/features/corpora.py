"""Training text: English captions (the queries e_i) and the unpaired banks' text sources.

uCLIP trains on English captions only; its banks V and M must not be paired with them. Multi30K
gives 29,000 Flickr30k training images with 5 English captions each (task 2) and German, French,
Czech captions (task 1/2). :func:`split_training_corpora` splits the *images* into three disjoint
groups — training queries, bank V, bank M — so no bank entry describes a training image, and the
Flickr30k 1k test images (Multi30K test2016) are never touched (Multi30K train shares none).
"""

from __future__ import annotations

import csv
import gzip
import io
import random
from dataclasses import dataclass, field
from pathlib import Path

from uclip.errors import UclipError

M30K = Path("multi30k") / "data"
BANK_M_SOURCES = {"de": "multi30k", "fr": "multi30k", "cs": "multi30k"}
TATOEBA_LANGS = ("cs", "fi", "hr", "hu", "ro")


def read_lines(path: Path) -> list[str]:
    """Non-empty stripped lines of a UTF-8 text file (``.gz`` read transparently)."""
    if not path.is_file():
        raise UclipError(
            f"missing data file {path}: check --data-dir (see MANIFEST.md for the layout)"
        )
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return [line.strip() for line in fh if line.strip()]


def multi30k_images(data_dir: Path, split: str = "train") -> list[str]:
    return read_lines(data_dir / M30K / "task1" / "image_splits" / f"{split}.txt")


def multi30k_english(data_dir: Path, split: str = "train") -> list[list[str]]:
    """The 5 English captions of each image (task 2), in image-split order."""
    cols = [
        read_lines(data_dir / M30K / "task2" / "raw" / f"{split}.{k}.en.gz") for k in range(1, 6)
    ]
    return [list(caps) for caps in zip(*cols, strict=True)]


def multi30k_foreign(data_dir: Path, lang: str, split: str = "train") -> list[str]:
    """One caption per image in ``lang`` (task 1: de, fr, cs), in image-split order."""
    return read_lines(data_dir / M30K / "task1" / "raw" / f"{split}.{lang}.gz")


def tatoeba_sentences(data_dir: Path, lang: str) -> list[str]:
    """The non-English side of the Tatoeba pairs in ``text_bank/`` (bank text, not evaluation)."""
    path = data_dir / "text_bank" / f"tatoeba_{lang}-en.tsv.gz"
    if not path.is_file():
        raise UclipError(f"missing {path}: Tatoeba bank text exists for {', '.join(TATOEBA_LANGS)}")
    with gzip.open(path, "rb") as fh:
        reader = csv.DictReader(
            io.TextIOWrapper(fh, encoding="utf-8"), delimiter="\t", quoting=csv.QUOTE_NONE
        )
        return [row["text"].strip() for row in reader if row["text"].strip()]


@dataclass
class TrainingCorpora:
    """English training queries and the unpaired bank texts, with where each came from."""

    train_captions: list[str]
    bank_v_captions: list[str]
    bank_m_texts: list[str]
    bank_m_langs: list[str]
    sources: dict[str, str] = field(default_factory=dict)


def split_training_corpora(
    data_dir: Path,
    n_train: int,
    n_bank_v: int,
    n_bank_m: int,
    seed: int = 0,
    tatoeba_per_lang: int | None = None,
) -> TrainingCorpora:
    """Sample the quickstart/training text from Multi30K train (+ Tatoeba for bank M).

    Images are shuffled with ``seed`` and cut into three disjoint groups: captions of group A are
    the English training queries (all 5 per image), the first English caption of each group-B
    image forms bank V
    (text-anchor stand-in for image embeddings), and de/fr/cs captions of group C plus Tatoeba
    sentences form bank M. Sizes are in sentences.
    """
    if min(n_train, n_bank_v, n_bank_m) < 1:
        raise UclipError("n_train, n_bank_v and n_bank_m must all be >= 1")
    images = multi30k_images(data_dir)
    english = multi30k_english(data_dir)
    if len(images) != len(english):
        raise UclipError(f"Multi30K train: {len(images)} images but {len(english)} caption rows")
    order = list(range(len(images)))
    random.Random(seed).shuffle(order)
    n_a = -(-n_train // 5)
    n_b = n_bank_v  # one caption per bank-V image: each entry stands in for one image
    n_tatoeba_total = n_bank_m // 2
    n_c = n_bank_m - n_tatoeba_total
    n_c_images = -(-n_c // len(BANK_M_SOURCES))
    if n_a + n_b + n_c_images > len(order):
        raise UclipError(
            f"asked for {n_train}+{n_bank_v} English and {n_c} Multi30K bank sentences, more than "
            f"{len(order)} training images allow: lower the sizes"
        )
    group_a, group_b = order[:n_a], order[n_a : n_a + n_b]
    group_c = order[n_a + n_b : n_a + n_b + n_c_images]
    train = [c for i in group_a for c in english[i]][:n_train]
    bank_v = [english[i][0] for i in group_b]
    bank_m: list[str] = []
    langs: list[str] = []
    for lang in BANK_M_SOURCES:
        foreign = multi30k_foreign(data_dir, lang)
        bank_m += [foreign[i] for i in group_c]
        langs += [lang] * len(group_c)
    bank_m, langs = bank_m[:n_c], langs[:n_c]
    per_lang = tatoeba_per_lang or -(-n_tatoeba_total // len(TATOEBA_LANGS))
    rng = random.Random(seed + 1)
    for lang in TATOEBA_LANGS:
        sentences = tatoeba_sentences(data_dir, lang)
        picked = rng.sample(sentences, min(per_lang, len(sentences)))
        bank_m += picked
        langs += [lang] * len(picked)
    return TrainingCorpora(
        train_captions=train,
        bank_v_captions=bank_v,
        bank_m_texts=bank_m,
        bank_m_langs=langs,
        sources={
            "train": f"Multi30K task2 train, English captions of {len(group_a)} images",
            "bank_v": f"Multi30K task2 train, first English caption of {len(group_b)} other images",
            "bank_m": (
                f"Multi30K task1 train de/fr/cs of {len(group_c)} further images + Tatoeba "
                f"{'/'.join(TATOEBA_LANGS)} sentences"
            ),
        },
    )
