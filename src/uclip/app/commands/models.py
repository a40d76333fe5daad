"""``uclip models``: list the pretrained models."""

from __future__ import annotations

import argparse
from typing import Any


def run(ns: argparse.Namespace) -> int:
    from uclip.eval.report import markdown_table
    from uclip.pretrained import registry

    rows = [
        {
            "name": name,
            "status": entry["status"],
            "encoders": ", ".join(f"{k}={v}" for k, v in entry["encoders"].items() if v),
            "heads_sha256": (entry.get("heads_sha256") or "")[:12],
            "results": entry.get("results") or "",
        }
        for name, entry in sorted(registry().items())
    ]
    print(markdown_table(rows))
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser(
        "models", help="list the pretrained models (names for uclip.load, serve, eval)"
    )
    p.set_defaults(func=run)
