"""``uclip eval <task>``: run evaluators, write one JSON per run.

``uclip eval`` loads every requested data set first (so a wrong language code, a missing image
folder or an empty file fails in a second, before any model is built), then builds each model
once and runs it on every language, writing ``<out>/<task>--<dataset>--<lang>--<model>.json``
(with ``--skip-existing``, a run whose file already verifies is kept, not recomputed).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from uclip.app.commands.common import add_model_argument, add_scorer_arguments, scorer_reference
from uclip.data.languages import TARGET_LANGUAGES
from uclip.errors import UclipError
from uclip.eval.evaluators import Evaluator
from uclip.features.scoring import COSINE, ReferenceQueries, ScorerSpec, parse_scorer

TASKS = ("retrieval", "zeroshot", "crosslingual", "bitext")


DATASETS: dict[str, tuple[str, ...]] = {
    "retrieval": ("coco5k", "flickr30k", "xm3600"),
    "crosslingual": ("xm3600", "coco5k", "flickr30k"),
    "zeroshot": ("cifar10", "stl10"),
    "bitext": ("flores200",),
}


SCORED_TASKS = ("crosslingual", "bitext")


TASK_HELP = {
    "retrieval": "image<->text Recall@1/5/10 (uCLIP Table 1); needs --images",
    "zeroshot": "zero-shot classification with translated prompts: accuracy, macro-F1 (Table 2)",
    "crosslingual": "captions in X -> English captions of the same images, R@1/5/10",
    "bitext": "FLORES-200 X<->English nearest-neighbour accuracy (CLT Table 1)",
}


def _parse_langs(text: str) -> list[str]:
    langs = [lang.strip() for lang in text.split(",") if lang.strip()]
    if not langs:
        raise UclipError(f"--langs {text!r} names no language: pass e.g. --langs cs,fi or all")
    return list(dict.fromkeys(langs))


def _all_langs(task: str, dataset: str, data_dir: str | None) -> list[str]:
    """Every language ``--langs all`` stands for."""
    from uclip.data.flores200 import available_flores_codes
    from uclip.data.xm3600 import available_xm3600_languages
    from uclip.paths import resolve_data_dir

    if dataset == "xm3600":
        langs = available_xm3600_languages(resolve_data_dir(data_dir))
    elif dataset == "flores200":
        langs = available_flores_codes(resolve_data_dir(data_dir))
    else:
        langs = ["en", *TARGET_LANGUAGES]
    drop = {"en", "eng_Latn"} if task in ("crosslingual", "bitext") else set()
    return [lang for lang in langs if lang not in drop]


def make_evaluators(
    task: str,
    dataset: str,
    langs: list[str],
    *,
    data_dir: str | None = None,
    images: str | None = None,
    limit: int | None = None,
    protocol: str = "all",
    target: str = "eng_Latn",
    scorer: ScorerSpec | str = COSINE,
    reference: ReferenceQueries | None = None,
) -> list[Evaluator]:
    """One evaluator per language; loads (and so validates) every data set now.

    ``scorer`` (with its ``reference`` query set) ranks candidates for the crosslingual and
    bitext tasks (:mod:`uclip.features.scoring`); other tasks take cosine only.

    ``data_dir`` is resolved here (``--data-dir`` > ``UCLIP_DATA`` > ``../shared/data``), and
    only when the data set needs it: English zero-shot prompts on a given image folder need none.
    """
    from uclip.data.classification import load_cifar10, load_classification_prompts, load_stl10
    from uclip.data.coco import load_coco5k
    from uclip.data.flickr30k import load_flickr30k
    from uclip.data.flores200 import load_flores
    from uclip.data.xm3600 import load_xm3600
    from uclip.eval import evaluators as ev
    from uclip.paths import resolve_data_dir

    if dataset not in DATASETS[task]:
        raise UclipError(
            f"{task} does not run on {dataset!r}: use --dataset {' or '.join(DATASETS[task])}"
        )
    ev.check_limit(limit)
    scorer = parse_scorer(scorer)
    if scorer != COSINE and task not in SCORED_TASKS:
        raise UclipError(
            f"--scorer {scorer.name} applies to {' and '.join(SCORED_TASKS)}; {task} ranks by "
            "cosine: drop --scorer"
        )
    scoring = {"scorer": scorer, "reference": reference}
    if langs == ["all"]:
        langs = _all_langs(task, dataset, data_dir)
    english_zeroshot = task == "zeroshot" and images is not None and set(langs) <= {"en"}
    root = None if english_zeroshot else resolve_data_dir(data_dir)
    loaders = {"xm3600": load_xm3600, "coco5k": load_coco5k, "flickr30k": load_flickr30k}
    out: list[Evaluator] = []
    if task == "zeroshot":
        data = load_cifar10(root, images) if dataset == "cifar10" else load_stl10(images)
        for lang in langs:
            prompts = load_classification_prompts(dataset, lang, root)
            out.append(ev.ZeroShotClassificationEvaluator(data, prompts, limit_per_class=limit))
    elif task == "bitext":
        for lang in langs:
            bitext = load_flores(lang, target, root)
            out.append(ev.BitextEvaluator(bitext, limit=limit, **scoring))
    elif task == "retrieval":
        if images is None:
            raise UclipError(
                f"retrieval on {dataset} needs the image files: pass --images DIR "
                "(they are not shipped; see MANIFEST.md)"
            )
        for lang in langs:
            data = loaders[dataset](lang, root, images)
            out.append(ev.CrossModalRetrievalEvaluator(data, protocol=protocol, limit=limit))
    else:
        for lang in langs:
            data = loaders[dataset](lang, root)
            out.append(ev.CrossLingualTextRetrievalEvaluator(data, limit=limit, **scoring))
    return out


def _summary_line(result: Any, path: Path) -> str:
    metrics = " ".join(f"{k}={v:.2f}" for k, v in result.metrics.items())
    return (
        f"{result.task} {result.dataset} {result.lang} {result.model} [{result.weights}]"
        f"{'' if result.scorer == 'cosine' else ' scorer ' + result.scorer}: "
        f"{metrics} -> {path}"
    )


def run(ns: argparse.Namespace) -> int:
    from uclip.data.io import default_cache_dir
    from uclip.eval.models import load_embedding_model
    from uclip.eval.report import markdown_table
    from uclip.eval.runs import finished_run, save_result

    if ns.images is not None and not Path(ns.images).expanduser().is_dir():
        raise UclipError(f"--images {ns.images} is not a folder: pass the folder of the images")
    evaluators = make_evaluators(
        ns.task,
        ns.dataset or DATASETS[ns.task][0],
        _parse_langs(ns.langs),
        data_dir=ns.data_dir,
        images=ns.images,
        limit=ns.limit,
        protocol=ns.protocol,
        target=ns.target,
        scorer=ns.scorer,
        reference=scorer_reference(ns),
    )
    cache = None if ns.no_cache else (ns.cache_dir or default_cache_dir() / "embeddings")
    rows = []
    for spec in ns.model:
        model = load_embedding_model(
            spec,
            ns.random_init,
            cache=cache,
            device=ns.device,
            progress=not ns.no_progress,
        )
        for evaluator in evaluators:
            done = finished_run(evaluator, model, ns.out) if ns.skip_existing else None
            if done is not None:
                result, path = done
                print(f"skipped, already run: {_summary_line(result, path)}", flush=True)
            else:
                result = evaluator.run(model)
                path = save_result(result, ns.out)
                print(_summary_line(result, path), flush=True)
            rows.append(result.row())
    print()
    print(markdown_table(rows))
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate models: retrieval | zeroshot | crosslingual | bitext",
        description="Evaluate one or more models; one JSON per (model, language) in --out.",
    )
    p.add_argument("task", choices=TASKS, help="; ".join(f"{t}: {h}" for t, h in TASK_HELP.items()))
    add_model_argument(p, "repeat for several models", action="append")
    p.add_argument(
        "--dataset",
        help="retrieval/crosslingual: coco5k, flickr30k, xm3600; zeroshot: cifar10, stl10; "
        "bitext: flores200 (default: the first)",
    )
    p.add_argument(
        "--langs",
        default=",".join(TARGET_LANGUAGES),
        help=f"comma-separated codes, or 'all' (default: uCLIP's {','.join(TARGET_LANGUAGES)})",
    )
    p.add_argument("--out", default="runs", help="folder for the run JSON files (default: runs)")
    p.add_argument("--data-dir", help="data folder (default: UCLIP_DATA or ../shared/data)")
    p.add_argument("--images", help="image folder of the data set (retrieval; STL-10; CIFAR-10)")
    p.add_argument(
        "--random-init",
        action="store_true",
        help="build towers whose real weights are not available offline with random weights "
        "(pipeline checks only; each run's 'weights' records it)",
    )
    p.add_argument("--cache-dir", help="embedding cache (default: ~/.cache/uclip/embeddings)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the cache")
    p.add_argument(
        "--limit",
        type=int,
        help="evaluate only the first N images / sentences (zeroshot: N images per class)",
    )
    p.add_argument(
        "--protocol",
        choices=("all", "first"),
        default="all",
        help="retrieval: all captions, or each image's first (uCLIP's setting)",
    )
    p.add_argument("--target", default="eng_Latn", help="bitext target language (default English)")
    add_scorer_arguments(
        p,
        "crosslingual/bitext ranking: cosine (default, the standard protocol), csls[:k=10], "
        "qbnorm[:beta=20] (both need --scorer-reference), or csls-transductive[:k=10] "
        "(hubness over the test queries: offline bitext mining only); see docs/evaluation.md",
    )
    p.add_argument("--device", default="cpu", help="torch device for torch towers")
    p.add_argument(
        "--skip-existing",
        action="store_true",
        help="skip runs whose record is already in --out and verifies (same task, model, "
        "weights, data set, language, protocol and limit; finite metrics); rerun the others",
    )
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)
