"""``uclip clt ...``: train and evaluate CLT (contrastive image–caption tuning, arXiv 2505.13628).

    uclip clt train CONFIG --out DIR [--resume] [--mode MODE] [--max-steps N]
    uclip clt eval --model SPEC --langs es,ja,hi,quz [--limit N] [--space encoder]
    uclip clt table RUN_DIR... --out DIR
    uclip clt nli --model SPEC (--train FILE... --test FILE | --synthetic)
    uclip clt tsne --model SPEC --langs en,es,ja,hi --out FIG.png

SPEC is a model spec of the one grammar (``clt:DIR``, ...) holding a CLT model, or a run
directory of ``uclip clt train`` or a CLT config file (untrained towers).

``cli.py`` calls :func:`register`; ``python -m uclip.app.commands.clt clt ...`` runs the same
commands on their own.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from uclip.app.commands.common import add_model_argument
from uclip.errors import UclipError

CLT_MODEL_NOTE = "CLT models only; also a `uclip clt train` run directory or a CLT config file"


def _langs(value: str) -> list[str]:
    langs = [x.strip() for x in value.split(",") if x.strip()]
    if not langs:
        raise UclipError("--langs is empty: give comma-separated codes, e.g. es,ja,hi,quz")
    return langs


def run_train(ns: argparse.Namespace) -> int:
    from uclip.app.clt import load_clt_config, train_clt

    # The flags are shortcuts for --set overrides, applied first so --set has the last word.
    overrides = [f"train.progress={json.dumps(not ns.no_progress)}"]
    if ns.mode:
        overrides.append(f"data.mode={ns.mode}")
    if ns.max_steps is not None:
        overrides.append(f"train.max_steps={ns.max_steps}")
    if ns.no_before:
        overrides.append("eval.before=false")
    run = load_clt_config(ns.config, [*overrides, *(ns.set or ())])
    summary = train_clt(run, ns.out, ns.data_dir, resume=ns.resume)
    print(
        f"trained {summary['model']} ({summary['weights']}): {summary['steps']} steps, "
        f"encoders thawed at step {summary['thaw_step']}, final loss {summary['final_loss']:.4f}, "
        f"t = {summary['temperature']:.2f}, train time {summary['timings']['train_s']:.0f} s"
    )
    print(f"FLORES before/after: {Path(ns.out)}/flores_{{before,after}}.md")
    return 0


def run_eval(ns: argparse.Namespace) -> int:
    from uclip.app.clt import flores_bitext, load_clt_model
    from uclip.eval.evaluators import EvalResult
    from uclip.eval.report import markdown_table, write_table
    from uclip.eval.runs import save_result
    from uclip.paths import resolve_data_dir

    model = load_clt_model(ns.model)
    label = model.name
    spaces = _langs(ns.space)
    records: list[EvalResult] = []
    rows = flores_bitext(
        model,
        _langs(ns.langs),
        resolve_data_dir(ns.data_dir),
        limit=ns.limit,
        spaces=spaces,
        records=records,
    )
    rows = [{"model": label, **r} for r in rows]
    print(markdown_table(rows))
    if ns.out:
        paths = write_table(rows, ns.out, "flores", title=f"FLORES-200 X->En, {label}")
        for record in records:
            save_result(record, Path(ns.out) / "runs")
        print(f"written: {paths['md']} and {len(records)} run records in {ns.out}/runs")
    return 0


def run_table(ns: argparse.Namespace) -> int:
    from uclip.app.clt import write_before_after

    command = ns.command_note or "uclip clt table " + " ".join(
        shlex.quote(str(d)) for d in [*ns.runs, "--out", ns.out]
    )
    paths = write_before_after(ns.runs, ns.out, command)
    for path in paths.values():
        print(Path(path).read_text())
    return 0


def run_nli(ns: argparse.Namespace) -> int:
    from uclip.app.clt import load_clt_model
    from uclip.data.nli import read_nli, synthetic_nli
    from uclip.eval.nli import run_nli_probe

    model = load_clt_model(ns.model)
    label = model.name
    if ns.synthetic:
        train = synthetic_nli(ns.synthetic_n, seed=0, lang="en")
        langs = _langs(ns.langs) if ns.langs else ["en", "es", "de", "fr"]
        test = [ex for lang in langs for ex in synthetic_nli(ns.synthetic_n // 3, 1, lang)]
        dev = synthetic_nli(ns.synthetic_n // 5, seed=2, lang="en")
    else:
        if not ns.train or not ns.test:
            raise UclipError("pass --train FILE... and --test FILE (XNLI/MNLI), or --synthetic")
        train = read_nli(ns.train, ["en"])
        test = read_nli(ns.test, _langs(ns.langs) if ns.langs else None)
        dev = read_nli(ns.dev, ["en"]) if ns.dev else None

    def embed(texts: list[str]) -> Any:
        return model.embed_sentences(texts, spaces=[ns.space])[ns.space]

    result = run_nli_probe(
        embed, train, test, dev, lr=ns.lr, epochs=ns.epochs, patience=ns.patience, hidden=ns.hidden
    )
    result = {"model": label, "synthetic": ns.synthetic, "space": ns.space, **result}
    print(json.dumps(result, indent=2))
    if ns.out:
        from uclip.eval.report import write_table

        rows = [
            {"model": label, "lang": lang, "accuracy": acc}
            for lang, acc in result["per_language"].items()
        ]
        write_table(rows, ns.out, "nli", meta=result, title=f"NLI probe, {label}")
    return 0


def run_tsne(ns: argparse.Namespace) -> int:
    from uclip.app.clt import load_clt_model, tsne_figure
    from uclip.paths import resolve_data_dir

    model = load_clt_model(ns.model)
    label = model.name
    data_dir = resolve_data_dir(ns.data_dir)
    path = tsne_figure(
        model, _langs(ns.langs), data_dir, ns.out, n_sentences=ns.n, space=ns.space,
        title=f"{label}: FLORES-200, {ns.n} sentences per language ({ns.space} space)",
    )  # fmt: skip
    print(f"written: {path}")
    return 0


def register(sub: Any) -> None:
    """Add ``clt`` and its subcommands to the ``uclip`` parser's subparsers."""
    clt = sub.add_parser("clt", help="CLT: contrastive image-caption tuning of a text encoder")
    csub = clt.add_subparsers(dest="clt_command", required=True)

    p = csub.add_parser("train", help="train CLT from a config (configs/clt-*.json)")
    p.add_argument("config")
    p.add_argument("--out", required=True, help="run directory (checkpoints, logs, results)")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    p.add_argument("--mode", help="override data.mode: eng_only|eng_pivot|multilingual|...plus")
    p.add_argument("--max-steps", type=int, help="override train.max_steps")
    p.add_argument("--no-before", action="store_true", help="skip the before-training FLORES eval")
    p.add_argument(
        "--set",
        action="append",
        metavar="SECTION.KEY=VALUE",
        help="override one config value, e.g. --set train.lr=1e-5 (repeatable)",
    )
    p.add_argument("--data-dir", help="data directory (default: UCLIP_DATA or ../shared/data)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run_train)

    p = csub.add_parser("eval", help="FLORES-200 X->En bitext retrieval of a CLT model")
    add_model_argument(p, CLT_MODEL_NOTE)
    p.add_argument("--langs", required=True, help="comma-separated, e.g. es,ja,hi,quz or spa_Latn")
    p.add_argument("--limit", type=int, help="first N devtest sentences (default all 1,012)")
    p.add_argument("--space", default="encoder", help="encoder and/or adapter (comma-separated)")
    p.add_argument("--out", help="also write flores.{json,csv,md} and runs/ here")
    p.add_argument("--data-dir")
    p.set_defaults(func=run_eval)

    p = csub.add_parser("table", help="before/after FLORES table from CLT run directories")
    p.add_argument("runs", nargs="+")
    p.add_argument("--out", required=True)
    p.add_argument("--command-note", help="the command line to record as 'regenerate'")
    p.set_defaults(func=run_table)

    p = csub.add_parser("nli", help="NLI probe on the frozen text encoder (paper Table 2)")
    add_model_argument(p, CLT_MODEL_NOTE)
    p.add_argument("--train", nargs="+", help="MultiNLI .jsonl / XNLI-MT .tsv (English)")
    p.add_argument("--dev", nargs="+", help="optional English dev files for early stopping")
    p.add_argument("--test", nargs="+", help="XNLI test .tsv")
    p.add_argument("--langs", help="test languages (default: all in the test file)")
    p.add_argument("--synthetic", action="store_true", help="generated templated NLI (en/es/de/fr)")
    p.add_argument("--synthetic-n", type=int, default=600)
    p.add_argument("--space", default="encoder", choices=["encoder", "adapter"])
    p.add_argument("--lr", type=float, default=2e-5)
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--patience", type=int, default=5)
    p.add_argument("--hidden", type=int, default=2048)
    p.add_argument("--out")
    p.set_defaults(func=run_nli)

    p = csub.add_parser("tsne", help="t-SNE figure of FLORES embeddings coloured by language")
    add_model_argument(p, CLT_MODEL_NOTE)
    p.add_argument("--langs", required=True)
    p.add_argument("--out", required=True, help="PNG path")
    p.add_argument("--n", type=int, default=100, help="sentences per language")
    p.add_argument("--space", default="encoder", choices=["encoder", "adapter"])
    p.add_argument("--data-dir")
    p.set_defaults(func=run_tsne)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``clt`` commands without the rest of the ``uclip`` CLI."""
    import logging
    import os

    parser = argparse.ArgumentParser(prog="uclip")
    register(parser.add_subparsers(dest="command", required=True))
    ns = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        return int(ns.func(ns) or 0)
    except UclipError as exc:
        print(f"uclip: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
