"""``uclip index build``: embed a folder of images into a search index."""

from __future__ import annotations

import argparse
import json
from typing import Any

from uclip.app.commands.common import (
    add_model_argument,
    add_scorer_arguments,
    load_saved_model,
    scorer_reference,
)


def run_build(ns: argparse.Namespace) -> int:
    from uclip.serve.index.build import build_index

    reference = scorer_reference(ns)
    model = load_saved_model(ns.model, "index build")
    index = build_index(
        model,
        ns.images,
        ns.out,
        mode=ns.mode,
        captions=ns.captions,
        backend=ns.backend,
        progress=not ns.no_progress,
        scorer=ns.scorer,
        reference=reference,
    )
    print(
        json.dumps(
            {
                "index": str(ns.out),
                "images": len(index),
                "mode": index.mode,
                "backend": index.backend,
                "scorer": index.scorer["name"],
            },
            indent=2,
        )
    )
    return 0


def register(sub: Any) -> None:
    index = sub.add_parser("index", help="build a multilingual image search index")
    isub = index.add_subparsers(dest="index_command", required=True)
    build = isub.add_parser("build", help="embed a folder of images into an index")
    build.add_argument("--images", required=True, help="folder of images (searched recursively)")
    add_model_argument(build, "uCLIP or CLT models only")
    build.add_argument("--out", required=True, help="index directory to write")
    build.add_argument(
        "--mode",
        choices=("image", "caption"),
        default="image",
        help="image: CLIP image tower; caption: images found through their captions (anchor tower)",
    )
    build.add_argument("--captions", help="JSON {relative path: caption(s)} for --mode caption")
    build.add_argument("--backend", choices=("auto", "numpy", "faiss"), default="auto")
    add_scorer_arguments(
        build,
        "ranking: cosine (default), csls[:k=10] or qbnorm[:beta=20]; the last two store each "
        "image's hubness penalty from --scorer-reference (docs/evaluation.md, Scorers)",
    )
    build.add_argument("--no-progress", action="store_true")
    build.set_defaults(func=run_build)
