"""``uclip export``: export trained heads (Hugging Face directory, ONNX, sentence-transformers)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from uclip.app.commands.common import add_model_argument
from uclip.errors import UclipError


def run(ns: argparse.Namespace) -> int:
    from uclip.export import (
        export_hf,
        export_onnx,
        export_onnx_text_pipeline,
        export_sentence_transformers,
        verify_export,
    )

    if ns.verify is not None:
        print(json.dumps({"verified": str(ns.verify), **verify_export(ns.verify)}, indent=2))
        return 0
    missing = [flag for flag in ("model", "format", "out") if getattr(ns, flag) is None]
    if missing:
        raise UclipError(f"uclip export needs --{missing[0]} (or --verify DIR alone)")
    from uclip.loading import parse_model_spec

    parse_model_spec(ns.model).require(("uclip",), "uclip export", "a uCLIP model (uclip:NAME|DIR)")
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


def register(sub: Any) -> None:
    export = sub.add_parser("export", help="export trained heads (HF directory or ONNX)")
    add_model_argument(export, "uCLIP models only", required=False)
    export.add_argument("--format", choices=("hf", "onnx", "sentence-transformers"))
    export.add_argument("--out")
    export.add_argument(
        "--verify",
        metavar="DIR",
        help="check an export's files against the sha256 in its manifest, then exit",
    )
    export.add_argument("--overwrite", action="store_true")
    export.add_argument(
        "--full",
        action="store_true",
        help="with --format onnx: the whole text side (multilingual tower + f_M) as one graph, "
        "tokenizer.json beside it",
    )
    export.set_defaults(func=run)
