"""Training text: English captions (the queries e_i) and the unpaired banks' text sources.

uCLIP trains on English captions only; its banks V and M must not be paired with them. Multi30K
gives 29,000 Flickr30k training images with 5 English captions each (task 2) and German, French,
Czech captions (task 1/2). :func:`split_training_corpora` splits the *images* into three disjoint
groups — training queries, bank V, bank M — so no bank entry describes a training image, and the
Flickr30k 1k test images (Multi30K test2016) are never touched (Multi30K train shares none).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from uclip.data.io import read_nonblank_lines
from uclip.data.multi30k import M30K, multi30k_english, multi30k_foreign, multi30k_images
from uclip.data.news import NEWS_DEV_LANGS, news_dev_pairs, news_english
from uclip.data.tatoeba import TATOEBA_LANGS, split_tatoeba
from uclip.errors import UclipError

BANK_M_SOURCES = {"de": "multi30k", "fr": "multi30k", "cs": "multi30k"}


@dataclass
class DevSet:
    """One dev retrieval task: ``foreign[i]`` translates ``english[i]``."""

    name: str
    lang: str
    foreign: list[str]
    english: list[str]


DEV_MULTI30K_LANGS = ("de", "fr", "cs")


def dev_sets(
    data_dir: Path, *, tatoeba_per_lang: int, multi30k_per_lang: int | None, news_per_lang: int
) -> list[DevSet]:
    """The dev data: disjoint from every reported test set, from the banks and the training text.

    - Multi30K val task 1, de/fr/cs -> en (1,014 captions; caption domain, images disjoint from
      Multi30K train and from the Flickr30k 1k test);
    - Tatoeba dev pairs cs/fi/hr/hu/ro -> en (general domain, the ``dev`` part of
      :func:`split_tatoeba`), at most ``tatoeba_per_lang`` each;
    - with ``news_per_lang`` > 0, WMT newstest pairs of 11 languages in 4 scripts (news domain,
      :func:`uclip.data.news.news_dev_pairs`), that many per language, spread over each file.

    ``multi30k_per_lang`` keeps the first captions only (a quicker, noisier dev score); ``None``
    keeps all. A run's sizes are its config's (:func:`uclip.app.train.data_dev_sets`).
    """
    n = multi30k_per_lang
    english = read_nonblank_lines(data_dir / M30K / "task1" / "raw" / "val.en.gz")[:n]
    sets = [
        DevSet("multi30k-val", lang, multi30k_foreign(data_dir, lang, "val")[:n], english)
        for lang in DEV_MULTI30K_LANGS
    ]
    for lang, pairs in split_tatoeba(data_dir).dev.items():
        picked = pairs[:tatoeba_per_lang]
        sets.append(DevSet("tatoeba-dev", lang, [f for f, _ in picked], [e for _, e in picked]))
    for lang in NEWS_DEV_LANGS if news_per_lang > 0 else ():
        picked = news_dev_pairs(data_dir, lang, news_per_lang)
        sets.append(DevSet("news-dev", lang, [f for f, _ in picked], [e for _, e in picked]))
    for d in sets:
        if len(d.foreign) != len(d.english):
            raise UclipError(f"dev set {d.name} {d.lang}: {len(d.foreign)} vs {len(d.english)}")
    return sets


@dataclass
class TrainingCorpora:
    """English training queries and the unpaired bank texts, with where each came from."""

    train_captions: list[str]
    bank_v_captions: list[str]
    bank_m_texts: list[str]
    bank_m_langs: list[str]
    sources: dict[str, str] = field(default_factory=dict)
    general_english: list[str] = field(default_factory=list)
    news_english: list[str] = field(default_factory=list)


def split_training_corpora(
    data_dir: Path,
    n_train: int,
    n_bank_v: int,
    n_bank_m: int,
    *,
    seed: int,
    n_general: int,
    n_news: int,
    tatoeba_per_lang: int | None = None,
) -> TrainingCorpora:
    """Sample the quickstart/training text from Multi30K train (+ Tatoeba for bank M).

    Images are shuffled with ``seed`` and cut into three disjoint groups: captions of group A (the
    first images) are the English training queries (all 5 per image), the first English caption of
    each group-B image (the last images) forms bank V
    (text-anchor stand-in for image embeddings), and de/fr/cs captions of group C plus Tatoeba
    sentences form bank M. Sizes are in sentences.

    ``n_general`` English Tatoeba sentences of the ``train`` part (:func:`split_tatoeba`) are
    added as general-domain training text: English only, none of them with a translation in
    bank M or in the dev pairs. ``n_news`` English news sentences
    (:func:`uclip.data.news.news_english`, English only, no translation anywhere in the data)
    are the news training text.
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
    # Banks come from the end of the order and queries from the start, so the banks do not
    # change when n_train does (the training-size ablation compares like with like).
    group_a = order[:n_a]
    group_b = order[len(order) - n_b :]
    group_c = order[len(order) - n_b - n_c_images : len(order) - n_b]
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
    tatoeba = split_tatoeba(data_dir)
    if n_general > len(tatoeba.english):
        raise UclipError(
            f"n_general={n_general} but Tatoeba has {len(tatoeba.english)} English training "
            "sentences: lower it"
        )
    for lang in TATOEBA_LANGS:
        sentences = tatoeba.bank[lang]
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
                f"{'/'.join(TATOEBA_LANGS)} sentences (bank part)"
            ),
            "general": f"{n_general} English Tatoeba sentences (train part, English side only)",
            "news": f"{n_news} English WMT news sentences (news/english_news.txt.gz, English only)",
        },
        general_english=tatoeba.english[:n_general],
        news_english=news_english(data_dir, n_news) if n_news else [],
    )
