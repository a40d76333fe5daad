"""Multi30K (``multi30k/data``): Flickr30k images with 5 English captions each (task 2) and one
German, French or Czech caption (task 1), per split (train: 29,000 images, none of them in the
Flickr30k 1k test; val: 1,014)."""

from __future__ import annotations

from pathlib import Path

from uclip.data.io import read_nonblank_lines

M30K = Path("multi30k") / "data"


def multi30k_images(data_dir: Path, split: str = "train") -> list[str]:
    """The image file names of ``split``, in image-split order."""
    return read_nonblank_lines(data_dir / M30K / "task1" / "image_splits" / f"{split}.txt")


def multi30k_english(data_dir: Path, split: str = "train") -> list[list[str]]:
    """The 5 English captions of each image (task 2), in image-split order."""
    cols = [
        read_nonblank_lines(data_dir / M30K / "task2" / "raw" / f"{split}.{k}.en.gz")
        for k in range(1, 6)
    ]
    return [list(caps) for caps in zip(*cols, strict=True)]


def multi30k_foreign(data_dir: Path, lang: str, split: str = "train") -> list[str]:
    """One caption per image in ``lang`` (task 1: en, de, fr, cs), in image-split order."""
    return read_nonblank_lines(data_dir / M30K / "task1" / "raw" / f"{split}.{lang}.gz")
