"""``uclip export --verify``: check an export against the checksums it carries, in any format."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from uclip.data.io import file_sha256
from uclip.errors import UclipError
from uclip.export.sentence_transformers import ST_MANIFEST, ST_REQUIRED, ST_SIDES


def verify_export(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """Check an export against the checksums it carries: ``manifest.json`` (sentence-
    transformers: every file of ``multilingual/`` and ``anchor/``), ``onnx.json`` (ONNX heads,
    or the full text graph and its ``tokenizer.json``) or ``config.json`` (HF heads). Returns
    ``{"format", "files"}``; a missing or changed file is one :class:`UclipError` line."""
    root = Path(directory).expanduser()
    if not root.is_dir():
        raise UclipError(f"{root} is not a folder: pass the --out folder of `uclip export`")
    if (root / ST_MANIFEST).is_file():
        manifest = _read_manifest(root / ST_MANIFEST)
        expected = manifest.get("files")
        if not isinstance(expected, dict) or not expected:
            raise UclipError(f"{root / ST_MANIFEST} lists no files: export again")
        for side in ST_SIDES:
            for name in ST_REQUIRED:
                if f"{side}/{name}" not in expected:
                    raise UclipError(f"{root / ST_MANIFEST} does not list {side}/{name}")
        kind = "sentence-transformers"
    elif (root / "onnx.json").is_file():
        manifest = _read_manifest(root / "onnx.json")
        heads = manifest.get("heads")
        if isinstance(heads, dict):
            if not all(isinstance(h, dict) for h in heads.values()):
                raise UclipError(f"{root / 'onnx.json'} has a damaged heads entry: export again")
            expected = {h.get("file"): h.get("sha256") for h in heads.values()}
            kind = "onnx"
        else:
            expected = manifest.get("sha256")
            kind = "onnx-full"
        if not isinstance(expected, dict) or not expected:
            raise UclipError(f"{root / 'onnx.json'} records no checksums: export again")
        if kind == "onnx-full" and "tokenizer.json" not in expected:
            raise UclipError(
                f"{root / 'onnx.json'} records no tokenizer.json checksum (an older export): "
                "export again to record it"
            )
    elif (root / "config.json").is_file():
        manifest = _read_manifest(root / "config.json")
        expected = {"model.safetensors": manifest.get("model_safetensors_sha256")}
        kind = "hf"
    else:
        raise UclipError(
            f"{root} holds no export manifest (manifest.json, onnx.json or config.json): "
            "pass the --out folder of `uclip export`"
        )
    for name, digest in expected.items():
        if not isinstance(name, str) or not isinstance(digest, str):
            raise UclipError(f"{root}: the manifest's entry {name!r} is damaged: export again")
        path = root / name
        if not path.is_file():
            raise UclipError(f"{path} is missing from the export: copy it back or export again")
        if file_sha256(path) != digest:
            raise UclipError(
                f"{path} does not match the sha256 in the export's manifest (changed or "
                "replaced): restore it or export again"
            )
    return {"format": kind, "files": len(expected)}


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UclipError(f"cannot read {path} ({exc}): export again") from None
    if not isinstance(data, dict):
        raise UclipError(f"{path} is not a JSON object: export again")
    return data
