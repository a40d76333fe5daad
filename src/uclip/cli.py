"""The ``uclip`` command: parse arguments, call the library, print or save results.

Each command is a module of :mod:`uclip.app.commands` with ``register(subparsers)``; this module
only registers them and runs the one asked for. User errors (:class:`uclip.errors.UclipError`)
are printed as one line, exit code 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import unicodedata
from collections.abc import Sequence
from types import ModuleType
from typing import NoReturn

from uclip.app.commands import (
    ablate,
    bench,
    clt,
    demo,
    encoders,
    export,
    extract,
    extract_merge,
    figures,
    index,
    info,
    languages,
    models,
    quickstart,
    report,
    serve,
    train,
)
from uclip.app.commands import eval as evaluate
from uclip.errors import UclipError

# one module per command (uclip.app.commands.<name>), each with register(subparsers); this order
# is the order of `uclip --help`
COMMANDS: list[ModuleType] = [
    quickstart,
    info,
    train,
    encoders,
    models,
    evaluate,
    report,
    languages,
    bench,
    figures,
    ablate,
    demo,
    index,
    serve,
    export,
    extract,
    extract_merge,
    clt,
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
    for command in COMMANDS:
        command.register(sub)
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
