"""Run files: where an :class:`~uclip.eval.evaluators.EvalResult` is saved (one JSON file per
run, named injectively from task, data set, language, model, weights, limit and scorer), how a
finished run is recognised (``--skip-existing``), and how a folder of runs is read back."""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable
from pathlib import Path

from uclip.data.io import dump_json, write_text_atomic
from uclip.encoders.base import EmbeddingModel
from uclip.errors import UclipError
from uclip.eval.evaluators import RESULT_FORMAT, EvalResult, Evaluator


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", text).strip("_") or "run"


def _name_part(text: str) -> str:
    """``text`` itself when it is a safe file-name part; otherwise its slug, ``~`` and 8 hex
    digits of its sha256. A safe part never holds ``~``, so two different texts (``M/run/1``,
    ``M/run_1``) never share a name."""
    if _slug(text) == text and "--" not in text:
        return text
    return f"{_slug(text)}~{hashlib.sha256(text.encode('utf-8')).hexdigest()[:8]}"


def run_file(
    task: str,
    dataset: str,
    lang: str,
    model: str,
    out_dir: str | Path,
    *,
    weights: str = "real",
    limit: int | None = None,
    scorer: str = "cosine",
) -> Path:
    """``out_dir/<task>--<dataset>--<lang>--<model>[--<weights>][--limit<N>][--<scorer>].json``:
    where a run is (or will be) saved, known before running it (resumable drivers check it). A
    model or weights name that is not a safe file name is slugged and followed by a short hash of
    the full name, so distinct runs never share a file."""
    return _run_path(task, dataset, lang, model, out_dir, weights, limit, _name_part, scorer)


def _run_path(
    task: str,
    dataset: str,
    lang: str,
    model: str,
    out_dir: str | Path,
    weights: str,
    limit: int | None,
    name_part: Callable[[str], str],
    scorer: str = "cosine",
) -> Path:
    parts = [task, _slug(dataset), _slug(lang), name_part(model)]
    if weights != "real":
        parts.append(name_part(weights))
    if limit is not None:
        parts.append(f"limit{limit}")
    if scorer != "cosine":
        parts.append(_slug(scorer))
    return Path(out_dir) / ("--".join(parts) + ".json")


def legacy_run(
    task: str,
    dataset: str,
    lang: str,
    model: str,
    out_dir: str | Path,
    *,
    weights: str = "real",
    limit: int | None = None,
) -> Path | None:
    """A run file saved under the old slug-only name that records exactly this run (model,
    weights, limit read from it), else ``None``: resumable drivers count it as done."""
    # The name runs had before run_file added hashes (slug only, not injective).
    path = _run_path(task, dataset, lang, model, out_dir, weights, limit, _slug)
    if path == run_file(task, dataset, lang, model, out_dir, weights=weights, limit=limit):
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    same = isinstance(data, dict) and (data.get("model"), data.get("weights"), data.get("limit"))
    return path if same == (model, weights, limit) else None


def result_path(result: EvalResult, out_dir: str | Path) -> Path:
    """Where :func:`save_result` writes ``result`` (see :func:`run_file`)."""
    return run_file(
        result.task,
        result.dataset,
        result.lang,
        result.model,
        out_dir,
        weights=result.weights,
        limit=result.limit,
        scorer=result.scorer,
    )


def save_result(result: EvalResult, out_dir: str | Path) -> Path:
    """Write ``result`` as one JSON file in ``out_dir`` (atomically: temp file, then rename).

    The same run saved under its old slug-only name is removed once the new file is in place,
    so a report never counts it twice."""
    path = result_path(result, out_dir)
    old = legacy_run(
        result.task,
        result.dataset,
        result.lang,
        result.model,
        out_dir,
        weights=result.weights,
        limit=result.limit,
    )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, dump_json(result.to_dict(), str(path)) + "\n")
        if old is not None:
            old.unlink(missing_ok=True)
    except OSError as exc:
        raise UclipError(f"cannot write {path} ({exc}): pass a writable --out folder") from None
    return path


def finished_run(
    evaluator: Evaluator, model: EmbeddingModel, out_dir: str | Path
) -> tuple[EvalResult, Path] | None:
    """The record of ``evaluator`` on ``model`` already saved in ``out_dir``, if it verifies:
    it loads as a run, names the same task, model, weights, data set, language, protocol and
    limit, and holds the primary metric with every metric finite. ``None`` means: run it.

    CLIP_benchmark's ``--skip_existing``: a finished run is never recomputed. ``weights`` is
    read before encoding, so a uCLIP model whose towers fall back to random init is rerun.
    """
    # (task, data set, language, model, weights, limit, scorer): what names the file and the run
    scorer = evaluator.scorer.name
    key = (
        evaluator.name,
        evaluator.dataset_name,
        evaluator.lang,
        model.name,
        model.weights,
        evaluator.limit,
        scorer,
    )
    path = run_file(*key[:4], out_dir, weights=key[4], limit=key[5], scorer=scorer)
    try:
        result = EvalResult.from_dict(json.loads(path.read_text(encoding="utf-8")), str(path))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, UclipError, AttributeError):
        return None
    found = (
        result.task,
        result.dataset,
        result.lang,
        result.model,
        result.weights,
        result.limit,
        result.scorer,
    )
    if found != key or result.protocol != evaluator.protocol:
        return None
    metrics = result.metrics if isinstance(result.metrics, dict) else {}
    finite = all(isinstance(v, int | float) and math.isfinite(v) for v in metrics.values())
    if evaluator.primary_metric not in metrics or not finite:
        return None
    return result, path


def load_results(runs_dir: str | Path) -> list[EvalResult]:
    """Every eval run JSON under ``runs_dir`` (recursively); other JSON files are skipped."""
    root = Path(runs_dir)
    if not root.is_dir():
        raise UclipError(f"runs folder {root} does not exist: pass the --out folder of uclip eval")
    results = []
    for path in sorted(root.rglob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UclipError(f"cannot read {path} ({exc}): delete it or rerun that eval") from None
        if isinstance(data, dict) and data.get("format") == RESULT_FORMAT:
            results.append(EvalResult.from_dict(data, str(path)))
    if not results:
        raise UclipError(f"no uclip eval runs (*.json) under {root}: run `uclip eval` first")
    return results
