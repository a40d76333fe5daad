"""Rename a model in committed eval run records after its registry name changed.

    python scripts/rename_runs.py results/languages/runs \\
        uclip:uclip-text-anchor=uclip:uclip-text-anchor-v1 \\
        uclip:uclip-text-anchor-ridge=uclip:uclip-text-anchor-v1-ridge

Each record whose ``model`` is an old spec is rewritten under the new spec (file name from
:func:`uclip.eval.runs.result_path`, ``model_info.model_dir`` pointed at the new registry folder)
only if its recorded ``heads_sha256`` equals the registry's sha256 for the new name: a record is
never relabelled as a model whose weights did not make it. The metrics are not touched.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from uclip.eval.evaluators import EvalResult
from uclip.eval.runs import result_path, save_result
from uclip.paths import ASSETS_DIR
from uclip.pretrained import expected_sha256, registry


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", type=Path, help="folder of run JSON files")
    p.add_argument("renames", nargs="+", help="OLD_SPEC=NEW_SPEC (uclip:NAME on both sides)")
    args = p.parse_args()
    renames = dict(r.split("=", 1) for r in args.renames)
    moved = 0
    for path in sorted(args.runs.glob("*.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        old = record.get("model")
        new = renames.get(old)
        if new is None:
            continue
        name = new.removeprefix("uclip:")
        info = record["model_info"]
        if info.get("heads_sha256") != expected_sha256(name):
            raise SystemExit(f"{path}: heads_sha256 is not the registry's {name}: not renamed")
        record["model"] = new
        info["model_dir"] = str(ASSETS_DIR / registry()[name]["path"])
        record.setdefault("notes", []).append(f"renamed from {old} (same heads_sha256)")
        result = EvalResult.from_dict(record, str(path))
        if result_path(result, args.runs).exists():
            raise SystemExit(f"{result_path(result, args.runs)} exists: not overwritten")
        save_result(result, args.runs)
        path.unlink()
        moved += 1
    print(f"renamed {moved} run records in {args.runs}")


if __name__ == "__main__":
    main()
