"""``uclip extract-merge``: merge the shards of ``uclip extract`` into one ``.npy``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def run(ns: argparse.Namespace) -> int:
    import numpy as np

    from uclip.features.sharding import merge_shards
    from uclip.features.webdataset_bank import is_webdataset_extraction, merge_webdataset

    if is_webdataset_extraction(ns.out):
        path, meta = merge_webdataset(ns.out, ns.output)
        print(json.dumps({"path": str(path), **meta}, indent=2))
        return 0

    path = merge_shards(ns.out, ns.output)
    arr = np.load(path, mmap_mode="r")
    print(json.dumps({"path": str(path), "rows": arr.shape[0], "dim": arr.shape[1]}, indent=2))
    return 0


def register(sub: Any) -> None:
    m = sub.add_parser("extract-merge", help="merge the shards of `uclip extract` into one .npy")
    m.add_argument("--out", required=True, help="the directory given to `uclip extract --out`")
    m.add_argument("--output", type=Path, help="merged .npy path (default: OUT/embeddings.npy)")
    m.set_defaults(func=run)
