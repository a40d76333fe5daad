"""Inference latency of multilingual text → shared-space embedding (uCLIP Table 4 analogue).

    python benchmarks/latency.py [--threads 1] [--passes 1] [--batch-sizes 1,64] [--out DIR]

is ``uclip bench latency`` without the entry point; the harness is :mod:`uclip.app.latency`.
"""

from __future__ import annotations

import sys

from uclip.app.latency import main

if __name__ == "__main__":
    sys.exit(main())
