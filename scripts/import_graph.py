"""Package-level import graph of a uclip source tree, judged by tests/test_import_direction.py.

python scripts/import_graph.py [REPO_ROOT]   # default: this checkout
"""

from __future__ import annotations

import collections
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE / "tests"))
import test_import_direction as rules  # noqa: E402


def main(repo: Path) -> None:
    root = repo / "src" / "uclip"
    graph = rules.package_graph(root)
    edges: dict[str, set[str]] = collections.defaultdict(set)
    for module, targets in graph.items():
        for target in targets:
            a, b = rules.part_of(module), rules.part_of(target)
            if a != b:
                edges[a].add(b)

    def rank(package: str) -> tuple[int, str]:
        return rules.RANK.get(package, 99), package

    print("layers:", " < ".join("{" + ",".join(sorted(layer)) + "}" for layer in rules.LAYERS))
    print("package edges (A -> what A imports):")
    for a in sorted(edges, key=rank):
        print(f"  {a:10s} -> {', '.join(sorted(edges[a], key=rank))}")
    problems: list[str] = []
    for path in sorted(root.rglob("*.py")):
        name = rules.module_name(path, root)
        problems += rules.violations(name, path.read_text(), is_package=path.stem == "__init__")
    print(f"violations ({len(problems)}): back-edges/peers, private imports, data-dir discovery:")
    for problem in problems:
        print("  ", problem)
    print("module cycles:", rules.import_cycles(graph) or "none")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
