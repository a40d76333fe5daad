"""``uclip encoders``: list the encoder registry."""

from __future__ import annotations

import argparse
from typing import Any


def run(ns: argparse.Namespace) -> int:
    from uclip.encoders.registry import list_specs

    rows = [
        {
            "name": s.name,
            "family": s.family,
            "dim": s.dim,
            "hf_id": s.hf_id,
            "languages": s.languages,
        }
        for s in list_specs()
    ]
    from uclip.eval.report import markdown_table

    print(markdown_table(rows))
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("encoders", help="list the encoder registry")
    p.set_defaults(func=run)
