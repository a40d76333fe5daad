"""Flickr30k 1k test (Karpathy split = Multi30K test2016 images): 5 English captions per image,
NLLB-3.3B translations of the first caption into cs/fi/hr/hu/ro (``flickr30k_test1k.jsonl``) and
into ~200 FLORES-200 languages (``flickr30k-200_nllb.tar.gz``, read without extracting)."""

from __future__ import annotations

import tarfile
from pathlib import Path

from uclip.data.archives import read_tar_members, tar_file_names
from uclip.data.io import PathLike, data_root, maybe_image_paths, read_jsonl, require_field
from uclip.data.languages import (
    ENGLISH_CODES,
    TARGET_LANGUAGES,
    is_romanian,
    quechua_note,
    resolve_flores_code,
)
from uclip.data.records import (
    RetrievalDataset,
    check_captions_per_image,
    check_same_ids,
    grouped,
)
from uclip.data.text_quality import clean_text, text_notes
from uclip.errors import UclipError


def flickr_candidates(name: str) -> tuple[str, ...]:
    """Where a Flickr30k image may sit under the images folder."""
    return (name, f"flickr30k-images/{name}", f"Images/{name}", f"images/{name}")


_FLICKR_JSONL_LANGS = ("en", *TARGET_LANGUAGES)
_FLICKR_TAR = "flickr30k-200_nllb.tar.gz"
_FLICKR_TAR_DIR = "flickr30k-200"


def flickr30k_200_codes(path: Path) -> list[str]:
    """The FLORES-200 codes with a translation in the Flickr30k-200 archive ``path``."""
    names = tar_file_names(path)
    prefix = f"{_FLICKR_TAR_DIR}/"
    return sorted(
        n.removeprefix(prefix).removesuffix(".txt")
        for n in names
        if n.startswith(prefix)
        and n.endswith(".txt")
        and "_" in n.removeprefix(prefix)
        and not n.endswith(("eng_captions.txt",))
    )


def available_flickr200_codes(data_dir: PathLike) -> list[str]:
    """FLORES-200 codes with captions in ``flickr30k/flickr30k-200_nllb.tar.gz`` (English too)."""
    path = data_root(data_dir, "Flickr30k-200") / "flickr30k" / _FLICKR_TAR
    try:
        return flickr30k_200_codes(path)
    except FileNotFoundError:
        raise UclipError(
            f"Flickr30k-200 archive {path} is missing: pass --data-dir DIR with the uclip "
            "data (see MANIFEST.md)"
        ) from None
    except (tarfile.TarError, OSError) as exc:
        raise UclipError(f"cannot read {path} ({exc}): restore it from the data release") from None


def load_flickr30k(
    lang: str,
    data_dir: PathLike,
    images_dir: PathLike | None = None,
    *,
    captions_per_image: int | None = None,
    normalize: bool = False,
) -> RetrievalDataset:
    """Flickr30k 1k test (Karpathy split = Multi30K test2016 images).

    ``"en"``: the 5 original captions per image (``captions_per_image=1``: the first).
    ``cs``/``fi``/``hr``/``hu``/``ro``: NLLB-3.3B translations of the first caption, from
    ``flickr30k_test1k.jsonl``. Any FLORES-200 code (``"deu_Latn"``, or an XM3600 code such as
    ``"de"``) is read from ``flickr30k-200_nllb.tar.gz`` without extracting it. Translations have
    one caption per image; ``english_captions`` holds the first English caption.
    """
    root = data_root(data_dir, "Flickr30k")
    folder = root / "flickr30k"
    jsonl_path = folder / "flickr30k_test1k.jsonl"
    if lang in _FLICKR_JSONL_LANGS:
        records = read_jsonl(jsonl_path, "Flickr30k")
        if not records:
            raise UclipError(f"Flickr30k file {jsonl_path} holds no records: the data set is empty")
        names, groups, english = [], [], []
        for i, record in enumerate(records):
            where = f"{jsonl_path.name} line {i + 1}"
            names.append(require_field(record, "image", where))
            per_lang = require_field(record, "captions", where, dict)
            first_en = require_field(per_lang, "en", where + " captions", list)
            english.append(first_en[0] if first_en else "")
            if lang == "en":
                # en_5[0] is captions.en[0], so captions_per_image=1 keeps that first caption.
                groups.append(require_field(record, "en_5", where, list))
            else:
                groups.append(require_field(per_lang, lang, where + " captions", list))
        if any(not g for g in groups):
            raise UclipError(f"{jsonl_path.name}: an image has no {lang} caption")
        k = check_captions_per_image(f"Flickr30k {lang}", captions_per_image, min(map(len, groups)))
        groups = [g[:k] for g in groups]
        source = (
            "Flickr30k English captions"
            if lang == "en"
            else ("Flickr30k translations are NLLB-3.3B machine translations of the first caption")
        )
    else:
        codes = flickr30k_200_codes(folder / _FLICKR_TAR)
        code = resolve_flores_code(lang, codes, what="Flickr30k-200")
        members = [f"{_FLICKR_TAR_DIR}/{n}.txt" for n in ("filenames", "eng_captions", code)]
        texts = read_tar_members(folder / _FLICKR_TAR, members, "Flickr30k-200")
        for member in members:
            if member not in texts:
                raise UclipError(
                    f"{member} is missing from {folder / _FLICKR_TAR}: restore the "
                    "archive from the data release"
                )
        names, english, translated = (texts[m].splitlines() for m in members)
        if not names:
            raise UclipError(f"{folder / _FLICKR_TAR} lists no images: the data set is empty")
        if not len(names) == len(english) == len(translated):
            raise UclipError(
                f"{_FLICKR_TAR}: {code}.txt has {len(translated)} lines for "
                f"{len(names)} images: restore the archive"
            )
        check_captions_per_image(f"Flickr30k {code}", captions_per_image, 1)
        groups = [[t] for t in translated]
        source = "Flickr30k translations are NLLB-3.3B machine translations of the first caption"
        if jsonl_path.is_file():
            records = read_jsonl(jsonl_path, "Flickr")
            ref = [require_field(r, "image", jsonl_path.name) for r in records]
            check_same_ids(names, ref, f"{_FLICKR_TAR} filenames.txt", jsonl_path.name)
        lang = code
    notes = [source]
    if code_note := quechua_note(lang):
        notes.append(code_note)
    if normalize:
        groups = [[clean_text(c, is_romanian(lang)) for c in g] for g in groups]
        english = [clean_text(e, False) for e in english]
    captions, caption_to_image, firsts = grouped(groups)
    is_english = lang in ENGLISH_CODES
    aligned_english = list(captions) if is_english else [english[i] for i in caption_to_image]
    notes += text_notes(
        captions,
        lambda t: names[caption_to_image[t]],
        lang,
        None if is_english else aligned_english,
    )
    return RetrievalDataset(
        name="flickr30k",
        lang=lang,
        image_ids=names,
        captions=captions,
        caption_to_image=caption_to_image,
        first_caption_index=firsts,
        image_paths=maybe_image_paths(images_dir, names, "Flickr30k", flickr_candidates),
        english_captions=aligned_english,
        notes=notes,
    )
