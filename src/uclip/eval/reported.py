"""The papers' reported figures, and the report tables that put our runs beside them.

``reported_numbers.json`` (next to this module) holds every figure of uCLIP's Tables 1-2
(retrieval R@10 and zero-shot F1 for uCLIP and its four baselines, five languages plus the
paper's "Avg.") and Table 4 (inference ms per query, task ``latency``), and CLT's Table 1
(FLORES-200 X->English bitext accuracy), copied as printed, each with its paper, table, task,
data set, language, metric, value and unit (percent unless ``unit`` says otherwise). They are
never mixed with measured numbers: report columns built from them say "reported".

:func:`report_tables` turns run records (:class:`~uclip.eval.evaluators.EvalResult`) into one
language-by-model table per task and data set, plus a summary of per-model means over
languages; ``uclip report`` writes them with :func:`uclip.eval.report.write_table`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from uclip.errors import UclipError
from uclip.eval.evaluators import EvalResult

REPORTED_FILE = Path(__file__).with_name("reported_numbers.json")

# The metrics each task's per-language table shows (every metric stays in the run JSON).
TABLE_METRICS: dict[str, tuple[str, ...]] = {
    "retrieval": ("i2t_R@1", "i2t_R@10", "t2i_R@1", "t2i_R@10"),
    "zeroshot": ("accuracy", "macro_f1"),
    "crosslingual": ("x2en_R@1", "x2en_R@10"),
    "bitext": ("x2en_acc", "en2x_acc"),
}
MEAN_ROW = "mean"


@dataclass(frozen=True)
class ReportedNumber:
    """One figure as printed in a paper, in ``unit`` (percent, or ms/sample for latency)."""

    paper: str
    arxiv: str
    table: int
    task: str
    dataset: str
    lang: str
    system: str
    metric: str
    paper_metric: str
    value: float
    paper_label: str
    unit: str = "%"

    @property
    def column(self) -> str:
        """Table column for this figure: ``"<system> (reported, <paper> T<n>) <metric>"``."""
        return f"{self.system} (reported, {self.paper} T{self.table}) {self.metric}"


@lru_cache(maxsize=1)
def _reported_payload() -> dict[str, Any]:
    try:
        return json.loads(REPORTED_FILE.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UclipError(f"cannot read {REPORTED_FILE} ({exc}): reinstall uclip") from None


def reported_sources() -> dict[str, Any]:
    """Paper descriptions, table captions, aggregate-language meanings and known issues."""
    return _reported_payload()["sources"]


def load_reported(
    *, task: str | None = None, dataset: str | None = None, paper: str | None = None
) -> list[ReportedNumber]:
    """Reported figures, optionally filtered by task, data set and paper."""
    numbers = [ReportedNumber(**entry) for entry in _reported_payload()["numbers"]]
    return [
        n
        for n in numbers
        if (task is None or n.task == task)
        and (dataset is None or n.dataset == dataset)
        and (paper is None or n.paper == paper)
    ]


def model_label(result: EvalResult) -> str:
    """How a run's model is named in table columns: the spec, plus non-real weights and
    ``--limit`` so that different settings never share a column."""
    label = result.model
    if result.weights != "real":
        label += f" [{result.weights}]"
    if result.limit is not None:
        label += f" [limit {result.limit}]"
    return label


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 2) if values else None


@dataclass
class ReportTable:
    """One table: ``stem`` (file name), ``title``, ``rows``, ``columns`` and ``notes``."""

    stem: str
    title: str
    rows: list[dict[str, Any]]
    columns: list[str]
    notes: list[str]


def _dedupe(results: Sequence[EvalResult]) -> tuple[list[EvalResult], list[str]]:
    """Keep the newest run per (task, data set, protocol, scorer, language, model label)."""
    latest: dict[tuple[str, ...], EvalResult] = {}
    for result in results:
        key = (
            result.task,
            result.dataset,
            result.protocol,
            result.scorer,
            result.lang,
            model_label(result),
        )
        current = latest.get(key)
        if current is None or str(result.meta.get("date", "")) >= str(current.meta.get("date", "")):
            latest[key] = result
    dropped = len(results) - len(latest)
    notes = [f"{dropped} older duplicate runs were ignored (newest kept)"] if dropped else []
    return list(latest.values()), notes


def report_tables(results: Sequence[EvalResult], *, reported: bool = False) -> list[ReportTable]:
    """Per (task, data set, protocol, scorer): a language x (model, metric) table with a
    ``mean`` row (each column's mean over the languages it has), then a ``summary`` table with
    one row per model. A table never mixes scorers and names its scorer in its notes.
    ``reported=True`` adds the papers' figures for the same task and data set as extra columns
    (and rows for their aggregates, e.g. uCLIP's "avg", CLT's "avg-203") to the cosine tables,
    the papers' protocol."""
    if not results:
        raise UclipError("no eval runs to report: run `uclip eval` first")
    runs, dedupe_notes = _dedupe(results)
    groups: dict[tuple[str, str, str, str], list[EvalResult]] = {}
    for run in runs:
        groups.setdefault((run.task, run.dataset, run.protocol, run.scorer), []).append(run)
    protocols_per_set: dict[tuple[str, str], set[str]] = {}
    for task, dataset, protocol, _ in groups:
        protocols_per_set.setdefault((task, dataset), set()).add(protocol)
    tables = []
    summary: list[dict[str, Any]] = []
    for (task, dataset, protocol, scorer), group in sorted(groups.items()):
        metrics = TABLE_METRICS.get(task) or tuple(group[0].metrics)
        labels = list(dict.fromkeys(model_label(r) for r in sorted(group, key=model_label)))
        columns = [f"{label} {metric}" for label in labels for metric in metrics]
        by_lang: dict[str, dict[str, Any]] = {}
        for run in group:
            row = by_lang.setdefault(run.lang, {"lang": run.lang})
            row.setdefault("n", next(iter(run.sizes.values()), None))
            for metric in metrics:
                if metric in run.metrics:
                    row[f"{model_label(run)} {metric}"] = round(run.metrics[metric], 2)
        rows = [by_lang[lang] for lang in sorted(by_lang)]
        references = sorted({str(r.scorer_reference) for r in group if r.scorer_reference})
        notes = [
            f"protocol: {protocol}; scorer: {scorer}"
            + (f" (reference queries: {'; '.join(references)})" if references else "")
            + "; metrics in %"
        ]
        extra_rows: list[dict[str, Any]] = []
        if reported and scorer == "cosine":
            figures = load_reported(task=task, dataset=dataset)
            report_columns = list(dict.fromkeys(f.column for f in figures))
            columns += report_columns
            for figure in figures:
                target = by_lang.get(figure.lang)
                if target is None:
                    target = next((r for r in extra_rows if r["lang"] == figure.lang), None)
                    if target is None:
                        target = {"lang": figure.lang}
                        extra_rows.append(target)
                target[figure.column] = figure.value
            if figures:
                papers = sorted({f"{f.paper} (arXiv {f.arxiv}) Table {f.table}" for f in figures})
                notes.append(
                    "columns marked 'reported' are copied from " + "; ".join(papers) + ", not "
                    "measured here; see src/uclip/eval/reported_numbers.json"
                )
        mean_row: dict[str, Any] = {"lang": MEAN_ROW, "n": None}
        for column in columns:
            mean_row[column] = _mean([r[column] for r in rows if column in r])
        notes.append(
            f"'{MEAN_ROW}': each column's mean over the languages it has ({len(rows)} "
            "languages in this table); 'n': queries per language"
        )
        for label in labels:
            weights = next(run.weights for run in group if model_label(run) == label)
            summary.append(
                {
                    "task": task,
                    "dataset": dataset,
                    "protocol": protocol,
                    "scorer": scorer,
                    "model": label,
                    "weights": weights,
                    "langs": sum(1 for r in rows if f"{label} {metrics[0]}" in r),
                    **{m: mean_row.get(f"{label} {m}") for m in metrics},
                }
            )
        stem = f"{task}_{dataset}"
        if len(protocols_per_set[(task, dataset)]) > 1:
            stem += "_" + "".join(c if c.isalnum() else "-" for c in protocol)
        if scorer != "cosine":
            stem += "_" + "".join(c if c.isalnum() else "-" for c in scorer).strip("-")
        tables.append(
            ReportTable(
                stem=stem,
                title=f"{task}: {dataset}" + ("" if scorer == "cosine" else f" ({scorer})"),
                rows=[*rows, mean_row, *extra_rows],
                columns=["lang", "n", *columns],
                notes=notes + dedupe_notes,
            )
        )
    summary_columns = ["task", "dataset", "protocol", "scorer", "model", "weights", "langs"]
    summary_columns += [
        m for m in dict.fromkeys(k for r in summary for k in r) if m not in summary_columns
    ]
    tables.append(
        ReportTable(
            stem="summary",
            title="summary: per-model means over languages",
            rows=summary,
            columns=summary_columns,
            notes=["means over the languages each model was run on (column 'langs'); in %"],
        )
    )
    return tables
