"""Inference latency of multilingual text → shared-space embedding (uCLIP Table 4 analogue).

    python benchmarks/latency.py [--threads 1] [--passes 1] [--batch-sizes 1,64] [--out DIR]

is ``uclip bench latency`` without the entry point: the same arguments
(:func:`uclip.app.commands.bench.add_latency_arguments`) and harness (:mod:`uclip.app.latency`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from uclip.app.commands.bench import add_latency_arguments
from uclip.app.commands.common import set_threads
from uclip.app.latency import run


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_latency_arguments(parser)
    args = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    ns = parser.parse_args(args)
    set_threads(ns.threads)
    return run(ns, "python benchmarks/latency.py " + " ".join(args))


if __name__ == "__main__":
    sys.exit(main())
