"""Results as data first, tables second (CLIP_benchmark's habit).

A *row* is a flat dict: who produced the number (``model``, ``weights`` real/random-init), on what
(``dataset``, ``lang``, ``protocol``) and the metrics. Every table the project writes — quickstart,
``uclip eval``/``uclip report``, ablations, benchmarks — goes through :func:`write_table`.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from uclip.data.io import dump_json, finite_or_null, write_text_atomic
from uclip.errors import UclipError
from uclip.version import library_versions


def git_commit() -> str | None:
    """The commit of the working tree this code runs from, if it is a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def run_metadata() -> dict[str, Any]:
    """Provenance recorded with every result file: versions, commit, date."""
    return {
        "versions": library_versions(),
        "git_commit": git_commit(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value == 0:
            return "0"
        # two decimals like the papers; tiny values keep two significant digits (2.4e-07)
        return f"{value:.2f}" if abs(value) >= 0.01 else f"{value:.2g}"
    return "" if value is None else str(value)


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A GitHub Markdown table of ``rows`` (columns default to the union of keys, in order)."""
    if not rows:
        raise UclipError("no results to tabulate")
    cols = list(columns) if columns else _columns(rows)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def csv_text(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    cols = list(columns) if columns else _columns(rows)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _columns(rows: Iterable[dict[str, Any]]) -> list[str]:
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    return cols


def write_table(
    rows: Sequence[dict[str, Any]],
    out_dir: str | Path,
    stem: str,
    *,
    columns: Sequence[str] | None = None,
    meta: dict[str, Any] | None = None,
    title: str | None = None,
    notes: Sequence[str] = (),
) -> dict[str, Path]:
    """Write ``stem.json`` (rows + provenance), ``stem.csv`` and ``stem.md``; return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    payload = {**run_metadata(), **(meta or {}), "rows": list(rows)}
    md = (f"# {title}\n\n" if title else "") + markdown_table(rows, columns)
    if notes:
        md += "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    paths = {"json": out / f"{stem}.json", "csv": out / f"{stem}.csv", "md": out / f"{stem}.md"}
    # Strict JSON: a non-finite cell is written as null, never as a bare NaN token.
    write_text_atomic(paths["json"], dump_json(finite_or_null(payload), str(paths["json"])))
    write_text_atomic(paths["csv"], csv_text(rows, columns))
    write_text_atomic(paths["md"], md)
    return paths
