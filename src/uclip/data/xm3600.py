"""Crossmodal-3600 in uCLIP's files (``xm3600/captions_<lang>.json``): 3,600 images, one caption
per image per language, 36 languages."""

from __future__ import annotations

from uclip.data.io import PathLike, data_root, maybe_image_paths
from uclip.data.languages import is_romanian, short_code, unknown_language
from uclip.data.records import RetrievalDataset, read_uclip_captions
from uclip.data.text_quality import clean_text, text_notes
from uclip.errors import UclipError


def available_xm3600_languages(data_dir: PathLike) -> list[str]:
    """The XM3600 languages with a ``xm3600/captions_<lang>.json`` file under ``data_dir``."""
    folder = data_root(data_dir, "XM3600") / "xm3600"
    return sorted(p.stem.removeprefix("captions_") for p in folder.glob("captions_*.json"))


def resolve_xm3600_language(lang: str, data_dir: PathLike) -> str:
    """The XM3600 code of ``lang`` (an XM3600 or FLORES code) if its captions are under
    ``data_dir``; otherwise a one-line :class:`UclipError` listing the available ones. Never
    builds a path from ``lang`` (a long or odd value is just unknown)."""
    root = data_root(data_dir, "XM3600")
    available = available_xm3600_languages(root)
    code = short_code(lang)
    if code in available:
        return code
    if not available:
        raise UclipError(
            f"no XM3600 captions under {root / 'xm3600'}: pass --data-dir DIR with the "
            "uclip data (see MANIFEST.md)"
        )
    shown = lang if len(lang) <= 40 else lang[:37] + "..."
    raise unknown_language("XM3600", shown, available, f" (files under {root / 'xm3600'})")


def xm3600_candidates(name: str) -> tuple[str, ...]:
    """Where an XM3600 image may sit under the images folder."""
    return (name, f"images/{name}")


def load_xm3600(
    lang: str,
    data_dir: PathLike,
    images_dir: PathLike | None = None,
    *,
    normalize: bool = False,
) -> RetrievalDataset:
    """Crossmodal-3600 as used by uCLIP: 3,600 images, one caption per image per language.

    ``lang`` is an XM3600 code (``"cs"``) or its FLORES code (``"ces_Latn"``). ``english_captions``
    is the English caption of the same image (not a source of the translation: XM3600 captions
    were written in each language).
    """
    root = data_root(data_dir, "XM3600")
    folder = root / "xm3600"
    code = short_code(lang)
    path = folder / f"captions_{code}.json"
    if not path.is_file():
        available = available_xm3600_languages(root)
        if not available:
            raise UclipError(
                f"no XM3600 captions under {folder}: pass --data-dir DIR with the "
                "uclip data (see MANIFEST.md)"
            )
        raise unknown_language("XM3600", lang, available, f" (files under {folder})")
    names, captions, english = read_uclip_captions(path, "XM3600")
    if normalize:
        captions = [clean_text(c, is_romanian(code)) for c in captions]
        english = [clean_text(e, False) for e in english]
    notes = [
        "uCLIP's XM3600 files keep one of the ~2 captions per image per language",
        *text_notes(captions, names.__getitem__, code, None),
    ]
    return RetrievalDataset(
        name="xm3600",
        lang=code,
        image_ids=names,
        captions=captions,
        caption_to_image=list(range(len(names))),
        first_caption_index=list(range(len(names))),
        image_paths=maybe_image_paths(images_dir, names, "XM3600", xm3600_candidates),
        english_captions=english,
        notes=notes,
    )
