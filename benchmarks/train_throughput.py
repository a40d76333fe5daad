"""uCLIP head training throughput from cached embeddings, extrapolated to the paper's scale.

    python benchmarks/train_throughput.py [--n 32768] [--steps 5,25] [--paper-captions 2000000]

rewrites results/benchmarks/train_throughput.{json,csv,md}. Embeddings are random unit vectors
with the paper's dimensions (CLIP ViT-B/32 512-d, paraphrase-multilingual-mpnet 768-d): the
cost of a step does not depend on their values.

- training: the real :class:`~uclip.train.trainer.Trainer` on a :class:`UCLIPObjective`
  (perturbation Eq. 3–4, f_C/f_M, L_text + L_pseudo + λ L_intra, AdamW) at batch 512. Runs of
  ``S1`` and ``S2`` steps are interleaved; steps/s = (S2 - S1) / (paired median time difference),
  which cancels the fixed cost of a run (set-up, the final checkpoint).
- retrieval: :func:`retrieve_pseudo_pairs` (Eq. 1–2, once per run, before training) on
  ``--retrieval-queries`` queries against banks V and M of ``--retrieval-bank`` rows; its cost
  is linear in queries × bank rows, which gives the extrapolation.

Extrapolation: ``paper_captions`` English captions × ``epochs`` epochs at batch 512, banks of
``--paper-bank`` rows each (the paper's bank sizes are in its supplementary material, not in
the text we have). Embedding extraction (one forward pass of each frozen tower per caption and
bank entry) is not included.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
CLIP_DIM, MPNET_DIM, BATCH = 512, 768, 512


def unit_rows(n: int, dim: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, dim, generator=gen), dim=1)


def train_seconds(tensors: list[torch.Tensor], steps: int, work: Path) -> Any:
    """A function timing one fresh training run of ``steps`` steps (for time_interleaved)."""
    from uclip.method.model import UCLIPHeads
    from uclip.method.objective import UCLIPHyperParams, UCLIPObjective
    from uclip.train.args import TrainArgs
    from uclip.train.trainer import Trainer

    def run(r: int) -> None:
        torch.manual_seed(r)
        heads = UCLIPHeads(CLIP_DIM, MPNET_DIM)
        objective = UCLIPObjective(heads, *tensors, UCLIPHyperParams())
        args = TrainArgs(
            batch_size=BATCH,
            max_steps=steps,
            checkpoint_every=10**9,
            log_every=10**9,
            progress=False,
            seed=r,
        )
        Trainer(objective, args, tempfile.mkdtemp(dir=work)).train()

    return run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=32768, help="cached training captions")
    p.add_argument("--steps", default="5,25", help="S1,S2 steps of the two interleaved runs")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--retrieval-queries", type=int, default=4096)
    p.add_argument("--retrieval-bank", type=int, default=65536)
    p.add_argument("--paper-captions", type=int, default=2_000_000)
    p.add_argument("--paper-bank", type=int, default=2_000_000)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--out", default=str(REPO / "results" / "benchmarks"))
    ns = p.parse_args()
    torch.set_num_threads(ns.threads)

    from uclip.app.timing import device_description, time_interleaved
    from uclip.eval.report import write_table
    from uclip.method.objective import UCLIPHyperParams, retrieve_pseudo_pairs

    s1, s2 = (int(s) for s in ns.steps.split(","))
    tensors = [
        unit_rows(ns.n, CLIP_DIM, 0),
        unit_rows(ns.n, MPNET_DIM, 1),
        unit_rows(ns.n, CLIP_DIM, 2),
        unit_rows(ns.n, MPNET_DIM, 3),
    ]
    with tempfile.TemporaryDirectory(prefix="uclip-train-bench-") as tmp:
        work = Path(tmp)
        times = time_interleaved(
            {"short": train_seconds(tensors, s1, work), "long": train_seconds(tensors, s2, work)},
            repeats=ns.repeats,
            warmup=1,
        )
    diff = statistics.median(b - a for a, b in zip(times["short"], times["long"], strict=True))
    steps_per_s = (s2 - s1) / diff

    nq, nb = ns.retrieval_queries, ns.retrieval_bank
    queries = (unit_rows(nq, CLIP_DIM, 4), unit_rows(nq, MPNET_DIM, 5))
    banks = (unit_rows(nb, CLIP_DIM, 6), unit_rows(nb, MPNET_DIM, 7))
    hp = UCLIPHyperParams()
    retrieval = time_interleaved(
        {"retrieve": lambda r: retrieve_pseudo_pairs(*queries, *banks, hp)},
        repeats=ns.repeats,
        warmup=1,
    )["retrieve"]
    retrieval_s = statistics.median(retrieval)
    pairs_per_s = nq * nb / retrieval_s  # per bank pair (V and M both searched)
    # logits q·b and the weighted sum of rows: 2 multiply-adds per dimension per pair
    flop_per_pair = 2 * 2 * (CLIP_DIM + MPNET_DIM) / 2  # mean over the two banks
    paper_retrieval_flop = 2 * ns.paper_captions * ns.paper_bank * flop_per_pair

    steps_per_epoch = math.ceil(ns.paper_captions / BATCH)
    paper_steps = steps_per_epoch * ns.epochs
    train_min = paper_steps / steps_per_s / 60
    retrieval_min = ns.paper_captions * ns.paper_bank / pairs_per_s / 60
    rows = [
        {
            "stage": f"training step, batch {BATCH} (perturb, f_C/f_M, 3 losses, AdamW)",
            "measured": f"{steps_per_s:.2f} steps/s ({1e3 / steps_per_s:.1f} ms/step)",
            "paper scale": f"{paper_steps} steps ({ns.paper_captions:,} captions x {ns.epochs} ep)",
            "paper-scale minutes": round(train_min, 1),
        },
        {
            "stage": "soft retrieval Eq. 1–2, once: queries x (rows of V + rows of M)",
            "measured": f"{pairs_per_s / 1e6:.1f} M query-row pairs/s per bank, "
            f"{pairs_per_s * flop_per_pair / 1e9:.0f} GFLOP/s ({nq} x {nb} in {retrieval_s:.2f} s)",
            "paper scale": f"{ns.paper_captions:,} x ({ns.paper_bank:,} + {ns.paper_bank:,})",
            "paper-scale minutes": round(retrieval_min, 1),
            "paper-scale PFLOP": round(paper_retrieval_flop / 1e15, 1),
        },
        {
            "stage": "total (embedding extraction not included)",
            "measured": "",
            "paper scale": "",
            "paper-scale minutes": round(train_min + retrieval_min, 1),
        },
    ]
    for row in rows:
        print(row, flush=True)
    meta = {
        **device_description(),
        "weights": "f_C/f_M random-init, trained; embeddings are random unit vectors",
        "data": f"{ns.n} random cached caption embeddings (512-d CLIP, 768-d mpnet)",
        "steps_per_s": steps_per_s,
        "seconds_short_runs": times["short"],
        "seconds_long_runs": times["long"],
        "retrieval_seconds": retrieval,
        "query_row_pairs_per_s": pairs_per_s,
        "steps": [s1, s2],
        "repeats": ns.repeats,
        "paper_scale": {
            "captions": ns.paper_captions,
            "epochs": ns.epochs,
            "bank_rows_each": ns.paper_bank,
            "bank_rows_note": "assumed; the paper gives bank sizes only in its supplement",
        },
        "command": " ".join(sys.argv),
    }
    write_table(
        rows,
        ns.out,
        "train_throughput",
        meta=meta,
        title="uCLIP training throughput from cached embeddings, extrapolated to the paper's scale",
        notes=[
            f"{meta['device']}, {meta['torch_threads']} torch threads; {meta['data']}",
            f"steps/s from interleaved runs of {s1} and {s2} steps ({ns.repeats} repeats, paired "
            "median difference); retrieval median of repeats after 1 warm-up",
            f"paper scale: {ns.paper_captions:,} captions, {ns.epochs} epochs, batch {BATCH}; "
            f"banks V and M of {ns.paper_bank:,} rows each (assumed); PFLOP = 4 d flops per "
            "query-row pair (logit + weighted sum), d = 512 for V and 768 for M",
        ],
    )


if __name__ == "__main__":
    main()
