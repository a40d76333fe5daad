"""MSCOCO Karpathy 5k test: the 5 English captions per image, and uCLIP's cs/fi/hr/hu/ro machine
translations of each image's first caption (``coco/``)."""

from __future__ import annotations

from uclip.data.io import PathLike, data_root, maybe_image_paths, read_jsonl, require_field
from uclip.data.languages import is_romanian, short_code, unknown_language
from uclip.data.records import (
    RetrievalDataset,
    check_captions_per_image,
    check_same_ids,
    grouped,
    read_uclip_captions,
)
from uclip.data.text_quality import clean_text, text_notes
from uclip.errors import UclipError


def coco_candidates(name: str) -> tuple[str, ...]:
    """Where a COCO image may sit: 2014 names ("COCO_val2014_<12 digits>.jpg") and 2017 names
    ("<12 digits>.jpg"); the Karpathy test images are spread over train2017 and val2017."""
    short = name.rsplit("_", 1)[-1]
    return (
        name,
        f"val2014/{name}",
        short,
        f"val2017/{short}",
        f"train2017/{short}",
    )


def load_coco5k(
    lang: str,
    data_dir: PathLike,
    images_dir: PathLike | None = None,
    *,
    captions_per_image: int | None = None,
    normalize: bool = False,
) -> RetrievalDataset:
    """MSCOCO Karpathy 5k test.

    ``"en"``: the 5 SCAN-tokenised Karpathy captions per image (``captions_per_image=1`` keeps
    the first). ``cs``/``fi``/``hr``/``hu``/``ro``: uCLIP's machine translation of each image's
    first caption (one per image), with that raw English caption in ``english_captions``.
    Image ids are checked against the Karpathy file; its order is the reference.
    ``images_dir`` may hold ``COCO_val2014_*.jpg`` (or ``val2014/``) or 2017-named files
    (``<id>.jpg``, ``val2017/``, ``train2017/``).
    """
    root = data_root(data_dir, "COCO-5k")
    folder = root / "coco"
    code = short_code(lang)
    karpathy_path = folder / "coco_karpathy_test5k_en.jsonl"
    karpathy = read_jsonl(karpathy_path, "COCO Karpathy") if karpathy_path.is_file() else None
    if karpathy is not None and not karpathy:
        raise UclipError(f"COCO file {karpathy_path} holds no records: the data set is empty")
    ref_ids = None
    if karpathy is not None:
        ref_ids = [
            require_field(record, "file_name", f"{karpathy_path.name} line {i + 1}")
            for i, record in enumerate(karpathy)
        ]

    if code == "en":
        if karpathy is None:
            raise UclipError(
                f"COCO file {karpathy_path} is missing: pass --data-dir DIR with "
                "the uclip data (see MANIFEST.md)"
            )
        groups = []
        for i, record in enumerate(karpathy):
            caps = require_field(record, "captions", f"{karpathy_path.name} line {i + 1}", list)
            if not caps:
                raise UclipError(f"{karpathy_path.name} line {i + 1} has no captions")
            groups.append(caps)
        k = check_captions_per_image("COCO-5k en", captions_per_image, min(map(len, groups)))
        groups = [[clean_text(c, False) if normalize else c for c in g[:k]] for g in groups]
        captions, caption_to_image, firsts = grouped(groups)
        notes = [
            "COCO-5k English captions are SCAN-tokenised (a space before punctuation)",
            *text_notes(captions, lambda t: ref_ids[caption_to_image[t]], "en", None),
        ]
        return RetrievalDataset(
            name="coco5k",
            lang="en",
            image_ids=ref_ids,
            captions=captions,
            caption_to_image=caption_to_image,
            first_caption_index=firsts,
            image_paths=maybe_image_paths(images_dir, ref_ids, "COCO", coco_candidates),
            english_captions=list(captions),
            notes=notes,
        )

    path = folder / f"captions_{code}.json"
    if not path.is_file():
        available = ["en"] if karpathy is not None else []
        available += [p.stem.removeprefix("captions_") for p in folder.glob("captions_*.json")]
        if not available:
            raise UclipError(
                f"no COCO captions under {folder}: pass --data-dir DIR with the "
                "uclip data (see MANIFEST.md)"
            )
        raise unknown_language("COCO-5k", lang, available)
    check_captions_per_image(f"COCO-5k {code}", captions_per_image, 1)
    names, captions, english = read_uclip_captions(path, "COCO")
    notes = ["COCO-5k translations are uCLIP's machine translations of each image's first caption"]
    if ref_ids is not None:
        order_note = check_same_ids(names, ref_ids, path.name, karpathy_path.name)
        if order_note:
            position = {name: i for i, name in enumerate(names)}
            perm = [position[name] for name in ref_ids]
            names = [names[i] for i in perm]
            captions = [captions[i] for i in perm]
            english = [english[i] for i in perm]
            notes += order_note
    if normalize:
        captions = [clean_text(c, is_romanian(code)) for c in captions]
        english = [clean_text(e, False) for e in english]
    notes += text_notes(captions, names.__getitem__, code, english)
    return RetrievalDataset(
        name="coco5k",
        lang=code,
        image_ids=names,
        captions=captions,
        caption_to_image=list(range(len(names))),
        first_caption_index=list(range(len(names))),
        image_paths=maybe_image_paths(images_dir, names, "COCO", coco_candidates),
        english_captions=english,
        notes=notes,
    )
