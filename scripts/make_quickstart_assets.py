"""Rebuild the bundled quickstart subset (src/uclip/assets/quickstart/) from the full data.

The subset mirrors the full data directory's layout, so the quickstart reads it with the same
loaders. Usage: python scripts/make_quickstart_assets.py [--data-dir ../shared/data]
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
from pathlib import Path

from uclip.data.languages import TARGET_LANGUAGES, XM3600_TO_FLORES
from uclip.data.news import NEWS_DEV_LANGS, news_dev_pairs, news_dev_path, news_english
from uclip.data.tatoeba import TATOEBA_LANGS

LANGS = (*TARGET_LANGUAGES, "ja", "zh", "hi", "ru", "ar", "en")
FLORES = {lang: XM3600_TO_FLORES[lang] for lang in LANGS}
N_IMAGES = 7100  # Multi30K training images: 2,400 query + 4,000 bank-V + 667 bank-M images
N_XM3600 = 1000
N_FLORES = 500
# The quickstart's news text (data.n_news) and news dev pairs (data.dev_news_per_lang): the dev
# pairs are the ones news_dev_pairs spreads over each full file, so the subset picks the same.
N_NEWS = 3000
N_NEWS_DEV = 100


def gz_lines(path: Path, n: int | None) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    return lines[:n] if n else lines


def write_gz(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.GzipFile(path, "wb", mtime=0) as fh:
        fh.write(("\n".join(lines) + "\n").encode("utf-8"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--out", default="src/uclip/assets/quickstart")
    ns = parser.parse_args()
    src, out = Path(ns.data_dir), Path(ns.out)
    if out.exists():
        shutil.rmtree(out)
    m30k, dst = src / "multi30k/data", out / "multi30k/data"
    split = (m30k / "task1/image_splits/train.txt").read_text().splitlines()[:N_IMAGES]
    (dst / "task1/image_splits").mkdir(parents=True)
    (dst / "task1/image_splits/train.txt").write_text("\n".join(split) + "\n")
    for k in range(1, 6):
        write_gz(
            dst / f"task2/raw/train.{k}.en.gz",
            gz_lines(m30k / f"task2/raw/train.{k}.en.gz", N_IMAGES),
        )
    for lang in ("de", "fr", "cs"):
        write_gz(
            dst / f"task1/raw/train.{lang}.gz",
            gz_lines(m30k / f"task1/raw/train.{lang}.gz", N_IMAGES),
        )
    for lang in ("en", "de", "fr", "cs"):  # dev data: all of Multi30K val
        write_gz(
            dst / f"task1/raw/val.{lang}.gz", gz_lines(m30k / f"task1/raw/val.{lang}.gz", None)
        )
    # All of Tatoeba: split_tatoeba cuts it into dev pairs, bank text and English training text.
    for lang in TATOEBA_LANGS:
        name = f"text_bank/tatoeba_{lang}-en.tsv.gz"
        write_gz(out / name, gz_lines(src / name, None))
    (out / "xm3600").mkdir(parents=True)
    (out / "flores200").mkdir(parents=True)
    for lang in LANGS:
        rows = json.loads((src / f"xm3600/captions_{lang}.json").read_text())[:N_XM3600]
        (out / f"xm3600/captions_{lang}.json").write_text(json.dumps(rows, ensure_ascii=False))
        code = FLORES[lang]
        lines = (src / f"flores200/{code}.devtest").read_text().splitlines()[:N_FLORES]
        (out / f"flores200/{code}.devtest").write_text("\n".join(lines) + "\n")
    write_gz(out / "news/english_news.txt.gz", news_english(src, N_NEWS))
    for lang in NEWS_DEV_LANGS:
        pairs = news_dev_pairs(src, lang, N_NEWS_DEV)
        write_gz(news_dev_path(out, lang), [f"{a}\t{b}" for a, b in pairs])
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"wrote {size / 1e6:.2f} MB to {out}")


if __name__ == "__main__":
    main()
