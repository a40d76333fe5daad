"""Export the trained part of a uCLIP model: the projection heads f_C and f_M.

uCLIP trains only the two heads (paper, Sec. "Inter Alignment": ê^C = f_C(ẽ^C), ê^M = f_M(ẽ^M));
the encoders stay frozen and are referenced by name. One module per format:

* :mod:`~uclip.export.hf` — :func:`export_hf`: ``config.json``, ``model.safetensors`` (both heads,
  keys ``f_c.*`` / ``f_m.*``) and ``README.md``.
* :mod:`~uclip.export.onnx` — :func:`export_onnx`: ``f_c.onnx`` / ``f_m.onnx`` and ``onnx.json``;
  :func:`export_onnx_text_pipeline`: the whole multilingual text side as one graph.
* :mod:`~uclip.export.sentence_transformers` — :func:`export_sentence_transformers`: two stock
  sentence-transformers directories, ``multilingual/`` and ``anchor/``.
* :mod:`~uclip.export.verify` — :func:`verify_export`: an export against its own checksums.

Shared: :mod:`~uclip.export.common` (the model read, the staging folder and atomic replacement
of ``--out``) and :mod:`~uclip.export.card` (the one model-card template of every format).
``model`` is a loaded model (``.heads.f_c``, ``.heads.f_m``, ``.spec()``) or a model directory or
pretrained name, loaded with ``uclip.load`` (encoders are built lazily, so exporting heads never
loads them).
"""

from __future__ import annotations

from uclip.export.card import CardFormat, model_card
from uclip.export.common import E5_ENCODERS, E5_PREFIX, EXPORT_FORMAT_VERSION
from uclip.export.hf import export_hf
from uclip.export.onnx import (
    TextPipeline,
    export_onnx,
    export_onnx_text_pipeline,
    text_pipeline,
)
from uclip.export.sentence_transformers import export_sentence_transformers, head_as_stock_modules
from uclip.export.verify import verify_export

__all__ = [
    "E5_ENCODERS",
    "E5_PREFIX",
    "EXPORT_FORMAT_VERSION",
    "CardFormat",
    "TextPipeline",
    "export_hf",
    "export_onnx",
    "export_onnx_text_pipeline",
    "export_sentence_transformers",
    "head_as_stock_modules",
    "model_card",
    "text_pipeline",
    "verify_export",
]
