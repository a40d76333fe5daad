"""``uclip languages``: X->English retrieval in every FLORES-200 / Flickr30k-200 language, and
its report (the runner is :mod:`uclip.app.languages`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from uclip.app import languages as runner
from uclip.app.commands.common import MODEL_HELP
from uclip.app.languages import DEFAULT_SYSTEMS, build_report, report_languages, run_languages
from uclip.data.io import default_cache_dir
from uclip.errors import UclipError
from uclip.eval import languages as lg
from uclip.paths import resolve_data_dir


def run(ns: argparse.Namespace) -> int:
    from uclip.features.sharding import parse_shard

    data_dir = resolve_data_dir(ns.data_dir)
    out = Path(ns.out)
    from uclip.loading import parse_model_spec

    systems = dict(DEFAULT_SYSTEMS)
    for role in lg.ROLES:
        spec = getattr(ns, role)
        if spec is not None and not (role == "ridge" and spec == "none"):
            # canonical, as runs record their model: a bare NAME names the run uclip:NAME
            systems[role] = str(parse_model_spec(spec))
    if ns.ridge == "none":
        systems.pop("ridge")
    everything = report_languages(data_dir)
    langs = everything
    if ns.langs is not None:
        wanted = [code.strip() for code in ns.langs.split(",") if code.strip()]
        if not wanted:
            raise UclipError(
                "--langs is empty: give comma-separated codes (e.g. deu_Latn,fra_Latn), or leave "
                "--langs out for every language"
            )
        unknown = sorted(set(wanted) - set(everything))
        if unknown:
            raise UclipError(
                f"--langs {', '.join(unknown)}: not in both FLORES-200 and Flickr30k-200 "
                f"({len(everything)} codes are, e.g. {everything[0]})"
            )
        langs = [code for code in everything if code in wanted]
    if ns.shard:
        langs = lg.shard_languages(langs, *parse_shard(ns.shard))
    if not ns.report_only:
        counts = run_languages(
            langs,
            systems,
            out,
            data_dir=data_dir,
            cache_dir=None if ns.no_cache else Path(ns.cache_dir or _default_cache()),
            force=ns.force,
            progress=not ns.no_progress,
            shard=ns.shard,
        )
        print(f"{counts['runs_written']} runs written, {counts['runs_skipped']} already there")
    summary = build_report(out, systems, data_dir, expected=len(everything))
    mean = summary["mean"]
    print(
        f"{summary['languages']} of {len(everything)} languages: heads/ceiling FLORES "
        f"{mean.get('ratio_flores')}, Flickr30k-200 {mean.get('ratio_flickr_r1')} -> "
        f"{out / 'languages.md'}, {out / 'summary.md'}, {out / 'languages.png'}"
    )
    return 0


def _default_cache() -> Path:
    return default_cache_dir() / "embeddings"


def register(sub: Any) -> None:
    """Register ``languages`` on the ``uclip`` sub-command parser."""
    p = sub.add_parser(
        "languages",
        help="X->English retrieval in every FLORES-200 / Flickr30k-200 language, and its report",
        description=runner.__doc__.split("\n\n")[1] if runner.__doc__ else None,
        epilog=f"SPEC: {MODEL_HELP}",
    )
    p.add_argument("--out", default="results/languages", help="report folder (runs in OUT/runs)")
    for role in lg.ROLES:
        p.add_argument(
            f"--{role}",
            metavar="SPEC",
            help=f"{lg.ROLE_TITLES[role]} model SPEC (default {DEFAULT_SYSTEMS[role]})"
            + ("; 'none' leaves it out" if role == "ridge" else ""),
        )
    p.add_argument("--langs", help="comma-separated FLORES-200 codes (default: all 200)")
    p.add_argument("--shard", help="i/n: run every n-th language from the i-th (0-based)")
    p.add_argument("--data-dir", help="data folder (default: UCLIP_DATA or ../shared/data)")
    p.add_argument("--cache-dir", help="embedding cache (default: ~/.cache/uclip/embeddings)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the cache")
    p.add_argument("--force", action="store_true", help="rerun runs whose JSON exists")
    p.add_argument("--report-only", action="store_true", help="only rebuild the report")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)
