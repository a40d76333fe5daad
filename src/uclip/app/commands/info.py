"""``uclip info CONFIG``: parameter counts and encoders of a config."""

from __future__ import annotations

import argparse
from typing import Any

from uclip.app.commands.common import print_json


def run(ns: argparse.Namespace) -> int:
    from uclip.app.train import count_parameters, load_run_config

    run_config = load_run_config(ns.config)
    info = {
        "config": str(ns.config),
        **count_parameters(run_config.model, build_frozen=not ns.no_frozen),
    }
    info["embed_dim"] = run_config.model.embed_dim
    print_json(info)
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("info", help="parameter counts and encoders of a config")
    p.add_argument("config")
    p.add_argument(
        "--no-frozen", action="store_true", help="skip building encoders to count frozen parameters"
    )
    p.set_defaults(func=run)
