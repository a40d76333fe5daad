"""Hugging Face-style export of the heads: ``config.json``, ``model.safetensors``, ``README.md``.

Both heads in one safetensors file (keys ``f_c.*`` / ``f_m.*``, float32); the encoders stay out
and are named in the model card (:func:`uclip.export.card.model_card`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from uclip.data.io import file_sha256
from uclip.export.card import CardFormat, model_card, registry_entry
from uclip.export.common import EXPORT_FORMAT_VERSION, HEAD_NAMES, head_dims, resolve_model, staged

HF_FILES = ("config.json", "model.safetensors", "README.md")
HF_CARD = CardFormat(
    library_name="uclip",
    tags=("uclip", "multilingual", "clip", "image-text-retrieval", "projection-heads"),
    title="uCLIP projection heads",
    files=(
        "The two trained projection heads of a uCLIP model (Multilingual CLIP from frozen "
        "English CLIP and a frozen multilingual sentence encoder). The encoders are **not** in "
        "this repository: load them by the names under Weights.",
    ),
    towers="not in this export; load them by these names",
    use=(
        "```python",
        "from safetensors.torch import load_file",
        "state = load_file('model.safetensors')  # keys f_c.* and f_m.*",
        "```",
        "",
        "With uclip, load the original model directory with `uclip.load(dir)`; `f_c.onnx` / "
        "`f_m.onnx` (from `export_onnx`) run the heads without torch.",
    ),
)


def export_hf(model: Any, out_dir: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Write a Hugging Face-style export of the heads to ``out_dir`` and return it.

    Files: ``config.json`` (architecture, head dims, model spec, source config),
    ``model.safetensors`` (``f_c.<param>`` and ``f_m.<param>``, float32), ``README.md``.
    """
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    entry = registry_entry(str(model) if isinstance(model, str | os.PathLike) else None)
    model, payload, source = resolve_model(model)
    with staged(out_dir, overwrite, HF_FILES, source) as staging:
        _write_hf(model, payload, entry, staging, save_file, SafetensorError)
    return Path(out_dir).expanduser()


def _write_hf(
    model: Any,
    payload: dict[str, Any],
    entry: dict[str, Any] | None,
    out: Path,
    save_file: Any,
    save_error: type,
) -> None:
    spec = json.loads(json.dumps(model.spec(), default=str))
    heads = {h: getattr(model.heads, h) for h in HEAD_NAMES}
    dims = {h: head_dims(m) for h, m in heads.items()}
    state = {
        f"{h}.{k}": v.detach().cpu().contiguous()
        for h, m in heads.items()
        for k, v in m.state_dict().items()
    }
    try:
        metadata = {"format": "pt", "uclip": "heads"}
        save_file(state, str(out / "model.safetensors"), metadata=metadata)
    except save_error as exc:  # safetensors reports a full disk as its own error type
        raise OSError(str(exc)) from None
    config = {
        "model_type": "uclip-heads",
        "architectures": ["UCLIPHeads"],
        "export_format_version": EXPORT_FORMAT_VERSION,
        "heads": dims,
        "spec": spec,
        "source_config": payload,
        "model_safetensors_sha256": file_sha256(out / "model.safetensors"),
    }
    (out / "config.json").write_text(
        json.dumps(config, indent=2, ensure_ascii=False, default=str), encoding="utf-8"
    )
    card = model_card(spec, payload, dims, HF_CARD, entry)
    (out / "README.md").write_text(card, encoding="utf-8")
