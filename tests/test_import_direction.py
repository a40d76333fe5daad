"""The import direction of docs/design.md, checked on the source (AST, nothing is imported).

Data flows one way: core -> data -> encoders -> features -> method -> clt -> loading
(``uclip.load``) -> train -> eval/serve/export -> app -> cli. A module may import its own package
and any layer to its left, never one to its right nor a peer of its own layer; no ``_private``
name crosses modules; no two modules import each other, directly or round a longer circle; and
only the application layer resolves the data directory (``paths.default_data_dir`` /
``resolve_data_dir``): library functions are given their paths.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "uclip"

LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"errors", "validation", "version", "paths"}),  # core: imports only core
    frozenset({"data"}),
    frozenset({"encoders"}),
    frozenset({"features"}),
    frozenset({"method", "pretrained"}),
    # "uclip": the package itself, whose ``from uclip import load`` resolves to "loading"; its
    # wider API is a name -> module table read on first use (test_the_front_door_is_lazy).
    frozenset({"clt"}),
    frozenset({"loading", "uclip"}),
    frozenset({"train"}),
    frozenset({"eval", "serve", "export"}),
    frozenset({"app"}),
    frozenset({"cli"}),
)
RANK = {part: rank for rank, layer in enumerate(LAYERS) for part in layer}
CORE = LAYERS[0]
DATA_DIR_NAMES = frozenset({"default_data_dir", "resolve_data_dir"})
APP_PARTS = frozenset({"app", "cli"})


def part_of(module: str) -> str:
    """The layer key of a dotted module name: its package under ``uclip`` (``uclip.method.model``
    -> ``method``), the top-level module (``uclip.paths`` -> ``paths``), or ``uclip`` itself."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "uclip"


def module_name(path: Path, root: Path = SRC) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def violations(module: str, source: str, *, is_package: bool = False) -> list[str]:
    """Every rule broken by ``source``, the text of module ``module``; lazy imports inside
    functions and ``TYPE_CHECKING`` blocks count like top-level ones."""
    here = part_of(module)
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            target = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([target] if target else []))
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                found += _edge(module, here, alias.name, node.lineno)
            continue
        else:
            continue
        if target != "uclip" and not target.startswith("uclip."):
            continue
        found += _edge(module, here, target, node.lineno)
        for name in names:
            if name.startswith("_") and not name.startswith("__") and target != module:
                found.append(f"{module}:{node.lineno} imports private {target}.{name}")
            if name in DATA_DIR_NAMES and here not in APP_PARTS:
                found.append(
                    f"{module}:{node.lineno} resolves the data directory ({name}): only app/ "
                    "and cli may; take the path as an argument"
                )
    return found


def imported_modules(module: str, source: str, *, is_package: bool = False) -> set[str]:
    """The ``uclip`` modules that ``source`` imports (``from uclip.x import y`` counts as
    ``uclip.x.y`` when that is a module of the package, else as ``uclip.x``)."""
    package = module if is_package else module.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "uclip"}
        elif isinstance(node, ast.ImportFrom):
            target = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([target] if target else []))
            if target.split(".")[0] == "uclip":
                out |= {f"{target}.{a.name}" for a in node.names} | {target}
    return out - {module}


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in graph:
                continue
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def package_graph(root: Path = SRC) -> dict[str, set[str]]:
    """Module -> the package modules it imports (the package itself, ``uclip``, included)."""
    sources = {
        module_name(p, root): (p.read_text(encoding="utf-8"), p.stem == "__init__")
        for p in sorted(root.rglob("*.py"))
    }
    return {
        module: imported_modules(module, text, is_package=is_pkg) & set(sources)
        for module, (text, is_pkg) in sources.items()
    }


def _edge(module: str, here: str, target: str, line: int) -> list[str]:
    if target != "uclip" and not target.startswith("uclip."):
        return []
    there = part_of(target)
    if there == here:
        return []
    if here not in RANK or there not in RANK:
        return [f"{module}:{line}: {here} or {there} is in no layer of LAYERS: add it"]
    if RANK[there] < RANK[here] or (here in CORE and there in CORE):
        return []
    kind = "a peer of its layer" if RANK[there] == RANK[here] else "a layer to its right"
    return [f"{module}:{line} imports {target}: {there} is {kind} ({here} may not import it)"]


def test_the_package_follows_the_import_direction() -> None:
    problems = []
    for path in sorted(SRC.rglob("*.py")):
        problems += violations(
            module_name(path), path.read_text(encoding="utf-8"), is_package=path.stem == "__init__"
        )
    assert not problems, "\n".join(problems)


def test_the_front_door_is_lazy() -> None:
    """``uclip/__init__.py`` imports nothing of the package but its version at import time (its
    API is a name -> module table), and every name in the table is defined where it points."""
    tree = ast.parse((SRC / "__init__.py").read_text(encoding="utf-8"))
    eager = [
        node.module
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("uclip")
    ]
    assert eager == ["uclip.version"]
    import uclip

    for name, module in uclip._EXPORTS.items():
        path = SRC.parent / (module.replace(".", "/") + ".py")
        defined = {
            n.name
            for n in ast.parse(path.read_text(encoding="utf-8")).body
            if isinstance(n, (ast.FunctionDef, ast.ClassDef))
        }
        assert name in defined, f"uclip.{name}: {module} defines no {name}"


def test_import_uclip_stays_cheap_and_names_resolve_on_use() -> None:
    code = (
        "import sys, uclip\n"
        "assert 'torch' not in sys.modules and 'numpy' not in sys.modules, 'eager import'\n"
        "assert uclip.UclipError.__module__ == 'uclip.errors'\n"
        "assert 'torch' not in sys.modules, 'UclipError pulled in torch'\n"
        "assert 'uclip-text-anchor' in uclip.list_models()\n"
        "from uclip import BitextEvaluator, build_index, export_hf, load\n"
        "assert load.__module__ == 'uclip.loading' and callable(export_hf)\n"
        "assert set(uclip.__all__) <= set(dir(uclip))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def test_no_import_cycles() -> None:
    cycles = import_cycles(package_graph())
    assert not cycles, "modules that import each other: " + "; ".join(map(" <-> ".join, cycles))


def test_a_planted_cycle_is_caught() -> None:
    graph = {
        "uclip.encoders.registry": imported_modules(
            "uclip.encoders.registry", "from uclip.encoders.hf_clip import build_hf_tower\n"
        ),
        "uclip.encoders.hf_clip": imported_modules(
            "uclip.encoders.hf_clip",
            "if TYPE_CHECKING:\n    from uclip.encoders.registry import EncoderSpec\n",
        ),
        "uclip.encoders.base": set(),
    }
    assert import_cycles(graph) == [["uclip.encoders.hf_clip", "uclip.encoders.registry"]]


def test_every_package_has_a_layer() -> None:
    parts = {p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    parts |= {p.stem for p in SRC.glob("*.py") if p.stem != "__init__"}
    assert parts <= set(RANK), f"no layer for {sorted(parts - set(RANK))}: add it to LAYERS"


@pytest.mark.parametrize(
    ("module", "source", "message"),
    [
        # a back-edge: the method layer reaching up into evaluation
        ("uclip.method.model", "from uclip.eval.metrics import accuracy\n", "a layer to its right"),
        # the same, hidden in a function (lazy import)
        ("uclip.data.xm3600", "def f():\n    import uclip.train.trainer\n", "a layer to its right"),
        # a peer: serve and eval are one layer and must not know each other
        ("uclip.serve.index.query", "from uclip.eval.models import EncoderModel\n", "a peer"),
        # a relative import resolves to its absolute module
        ("uclip.features.cache", "from ..app import train\n", "a layer to its right"),
        # a private name of another module
        ("uclip.method.bank_search", "from uclip.method.retrieval import _validate\n", "private"),
        # the library discovering the data directory
        ("uclip.data.coco", "from uclip.paths import resolve_data_dir\n", "data directory"),
        # a package nobody placed
        ("uclip.newthing.x", "from uclip.errors import UclipError\n", "no layer"),
    ],
)
def test_a_planted_violation_is_caught(module: str, source: str, message: str) -> None:
    found = violations(module, source)
    assert len(found) == 1 and message in found[0], found


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("uclip.app.quickstart", "from uclip.paths import resolve_data_dir\n"),
        ("uclip.eval.evaluators", "from uclip.data.records import RetrievalDataset\n"),
        ("uclip.method.model", "from uclip.method.heads import ProjectionHead\n"),
        ("uclip.paths", "from uclip.errors import UclipError\n"),
        ("uclip.method.retrieval", "from uclip.method.retrieval import _validate\n"),
        ("uclip.eval.models", "import torch\nfrom typing import Any\n"),
    ],
)
def test_allowed_imports_pass(module: str, source: str) -> None:
    assert violations(module, source) == []
