"""Soft retrieval (uCLIP Eq. 1–2): streamed ``soft_retrieve`` vs the dense one-liner.

    python benchmarks/soft_retrieval.py [--sizes 10000,100000,1000000,2000000] [--queries 256]

rewrites results/benchmarks/soft_retrieval.{json,csv,md}. For each bank size N (× 512, random
unit rows, seeded):

- time: ``soft_retrieve(q, bank, tau, chunk_size)`` and ``soft_retrieve_dense(q, bank, tau)`` =
  ``softmax(q @ bank.T / tau) @ bank`` interleaved in one process (median of repeats after a
  warm-up, paired ratio), and their largest absolute difference;
- memory: each method alone in a fresh subprocess; peak RSS (``ru_maxrss``) and the peak of
  anonymous resident memory above the level reached once bank and queries exist (sampled from
  /proc/self/status every millisecond; torch allocations are invisible to tracemalloc).

The dense baseline runs only where its estimated peak (fp32 bank + 3 (B, N) fp32 matrices) fits
``--dense-max-gb``. Banks above ``--mmap-from`` rows are a memory-mapped float16 ``.npy``
(``MemoryBank.from_npy``), written once under ``--workdir``; their resident file pages count in
RSS but are page cache the kernel can drop, so the anonymous peak is the bounded working memory.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
DIM = 512


def random_unit_rows(n: int, dim: int, seed: int, chunk: int = 65536) -> torch.Tensor:
    """(n, dim) float32 unit rows, filled chunk by chunk so building never doubles the memory."""
    out = torch.empty(n, dim)
    gen = torch.Generator().manual_seed(seed)
    for start in range(0, n, chunk):
        block = out[start : start + chunk]
        block.normal_(generator=gen)
        block.div_(block.norm(dim=1, keepdim=True))
    return out


def write_fp16_bank(path: Path, n: int, dim: int, seed: int) -> Path:
    """A memory-mappable (n, dim) float16 bank of random unit rows (reused if already there)."""
    from uclip.features.cache import write_npy_atomic

    if path.is_file():
        header = np.load(path, mmap_mode="r")
        if header.shape == (n, dim) and header.dtype == np.float16:
            return path
    gen = torch.Generator().manual_seed(seed)

    def blocks() -> Any:
        for start in range(0, n, 65536):
            block = torch.randn(min(65536, n - start), dim, generator=gen)
            yield torch.nn.functional.normalize(block, dim=1).half().numpy()

    return write_npy_atomic(path, (n, dim), np.dtype("float16"), blocks())


class AnonPeak:
    """Samples RssAnon and VmRSS of this process every ``interval`` s in a background thread."""

    def __init__(self, interval: float = 0.001) -> None:
        self.interval = interval
        self.peak_anon = 0
        self.peak_rss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def read() -> tuple[int, int]:
        anon = rss = 0
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                anon = int(line.split()[1]) * 1024
            elif line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
        return anon, rss

    def _run(self) -> None:
        while not self._stop.is_set():
            anon, rss = self.read()
            self.peak_anon, self.peak_rss = max(self.peak_anon, anon), max(self.peak_rss, rss)
            time.sleep(self.interval)

    def __enter__(self) -> AnonPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        anon, rss = self.read()
        self.peak_anon, self.peak_rss = max(self.peak_anon, anon), max(self.peak_rss, rss)


def make_bank(case: dict[str, Any]) -> Any:
    from uclip.features.banks import MemoryBank

    if case["mmap_path"]:
        return MemoryBank.from_npy(case["mmap_path"])
    return random_unit_rows(case["n"], DIM, seed=1)


def child(case: dict[str, Any]) -> dict[str, Any]:
    """Run one case in this (fresh) process; returns a JSON-able dict."""
    from uclip.app.timing import paired_ratio, time_interleaved
    from uclip.method.retrieval import soft_retrieve, soft_retrieve_dense

    torch.set_num_threads(case["threads"])
    bank = make_bank(case)
    queries = random_unit_rows(case["queries"], DIM, seed=2)
    tau, chunk = case["tau"], case["chunk_size"]
    methods = {
        "chunked": lambda r: soft_retrieve(queries, bank, tau, chunk_size=chunk),
        "dense": lambda r: soft_retrieve_dense(queries, bank, tau),
    }
    if case["mode"] == "time":
        run = {m: methods[m] for m in case["methods"]}
        times = time_interleaved(run, repeats=case["repeats"], warmup=1)
        out: dict[str, Any] = {f"{m}_s": float(np.median(t)) for m, t in times.items()}
        if "dense" in times:
            out["dense/chunked time"] = paired_ratio(times["dense"], times["chunked"])
            diff = (methods["chunked"](0) - methods["dense"](0)).abs().max()
            out["max_abs_diff"] = float(diff)
        return out
    gc.collect()
    base_anon, base_rss = AnonPeak.read()
    with AnonPeak() as peak:
        methods[case["mode"]](0)
    return {
        "peak_extra_anon_bytes": peak.peak_anon - base_anon,
        "baseline_anon_bytes": base_anon,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "sampled_peak_rss_bytes": peak.peak_rss,
        "baseline_rss_bytes": base_rss,
    }


def run_child(case: dict[str, Any]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(case)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"case {case} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def gib(x: float | None) -> float | None:
    return None if x is None else round(x / 2**30, 3)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="10000,100000,1000000,2000000")
    p.add_argument("--queries", type=int, default=256, help="query rows B per call")
    p.add_argument("--tau", type=float, default=0.01)
    p.add_argument("--chunk-size", type=int, default=65536)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--dense-max-gb", type=float, default=6.0)
    p.add_argument("--mmap-from", type=int, default=1_500_000, help="banks this large: fp16 mmap")
    p.add_argument("--workdir", default="/tmp/uclip-bench")
    p.add_argument("--out", default=str(REPO / "results" / "benchmarks"))
    p.add_argument("--child", help=argparse.SUPPRESS)
    ns = p.parse_args()
    if ns.child:
        print(json.dumps(child(json.loads(ns.child))))
        return

    from uclip.app.timing import device_description
    from uclip.eval.report import write_table

    rows = []
    for n in [int(s) for s in ns.sizes.split(",")]:
        mmap_path = None
        if n >= ns.mmap_from:
            path = Path(ns.workdir) / f"bank_{n}x{DIM}_fp16.npy"
            mmap_path = str(write_fp16_bank(path, n, DIM, seed=1))
        dense_gb = (n * DIM * 4 + 3 * ns.queries * n * 4) / 2**30
        dense_ok = mmap_path is None and dense_gb <= ns.dense_max_gb
        base = {
            "n": n,
            "queries": ns.queries,
            "tau": ns.tau,
            "chunk_size": ns.chunk_size,
            "threads": ns.threads,
            "repeats": ns.repeats,
            "mmap_path": mmap_path,
        }
        methods = ["chunked", "dense"] if dense_ok else ["chunked"]
        timing = run_child({**base, "mode": "time", "methods": methods})
        mem = {m: run_child({**base, "mode": m}) for m in methods}
        bank_bytes = n * DIM * (2 if mmap_path else 4)
        rows.append(
            {
                "bank N": n,
                "bank": "fp16 memmap .npy" if mmap_path else "fp32 tensor",
                "bank GiB": gib(bank_bytes),
                "queries B": ns.queries,
                "chunked s": round(timing["chunked_s"], 3),
                "dense s": round(timing["dense_s"], 3) if dense_ok else None,
                "dense/chunked time": (
                    round(timing["dense/chunked time"], 3) if dense_ok else None
                ),
                "chunked extra GiB": gib(mem["chunked"]["peak_extra_anon_bytes"]),
                "dense extra GiB": gib(mem["dense"]["peak_extra_anon_bytes"]) if dense_ok else None,
                "chunked peak RSS GiB": gib(mem["chunked"]["peak_rss_bytes"]),
                "dense peak RSS GiB": gib(mem["dense"]["peak_rss_bytes"]) if dense_ok else None,
                "max abs diff": (
                    f"{timing['max_abs_diff']:.1e}" if "max_abs_diff" in timing else None
                ),
                "dense skipped": (
                    None
                    if dense_ok
                    else (
                        "memmap bank"
                        if mmap_path
                        else f"estimated {dense_gb:.1f} GiB > {ns.dense_max_gb} GiB"
                    )
                ),
            }
        )
        print(rows[-1], flush=True)
    meta = {
        **device_description(),
        "torch_threads": ns.threads,
        "weights": "none (random unit vectors, seeded)",
        "data": f"random unit rows, d={DIM}; queries B={ns.queries}; tau={ns.tau}",
        "chunk_size": ns.chunk_size,
        "repeats": ns.repeats,
        "dense_max_gb": ns.dense_max_gb,
        "command": " ".join(sys.argv),
    }
    write_table(
        rows,
        ns.out,
        "soft_retrieval",
        meta=meta,
        title="Soft retrieval (Eq. 1–2): streamed soft_retrieve vs dense softmax(q Bᵀ/τ) B",
        notes=[
            f"{meta['device']}, {ns.threads} torch threads; random unit rows d={DIM}, "
            f"B={ns.queries} queries, τ={ns.tau}, chunk {ns.chunk_size}",
            "time: median of repeats after 1 warm-up, methods interleaved in one process; "
            "dense/chunked = paired ratio (>1: the streamed version is faster)",
            "extra GiB: peak anonymous RSS above the level once bank and queries exist, each "
            "method alone in a fresh process (sampled every 1 ms); peak RSS = ru_maxrss, which "
            "for a memmap bank includes its page-cache pages",
        ],
    )


if __name__ == "__main__":
    main()
