"""``uclip demo prepare``: the offline search demo's image folder (:mod:`uclip.app.demo`)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from uclip.app.commands.common import count


def run_prepare(ns: argparse.Namespace) -> int:
    from pathlib import Path

    from uclip.app.demo import prepare_demo
    from uclip.paths import resolve_data_dir

    images, captions = prepare_demo(resolve_data_dir(ns.data_dir), Path(ns.out), ns.cifar_per_class)
    print(json.dumps({"images": str(images), "captions": str(captions)}, indent=2))
    return 0


def register(sub: Any) -> None:
    demo = sub.add_parser("demo", help="prepare the offline search demo's image folder")
    dsub = demo.add_subparsers(dest="demo_command", required=True)
    prep = dsub.add_parser("prepare", help="real COCO + CIFAR-10 images with their captions")
    prep.add_argument("--out", default="demo")
    prep.add_argument("--data-dir")
    prep.add_argument(
        "--cifar-per-class",
        type=count,
        default=10,
        help="CIFAR-10 images per class, 0 to 1000 (what the archive holds)",
    )
    prep.set_defaults(func=run_prepare)
