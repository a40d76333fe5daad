"""CLT runs: train from a config, evaluate (FLORES-200 bitext, held-out image retrieval), and
gather before/after tables, and draw the t-SNE figure (:func:`tsne_figure`). Used by
``uclip clt ...`` (the NLI probe is :mod:`uclip.eval.nli`).

Config sections (JSON/YAML, see ``configs/clt-*.json``): ``model`` (:class:`CLTConfig`), ``data``
(:class:`CLTData`), ``method`` (:class:`CLTMethod`), ``train`` (:class:`TrainArgs`), ``eval``
(:class:`CLTEval`). A run directory holds ``config.json``, ``data.json`` (splits, language
shares), ``checkpoints/`` and ``log.jsonl`` (the shared Trainer), ``flores_{before,after}.*``
(their numbers also as eval run records in ``runs/``) and ``summary.json``.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from uclip.app.plotting import pyplot
from uclip.clt.data import (
    ENGLISH,
    MODES,
    PAPER_LANGUAGES,
    CaptionCorpus,
    build_examples,
    image_check,
    language_shares,
    load_coco_mini_corpus,
    load_jsonl_corpus,
    load_multi30k_corpus,
    load_xm3600_corpus,
    split_images,
)
from uclip.clt.model import WEIGHTS_NAME, CLTConfig, CLTModel, build_clt_model
from uclip.clt.objective import CLTMethod, CLTObjective
from uclip.data.flores200 import load_flores
from uclip.errors import UclipError
from uclip.eval.evaluators import BitextEvaluator, EvalResult
from uclip.eval.metrics import retrieval_recall
from uclip.eval.projection import embed_2d
from uclip.eval.report import run_metadata, write_table
from uclip.eval.runs import save_result
from uclip.paths import resolve_data_dir
from uclip.train.args import TrainArgs, check_device, load_config_file
from uclip.train.checkpoint import latest_checkpoint, load_checkpoint
from uclip.train.trainer import Trainer
from uclip.validation import apply_overrides, check_mapping

log = logging.getLogger(__name__)

SECTIONS = {"description", "model", "data", "method", "train", "eval"}
CORPORA = ("coco_mini", "xm3600", "multi30k", "jsonl")
FLORES_LANGS = (
    "spa_Latn", "jpn_Jpan", "hin_Deva", "quy_Latn", "ces_Latn", "fin_Latn", "hrv_Latn", "hun_Latn",
    "ron_Latn",
)  # fmt: skip
CONFIG_FILE, DATA_FILE, SUMMARY_FILE = "config.json", "data.json", "summary.json"


def _from_dict(cls: type, data: dict[str, Any], section: str) -> Any:
    return cls(**check_mapping(data, cls, section))


@dataclass
class CLTData:
    """The ``data`` section. ``eval_images``: images held out (never trained on) to score
    image–text retrieval; chosen among images with English captions only, so the few translated
    images stay in training. ``exclude_ids``: image ids dropped from both sides."""

    corpus: str = "coco_mini"
    mode: str = "multilingual"
    languages: list[str] = field(default_factory=lambda: list(PAPER_LANGUAGES))
    extra_language: str | None = None
    captions_per_image: int = 1
    images_dir: str | None = None
    path: str | None = None
    eval_images: int = 0
    exclude_ids: list[str] = field(default_factory=list)
    max_images: int | None = None
    split_seed: int = 0

    def __post_init__(self) -> None:
        if self.corpus not in CORPORA:
            raise UclipError(
                f"data.corpus must be one of {', '.join(CORPORA)}, got {self.corpus!r}"
            )
        if self.mode not in MODES:
            raise UclipError(f"data.mode must be one of {', '.join(MODES)}, got {self.mode!r}")


@dataclass
class CLTEval:
    """The ``eval`` section: FLORES-200 X->En bitext retrieval before and after training."""

    flores_langs: list[str] = field(default_factory=lambda: list(FLORES_LANGS))
    flores_limit: int | None = None  # first N sentences of devtest (1,012 in all)
    spaces: list[str] = field(default_factory=lambda: ["encoder", "adapter"])
    batch_size: int = 64
    before: bool = True


@dataclass
class CLTRunConfig:
    model: CLTConfig
    data: CLTData
    method: CLTMethod
    train: TrainArgs
    eval: CLTEval
    raw: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "description": self.raw.get("description", ""),
            "model": self.model.to_dict(),
            "data": asdict(self.data),
            "method": self.method.to_dict(),
            "train": self.train.to_dict(),
            "eval": asdict(self.eval),
        }


def parse_clt_config(raw: dict[str, Any]) -> CLTRunConfig:
    unknown = set(raw) - SECTIONS
    if unknown:
        raise UclipError(f"unknown config section(s) {sorted(unknown)}; known: {sorted(SECTIONS)}")
    if "model" not in raw:
        raise UclipError("a CLT config needs a 'model' section with 'text' and 'image' towers")
    return CLTRunConfig(
        model=CLTConfig.from_dict(raw["model"]),
        data=_from_dict(CLTData, raw.get("data", {}), "data"),
        method=CLTMethod.from_dict(raw.get("method", {})),
        train=TrainArgs.from_dict(raw.get("train", {})),
        eval=_from_dict(CLTEval, raw.get("eval", {}), "eval"),
        raw=raw,
    )


# The sections whose keys --set may change, with the dataclass that names the keys.
OVERRIDE_SECTIONS: dict[str, type] = {
    "model": CLTConfig,
    "data": CLTData,
    "method": CLTMethod,
    "train": TrainArgs,
    "eval": CLTEval,
}


def load_clt_config(path: str | Path, overrides: Sequence[str] = ()) -> CLTRunConfig:
    """Read a CLT config with ``section.key=value`` overrides (``--set``, the CLI's --mode)
    applied by the one override parser (an unknown section or key is one line)."""
    return parse_clt_config(apply_overrides(load_config_file(path), overrides, OVERRIDE_SECTIONS))


# ------------------------------------------------------------------------------------ data


def _resolve(data_dir: Path, p: str | None) -> Path | None:
    if p is None:
        return None
    path = Path(p).expanduser()
    return path if path.is_absolute() else data_dir / path


def load_corpus(cfg: CLTData, data_dir: Path) -> CaptionCorpus:
    """The corpus named by ``data.corpus`` (see :mod:`uclip.clt.data`)."""
    images_dir = _resolve(data_dir, cfg.images_dir)
    langs = [lang for lang in [*cfg.languages, cfg.extra_language] if lang and lang != ENGLISH]
    if cfg.corpus == "coco_mini":
        corpus = load_coco_mini_corpus(data_dir)
    elif cfg.corpus == "xm3600":
        corpus = load_xm3600_corpus(data_dir, images_dir, langs)
    elif cfg.corpus == "multi30k":
        corpus = load_multi30k_corpus(data_dir, images_dir, langs or ("de", "fr", "cs"))
    else:
        path = _resolve(data_dir, cfg.path)
        if path is None:
            raise UclipError("data.corpus 'jsonl' needs data.path (your caption file)")
        corpus = load_jsonl_corpus(path, images_dir)
    if cfg.max_images is not None:
        corpus = corpus.subset(range(min(cfg.max_images, len(corpus))))
    return corpus


def prepare_data(
    cfg: CLTData, data_dir: Path
) -> tuple[CaptionCorpus, CaptionCorpus | None, list[Any], dict[str, Any]]:
    """Corpus -> image-disjoint (train, held-out) split -> examples of the data mode."""
    corpus = load_corpus(cfg, data_dir)
    english_only = [i for i, img in enumerate(corpus.images) if set(img.captions) == {ENGLISH}]
    train, held_out = split_images(
        corpus,
        cfg.eval_images,
        cfg.split_seed,
        eval_candidates=english_only,
        exclude_ids=cfg.exclude_ids,
    )
    examples = build_examples(
        train, cfg.mode, cfg.languages, cfg.extra_language, cfg.captions_per_image
    )
    summary = {
        "corpus": corpus.name,
        "mode": cfg.mode,
        "notes": corpus.notes,
        "train_images": len(train),
        "eval_images": 0 if held_out is None else len(held_out),
        "examples": len(examples),
        "language_shares": language_shares(examples),
        "train_images_per_language": train.language_counts(),
        "eval_image_ids": [] if held_out is None else [img.image_id for img in held_out.images],
    }
    return train, held_out, examples, summary


# ------------------------------------------------------------------------------------ evaluation


def flores_bitext(
    model: CLTModel,
    langs: list[str],
    data_dir: Path,
    *,
    limit: int | None = None,
    spaces: Sequence[str] = ("encoder",),
    batch_size: int = 64,
    records: list[EvalResult] | None = None,
    name: str | None = None,
) -> list[dict[str, Any]]:
    """FLORES-200 devtest X->En top-1 bitext retrieval (paper Table 1's measure) for each
    language, in each embedding space, scored by :class:`BitextEvaluator`; English is the target
    and is embedded once. Rows hold fractions; each run record (model ``<name>:<space>``, name
    defaulting to ``model.name``; metrics in percent) is appended to ``records`` when given."""
    if not langs:
        raise UclipError("no FLORES languages given: pass e.g. --langs es,ja,hi,quy")
    english = load_flores(ENGLISH, ENGLISH, data_dir).src[:limit]
    target = model.embed_sentences(english, batch_size=batch_size, spaces=spaces)
    rows = []
    for lang in langs:
        evaluator = BitextEvaluator(load_flores(lang, "eng_Latn", data_dir), limit=limit)
        source = model.embed_sentences(evaluator.src, batch_size=batch_size, spaces=spaces)
        for space in spaces:
            view = model.space(space)  # both spaces come from one pass: embed_sentences
            record = evaluator.compute_from_embeddings(
                source[space],
                target[space],
                model=f"{name}:{space}" if name else view.name,
                weights=view.weights,
                model_info=view.describe(),
            )
            if records is not None:
                records.append(record)
            # the tables keep fractions, exactly as computed (percent / 100 may round off)
            acc = {k: evaluator.fractions[k] for k in ("x2en_acc", "en2x_acc")}
            rows.append({"lang": evaluator.lang, "space": space, "n": len(english), **acc})
    return rows


def held_out_retrieval(
    model: CLTModel, corpus: CaptionCorpus, batch_size: int = 32
) -> dict[str, float]:
    """Image<->English-caption Recall@1/5 on held-out images (all their English captions)."""
    texts, caption_to_image = [], []
    for i, img in enumerate(corpus.images):
        for caption in img.captions[ENGLISH]:
            texts.append(caption)
            caption_to_image.append(i)
    image_emb = model.encode_image([img.image_path for img in corpus.images], batch_size=batch_size)
    text_emb = model.embed_sentences(texts, batch_size=batch_size, spaces=["adapter"])["adapter"]
    return retrieval_recall(image_emb, text_emb, caption_to_image, ks=(1, 5))


# ------------------------------------------------------------------------------------ train


def _weights(model: CLTModel) -> str:
    return f"text={model.text_tower.weights},image={model.image_tower.weights}"


def train_clt(
    run: CLTRunConfig, out: str | Path, data_dir: str | Path | None = None, resume: bool = False
) -> dict[str, Any]:
    """Train CLT as ``run`` says, evaluating FLORES (and held-out retrieval) before and after.

    Writes the run directory described in the module docstring; returns its summary.
    """
    check_device(run.train.device)
    out = Path(out)
    data_root = resolve_data_dir(data_dir)
    config_path = out / CONFIG_FILE
    if resume and config_path.is_file():
        saved = json.loads(config_path.read_text())
        if saved != json.loads(json.dumps(run.to_dict())):  # tuples vs JSON lists
            raise UclipError(
                f"{config_path} differs from this config: "
                "resume with the same config or use a new --out"
            )
    if not resume and latest_checkpoint(out) is not None:
        raise UclipError(
            f"{out} already holds checkpoints: pass --resume to continue, or a new --out"
        )
    t0 = time.perf_counter()
    train, held_out, examples, data_summary = prepare_data(run.data, data_root)
    objective_needs_images = run.data.mode != "eng_pivot" or run.method.pivot_image_weight > 0
    image_check(train, run.data.mode, objective_needs_images)
    model = build_clt_model(run.model)
    objective = CLTObjective(model, examples, train, run.method)
    out.mkdir(parents=True, exist_ok=True)
    config_path.write_text(json.dumps(run.to_dict(), indent=2, ensure_ascii=False))
    (out / DATA_FILE).write_text(json.dumps(data_summary, indent=2, ensure_ascii=False))
    timings: dict[str, float] = {"setup_s": time.perf_counter() - t0}
    label = f"clt-{run.data.mode}"
    meta = {"config": run.to_dict(), "weights": _weights(model), "data": data_summary}
    evaluations: dict[str, Any] = {}

    def evaluate(stage: str) -> None:
        t = time.perf_counter()
        records: list[EvalResult] = []
        rows = flores_bitext(
            model,
            list(run.eval.flores_langs),
            data_root,
            limit=run.eval.flores_limit,
            spaces=list(run.eval.spaces),
            batch_size=run.eval.batch_size,
            records=records,
            name=f"{label}-{stage}",
        )
        for record in records:
            save_result(record, out / "runs")
        rows = [{"model": label, "stage": stage, "weights": _weights(model), **r} for r in rows]
        write_table(rows, out, f"flores_{stage}", meta=meta, title=f"FLORES-200 X->En, {stage}")
        evaluations[f"flores_{stage}"] = rows
        if held_out is not None and run.data.mode != "eng_pivot":
            evaluations[f"retrieval_{stage}"] = held_out_retrieval(model, held_out)
        timings[f"eval_{stage}_s"] = time.perf_counter() - t

    if run.eval.before and not (resume and (out / "flores_before.json").is_file()):
        evaluate("before")
    trainer = Trainer(objective, run.train, out)
    t = time.perf_counter()
    result = trainer.train(resume=resume)
    timings["train_s"] = time.perf_counter() - t
    evaluate("after")
    summary = {
        **run_metadata(),
        "model": label,
        "weights": _weights(model),
        "steps": result.steps,
        "steps_per_epoch": trainer.steps_per_epoch,
        "thaw_step": objective.schedule.thaw_step(trainer.steps_per_epoch),
        "final_loss": result.final_loss,
        "resumed_from": result.resumed_from,
        "temperature": float(model.temperature.detach()),
        "timings": timings,
        "data": data_summary,
        "retrieval": {k: v for k, v in evaluations.items() if k.startswith("retrieval")},
    }
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, ensure_ascii=False))
    return summary


# ------------------------------------------------------------------------------------ loading


CLT_ACCEPTS = (
    "a CLT model: clt:DIR (saved by CLTModel.save), a `uclip clt train` run directory or a CLT "
    "config file"
)


def load_clt_model(spec: str | Path) -> CLTModel:
    """The CLT model a ``uclip clt`` command's ``--model`` names, in eval mode, ``name`` its
    label: a spec of the one grammar (:mod:`uclip.loading`) that holds a CLT model (``clt:DIR``,
    or a saved CLT folder bare or as ``uclip:DIR``), or one of the training outputs these
    commands also read: a run directory (its latest checkpoint) or a config file (the towers
    as built, before any training)."""
    from uclip.loading import SAVED_KINDS, kind_refusal, load, parse_model_spec
    from uclip.method.model import HEADS_NAME

    parsed = parse_model_spec(spec)
    parsed.require(SAVED_KINDS, "uclip clt", CLT_ACCEPTS)
    path = Path(parsed.target).expanduser()
    saved = any((path / name).is_file() for name in (WEIGHTS_NAME, HEADS_NAME))
    if path.is_dir() and not saved:
        if not (path / CONFIG_FILE).is_file():
            raise UclipError(
                f"{path} is not a CLT run directory (no {CONFIG_FILE}) nor a saved model: "
                f"pass {CLT_ACCEPTS}"
            )
        run = parse_clt_config(json.loads((path / CONFIG_FILE).read_text()))
        ckpt = latest_checkpoint(path)
        if ckpt is None:
            raise UclipError(f"{path} has no checkpoint yet: train it first (uclip clt train)")
        model = build_clt_model(run.model)
        model.load_state_dict(load_checkpoint(ckpt).model_state)
        model.name = f"{path.name}@{ckpt.name}"
    elif path.is_file():
        model = build_clt_model(load_clt_config(path).model)
        model.name = f"{path.stem}(untrained)"
    else:
        loaded = load(parsed)
        if not isinstance(loaded, CLTModel):
            refusal = kind_refusal(parsed, "uclip clt", ("clt",), CLT_ACCEPTS)
            raise UclipError(f"{refusal} ({parsed.target} holds a {type(loaded).__name__})")
        model = loaded
        model.name = str(parsed)
    return model.eval()


# ------------------------------------------------------------------------------------ tables


def before_after_rows(run_dirs: list[Path], space: str = "encoder") -> list[dict[str, Any]]:
    """One row per language: accuracy before training and after each run (column = its mode)."""
    table: dict[str, dict[str, Any]] = {}
    before_done = False
    for run_dir in run_dirs:
        for stage in ("before", "after"):
            path = run_dir / f"flores_{stage}.json"
            if not path.is_file():
                if stage == "after":
                    raise UclipError(
                        f"{path} missing: has `uclip clt train` finished for {run_dir}?"
                    )
                continue
            if stage == "before" and before_done:
                continue
            for row in json.loads(path.read_text())["rows"]:
                if row["space"] != space:
                    continue
                column = "before" if stage == "before" else row["model"].removeprefix("clt-")
                entry = table.setdefault(row["lang"], {"lang": row["lang"], "n": row["n"]})
                entry[column] = row["x2en_acc"]
            before_done = before_done or stage == "before"
    rows = list(table.values())
    if rows:
        columns = [k for r in rows for k in r if k not in ("lang", "n")]
        mean = {"lang": "mean", "n": rows[0]["n"]}
        for col in dict.fromkeys(columns):
            values = [r[col] for r in rows if col in r]
            mean[col] = sum(values) / len(values)
        rows.append(mean)
    return rows


def write_before_after(
    run_dirs: list[str | Path], out_dir: str | Path, command: str = ""
) -> dict[str, Path]:
    """``flores_before_after.{json,csv,md}``: X->En accuracy per language, before and after each
    run, in the encoder space and (second table) the 512-d adapter space."""
    dirs = [Path(d) for d in run_dirs]
    summaries = {}
    for d in dirs:
        summary_path = d / SUMMARY_FILE
        if summary_path.is_file():
            s = json.loads(summary_path.read_text())
            summaries[d.name] = {
                k: s.get(k)
                for k in (
                    "model",
                    "weights",
                    "steps",
                    "final_loss",
                    "temperature",
                    "timings",
                    "retrieval",
                )
            } | {
                "data": {
                    k: s["data"].get(k)
                    for k in ("corpus", "mode", "train_images", "examples", "language_shares")
                }
            }
    paths = {}
    for space in ("encoder", "adapter"):
        rows = before_after_rows(dirs, space)
        if not rows:
            continue
        notes = [
            f"run {name}: {json.dumps(info, ensure_ascii=False)}"
            for name, info in summaries.items()
        ]
        if command:
            notes.insert(0, f"regenerate: {command}")
        paths[space] = write_table(
            rows,
            out_dir,
            f"flores_before_after_{space}",
            meta={"runs": summaries, "space": space, "command": command},
            title=f"CLT: FLORES-200 devtest X->En top-1 accuracy ({space} space)",
            notes=notes,
        )["md"]
    return paths


# ------------------------------------------------------------------------------------ figure


def tsne_figure(
    model: CLTModel,
    langs: list[str],
    data_dir: str | Path,
    out_png: str | Path,
    *,
    n_sentences: int = 100,
    space: str = "encoder",
    seed: int = 0,
    title: str = "",
) -> Path:
    """t-SNE of FLORES sentence embeddings coloured by language, translations joined by lines
    (paper Figure 1). Writes a PNG and returns its path."""
    bitexts = [load_flores(lang, "eng_Latn", data_dir) for lang in dict.fromkeys(langs)]
    if len({b.src_lang for b in bitexts}) < 2:
        raise UclipError("t-SNE needs at least two languages, e.g. --langs en,es,ja,hi")
    langs = [b.src_lang for b in bitexts]  # label with FLORES codes: quz is plotted as quy_Latn
    sentences = [b.src[:n_sentences] for b in bitexts]
    n = min(len(s) for s in sentences)
    emb = torch.cat([model.embed_sentences(s[:n], spaces=[space])[space] for s in sentences])
    points = embed_2d(emb, "tsne", seed=seed, metric="euclidean")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 7))
    by_lang = points.reshape(len(langs), n, 2)
    for i in range(n):  # each clique of translations
        for a, b in itertools.combinations(range(len(langs)), 2):
            ax.plot(*zip(by_lang[a, i], by_lang[b, i], strict=True), color="0.8", lw=0.4, zorder=1)
    for k, lang in enumerate(langs):
        ax.scatter(by_lang[k, :, 0], by_lang[k, :, 1], s=10, label=lang, zorder=2)
    ax.legend(markerscale=2)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title or f"FLORES-200, {n} sentences per language ({space} space)")
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return out
