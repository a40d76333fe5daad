"""``uclip quickstart``: train uCLIP heads offline on real encoders and evaluate them."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def run(ns: argparse.Namespace) -> int:
    from uclip.app.quickstart import QuickstartArgs, run_quickstart
    from uclip.eval.report import markdown_table

    args = QuickstartArgs(
        out=Path(ns.out),
        data_dir=Path(ns.data_dir) if ns.data_dir else None,
        progress=not ns.no_progress,
        seed=ns.seed,
    )
    if ns.langs is not None:  # an empty --langs is an error (checked), not the defaults
        args.langs = tuple(lang.strip() for lang in ns.langs.split(","))
    overrides: list[str] = []
    if ns.full:
        # the reference recipe as configured (no quickstart shrinking), full evaluation sets
        overrides += [
            "data.n_train=12000",
            "data.n_bank_v=4000",
            "data.n_bank_m=4000",
            "data.n_general=20000",
            "data.n_news=10000",
            "data.dev_multi30k_per_lang=null",
            "data.dev_tatoeba_per_lang=200",
            "data.dev_news_per_lang=300",
        ]
        args.xm3600_pairs, args.flores_pairs = 3600, 1012
        if ns.langs is None:
            from uclip.data.languages import ENGLISH_CODES, XM3600_LANGUAGES

            args.langs = tuple(lang for lang in XM3600_LANGUAGES if lang not in ENGLISH_CODES)
    for key in ("xm3600_pairs", "flores_pairs"):
        value = getattr(ns, key)
        if value is not None:
            setattr(args, key, value)
    for key, target in QUICKSTART_SHORTCUTS.items():
        value = getattr(ns, key)
        if value is not None:
            overrides.append(f"{target}={value}")
    args.overrides = (*overrides, *(ns.set or ()))
    results = run_quickstart(args)
    print()
    print(markdown_table(results["summary"]))
    print(f"per-language results: {Path(ns.out) / 'results.md'} (json, csv beside it)")
    print(f"model: {Path(ns.out) / 'model'}   weights: {results['weights']}")
    t = results["timings"]
    print(
        f"wall time: {t['total_s']:.0f} s (embedding training and dev text "
        f"{t['embed_s']:.0f} s, training and dev selection {t['train_s']:.0f} s, "
        f"evaluation {t['evaluate_s']:.0f} s)"
    )
    training = results["training"]
    print(
        f"heads: best dev step {training['best_step']} of {training['steps']}; ridge lambda "
        f"{training['ridge_lambda']}; dev curve: {Path(ns.out) / 'train' / 'dev_curve.png'}"
    )
    for name, work in results["embedding_throughput"].items():
        print(f"  {name}: embedded {work['sentences']} sentences at {work['per_s']:.0f}/s")
    return 0


# quickstart flags that are shortcuts for config overrides
QUICKSTART_SHORTCUTS = {
    "n_train": "data.n_train",
    "n_bank_v": "data.n_bank_v",
    "n_bank_m": "data.n_bank_m",
    "n_general": "data.n_general",
    "n_news": "data.n_news",
    "max_steps": "train.max_steps",
}


def register(sub: Any) -> None:
    p = sub.add_parser(
        "quickstart",
        help="train uCLIP heads offline on real encoders (text-anchor setting) and evaluate",
    )
    p.add_argument(
        "--out", default="quickstart-out", help="output directory (model, results, cache)"
    )
    p.add_argument(
        "--data-dir", help="data directory (default: UCLIP_DATA, ../shared/data, bundled subset)"
    )
    p.add_argument("--langs", help="comma-separated XM3600 language codes (default: 10 languages)")
    p.add_argument(
        "--full",
        action="store_true",
        help="the reference recipe unshrunk (banks 4k, 20k general + 10k news sentences, full dev "
        "sets), "
        "all 35 non-English XM3600 languages and full eval sets",
    )
    for key in ("xm3600_pairs", "flores_pairs", *QUICKSTART_SHORTCUTS):
        p.add_argument(f"--{key.replace('_', '-')}", type=int, dest=key)
    p.add_argument(
        "--set",
        action="append",
        metavar="SECTION.KEY=VALUE",
        help="override the config (configs/uclip-text-anchor-news.json), e.g. --set train.lr=3e-4",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)
