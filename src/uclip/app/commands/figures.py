"""``uclip figures``: analysis figures for a trained model (:mod:`uclip.app.figures`)."""

from __future__ import annotations

import argparse
from typing import Any

from uclip.app.commands.common import add_model_argument, load_saved_model, set_threads, str_list
from uclip.data.languages import TARGET_LANGUAGES


def run(ns: argparse.Namespace) -> int:
    from uclip.app.figures import load_pairs, text_anchor_figures, text_anchor_systems
    from uclip.features.cache import TowerOptions, as_cache
    from uclip.method.model import UCLIPModel
    from uclip.paths import resolve_data_dir

    set_threads(ns.threads)
    model = load_saved_model(ns.model, "figures", ("uclip",), UCLIPModel, "a uCLIP model")
    # with --cache-dir, towers embed through the cache in batches of 64; else in one call
    options = TowerOptions(as_cache(ns.cache_dir), batch_size=64, progress=not ns.no_progress)
    pairs = load_pairs(ns.dataset, ns.langs, ns.pairs, resolve_data_dir(ns.data_dir))
    result = text_anchor_figures(
        text_anchor_systems(model, options, seed=ns.seed),
        pairs,
        ns.out,
        n_heatmap=ns.n_heatmap,
        n_map=ns.n_map,
        method=ns.method,
        seed=ns.seed,
        prefix=ns.prefix,
    )
    for name, path in result["paths"].items():
        print(f"{name}: {path}")
    print("matched-pair z-scores:")
    for system, by_lang in result["stats"]["matched_pair_zscore"].items():
        print(f"  {system}: " + ", ".join(f"{k} {v:.2f}" for k, v in by_lang.items()))
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser(
        "figures",
        help="analysis figures (paper Fig. 2, 4, 5 analogues) for a trained model",
    )
    add_model_argument(p, "uCLIP models only (e.g. uclip train/quickstart's model folder)")
    p.add_argument("--out", default="docs/figures", help="output directory for the PNGs")
    p.add_argument("--langs", type=str_list, default=list(TARGET_LANGUAGES))
    p.add_argument("--dataset", choices=("xm3600", "flickr30k"), default="xm3600")
    p.add_argument("--pairs", type=int, default=1000, help="pairs per language (z-scores)")
    p.add_argument("--n-heatmap", type=int, default=50, help="pairs per heatmap (paper: 50)")
    p.add_argument("--n-map", type=int, default=150, help="points per language in 2-D maps")
    p.add_argument("--method", choices=("umap", "tsne"), default="umap")
    p.add_argument("--cache-dir", help="embedding cache to reuse (e.g. quickstart-out/cache)")
    p.add_argument("--prefix", default="", help="file name prefix")
    p.add_argument("--data-dir")
    p.add_argument("--threads", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)
