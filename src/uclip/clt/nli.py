"""The NLI probe of CLT's Experiment 3 (paper §3.4, Tables 2–3).

A frozen text encoder e embeds premise p and hypothesis h; a feed-forward classifier with two
hidden layers of 2048 reads

    x = e(p) ⊕ e(h) ⊕ |e(p) − e(h)| ⊕ e(p) * e(h)        (Conneau et al., 2017)

trained with Adam (lr 2e-5) for up to 100 epochs with early stopping, on English NLI data
(MultiNLI train + dev, examples without annotator agreement dropped), and scored per language on
XNLI test (cross-lingual transfer). Readers take the standard files from a user path: XNLI-1.0
TSV (``language, gold_label, ..., sentence1, sentence2, ...``), XNLI-MT TSV (``premise, hypo,
label``), GLUE MNLI TSV and MultiNLI JSONL (``gold_label, sentence1, sentence2``). None of these
ship offline; :func:`synthetic_nli` builds a small templated set to run the probe end to end.
"""

from __future__ import annotations

import copy
import csv
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from uclip.errors import UclipError
from uclip.eval.metrics import accuracy

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


# ------------------------------------------------------------------------------------ the probe


def nli_features(premise: Tensor, hypothesis: Tensor) -> Tensor:
    """x = e(p) ⊕ e(h) ⊕ |e(p) − e(h)| ⊕ e(p) * e(h): (N, d), (N, d) -> (N, 4d)."""
    if premise.shape != hypothesis.shape or premise.ndim != 2:
        raise UclipError(
            f"premise and hypothesis embeddings must both be (N, d), got "
            f"{tuple(premise.shape)} and {tuple(hypothesis.shape)}"
        )
    return torch.cat([premise, hypothesis, (premise - hypothesis).abs(), premise * hypothesis], 1)


class NLIClassifier(nn.Sequential):
    """Feed-forward: 2 hidden layers of ``hidden`` (2048 in the paper), ReLU, 3 classes."""

    def __init__(self, embed_dim: int, hidden: int = 2048, num_classes: int = 3) -> None:
        super().__init__(
            nn.Linear(4 * embed_dim, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )


@dataclass
class NLIProbeResult:
    classifier: NLIClassifier
    best_epoch: int
    dev_accuracy: float
    epochs_run: int
    history: list[float] = field(default_factory=list)


def _predict(classifier: nn.Module, features: Tensor, batch_size: int = 1024) -> Tensor:
    classifier.eval()
    with torch.no_grad():
        return torch.cat(
            [
                classifier(features[i : i + batch_size]).argmax(1)
                for i in range(0, len(features), batch_size)
            ]
        )


def train_nli_probe(
    features: Tensor,
    labels: Tensor,
    dev_features: Tensor | None = None,
    dev_labels: Tensor | None = None,
    *,
    hidden: int = 2048,
    lr: float = 2e-5,
    epochs: int = 100,
    patience: int = 5,
    batch_size: int = 64,
    dev_fraction: float = 0.1,
    seed: int = 0,
) -> NLIProbeResult:
    """Train the classifier on (N, 4d) features (Adam, lr 2e-5, up to 100 epochs), keeping the
    weights of the best dev-accuracy epoch and stopping after ``patience`` epochs without gain.
    Without a dev set, ``dev_fraction`` of the training examples (seeded) is held out."""
    if features.ndim != 2 or features.shape[1] % 4 or len(features) != len(labels):
        raise UclipError(
            f"features must be (N, 4d) with one label per row, got {tuple(features.shape)} and "
            f"{len(labels)} labels"
        )
    gen = torch.Generator().manual_seed(seed)
    if dev_features is None:
        perm = torch.randperm(len(features), generator=gen)
        n_dev = max(1, int(len(features) * dev_fraction))
        dev_idx, train_idx = perm[:n_dev], perm[n_dev:]
        dev_features, dev_labels = features[dev_idx], labels[dev_idx]
        features, labels = features[train_idx], labels[train_idx]
    if len(features) == 0:
        raise UclipError("no NLI training examples left after holding out the dev split")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        classifier = NLIClassifier(features.shape[1] // 4, hidden)
    optimizer = torch.optim.Adam(classifier.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    best_acc, best_epoch, best_state, history, waited = -1.0, 0, None, [], 0
    epoch = 0
    for epoch in range(1, epochs + 1):
        classifier.train()
        for idx in torch.randperm(len(features), generator=gen).split(batch_size):
            optimizer.zero_grad(set_to_none=True)
            loss_fn(classifier(features[idx]), labels[idx]).backward()
            optimizer.step()
        acc = accuracy(_predict(classifier, dev_features), dev_labels)
        history.append(acc)
        if acc > best_acc:
            best_acc, best_epoch, waited = acc, epoch, 0
            best_state = copy.deepcopy(classifier.state_dict())
        else:
            waited += 1
            if waited >= patience:
                break
    assert best_state is not None
    classifier.load_state_dict(best_state)
    classifier.eval()
    return NLIProbeResult(classifier, best_epoch, best_acc, epoch, history)


def _embed_pairs(
    embed: Callable[[list[str]], Tensor], examples: Sequence[NLIExample]
) -> tuple[Tensor, Tensor]:
    """Features of every example, embedding each distinct sentence once."""
    sentences = list(dict.fromkeys(s for ex in examples for s in (ex.premise, ex.hypothesis)))
    table = embed(sentences)
    if table.shape[0] != len(sentences):
        raise UclipError(f"embed returned {table.shape[0]} rows for {len(sentences)} sentences")
    row = {s: i for i, s in enumerate(sentences)}
    p = table[[row[ex.premise] for ex in examples]]
    h = table[[row[ex.hypothesis] for ex in examples]]
    y = torch.tensor([ex.label for ex in examples], dtype=torch.long)
    return nli_features(p.float(), h.float()), y


def run_nli_probe(
    embed: Callable[[list[str]], Tensor],
    train: Sequence[NLIExample],
    test: Sequence[NLIExample],
    dev: Sequence[NLIExample] | None = None,
    **kwargs: object,
) -> dict[str, object]:
    """Train the probe on ``train`` (frozen ``embed``) and score it per language of ``test``.

    Returns ``{"per_language": {lang: accuracy}, "average": mean over languages, "dev_accuracy",
    "best_epoch", "epochs_run", "n_train", "n_test"}``.
    """
    if not train or not test:
        raise UclipError("the NLI probe needs training and test examples")
    x, y = _embed_pairs(embed, train)
    dev_x = dev_y = None
    if dev:
        dev_x, dev_y = _embed_pairs(embed, dev)
    result = train_nli_probe(x, y, dev_x, dev_y, **kwargs)  # type: ignore[arg-type]
    per_language: dict[str, float] = {}
    for lang in sorted({ex.lang for ex in test}):
        subset = [ex for ex in test if ex.lang == lang]
        tx, ty = _embed_pairs(embed, subset)
        per_language[lang] = accuracy(_predict(result.classifier, tx), ty)
    return {
        "per_language": per_language,
        "average": sum(per_language.values()) / len(per_language),
        "dev_accuracy": result.dev_accuracy,
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "n_train": len(train),
        "n_test": len(test),
    }
