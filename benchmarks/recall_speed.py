"""Retrieval Recall@K at COCO-5k scale: chunked exact ranks vs a dense top-k baseline.

    python benchmarks/recall_speed.py [--images 5000] [--per-image 5] [--threads 1]

rewrites results/benchmarks/recall_speed.{json,csv,md}. Embeddings are random unit rows (d=512,
seeded; captions near their image so recalls are neither 0 nor 1): scoring cost does not depend
on their values.

- ``uclip``: :func:`uclip.eval.metrics.retrieval_recall` (protocol ``all`` and ``first``), exact
  ranks for every K from one comparison pass per chunk of 512 queries;
- ``dense``: CLIP_benchmark's way, the full (I, T) similarity matrix, ``topk(10)`` per query and
  a look-up of the positives (image→text: any of the image's captions).

Times are medians of interleaved repeats after a warm-up, with the paired ratio; peak memory is
the anonymous RSS above the level once the embeddings exist, sampled every millisecond while one
call runs. On random data there are no ties, so both give the same recalls (checked).
"""

from __future__ import annotations

import argparse
import gc
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from soft_retrieval import AnonPeak, gib, random_unit_rows

REPO = Path(__file__).resolve().parents[1]
KS = (1, 5, 10)


def dense_recall(image: torch.Tensor, text: torch.Tensor, c2i: torch.Tensor) -> dict[str, float]:
    """Full similarity matrix + top-k (CLIP_benchmark's ``evaluate`` without its batching)."""
    sim = image @ text.T
    top_t = sim.topk(max(KS), dim=1).indices  # (I, 10) captions per image
    hit_i2t = c2i[top_t] == torch.arange(len(image))[:, None]
    top_i = sim.T.topk(max(KS), dim=1).indices  # (T, 10) images per caption
    hit_t2i = top_i == c2i[:, None]
    out = {f"i2t_R@{k}": float(hit_i2t[:, :k].any(1).double().mean()) for k in KS}
    out.update({f"t2i_R@{k}": float(hit_t2i[:, :k].any(1).double().mean()) for k in KS})
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=5000)
    p.add_argument("--per-image", type=int, default=5, help="captions per image")
    p.add_argument("--noise", type=float, default=12.0, help="caption = image + noise x unit")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--out", default=str(REPO / "results" / "benchmarks"))
    ns = p.parse_args()

    from uclip.app.timing import device_description, paired_ratio, time_interleaved
    from uclip.eval.metrics import retrieval_recall
    from uclip.eval.report import write_table

    torch.set_num_threads(ns.threads)
    image = random_unit_rows(ns.images, 512, seed=0)
    c2i = torch.arange(ns.images).repeat_interleave(ns.per_image)
    noise = random_unit_rows(len(c2i), 512, seed=1)
    text = torch.nn.functional.normalize(image[c2i] + ns.noise * noise, dim=1)
    methods = {
        "uclip all": lambda r: retrieval_recall(image, text, c2i, KS, "all"),
        "uclip first": lambda r: retrieval_recall(image, text, c2i, KS, "first"),
        "dense top-k": lambda r: dense_recall(image, text, c2i),
    }
    times = time_interleaved(methods, repeats=ns.repeats, warmup=1)
    rows: list[dict[str, Any]] = []
    results: dict[str, dict[str, float]] = {}
    for name, fn in methods.items():
        gc.collect()
        base_anon, _ = AnonPeak.read()
        with AnonPeak() as peak:
            result = results[name] = fn(0)
        rows.append(
            {
                "method": name,
                "images": ns.images,
                "captions": len(c2i) if name != "uclip first" else ns.images,
                "median s": round(float(np.median(times[name])), 3),
                "time / uclip all (paired)": round(
                    paired_ratio(times[name], times["uclip all"]), 3
                ),
                "peak extra GiB": gib(peak.peak_anon - base_anon),
                **{k: round(100 * v, 2) for k, v in result.items()},
            }
        )
        print(rows[-1], flush=True)
    reference, dense = results["uclip all"], results["dense top-k"]
    agree = all(abs(reference[k] - dense[k]) < 1e-12 for k in reference)
    meta = {
        **device_description(),
        "data": f"random unit rows d=512, {ns.images} images x {ns.per_image} captions (seeded)",
        "weights": "none (random embeddings: scoring cost does not depend on values)",
        "recalls_agree": agree,
        "repeats": ns.repeats,
        "seconds": times,
        "command": " ".join(["python", *sys.argv]),
    }
    write_table(
        rows,
        ns.out,
        "recall_speed",
        meta=meta,
        title=f"Recall@K at {ns.images:,} images x {len(c2i):,} captions: chunked exact vs dense",
        notes=[
            f"{meta['device']}, {meta['torch_threads']} torch threads; {meta['data']}",
            f"median of {ns.repeats} interleaved repeats after 1 warm-up; paired ratio",
            "peak extra GiB: anonymous RSS above the level once the embeddings exist",
            f"uclip 'all' and dense top-k give identical recalls: {agree}",
            f"command: `{meta['command']}`",
        ],
    )


if __name__ == "__main__":
    main()
