"""``uclip ablate CONFIG``: retrain the heads under named variations (:mod:`uclip.app.ablate`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from uclip.app.commands.common import command_line, seed_list, set_threads, str_list
from uclip.data.languages import TARGET_LANGUAGES


def run(ns: argparse.Namespace) -> int:
    from uclip.app.ablate import (
        DEFAULT_VARIATIONS,
        AblationArgs,
        run_ablation,
        summary_columns,
        write_ablation_tables,
    )
    from uclip.eval.report import markdown_table

    set_threads(ns.threads)
    args = AblationArgs(
        config=Path(ns.config),
        out=Path(ns.out),
        variations=tuple(ns.variations or DEFAULT_VARIATIONS),
        overrides=tuple(ns.set or ()),
        seeds=tuple(ns.seeds),
        langs=tuple(ns.langs),
        xm3600_pairs=ns.xm3600_pairs,
        flores_pairs=ns.flores_pairs,
        data_dir=Path(ns.data_dir) if ns.data_dir else None,
        work_dir=Path(ns.work_dir) if ns.work_dir else None,
        cache_dir=Path(ns.cache_dir) if ns.cache_dir else None,
        save_models=ns.save_models,
        progress=not ns.no_progress,
    )
    result = run_ablation(args)
    result["meta"]["command"] = command_line()
    paths = write_ablation_tables(result, args.out)
    print(markdown_table(result["summary"], summary_columns(result["summary"])))
    print(f"wrote {paths['summary']} and {paths['per_language']} (json, csv beside)")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("ablate", help="retrain the heads under named variations of a config")
    p.add_argument("config", help="base config (e.g. configs/uclip-text-anchor.json)")
    p.add_argument("--out", required=True, help="directory for ablation.{json,csv,md}")
    p.add_argument(
        "--variations",
        nargs="+",
        help="names (full no_intra no_text no_pseudo no_perturb), sigma2=X, tau=X, "
        "tau_retrieval=X, lam=X, bank=N or section.key=value (default: a standard set)",
    )
    p.add_argument(
        "--set", nargs="+", help="section.key=value overrides of the base (e.g. data.n_train=4000)"
    )
    p.add_argument("--seeds", type=seed_list, default=[0], help="comma-separated")
    p.add_argument("--langs", type=str_list, default=list(TARGET_LANGUAGES))
    p.add_argument("--xm3600-pairs", type=int, default=1000)
    p.add_argument("--flores-pairs", type=int, default=500)
    p.add_argument("--data-dir")
    p.add_argument("--work-dir", help="runs and cache (default: OUT/work)")
    p.add_argument("--cache-dir", help="embedding cache (default: WORK/cache)")
    p.add_argument("--save-models", action="store_true", help="keep each variation's heads")
    p.add_argument("--threads", type=int)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)
