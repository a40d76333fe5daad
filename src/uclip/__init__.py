"""uclip: make English vision-language models multilingual cheaply (uCLIP, CLT).

The public API, imported on first use (PEP 562) so that ``import uclip`` loads neither torch nor
transformers::

    model = uclip.load("uclip-text-anchor")      # or a folder, a Hub id, a saved CLT model
    uclip.list_models()                          # the pretrained names
    uclip.BitextEvaluator(...)(model)            # an EvalResult
    uclip.build_index(model, images_dir, out)    # a search index
    uclip.export_hf(model, out_dir)              # a Hugging Face folder (also export_onnx, ...)
"""

from __future__ import annotations

import importlib
from typing import Any

from uclip.version import __version__

# name -> the module that defines it. The targets sit in every layer (eval, serve, export
# included): this table is the package's front door, read only when a name is first used, so
# the library's own modules import from the defining module (``uclip.loading.load``), never
# from here.
_EXPORTS: dict[str, str] = {
    "load": "uclip.loading",
    "list_models": "uclip.pretrained",
    "UclipError": "uclip.errors",
    "EmbeddingModel": "uclip.encoders.base",
    "UCLIPModel": "uclip.method.model",
    "CLTModel": "uclip.clt.model",
    "EvalResult": "uclip.eval.evaluators",
    "Evaluator": "uclip.eval.evaluators",
    "CrossModalRetrievalEvaluator": "uclip.eval.evaluators",
    "ZeroShotClassificationEvaluator": "uclip.eval.evaluators",
    "CrossLingualTextRetrievalEvaluator": "uclip.eval.evaluators",
    "BitextEvaluator": "uclip.eval.evaluators",
    "save_result": "uclip.eval.runs",
    "load_results": "uclip.eval.runs",
    "load_embedding_model": "uclip.eval.models",
    "build_index": "uclip.serve.index.build",
    "SearchIndex": "uclip.serve.index.query",
    "export_hf": "uclip.export.hf",
    "export_onnx": "uclip.export.onnx",
    "export_onnx_text_pipeline": "uclip.export.onnx",
    "export_sentence_transformers": "uclip.export.sentence_transformers",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'uclip' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


__all__ = ["__version__", *_EXPORTS]
