"""The per-language transfer report: every language the multilingual tower reads.

uCLIP's heads are trained on English text alone, so every language the frozen multilingual
encoder reads should transfer without retraining. This module turns per-language eval runs
(FLORES-200 bitext and Flickr30k-200 cross-lingual retrieval, one :class:`EvalResult` each) into
one row per language: script and family from a committed table, each system's scores, the
heads/ceiling ratio, and data-quality flags measured on the translated text itself, so a broken
translation is flagged instead of silently averaged. Path discovery, running models and plotting
live in :mod:`uclip.app.languages`.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from uclip.data.languages import language_info
from uclip.data.text_quality import TextQuality
from uclip.errors import UclipError
from uclip.eval.evaluators import EvalResult
from uclip.features.sharding import shard_range

# The roles a system plays in the report; the ratio is heads / ceiling.
ROLES = ("heads", "ridge", "ceiling", "english")
ROLE_TITLES = {
    "heads": "uCLIP heads",
    "ridge": "ridge map",
    "ceiling": "multilingual ceiling",
    "english": "English-only",
}
FLORES = ("bitext", "flores200", "x2en_acc")
FLICKR = ("crosslingual", "flickr30k", "x2en_R@1")
FLICKR_R10 = ("crosslingual", "flickr30k", "x2en_R@10")
# Report column name -> (task, data set, metric) of the eval run behind it.
METRICS = {"flores": FLORES, "flickr_r1": FLICKR, "flickr_r10": FLICKR_R10}
RATIOS = ("ratio_flores", "ratio_flickr_r1")
DATASETS = ("flores", "flickr")

# Where transfer breaks, on FLORES (human translations): the multilingual tower is the limit
# when even the ceiling matches under half of the sentences; the heads are the limit when the
# ceiling matches >= 90% but the heads keep under 80% of it.
TOWER_LIMIT = 50.0
HEADS_LIMIT_CEILING = 90.0
HEADS_LIMIT_RATIO = 0.8


def shard_languages(langs: Sequence[str], index: int, num_shards: int) -> list[str]:
    """Every ``num_shards``-th language from ``index``: each shard samples every script and
    family of the sorted list, so a partial run is already a spread of the whole."""
    shard_range(0, index, num_shards)  # the extraction shards' check of (index, num_shards)
    return list(langs[index::num_shards])


# --------------------------------------------------------------------------------------------
# Rows and summaries


def ratio(value: float | None, reference: float | None) -> float | None:
    """``value / reference``; ``None`` when either is missing or the reference is 0."""
    if value is None or reference is None or reference == 0:
        return None
    return value / reference


def index_results(results: Iterable[EvalResult]) -> dict[tuple[str, str, str, str], EvalResult]:
    """``(task, dataset, lang, model) -> run``; two runs of one key are an error, not a choice."""
    out: dict[tuple[str, str, str, str], EvalResult] = {}
    for result in results:
        if result.limit is not None:
            continue  # partial runs (--limit) never enter the report
        key = (result.task, result.dataset, result.lang, result.model)
        if key in out:
            raise UclipError(f"two eval runs for {key}: delete one of them from the runs folder")
        out[key] = result
    return out


def language_row(
    code: str,
    runs: Mapping[tuple[str, str, str, str], EvalResult],
    systems: Mapping[str, str],
    quality: Mapping[str, TextQuality] | None = None,
) -> dict[str, Any]:
    """One report row for ``code``: info, ``<role>_<metric>`` scores (percent, ``None`` where a
    run is missing), heads/ceiling ratios, and the data-quality flags per data set."""
    info = language_info(code)
    row: dict[str, Any] = {
        "lang": code,
        "name": info.name,
        "script": info.script,
        "script_name": info.script_name,
        "family": info.family,
        "branch": info.branch,
    }
    for role, model in systems.items():
        for column, (task, dataset, metric) in METRICS.items():
            run = runs.get((task, dataset, code, model))
            if run is not None and run.weights != "real":
                raise UclipError(
                    f"{model} on {dataset} {code} ran with {run.weights} weights: the language "
                    "report takes real-weight runs only"
                )
            row[f"{role}_{column}"] = None if run is None else round(run.metrics[metric], 2)
    for column in RATIOS:
        metric = column.removeprefix("ratio_")
        value = ratio(row.get(f"heads_{metric}"), row.get(f"ceiling_{metric}"))
        row[column] = None if value is None else round(value, 3)
    flags = []
    for dataset in DATASETS:
        measured = (quality or {}).get(dataset)
        row[f"{dataset}_flagged"] = bool(measured and measured.flagged)
        if measured and measured.flagged:
            flags += [f"{dataset}: {problem}" for problem in measured.problems()]
    row["flags"] = "; ".join(flags)
    return row


def column_dataset(column: str) -> str:
    """The data set (``flores`` or ``flickr``) a report column is measured on."""
    return "flores" if column.endswith("flores") else "flickr"


def usable(row: Mapping[str, Any], column: str) -> bool:
    """``row[column]`` exists and its data set's text for this language is not flagged."""
    return row.get(column) is not None and not row.get(f"{column_dataset(column)}_flagged")


def mean(values: Iterable[float]) -> float | None:
    values = list(values)
    return sum(values) / len(values) if values else None


def most_frequent_first(values: Iterable[str]) -> list[str]:
    """The distinct ``values``, most frequent first, ties by name (the order of the report's
    groups and of its figures' script colours)."""
    return [v for v, _ in sorted(Counter(values).items(), key=lambda kv: (-kv[1], kv[0]))]


def group_means(
    rows: Sequence[Mapping[str, Any]], key: str, columns: Sequence[str]
) -> list[dict[str, Any]]:
    """Mean of each column per value of ``rows[i][key]``, over the rows where it is usable
    (flagged text left out); groups sorted by size, then name."""
    groups: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[row[key]].append(row)
    out = []
    for name in most_frequent_first(row[key] for row in rows):
        members = groups[name]
        entry: dict[str, Any] = {key: name, "n": len(members)}
        for column in columns:
            value = mean(m[column] for m in members if usable(m, column))
            entry[column] = None if value is None else round(value, 3)
        out.append(entry)
    return out


def average_ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, ties given the mean of the ranks they span (as Spearman's rho needs)."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        stop = start
        while stop + 1 < len(order) and values[order[stop + 1]] == values[order[start]]:
            stop += 1
        for position in range(start, stop + 1):
            ranks[order[position]] = (start + stop) / 2 + 1
        start = stop + 1
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rank correlation (Pearson's r of average ranks); ``None`` if undefined."""
    if len(x) != len(y):
        raise UclipError(f"spearman needs paired values, got {len(x)} and {len(y)}")
    if len(x) < 3:
        return None
    rx, ry = average_ranks(x), average_ranks(y)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    sxx = sum((a - mx) ** 2 for a in rx)
    syy = sum((b - my) ** 2 for b in ry)
    if sxx == 0 or syy == 0:
        return None
    return sxy / math.sqrt(sxx * syy)


def paired_spearman(rows: Sequence[Mapping[str, Any]], a: str, b: str) -> dict[str, Any]:
    """Rank agreement of columns ``a`` and ``b`` over the rows where both are usable."""
    pairs = [(r[a], r[b]) for r in rows if usable(r, a) and usable(r, b)]
    rho = spearman([p[0] for p in pairs], [p[1] for p in pairs])
    return {"n": len(pairs), "spearman": None if rho is None else round(rho, 3)}


def extremes(
    rows: Sequence[Mapping[str, Any]], column: str, k: int = 10
) -> dict[str, list[dict[str, Any]]]:
    """The ``k`` best and worst rows by ``column`` (flagged text left out)."""
    ranked = sorted((r for r in rows if usable(r, column)), key=lambda r: (r[column], r["lang"]))
    pick = ("lang", "name", "script", column)
    return {
        "best": [{c: r[c] for c in pick} for r in ranked[::-1][:k]],
        "worst": [{c: r[c] for c in pick} for r in ranked[:k]],
    }


def summarize(rows: Sequence[Mapping[str, Any]], roles: Sequence[str]) -> dict[str, Any]:
    """Means (overall, by script, by family), the 10 best/worst ratios, and how the two data
    sets rank the languages alike. Flagged text is listed and left out of every figure."""
    scores = [f"{role}_{c}" for role in roles for c in METRICS]
    columns = [c for c in [*scores, *RATIOS] if any(r.get(c) is not None for r in rows)]
    overall = {}
    for column in columns:
        value = mean(r[column] for r in rows if usable(r, column))
        overall[column] = None if value is None else round(value, 3)
    agreement = {
        role: paired_spearman(rows, f"{role}_flores", f"{role}_flickr_r1") for role in roles
    }
    agreement["ratio"] = paired_spearman(rows, *RATIOS)
    # Does the ratio follow what the tower knows? Also among the languages the tower reads
    # (ceiling >= TOWER_LIMIT), so a few near-zero ceilings cannot make the correlation alone.
    flores = [r for r in rows if usable(r, "ceiling_flores") and usable(r, "ratio_flores")]
    read = [r for r in flores if r["ceiling_flores"] >= TOWER_LIMIT]
    follows = {
        "flores": paired_spearman(rows, "ceiling_flores", "ratio_flores"),
        "flores_tower_reads": paired_spearman(read, "ceiling_flores", "ratio_flores"),
        "flickr_r1": paired_spearman(rows, "ceiling_flickr_r1", "ratio_flickr_r1"),
    }
    tower = sorted(
        (r for r in flores if r["ceiling_flores"] < TOWER_LIMIT), key=lambda r: r["ceiling_flores"]
    )
    heads = sorted(
        (
            r
            for r in flores
            if r["ceiling_flores"] >= HEADS_LIMIT_CEILING and r["ratio_flores"] < HEADS_LIMIT_RATIO
        ),
        key=lambda r: r["ratio_flores"],
    )
    pick = ("lang", "name", "script", "ceiling_flores", "ratio_flores")
    versus = {}
    if "ridge" in roles and "heads" in roles:
        for metric in ("flores", "flickr_r1"):
            a, b = f"heads_{metric}", f"ridge_{metric}"
            diffs = [r[a] - r[b] for r in rows if usable(r, a) and usable(r, b)]
            versus[metric] = {
                "n": len(diffs),
                "heads_better": sum(d > 0 for d in diffs),
                "ridge_better": sum(d < 0 for d in diffs),
                "mean_heads_minus_ridge": None if not diffs else round(sum(diffs) / len(diffs), 3),
            }
    return {
        "heads_vs_ridge": versus,
        "languages": len(rows),
        "tower_limited": [{c: r[c] for c in pick} for r in tower],
        "heads_limited": [{c: r[c] for c in pick} for r in heads],
        "flagged": {
            dataset: [r["lang"] for r in rows if r.get(f"{dataset}_flagged")]
            for dataset in DATASETS
        },
        "mean": overall,
        "by_script": group_means(rows, "script_name", columns),
        "by_family": group_means(rows, "family", columns),
        **{f"extremes_{c}": extremes(rows, c) for c in RATIOS},
        "rank_agreement_flores_vs_flickr": agreement,
        "ratio_vs_ceiling": follows,
    }
