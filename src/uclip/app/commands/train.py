"""``uclip train CONFIG``: train uCLIP heads from a config (``--dry-run`` plans only)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from uclip.app.commands.common import print_json
from uclip.errors import UclipError


def run(ns: argparse.Namespace) -> int:
    from uclip.app.train import plan_run, run_training

    if ns.dry_run:
        plan = plan_run(
            ns.config, data_dir=ns.data_dir, random_init=ns.random_init, overrides=ns.set or ()
        )
        print_json({**plan, "out": ns.out})
        return 0
    if not ns.out:
        raise UclipError("uclip train needs --out DIR (only --dry-run runs without it)")
    model, result = run_training(
        ns.config,
        ns.out,
        data_dir=ns.data_dir,
        resume=ns.resume,
        random_init=ns.random_init,
        cache_dir=ns.cache_dir,
        overrides=ns.set or (),
    )
    print_json(
        {
            "model_dir": str(Path(ns.out) / "model"),
            "ridge_baseline_dir": str(Path(ns.out) / "ridge"),
            "steps": result.steps,
            "best_dev_step": result.best_step,
            "best_dev_score": result.best_score,
            "stopped_early": result.stopped_early,
            "final_loss": result.final_loss,
            "resumed_from_step": result.resumed_from,
            "weights": model.spec()["weights"],
        }
    )
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("train", help="train uCLIP heads from a config (configs/*.json)")
    p.add_argument("config")
    p.add_argument(
        "--set",
        action="append",
        metavar="SECTION.KEY=VALUE",
        help="override one config value, e.g. --set train.lr=3e-4 (repeatable)",
    )
    p.add_argument("--out", help="output directory (required unless --dry-run)")
    p.add_argument("--data-dir")
    p.add_argument("--cache-dir")
    p.add_argument(
        "--resume", action="store_true", help="continue from the latest checkpoint in --out"
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="check every input, encoder, device and AMP setting, print the plan with memory "
        "and time estimates, and exit",
    )
    p.add_argument(
        "--random-init", action="store_true", help="random-init encoders (pipeline tests only)"
    )
    p.set_defaults(func=run)
