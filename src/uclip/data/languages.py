"""Language codes: XM3600's two-letter codes, FLORES-200 codes, and the mapping between them."""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from uclip.errors import UclipError

# XM3600 language codes in the uCLIP files (captions_<lang>.json).
XM3600_LANGUAGES: tuple[str, ...] = (
    "ar", "bn", "cs", "da", "de", "el", "en", "es", "fa", "fi", "fil", "fr", "he", "hi", "hr",
    "hu", "id", "it", "ja", "ko", "mi", "nl", "no", "pl", "pt", "quz", "ro", "ru", "sv", "sw",
    "te", "th", "tr", "uk", "vi", "zh",
)  # fmt: skip

# MANIFEST.md, flores200 table. FLORES has Ayacucho Quechua (quy), not Cusco Quechua (quz).
XM3600_TO_FLORES: dict[str, str] = {
    "ar": "arb_Arab", "bn": "ben_Beng", "cs": "ces_Latn", "da": "dan_Latn", "de": "deu_Latn",
    "el": "ell_Grek", "en": "eng_Latn", "es": "spa_Latn", "fa": "pes_Arab", "fi": "fin_Latn",
    "fil": "tgl_Latn", "fr": "fra_Latn", "he": "heb_Hebr", "hi": "hin_Deva", "hr": "hrv_Latn",
    "hu": "hun_Latn", "id": "ind_Latn", "it": "ita_Latn", "ja": "jpn_Jpan", "ko": "kor_Hang",
    "mi": "mri_Latn", "nl": "nld_Latn", "no": "nob_Latn", "pl": "pol_Latn", "pt": "por_Latn",
    "quz": "quy_Latn", "ro": "ron_Latn", "ru": "rus_Cyrl", "sv": "swe_Latn", "sw": "swh_Latn",
    "te": "tel_Telu", "th": "tha_Thai", "tr": "tur_Latn", "uk": "ukr_Cyrl", "vi": "vie_Latn",
    "zh": "zho_Hans",
}  # fmt: skip
FLORES_TO_XM3600: dict[str, str] = {flores: xm for xm, flores in XM3600_TO_FLORES.items()}

# The source repository's symlinked aliases, left out of the data folder (MANIFEST.md).
FLORES_ALIASES: dict[str, str] = {
    "msa": "zsm_Latn",
    "ara": "arb_Arab",
    "ara_Latn": "arb_Latn",
    "cmn_Hans": "zho_Hans",
    "cmn_Hant": "zho_Hant",
}

# The five low-resource languages of uCLIP's Table 1, with the names used by its JSON files.
UCLIP_LANGUAGES: dict[str, str] = {
    "cs": "czech",
    "fi": "finnish",
    "hr": "croatian",
    "hu": "hungarian",
    "ro": "romanian",
}
# The paper's five target languages (XM3600 codes, the paper's order): the one home of every
# default that means "uCLIP's languages" (evaluations, figures, benchmarks, Tatoeba, Flickr30k).
TARGET_LANGUAGES: tuple[str, ...] = tuple(UCLIP_LANGUAGES)

ENGLISH = "eng_Latn"
# English in either code set (XM3600 / FLORES-200): what an X -> English task cannot use as X.
ENGLISH_CODES: frozenset[str] = frozenset({"en", ENGLISH})
# The FLORES-200 counterparts of XM3600's 35 non-English languages: the 35 + 35 table's bitext set.
XM3600_FLORES_CODES: tuple[str, ...] = tuple(
    flores for xm, flores in XM3600_TO_FLORES.items() if xm not in ENGLISH_CODES
)


def short_code(lang: str) -> str:
    """Accept FLORES codes for the 2-letter sets: ``ces_Latn`` -> ``cs``."""
    return FLORES_TO_XM3600.get(lang, lang)


def script_of(lang: str) -> str:
    """ISO 15924 script of a FLORES or XM3600 code (``"ces_Latn"``/``"cs"`` -> ``"Latn"``)."""
    return XM3600_TO_FLORES.get(lang, lang).rpartition("_")[2]


def is_romanian(lang: str) -> bool:
    return lang in {"ro", "ron_Latn"}


def unknown_language(what: str, lang: str, available: Iterable[str], hint: str = "") -> UclipError:
    """The one-line error for a language code a data set does not have, with close matches."""
    available = sorted(available)
    close = difflib.get_close_matches(lang, available, n=3, cutoff=0.6)
    near = f" (did you mean {', '.join(close)}?)" if close else ""
    listing = ", ".join(available) if len(available) <= 40 else f"{len(available)} codes"
    return UclipError(f"unknown {what} language {lang!r}{near}: available {listing}{hint}")


def resolve_flores_code(lang: str, available: Sequence[str], *, what: str = "FLORES-200") -> str:
    """Map a FLORES-200 code, alias (``cmn_Hans``) or XM3600 code (``cs``, ``quz``) to a code in
    ``available``; unknown -> :class:`UclipError` with close matches."""
    if lang in available:
        return lang
    for candidate in (FLORES_ALIASES.get(lang), XM3600_TO_FLORES.get(lang.lower())):
        if candidate in available:
            return candidate
    by_lower = {code.lower(): code for code in available}
    if lang.lower() in by_lower:
        return by_lower[lang.lower()]
    if not available:
        raise UclipError(f"no {what} files found: pass --data-dir DIR with the uclip data")
    choices = sorted({*available, *XM3600_TO_FLORES})
    close = difflib.get_close_matches(lang, choices, n=5, cutoff=0.5)
    near = f"; close matches: {', '.join(close)}" if close else ""
    raise UclipError(
        f"unknown {what} language code {lang!r}{near}: use a FLORES-200 code such as ces_Latn "
        f"({len(available)} available) or an XM3600 code such as cs"
    )


def quechua_note(lang: str) -> str | None:
    """The note that FLORES's Quechua is not XM3600's, for either code; else ``None``."""
    if lang in {"quz", "quy_Latn"}:
        return "FLORES-200 has Ayacucho Quechua (quy_Latn), not XM3600's Cusco Quechua (quz)"
    return None


# FLORES-200 codes described: name, family and branch (committed table), script from the code.
LANGUAGE_TABLE = Path(__file__).with_name("flores200_languages.json")


@dataclass(frozen=True)
class LanguageInfo:
    """One FLORES-200 code: ``<ISO 639-3>_<ISO 15924 script>`` and its committed description."""

    code: str
    name: str
    family: str
    branch: str
    script: str
    script_name: str


@lru_cache(maxsize=1)
def _table() -> dict[str, Any]:
    return json.loads(LANGUAGE_TABLE.read_text(encoding="utf-8"))


def language_info(code: str) -> LanguageInfo:
    """Name, family, branch and script of a FLORES-200 code (script from the code itself)."""
    table = _table()
    entry = table["languages"].get(code)
    if entry is None:
        raise UclipError(
            f"{code!r} is not in the FLORES-200 language table {LANGUAGE_TABLE.name}: "
            "use a FLORES-200 code such as ces_Latn"
        )
    script = code.rpartition("_")[2]
    return LanguageInfo(
        code=code,
        name=entry["name"],
        family=entry["family"],
        branch=entry["branch"],
        script=script,
        script_name=table["scripts"].get(script, script),
    )


def languages_in_both(flores_codes: Iterable[str], flickr_codes: Iterable[str]) -> list[str]:
    """The non-English codes present in both FLORES-200 and Flickr30k-200, sorted."""
    return sorted((set(flores_codes) & set(flickr_codes)) - {ENGLISH})
