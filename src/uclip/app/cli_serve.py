"""CLI commands for search and export: ``uclip index build``, ``uclip serve``, ``uclip export``."""

from __future__ import annotations

import argparse
import json
from typing import Any

from uclip.errors import UclipError
from uclip.serve.settings import (
    DEFAULT_HEADER_TIMEOUT_S,
    DEFAULT_KEEP_ALIVE_S,
    DEFAULT_LIMIT_CONCURRENCY,
)


def cmd_index_build(ns: argparse.Namespace) -> int:
    import uclip
    from uclip.features.scoring import ReferenceQueries
    from uclip.serve.index import build_index

    reference = (
        None if ns.scorer_reference is None else ReferenceQueries.from_file(ns.scorer_reference)
    )
    model = uclip.load(ns.model)
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


def cmd_serve(ns: argparse.Namespace) -> int:
    from uclip.serve.app import serve

    serve(
        ns.index,
        ns.model,
        host=ns.host,
        port=ns.port,
        images_root=ns.images,
        allowed_hosts=[h.strip() for h in ns.allowed_hosts.split(",")] if ns.allowed_hosts else (),
        limit_concurrency=ns.limit_concurrency,
        timeout_keep_alive=ns.timeout_keep_alive,
        header_timeout=ns.header_timeout,
    )
    return 0


def cmd_export(ns: argparse.Namespace) -> int:
    from uclip.export import (
        export_hf,
        export_onnx,
        export_onnx_text_pipeline,
        export_sentence_transformers,
    )

    if ns.full and ns.format != "onnx":
        raise UclipError("--full goes with --format onnx (the whole text side as one graph)")
    if ns.format == "hf":
        out: Any = str(export_hf(ns.model, ns.out, overwrite=ns.overwrite))
    elif ns.format == "sentence-transformers":
        written = export_sentence_transformers(ns.model, ns.out, overwrite=ns.overwrite)
        out = {k: str(v) for k, v in written.items()}
    elif ns.full:
        written = export_onnx_text_pipeline(ns.model, ns.out, overwrite=ns.overwrite)
        out = {k: str(v) for k, v in written.items()}
    else:
        out = {k: str(v) for k, v in export_onnx(ns.model, ns.out, overwrite=ns.overwrite).items()}
    print(json.dumps({"format": ns.format, "out": out}, indent=2))
    return 0


def cmd_demo_prepare(ns: argparse.Namespace) -> int:
    from pathlib import Path

    from uclip.app.demo import prepare_demo
    from uclip.paths import resolve_data_dir

    images, captions = prepare_demo(resolve_data_dir(ns.data_dir), Path(ns.out), ns.cifar_per_class)
    print(json.dumps({"images": str(images), "captions": str(captions)}, indent=2))
    return 0


def _count(text: str) -> int:
    """argparse type: an integer >= 0 (a negative count is refused, not read as 0)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {value}")
    return value


def _positive(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = _count(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected 1 or more, got {value}")
    return value


def _seconds(text: str) -> float:
    """argparse type: a finite number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected seconds > 0, got {text}")
    return value


def add_commands(sub: Any) -> None:
    demo = sub.add_parser("demo", help="prepare the offline search demo's image folder")
    dsub = demo.add_subparsers(dest="demo_command", required=True)
    prep = dsub.add_parser("prepare", help="real COCO + CIFAR-10 images with their captions")
    prep.add_argument("--out", default="demo")
    prep.add_argument("--data-dir")
    prep.add_argument(
        "--cifar-per-class",
        type=_count,
        default=10,
        help="CIFAR-10 images per class, 0 to 1000 (what the archive holds)",
    )
    prep.set_defaults(func=cmd_demo_prepare)

    index = sub.add_parser("index", help="build a multilingual image search index")
    isub = index.add_subparsers(dest="index_command", required=True)
    build = isub.add_parser("build", help="embed a folder of images into an index")
    build.add_argument("--images", required=True, help="folder of images (searched recursively)")
    build.add_argument(
        "--model", required=True, help="a model directory or a pretrained name (uclip models)"
    )
    build.add_argument("--out", required=True, help="index directory to write")
    build.add_argument(
        "--mode",
        choices=("image", "caption"),
        default="image",
        help="image: CLIP image tower; caption: images found through their captions (anchor tower)",
    )
    build.add_argument("--captions", help="JSON {relative path: caption(s)} for --mode caption")
    build.add_argument("--backend", choices=("auto", "numpy", "faiss"), default="auto")
    build.add_argument(
        "--scorer",
        default="cosine",
        help="ranking: cosine (default), csls[:k=10] or qbnorm[:beta=20]; the last two store "
        "each image's hubness penalty from --scorer-reference (docs/evaluation.md, Scorers)",
    )
    build.add_argument(
        "--scorer-reference",
        metavar="FILE",
        help="reference queries for csls/qbnorm: UTF-8 text, one query per line (e.g. bank M's "
        "texts or a log of past queries)",
    )
    build.add_argument("--no-progress", action="store_true")
    build.set_defaults(func=cmd_index_build)

    serve = sub.add_parser("serve", help="serve an index over HTTP with a search page")
    serve.add_argument("--index", required=True)
    serve.add_argument(
        "--model",
        required=True,
        help="the model (directory or pretrained name) the index was built with",
    )
    serve.add_argument(
        "--images",
        help="the image folder the index was built from (default: the index folder); the index "
        "itself never chooses which folder is served",
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--allowed-hosts",
        help="comma-separated Host names to answer besides localhost, 127.0.0.1, [::1] and --host "
        "(e.g. search.example.org,*.example.org); needed with --host 0.0.0.0",
    )
    serve.add_argument(
        "--limit-concurrency",
        type=_positive,
        default=DEFAULT_LIMIT_CONCURRENCY,
        help="open connections above which requests get 503 (default %(default)s)",
    )
    serve.add_argument(
        "--timeout-keep-alive",
        type=_seconds,
        default=DEFAULT_KEEP_ALIVE_S,
        help="seconds an idle keep-alive connection stays open (default %(default)s)",
    )
    serve.add_argument(
        "--header-timeout",
        type=_seconds,
        default=DEFAULT_HEADER_TIMEOUT_S,
        help="seconds a client has to send a request's headers (default %(default)s)",
    )
    serve.set_defaults(func=cmd_serve)

    export = sub.add_parser("export", help="export trained heads (HF directory or ONNX)")
    export.add_argument("--model", required=True)
    export.add_argument("--format", choices=("hf", "onnx", "sentence-transformers"), required=True)
    export.add_argument("--out", required=True)
    export.add_argument("--overwrite", action="store_true")
    export.add_argument(
        "--full",
        action="store_true",
        help="with --format onnx: the whole text side (multilingual tower + f_M) as one graph, "
        "tokenizer.json beside it",
    )
    export.set_defaults(func=cmd_export)
