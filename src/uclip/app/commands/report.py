"""``uclip report RUNS_DIR``: turn ``uclip eval`` run files into Markdown + CSV tables through
:func:`uclip.eval.report.write_table`, optionally beside the papers' reported figures.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def run(ns: argparse.Namespace) -> int:
    from uclip.eval.report import markdown_table, write_table
    from uclip.eval.reported import report_tables
    from uclip.eval.runs import load_results

    results = load_results(ns.runs_dir)
    out = Path(ns.out or ns.runs_dir)
    tables = report_tables(results, reported=ns.reported)
    for table in tables:
        paths = write_table(
            table.rows,
            out,
            table.stem,
            columns=table.columns,
            title=table.title,
            notes=table.notes,
            meta={"runs_dir": str(ns.runs_dir), "runs": len(results)},
        )
        print(f"{table.title}: {paths['md']} (csv, json beside it)")
    print()
    print(markdown_table(tables[-1].rows, tables[-1].columns))
    return 0


def register(sub: Any) -> None:
    r = sub.add_parser("report", help="tables (Markdown + CSV) from `uclip eval` run files")
    r.add_argument("runs_dir", help="folder of run JSON files (searched recursively)")
    r.add_argument("--out", help="output folder (default: RUNS_DIR)")
    r.add_argument(
        "--reported",
        action="store_true",
        help="add the papers' reported figures (uCLIP Tables 1-2, CLT Table 1) as columns",
    )
    r.set_defaults(func=run)
