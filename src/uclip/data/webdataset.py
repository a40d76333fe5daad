"""WebDataset shards: the tar files img2dataset writes and open_clip / clip-retrieval read.

A shard is a plain tar whose members are grouped into samples by key: the member path up to the
first dot of its file name (``00042/000420017.jpg`` and ``00042/000420017.txt`` are one sample,
key ``00042/000420017``), members of one sample stored next to each other. A sample's image is
its ``.jpg``/``.jpeg``/``.png``/``.webp`` member, its caption its ``.txt`` member. Shard lists are
written as brace patterns, ``shards/{00000..00199}.tar`` or ``{a,b}.tar``.

Local tars are read with the standard library's ``tarfile`` (streaming, one pass). URLs
(``http(s)://``, ``s3://``, ``pipe:cmd``) are opened with the ``webdataset`` package's ``gopen``,
an optional dependency: ``pip install 'uclip[webdataset]'``.
"""

from __future__ import annotations

import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from uclip.data.io import IMAGE_SUFFIXES
from uclip.errors import UclipError

CAPTION_SUFFIXES: tuple[str, ...] = (".txt",)
_RANGE = re.compile(r"^(-?\d+)\.\.(-?\d+)$")
_URL = re.compile(r"^(pipe:|[a-z][a-z0-9+.-]*://)", re.IGNORECASE)


def expand_braces(pattern: str) -> list[str]:
    """Every name a brace pattern stands for, in order: ``{00000..00002}`` counts (keeping the
    zero padding of the longer bound), ``{a,b}`` lists; groups may repeat and nest."""
    match = _first_group(pattern)
    if match is None:
        if "{" in pattern or "}" in pattern:
            raise UclipError(
                f"unbalanced braces in {pattern!r}: write e.g. shards/{{00000..00199}}.tar"
            )
        return [pattern]
    start, stop = match
    head, body, tail = pattern[:start], pattern[start + 1 : stop], pattern[stop + 1 :]
    numbers = _RANGE.match(body)
    if numbers:
        low, high = int(numbers.group(1)), int(numbers.group(2))
        width = max(len(numbers.group(1)), len(numbers.group(2)))
        step = 1 if high >= low else -1
        options = [f"{i:0{width}d}" for i in range(low, high + step, step)]
    else:
        options = _split_top_level(body)
    return [name for option in options for name in expand_braces(head + option + tail)]


def _first_group(pattern: str) -> tuple[int, int] | None:
    """Positions of the first top-level ``{`` and its matching ``}``."""
    depth, start = 0, -1
    for i, char in enumerate(pattern):
        if char == "{":
            if depth == 0:
                start = i
            depth += 1
        elif char == "}" and depth:
            depth -= 1
            if depth == 0:
                return start, i
    return None


def _split_top_level(body: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in body:
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
            continue
        depth += {"{": 1, "}": -1}.get(char, 0)
        current += char
    return [*parts, current]


def is_url(name: str) -> bool:
    """Whether a shard name is a URL (``http://``, ``s3://``, ``pipe:``...) rather than a path."""
    return bool(_URL.match(name))


def is_shard_pattern(text: str) -> bool:
    """Whether ``--inputs`` names WebDataset shards: URL(s) or ``.tar`` path(s), braces allowed."""
    if not (is_url(text) or ".tar" in text):  # a folder or list file whose name has braces
        return False
    return all(is_url(n) or n.endswith(".tar") for n in expand_braces(text))


def shard_list(pattern: str) -> list[str]:
    """The shards of ``pattern`` (brace-expanded); local ones must exist."""
    names = expand_braces(pattern)
    missing = [n for n in names if not is_url(n) and not Path(n).is_file()]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise UclipError(
            f"WebDataset shard {missing[0]}{more} not found: check the pattern {pattern!r}"
        )
    return names


@dataclass(frozen=True)
class Sample:
    """One WebDataset sample: its key, the image member's bytes and suffix (``None`` without
    an image) and its caption (``None`` without a ``.txt`` member)."""

    key: str
    image: bytes | None
    image_suffix: str | None
    caption: str | None


def _open(name: str) -> IO[bytes]:
    if not is_url(name):
        return open(name, "rb")
    try:
        from webdataset.gopen import gopen
    except ImportError:
        raise UclipError(
            f"reading shards from URLs ({name}) needs the webdataset package: "
            "pip install 'uclip[webdataset]', or download the shards and pass local paths"
        ) from None
    return gopen(name, "rb")


def split_key(member: str) -> tuple[str, str]:
    """``(key, suffix)`` of a member path by the WebDataset rule: the suffix starts at the first
    dot of the file name (``a/b.seg.png`` -> ``("a/b", ".seg.png")``)."""
    folder, _, name = member.rpartition("/")
    stem, dot, rest = name.partition(".")
    key = f"{folder}/{stem}" if folder else stem
    return key, (dot + rest).lower()


def iter_samples(name: str) -> Iterator[Sample]:
    """The samples of one shard in stored order. A shard that cannot be read at all, or whose
    tar is cut short, raises :class:`UclipError` naming it (samples before the damage have been
    yielded); undecodable images are the caller's to count, since only decoding tells."""
    try:
        stream = _open(name)
    except OSError as exc:
        raise UclipError(f"cannot open WebDataset shard {name}: {exc.strerror or exc}") from None
    key: str | None = None
    parts: dict[str, bytes] = {}
    try:
        with stream, tarfile.open(fileobj=stream, mode="r|*") as tar:
            for member in tar:
                if not member.isfile() or member.name.split("/")[-1].startswith("."):
                    continue
                member_key, suffix = split_key(member.name)
                if member_key != key and key is not None:
                    yield _sample(key, parts)
                    parts = {}
                key = member_key
                handle = tar.extractfile(member)
                if handle is not None and (suffix in IMAGE_SUFFIXES or suffix in CAPTION_SUFFIXES):
                    parts[suffix] = handle.read()
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise UclipError(
            f"WebDataset shard {name} is not a readable tar ({exc}): re-download it"
        ) from None
    if key is not None:
        yield _sample(key, parts)


def _sample(key: str, parts: dict[str, bytes]) -> Sample:
    image_suffix = next((s for s in IMAGE_SUFFIXES if s in parts), None)
    caption = None
    if ".txt" in parts:
        caption = " ".join(parts[".txt"].decode("utf-8", errors="replace").split()) or None
    return Sample(key, parts.get(image_suffix) if image_suffix else None, image_suffix, caption)
