"""One module per ``uclip`` command, named after it (transformers' ``commands/``): ``cli.py`` only
registers the modules of :mod:`uclip.app.commands`, and each command runs code of its own module."""

from __future__ import annotations

import argparse
import pkgutil

import uclip.app.commands
from uclip.cli import COMMANDS, build_parser

HELPERS = {"common"}  # argument types shared by the commands, not a command


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_command_is_the_module_named_after_it() -> None:
    modules = {m.name for m in pkgutil.iter_modules(uclip.app.commands.__path__)} - HELPERS
    assert {m.__name__.rpartition(".")[2] for m in COMMANDS} == modules
    commands = subcommands(build_parser())
    assert {name.replace("-", "_") for name in commands} == modules
    for name, parser in commands.items():
        module = f"uclip.app.commands.{name.replace('-', '_')}"
        leaves = [parser]
        while leaves:
            leaf = leaves.pop()
            if any(isinstance(a, argparse._SubParsersAction) for a in leaf._actions):
                leaves += subcommands(leaf).values()
            else:
                assert leaf.get_default("func").__module__ == module, leaf.prog
