"""The ``uclip`` command: parse arguments, call the library, print or save results.

User errors (:class:`uclip.errors.UclipError`) are printed as one line, exit code 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import unicodedata
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from uclip.errors import UclipError

Handler = Callable[[argparse.Namespace], int]


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))


# quickstart -------------------------------------------------------------------------------------
def cmd_quickstart(ns: argparse.Namespace) -> int:
    from uclip.app.quickstart import QuickstartArgs, run_quickstart
    from uclip.eval.report import markdown_table

    args = QuickstartArgs(
        out=Path(ns.out),
        data_dir=Path(ns.data_dir) if ns.data_dir else None,
        progress=not ns.no_progress,
        seed=ns.seed,
    )
    if ns.langs is not None:  # an empty --langs is an error (checked), not the defaults
        args.langs = tuple(lang.strip() for lang in ns.langs.split(","))
    overrides: list[str] = []
    if ns.full:
        # the reference recipe as configured (no quickstart shrinking), full evaluation sets
        overrides += [
            "data.n_bank_v=4000",
            "data.n_bank_m=4000",
            "data.n_general=20000",
            "data.dev_multi30k_per_lang=null",
            "data.dev_tatoeba_per_lang=200",
        ]
        args.xm3600_pairs, args.flores_pairs = 3600, 1012
        if ns.langs is None:
            from uclip.data.languages import ENGLISH_CODES, XM3600_LANGUAGES

            args.langs = tuple(lang for lang in XM3600_LANGUAGES if lang not in ENGLISH_CODES)
    for key in ("xm3600_pairs", "flores_pairs"):
        value = getattr(ns, key)
        if value is not None:
            setattr(args, key, value)
    for key, target in QUICKSTART_SHORTCUTS.items():
        value = getattr(ns, key)
        if value is not None:
            overrides.append(f"{target}={value}")
    args.overrides = (*overrides, *(ns.set or ()))
    results = run_quickstart(args)
    print()
    print(markdown_table(results["summary"]))
    print(f"per-language results: {Path(ns.out) / 'results.md'} (json, csv beside it)")
    print(f"model: {Path(ns.out) / 'model'}   weights: {results['weights']}")
    t = results["timings"]
    print(
        f"wall time: {t['total_s']:.0f} s (embedding training and dev text "
        f"{t['embed_s']:.0f} s, training and dev selection {t['train_s']:.0f} s, "
        f"evaluation {t['evaluate_s']:.0f} s)"
    )
    training = results["training"]
    print(
        f"heads: best dev step {training['best_step']} of {training['steps']}; ridge lambda "
        f"{training['ridge_lambda']}; dev curve: {Path(ns.out) / 'train' / 'dev_curve.png'}"
    )
    for name, work in results["embedding_throughput"].items():
        print(f"  {name}: embedded {work['sentences']} sentences at {work['per_s']:.0f}/s")
    return 0


# quickstart flags that are shortcuts for config overrides
QUICKSTART_SHORTCUTS = {
    "n_train": "data.n_train",
    "n_bank_v": "data.n_bank_v",
    "n_bank_m": "data.n_bank_m",
    "n_general": "data.n_general",
    "max_steps": "train.max_steps",
}


def add_quickstart(sub: Any) -> None:
    p = sub.add_parser(
        "quickstart",
        help="train uCLIP heads offline on real encoders (text-anchor setting) and evaluate",
    )
    p.add_argument(
        "--out", default="quickstart-out", help="output directory (model, results, cache)"
    )
    p.add_argument(
        "--data-dir", help="data directory (default: UCLIP_DATA, ../shared/data, bundled subset)"
    )
    p.add_argument("--langs", help="comma-separated XM3600 language codes (default: 10 languages)")
    p.add_argument(
        "--full",
        action="store_true",
        help="the reference recipe unshrunk (banks 4k, 20k general sentences, full dev sets), "
        "all 35 non-English XM3600 languages and full eval sets",
    )
    for key in ("xm3600_pairs", "flores_pairs", *QUICKSTART_SHORTCUTS):
        p.add_argument(f"--{key.replace('_', '-')}", type=int, dest=key)
    p.add_argument(
        "--set",
        action="append",
        metavar="SECTION.KEY=VALUE",
        help="override the config (configs/uclip-text-anchor.json), e.g. --set train.lr=3e-4",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_quickstart)


# info / train -----------------------------------------------------------------------------------
def cmd_info(ns: argparse.Namespace) -> int:
    from uclip.app.train import count_parameters, load_run_config

    run = load_run_config(ns.config)
    info = {"config": str(ns.config), **count_parameters(run.model, build_frozen=not ns.no_frozen)}
    info["embed_dim"] = run.model.embed_dim
    _print_json(info)
    return 0


def add_info(sub: Any) -> None:
    p = sub.add_parser("info", help="parameter counts and encoders of a config")
    p.add_argument("config")
    p.add_argument(
        "--no-frozen", action="store_true", help="skip building encoders to count frozen parameters"
    )
    p.set_defaults(func=cmd_info)


def cmd_train(ns: argparse.Namespace) -> int:
    from uclip.app.train import plan_run, run_training

    if ns.dry_run:
        plan = plan_run(
            ns.config, data_dir=ns.data_dir, random_init=ns.random_init, overrides=ns.set or ()
        )
        _print_json({**plan, "out": ns.out})
        return 0
    if not ns.out:
        raise UclipError("uclip train needs --out DIR (only --dry-run runs without it)")
    model, result = run_training(
        ns.config,
        ns.out,
        data_dir=ns.data_dir,
        resume=ns.resume,
        random_init=ns.random_init,
        cache_dir=ns.cache_dir,
        overrides=ns.set or (),
    )
    _print_json(
        {
            "model_dir": str(Path(ns.out) / "model"),
            "ridge_baseline_dir": str(Path(ns.out) / "ridge"),
            "steps": result.steps,
            "best_dev_step": result.best_step,
            "best_dev_score": result.best_score,
            "stopped_early": result.stopped_early,
            "final_loss": result.final_loss,
            "resumed_from_step": result.resumed_from,
            "weights": model.spec()["weights"],
        }
    )
    return 0


def add_train(sub: Any) -> None:
    p = sub.add_parser("train", help="train uCLIP heads from a config (configs/*.json)")
    p.add_argument("config")
    p.add_argument(
        "--set",
        action="append",
        metavar="SECTION.KEY=VALUE",
        help="override one config value, e.g. --set train.lr=3e-4 (repeatable)",
    )
    p.add_argument("--out", help="output directory (required unless --dry-run)")
    p.add_argument("--data-dir")
    p.add_argument("--cache-dir")
    p.add_argument(
        "--resume", action="store_true", help="continue from the latest checkpoint in --out"
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="check every input, encoder, device and AMP setting, print the plan with memory "
        "and time estimates, and exit",
    )
    p.add_argument(
        "--random-init", action="store_true", help="random-init encoders (pipeline tests only)"
    )
    p.set_defaults(func=cmd_train)


def cmd_encoders(ns: argparse.Namespace) -> int:
    from uclip.encoders.registry import list_specs

    rows = [
        {
            "name": s.name,
            "family": s.family,
            "dim": s.dim,
            "hf_id": s.hf_id,
            "languages": s.languages,
        }
        for s in list_specs()
    ]
    from uclip.eval.report import markdown_table

    print(markdown_table(rows))
    return 0


def add_encoders(sub: Any) -> None:
    p = sub.add_parser("encoders", help="list the encoder registry")
    p.set_defaults(func=cmd_encoders)


def cmd_models(ns: argparse.Namespace) -> int:
    from uclip.eval.report import markdown_table
    from uclip.pretrained import registry

    rows = [
        {
            "name": name,
            "status": entry["status"],
            "encoders": ", ".join(f"{k}={v}" for k, v in entry["encoders"].items() if v),
            "heads_sha256": (entry.get("heads_sha256") or "")[:12],
            "results": entry.get("results") or "",
        }
        for name, entry in sorted(registry().items())
    ]
    print(markdown_table(rows))
    return 0


def add_models(sub: Any) -> None:
    p = sub.add_parser(
        "models", help="list the pretrained models (names for uclip.load, serve, eval)"
    )
    p.set_defaults(func=cmd_models)


def _app_commands() -> list[Callable[[Any], None]]:
    """Command groups that live beside their application code in ``uclip.app``."""
    from uclip.app import cli_bench, cli_clt, cli_eval, cli_scale, cli_serve, languages

    return [
        cli_eval.add_commands,
        languages.add_commands,
        cli_bench.add_commands,
        cli_serve.add_commands,
        cli_scale.add_commands,
        cli_clt.add_commands,
    ]


COMMANDS: list[Callable[[Any], None]] = [
    add_quickstart,
    add_info,
    add_train,
    add_encoders,
    add_models,
    *_app_commands(),
]


class Parser(argparse.ArgumentParser):
    """argparse with the project's one-line errors (its default prints the whole usage first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(
            2, f"uclip: error: {one_line(f'{self.prog}: {message}')} (see {self.prog} --help)\n"
        )


def one_line(message: str) -> str:
    """``message`` on one line: runs of whitespace become one space (a parser's multi-line
    reason), other control and line-separator characters (echoed user input) are escaped."""
    text = re.sub(r"[ \t\r\n]+", " ", message).strip()
    return "".join(
        c.encode("unicode_escape").decode("ascii")
        if unicodedata.category(c) in {"Cc", "Zl", "Zp"}
        else c
        for c in text
    )


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="uclip", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if ns.verbose else logging.WARNING, format="%(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not ns.verbose:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    try:
        return int(ns.func(ns) or 0)
    except UclipError as exc:
        print(f"uclip: error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except OSError as exc:
        # What the checks before the work did not foresee (a disk that fills up, a file that
        # vanishes): the system's reason and the path are what the user needs, not a traceback.
        where = f": {exc.filename}" if exc.filename else ""
        print(f"uclip: error: {one_line(f'{exc.strerror or exc}{where}')}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("uclip: interrupted (rerun the same command to resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
