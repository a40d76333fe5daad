"""FLORES-200 devtest (``flores200/<code>.devtest``): 1,012 line-aligned sentences in 204 codes."""

from __future__ import annotations

from uclip.data.io import PathLike, data_root, read_lines
from uclip.data.languages import quechua_note, resolve_flores_code
from uclip.data.records import BitextDataset


def available_flores_codes(data_dir: PathLike) -> list[str]:
    """FLORES-200 codes with a ``flores200/<code>.devtest`` file under ``data_dir``."""
    folder = data_root(data_dir, "FLORES-200") / "flores200"
    return sorted(p.name.removesuffix(".devtest") for p in folder.glob("*.devtest"))


def load_flores(
    src_lang: str, tgt_lang: str = "eng_Latn", data_dir: PathLike | None = None
) -> BitextDataset:
    """FLORES-200 devtest, ``src_lang`` -> ``tgt_lang`` (1,012 aligned sentences).

    Codes may be FLORES-200 codes, their aliases, or XM3600 codes (``cs`` -> ``ces_Latn``,
    ``quz`` -> ``quy_Latn``, ``zh`` -> ``zho_Hans``). ``data_dir`` is required (it comes after
    ``tgt_lang``, which has a default).
    """
    folder = data_root(data_dir, "FLORES-200") / "flores200"
    available = available_flores_codes(folder.parent)
    src = resolve_flores_code(src_lang, available)
    tgt = resolve_flores_code(tgt_lang, available)
    src_lines = read_lines(folder / f"{src}.devtest", "FLORES-200")
    tgt_lines = read_lines(folder / f"{tgt}.devtest", "FLORES-200")
    notes = [n for n in (quechua_note(src_lang), quechua_note(tgt_lang)) if n]
    return BitextDataset("flores200", src, tgt, src_lines, tgt_lines, notes)
