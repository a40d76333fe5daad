"""NLI data for CLT's probe (paper §4.2): XNLI / XNLI-MT / GLUE MNLI TSV and MultiNLI JSONL
readers (the files come from a user path: none ship offline), and :func:`synthetic_nli`, a small
templated set in en/es/de/fr to run the probe end to end."""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from uclip.errors import UclipError

NLI_LABELS = ("entailment", "neutral", "contradiction")
_LABEL_IDS = {"entailment": 0, "neutral": 1, "contradiction": 2, "contradictory": 2}


@dataclass(frozen=True)
class NLIExample:
    premise: str
    hypothesis: str
    label: int  # index into NLI_LABELS
    lang: str = "en"


def _label(raw: str) -> int | None:
    """Label id of a gold label; None for '-' (no annotator agreement) and unknown labels."""
    return _LABEL_IDS.get(raw.strip().lower())


# ------------------------------------------------------------------------------------ readers


def read_xnli_tsv(
    path: str | Path, languages: Sequence[str] | None = None, lang: str | None = None
) -> list[NLIExample]:
    """XNLI-1.0 dev/test TSV (``language``/``gold_label``/``sentence1``/``sentence2`` columns),
    XNLI-MT ``multinli.train.<lang>.tsv`` (``premise``/``hypo``/``label``) or GLUE MNLI TSV.

    ``languages`` keeps only those rows; files without a language column take ``lang`` (default:
    the ``<lang>`` of an XNLI-MT file name, else ``en``).
    """
    p = Path(path)
    if not p.is_file():
        raise UclipError(f"NLI file {p} not found: pass the path of an XNLI/MNLI .tsv file")
    wanted = set(languages) if languages else None
    default_lang = lang or (p.stem.rsplit(".", 1)[-1] if p.stem.startswith("multinli.") else "en")
    out: list[NLIExample] = []
    with p.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        cols = set(reader.fieldnames or [])
        if {"sentence1", "sentence2", "gold_label"} <= cols:
            keys = ("sentence1", "sentence2", "gold_label")
        elif {"premise", "hypo", "label"} <= cols:
            keys = ("premise", "hypo", "label")
        else:
            raise UclipError(
                f"{p}: unknown NLI TSV header {sorted(cols)}: expected XNLI columns "
                "(gold_label, sentence1, sentence2) or XNLI-MT (premise, hypo, label)"
            )
        for row in reader:
            row_lang = row.get("language") or default_lang
            label = _label(row.get(keys[2]) or "")
            if label is None or (wanted is not None and row_lang not in wanted):
                continue
            out.append(NLIExample(row[keys[0]], row[keys[1]], label, row_lang))
    if not out:
        raise UclipError(f"{p}: no labelled NLI examples (languages {sorted(wanted or [])})")
    return out


def read_mnli_jsonl(path: str | Path) -> list[NLIExample]:
    """MultiNLI ``multinli_1.0_{train,dev_matched,...}.jsonl``; rows with gold_label '-' dropped."""
    p = Path(path)
    if not p.is_file():
        raise UclipError(f"NLI file {p} not found: pass the path of a MultiNLI .jsonl file")
    out: list[NLIExample] = []
    with p.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                label = _label(str(record["gold_label"]))
                premise, hypothesis = record["sentence1"], record["sentence2"]
            except (json.JSONDecodeError, KeyError) as exc:
                raise UclipError(
                    f"{p} line {n}: not a MultiNLI record (needs gold_label, sentence1, "
                    f"sentence2): {exc}"
                ) from None
            if label is not None:
                out.append(NLIExample(premise, hypothesis, label, record.get("language", "en")))
    if not out:
        raise UclipError(f"{p}: no labelled NLI examples")
    return out


def read_nli(
    paths: str | Path | Sequence[str | Path], languages: Sequence[str] | None = None
) -> list[NLIExample]:
    """Read one or more NLI files (``.jsonl`` MultiNLI, ``.tsv`` XNLI/XNLI-MT/MNLI) into one list
    (the paper trains on MultiNLI train + dev combined)."""
    items = [paths] if isinstance(paths, str | Path) else list(paths)
    out: list[NLIExample] = []
    for item in items:
        p = Path(item)
        if p.suffix == ".jsonl":
            out += read_mnli_jsonl(p)
        else:
            out += read_xnli_tsv(p, languages)
    if languages:
        out = [ex for ex in out if ex.lang in set(languages)]
    return out


# ------------------------------------------------------------------------------------ synthetic

# Subject (with article) and (3rd person verb, negated form) per language; every language has the
# same 8 subjects and 8 actions in the same order, so translations line up.
_LEXICON: dict[str, dict[str, object]] = {
    "en": {
        "subjects": ["the dog", "the cat", "the man", "the woman", "the child", "the bird",
                     "the horse", "the girl"],
        "verbs": [("runs", "does not run"), ("sleeps", "does not sleep"), ("eats", "does not eat"),
                  ("sings", "does not sing"), ("swims", "does not swim"),
                  ("jumps", "does not jump"), ("dances", "does not dance"),
                  ("reads", "does not read")],
        "and": "and",
    },
    "es": {
        "subjects": ["el perro", "el gato", "el hombre", "la mujer", "el niño", "el pájaro",
                     "el caballo", "la niña"],
        "verbs": [("corre", "no corre"), ("duerme", "no duerme"), ("come", "no come"),
                  ("canta", "no canta"), ("nada", "no nada"), ("salta", "no salta"),
                  ("baila", "no baila"), ("lee", "no lee")],
        "and": "y",
    },
    "de": {
        "subjects": ["der Hund", "die Katze", "der Mann", "die Frau", "das Kind", "der Vogel",
                     "das Pferd", "das Mädchen"],
        "verbs": [("läuft", "läuft nicht"), ("schläft", "schläft nicht"), ("isst", "isst nicht"),
                  ("singt", "singt nicht"), ("schwimmt", "schwimmt nicht"),
                  ("springt", "springt nicht"), ("tanzt", "tanzt nicht"),
                  ("liest", "liest nicht")],
        "and": "und",
    },
    "fr": {
        "subjects": ["le chien", "le chat", "l'homme", "la femme", "l'enfant", "l'oiseau",
                     "le cheval", "la fille"],
        "verbs": [("court", "ne court pas"), ("dort", "ne dort pas"), ("mange", "ne mange pas"),
                  ("chante", "ne chante pas"), ("nage", "ne nage pas"), ("saute", "ne saute pas"),
                  ("danse", "ne danse pas"), ("lit", "ne lit pas")],
        "and": "et",
    },
}  # fmt: skip
SYNTHETIC_LANGUAGES = tuple(_LEXICON)


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:] + "."


def synthetic_nli(n: int, seed: int = 0, lang: str = "en") -> list[NLIExample]:
    """``n`` templated NLI pairs, labels balanced, in ``lang`` (en, es, de, fr).

    Premise "S v1 and v2." Entailment: "S v1." Contradiction: "S does not v1." Neutral: "S' v3."
    with another subject and action. The same seed gives translations of the same pairs in every
    language, so a probe trained on English can be scored cross-lingually.
    """
    if lang not in _LEXICON:
        raise UclipError(
            f"synthetic NLI has no lexicon for {lang!r}: use {', '.join(SYNTHETIC_LANGUAGES)}"
        )
    lex = _LEXICON[lang]
    subjects: list[str] = lex["subjects"]  # type: ignore[assignment]
    verbs: list[tuple[str, str]] = lex["verbs"]  # type: ignore[assignment]
    rng = random.Random(seed)
    out = []
    for i in range(n):
        s, s2 = rng.sample(range(len(subjects)), 2)
        v1, v2, v3 = rng.sample(range(len(verbs)), 3)
        premise = _sentence(f"{subjects[s]} {verbs[v1][0]} {lex['and']} {verbs[v2][0]}")
        label = i % 3
        if label == 0:
            hypothesis = _sentence(f"{subjects[s]} {verbs[v1][0]}")
        elif label == 2:
            hypothesis = _sentence(f"{subjects[s]} {verbs[v1][1]}")
        else:
            hypothesis = _sentence(f"{subjects[s2]} {verbs[v3][0]}")
        out.append(NLIExample(premise, hypothesis, label, lang))
    return out
