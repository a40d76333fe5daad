"""Load test of the search server: latency percentiles and errors under concurrent requests.

Starts the server in a child process on 127.0.0.1 (a free port; loopback only), with the limits
``uclip serve`` uses (header timeout, connection limit), then for each number of concurrent
clients in ``--clients`` (default 1, 10 and 200) fires a bounded number of requests (default 500:
80% ``/search`` with multilingual queries, 20% ``/images/{id}``), and writes req/s, p50/p90/p99
latency and error counts per level as JSON. 503s above the server's connection limit count as
errors.

Without ``--index``/``--model`` it serves a synthetic folder indexed by a *hash model* (no neural
encoder: text and images map to pseudo-random unit vectors), so the numbers measure HTTP, JSON,
search and file serving only; with a real index and model, query encoding is included.

    python benchmarks/load_test.py results/load_test.json
    python benchmarks/load_test.py results/load_real.json --index runs/idx --images runs/images \
        --model runs/model
    python benchmarks/load_test.py /tmp/smoke.json --clients 1,10 --requests 100 --time-limit 5
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

HOST = "127.0.0.1"
QUERIES = [
    "a dog on the beach",
    "un perro en la playa",
    "un chien sur la plage",
    "ein Hund am Strand",
    "海辺の犬",
    "كلب على الشاطئ",
    "собака на пляже",
    "강아지가 해변에",
    "红色的汽车",
    "a red car in the city",
    "बच्चे फुटबॉल खेल रहे हैं",
    "παιδιά παίζουν ποδόσφαιρο",
]


class HashModel:
    """Stand-in model: deterministic pseudo-random unit vectors (no encoder cost)."""

    dim = 512
    name, weights = "benchmark-hash-model", "none"

    def _vec(self, key: bytes) -> np.ndarray:
        rng = np.random.default_rng(int.from_bytes(hashlib.sha256(key).digest()[:8], "little"))
        v = rng.standard_normal(self.dim).astype(np.float32)
        return v / np.linalg.norm(v)

    def encode_text(self, texts: list[str], lang: str | None = None) -> np.ndarray:
        return np.stack([self._vec(t.encode()) for t in texts])

    def encode_english(self, texts: list[str]) -> np.ndarray:
        return self.encode_text(texts)

    def encode_image(self, images: list[Any]) -> np.ndarray:
        return np.stack([self._vec(np.asarray(img).tobytes()) for img in images])

    def describe(self) -> dict[str, Any]:
        config = {"method": "benchmark-hash-model", "dim": self.dim, "weights": "none"}
        return {"kind": "benchmark", "config": config}


def _synthetic_folder(root: Path, n: int) -> Path:
    from PIL import Image

    images = root / "images"
    images.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        pixels = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(images / f"img_{i:05d}.jpg", quality=85)
    return images


def serve_child(args: argparse.Namespace) -> None:
    """Child process: load or build the index, serve it on loopback, print the URL, wait."""
    from uclip.serve.app import BackgroundServer, create_app
    from uclip.serve.index.build import build_index
    from uclip.serve.index.query import SearchIndex

    if args.index:
        from uclip import load

        model: Any = load(args.model)
        index = SearchIndex.load(args.index, model, images_root=args.images)
    else:
        model = HashModel()
        work = Path(args.workdir)
        images = _synthetic_folder(work, args.synthetic_images)
        index = build_index(model, images, work / "index", progress=False)
    server = BackgroundServer(create_app(index, model), host=HOST).start()
    info = {
        "url": server.url,
        "images": len(index),
        "mode": index.mode,
        "backend": index.backend,
        "dim": index.dim,
    }
    print("READY " + json.dumps(info), flush=True)
    sys.stdin.read()  # the parent closes stdin to stop us
    server.stop()


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"count": 0, "p50": None, "p90": None, "p99": None, "max": None, "mean": None}
    arr = np.asarray(values) * 1000.0
    return {
        "count": len(values),
        "p50": round(float(np.percentile(arr, 50)), 3),
        "p90": round(float(np.percentile(arr, 90)), 3),
        "p99": round(float(np.percentile(arr, 99)), 3),
        "max": round(float(arr.max()), 3),
        "mean": round(float(arr.mean()), 3),
    }


async def fire(
    url: str, n_images: int, args: argparse.Namespace, concurrency: int
) -> dict[str, Any]:
    import httpx

    rng = random.Random(args.seed)
    plan = []
    for i in range(args.requests):
        if rng.random() < 0.8:
            plan.append(
                (
                    "search",
                    "/search",
                    {"q": QUERIES[i % len(QUERIES)], "k": rng.choice([10, 24, 50])},
                )
            )
        else:
            plan.append(("image", f"/images/{rng.randrange(n_images)}", None))
    latencies: dict[str, list[float]] = {"search": [], "image": []}
    errors: Counter[str] = Counter()
    next_item = iter(plan)
    limits = httpx.Limits(max_connections=concurrency)

    async with httpx.AsyncClient(
        base_url=url, timeout=args.request_timeout, limits=limits
    ) as client:
        (await client.get("/health")).raise_for_status()

        async def worker() -> None:
            for kind, path, params in next_item:
                start = time.perf_counter()
                try:
                    response = await client.get(path, params=params)
                    await response.aread()
                except httpx.HTTPError as exc:
                    errors[type(exc).__name__] += 1
                    continue
                elapsed = time.perf_counter() - start
                if response.status_code >= 400:
                    errors[f"HTTP {response.status_code}"] += 1
                else:
                    latencies[kind].append(elapsed)

        start = time.perf_counter()
        tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
        _, pending = await asyncio.wait(tasks, timeout=args.time_limit)
        for task in pending:
            task.cancel()
        wall = time.perf_counter() - start

    completed = sum(len(v) for v in latencies.values()) + sum(errors.values())
    if pending:
        errors["not finished within --time-limit"] += args.requests - completed
    return {
        "clients": concurrency,
        "completed": completed,
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
        "wall_s": round(wall, 3),
        "throughput_rps": round(completed / wall, 1) if wall > 0 else None,
        "latency_ms": {
            "all": _percentiles(latencies["search"] + latencies["image"]),
            "search": _percentiles(latencies["search"]),
            "image": _percentiles(latencies["image"]),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="JSON file to write (e.g. results/load_test.json)")
    parser.add_argument("--index", help="existing index directory (needs --model)")
    parser.add_argument("--model", help="model directory the index was built with")
    parser.add_argument("--images", help="image folder the index was built from (with --index)")
    parser.add_argument("--requests", type=int, default=500, help="requests per client level")
    parser.add_argument(
        "--clients", default="1,10,200", help="comma-separated concurrent client counts"
    )
    parser.add_argument(
        "--time-limit", type=float, default=120.0, help="seconds for each level's requests"
    )
    parser.add_argument("--request-timeout", type=float, default=10.0)
    parser.add_argument("--synthetic-images", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--serve-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if bool(args.index) != bool(args.model):
        parser.error("--index and --model go together")
    try:
        args.clients = [int(c) for c in args.clients.split(",")]
    except ValueError:
        parser.error("--clients takes comma-separated integers, e.g. 1,10,200")
    if not (1 <= args.requests <= 100_000 and all(1 <= c <= 1000 for c in args.clients)):
        parser.error("--requests must be in 1..100000 and each --clients count in 1..1000")
    if args.serve_child:
        serve_child(args)
        return

    with tempfile.TemporaryDirectory(prefix="uclip-load-") as work:
        cmd = [
            sys.executable,
            __file__,
            str(args.out),
            "--serve-child",
            "--workdir",
            work,
            "--synthetic-images",
            str(args.synthetic_images),
        ]
        if args.index:
            cmd += ["--index", args.index, "--model", args.model]
            if args.images:
                cmd += ["--images", args.images]
        child = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            line = child.stdout.readline() if child.stdout else ""
            if not line.startswith("READY "):
                raise SystemExit(f"server failed to start (exit code {child.wait()})")
            info = json.loads(line[len("READY ") :])
            levels = [
                asyncio.run(fire(info["url"], info["images"], args, clients))
                for clients in args.clients
            ]
        finally:
            if child.stdin:
                child.stdin.close()
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()

    import fastapi
    import httpx
    import uvicorn

    report = {
        "benchmark": "serve_load_test",
        "host": HOST,
        "requests_per_level": args.requests,
        "mix": {"search": 0.8, "image": 0.2},
        "model": "hash model (no encoder cost)" if not args.index else args.model,
        "index": {k: info[k] for k in ("images", "mode", "backend", "dim")},
        "levels": levels,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "versions": {
            "fastapi": fastapi.__version__,
            "uvicorn": uvicorn.__version__,
            "httpx": httpx.__version__,
        },
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    for level in levels:
        all_ms = level["latency_ms"]["all"]
        print(
            f"{level['clients']:>4} clients: {level['throughput_rps']} req/s, p50 {all_ms['p50']} "
            f"ms, p99 {all_ms['p99']} ms, {level['errors']} errors of {level['completed']}"
        )


if __name__ == "__main__":
    main()
