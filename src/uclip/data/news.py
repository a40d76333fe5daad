"""WMT news text (``news/``): dev pairs in 11 languages and English-only news sentences.

``news/dev/newstest<YEAR>.<xx>-en.tsv.gz`` holds the official WMT newstest sets (xx -> en), one
aligned pair a line; they are **dev data only** (never a reported test set, never training text,
never a bank). ``news/english_news.txt.gz`` holds 41,921 English news sentences (newstest
2008-2016, de-duplicated against the dev pairs, FLORES-200, XM3600 and Flickr30k English); their
translations are not in the data and must never be fetched, so they are English-only training
text (see ``../shared/data/MANIFEST.md``).
"""

from __future__ import annotations

import gzip
from pathlib import Path

from uclip.data.io import read_nonblank_lines
from uclip.errors import UclipError

NEWS_DIR = "news"
# Language -> newstest year of its dev file; the scripts span Latin, Cyrillic, Han and Gujarati.
NEWS_DEV_YEARS = {
    "de": 2019,
    "fi": 2019,
    "gu": 2019,
    "kk": 2019,
    "lt": 2019,
    "ru": 2019,
    "zh": 2019,
    "cs": 2018,
    "et": 2018,
    "tr": 2018,
    "lv": 2017,
}
NEWS_DEV_LANGS = tuple(NEWS_DEV_YEARS)
NEWS_DEV_SCRIPTS = {
    lang: {"ru": "Cyrillic", "kk": "Cyrillic", "zh": "Han", "gu": "Gujarati"}.get(lang, "Latin")
    for lang in NEWS_DEV_LANGS
}


def news_dev_path(data_dir: Path, lang: str) -> Path:
    if lang not in NEWS_DEV_YEARS:
        raise UclipError(f"no news dev pairs for {lang!r}: known {', '.join(NEWS_DEV_LANGS)}")
    return data_dir / NEWS_DIR / "dev" / f"newstest{NEWS_DEV_YEARS[lang]}.{lang}-en.tsv.gz"


def news_dev_pairs(data_dir: Path, lang: str, n: int | None = None) -> list[tuple[str, str]]:
    """``(foreign, english)`` newstest pairs of ``lang``; with ``n``, ``n`` pairs spread evenly
    over the file (newstest files are whole articles in order, so the first ``n`` lines would be
    a handful of stories)."""
    path = news_dev_path(data_dir, lang)
    if not path.is_file():
        raise UclipError(f"missing {path}: the news dev pairs (see the data MANIFEST)")
    pairs: list[tuple[str, str]] = []
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            foreign, tab, english = line.rstrip("\n").partition("\t")
            if not tab:
                raise UclipError(f"{path} line {number}: expected <{lang} sentence><TAB><English>")
            if foreign.strip() and english.strip():
                pairs.append((foreign.strip(), english.strip()))
    if n is None or n >= len(pairs):
        return pairs
    if n < 1:
        raise UclipError(f"news dev pairs per language must be >= 1, got {n}")
    return [pairs[i * len(pairs) // n] for i in range(n)]


def news_english(data_dir: Path, n: int | None = None) -> list[str]:
    """The first ``n`` (all by default) English-only news training sentences, file order."""
    path = data_dir / NEWS_DIR / "english_news.txt.gz"
    if not path.is_file():
        raise UclipError(f"missing {path}: the English news training text (see the data MANIFEST)")
    sentences = read_nonblank_lines(path)
    if n is not None and n > len(sentences):
        raise UclipError(f"asked for {n} English news sentences but {path} holds {len(sentences)}")
    return sentences[:n]
