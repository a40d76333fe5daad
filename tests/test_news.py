"""The news domain (issue 22): WMT dev pairs spread over each file, English-only training text,
and the third dev domain."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from uclip.data.news import (
    NEWS_DEV_LANGS,
    NEWS_DEV_SCRIPTS,
    news_dev_pairs,
    news_dev_path,
    news_english,
)
from uclip.errors import UclipError
from uclip.features.corpora import dev_sets


def write_news(root: Path, lang: str, lines: list[str]) -> None:
    path = news_dev_path(root, lang)
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")


def test_dev_pairs_are_spread_over_the_file_and_skip_blank_pairs(tmp_path: Path) -> None:
    write_news(tmp_path, "de", [f"d{i}\te{i}" for i in range(9)] + ["\tonly english", "x\t "])
    assert len(news_dev_pairs(tmp_path, "de")) == 9
    # 9 pairs, 3 wanted: indices 0, 3, 6 (i * 9 // 3), not the first three lines
    assert news_dev_pairs(tmp_path, "de", 3) == [("d0", "e0"), ("d3", "e3"), ("d6", "e6")]
    assert news_dev_pairs(tmp_path, "de", 50) == news_dev_pairs(tmp_path, "de")


def test_bad_news_input_is_one_line(tmp_path: Path) -> None:
    write_news(tmp_path, "fi", ["no tab here"])
    with pytest.raises(UclipError, match="line 1"):
        news_dev_pairs(tmp_path, "fi")
    with pytest.raises(UclipError, match="no news dev pairs"):
        news_dev_pairs(tmp_path, "xx")
    with pytest.raises(UclipError, match="missing"):
        news_english(tmp_path)


def test_news_dev_spans_four_scripts_and_is_disjoint_from_the_training_text(
    shared_data: Path,
) -> None:
    assert set(NEWS_DEV_SCRIPTS.values()) == {"Latin", "Cyrillic", "Han", "Gujarati"}
    sets = dev_sets(shared_data, tatoeba_per_lang=5, multi30k_per_lang=5, news_per_lang=7)
    news = [s for s in sets if s.name == "news-dev"]
    assert [s.lang for s in news] == list(NEWS_DEV_LANGS)
    assert all(len(s.foreign) == len(s.english) == 7 for s in news)
    assert len(news_english(shared_data, 100)) == 100
    training = set(news_english(shared_data))
    assert len(training) == 41921
    for lang in NEWS_DEV_LANGS:
        assert not {e for _, e in news_dev_pairs(shared_data, lang)} & training
    with pytest.raises(UclipError, match="holds 41921"):
        news_english(shared_data, 10**6)
    # news_per_lang 0: the dev sets are the two domains of the earlier configs
    earlier = dev_sets(shared_data, tatoeba_per_lang=5, multi30k_per_lang=5, news_per_lang=0)
    assert {s.name for s in earlier} == {"multi30k-val", "tatoeba-dev"}
