"""Paired significance of "system A beats system B" on the test sets (issue 22).

    python scripts/significance.py --set table --out results/crosslingual \\
        --cache-dir cache/eval
    python scripts/significance.py --set languages --out results/languages \\
        --cache-dir cache/eval

For every language of each data set it embeds both systems' queries and candidates (from the
embedding cache when ``uclip eval`` filled it) and takes each query's top-1 outcome, then reports
per data set: both systems' means over languages, a per-language one-sided sign test, and a
paired bootstrap over items of the mean difference (95% interval). ``--set table`` is the 35 + 35
table (FLORES-200 devtest X -> English top-1 on the 35 XM3600 languages' counterparts, XM3600
X -> English R@1 with the table's protocol); ``--set languages`` is the 200-language report
(FLORES-200 top-1 and Flickr30k-200 R@1). Writes JSON, CSV and a Markdown table.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tqdm import tqdm

from uclip.app.commands.eval import make_evaluators
from uclip.app.languages import evaluators_for, report_languages
from uclip.data.languages import XM3600_FLORES_CODES
from uclip.eval.models import load_embedding_model
from uclip.eval.report import write_table
from uclip.eval.stats import paired_bootstrap, sign_test
from uclip.paths import resolve_data_dir


def evaluator_sets(which: str, data_dir: Path, langs: list[str] | None) -> dict[str, list[Any]]:
    """``{data set label: [one evaluator per language]}`` of a named test set."""
    if which == "table":
        return {
            "FLORES-200 X->En top-1 (35 languages)": make_evaluators(
                "bitext", "flores200", langs or list(XM3600_FLORES_CODES), data_dir=str(data_dir)
            ),
            "XM3600 X->En R@1 (35 languages)": make_evaluators(
                "crosslingual", "xm3600", langs or ["all"], data_dir=str(data_dir)
            ),
        }
    codes = langs or report_languages(data_dir)
    pairs = [evaluators_for(code, data_dir) for code in codes]
    return {
        "FLORES-200 X->En top-1": [p[0] for p in pairs],
        "Flickr30k-200 X->En R@1": [p[1] for p in pairs],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--a", default="uclip:uclip-text-anchor", help="model spec of system A")
    p.add_argument("--b", default="uclip:uclip-text-anchor-ridge", help="model spec of system B")
    p.add_argument("--set", choices=("table", "languages"), default="table")
    p.add_argument("--langs", help="comma-separated codes (default: the set's languages)")
    p.add_argument("--out", type=Path, required=True, help="folder for STEM.{json,csv,md}")
    p.add_argument("--stem", default="significance")
    p.add_argument("--data-dir")
    p.add_argument("--cache-dir", type=Path)
    p.add_argument("--n-boot", type=int, default=2000)
    args = p.parse_args()
    data_dir = resolve_data_dir(args.data_dir)
    langs = args.langs.split(",") if args.langs else None
    models = {s: load_embedding_model(s, cache=args.cache_dir) for s in (args.a, args.b)}
    rows, per_lang = [], []
    for label, evaluators in evaluator_sets(args.set, data_dir, langs).items():
        hits: dict[str, list[Any]] = {args.a: [], args.b: []}
        for ev in tqdm(evaluators, desc=label, unit="lang"):
            for spec, model in models.items():
                hits[spec].append((ev.item_ranks(model) == 0).double().numpy())
        means = {s: [float(h.mean() * 100) for h in hits[s]] for s in hits}
        per_lang += [
            {"data": label, "lang": ev.lang, "a": round(a, 2), "b": round(b, 2)}
            for ev, a, b in zip(evaluators, means[args.a], means[args.b], strict=True)
        ]
        sign = sign_test(means[args.a], means[args.b])
        boot = paired_bootstrap(hits[args.a], hits[args.b], n_boot=args.n_boot)
        rows.append(
            {
                "data": label,
                "languages": len(evaluators),
                "A mean": round(sum(means[args.a]) / len(evaluators), 2),
                "B mean": round(sum(means[args.b]) / len(evaluators), 2),
                "A - B": round(boot["diff"] * 100, 2),
                "95% CI (items)": f"[{boot['ci_low'] * 100:.2f}, {boot['ci_high'] * 100:.2f}]",
                "A won-lost-tied": f"{sign['wins']}-{sign['losses']}-{sign['ties']}",
                "sign p (A better)": f"{sign['p_a']:.2g}",
                "sign p (B better)": f"{sign['p_b']:.2g}",
            }
        )
    notes = [
        f"A = {args.a}; B = {args.b}; weights: real; scorer: cosine (the standard protocol)",
        "means are over languages of each language's top-1 / R@1 (%); A - B and its 95% CI: "
        f"paired bootstrap over items ({args.n_boot} replicates, items resampled within each "
        "language, the same indices for both systems); sign test: one-sided exact binomial "
        "over languages, ties dropped",
    ]
    meta = {"set": args.set, "a": args.a, "b": args.b, "per_language": per_lang}
    paths = write_table(rows, args.out, args.stem, notes=notes, meta=meta)
    print(paths["md"].read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
