"""The dev curve of a training run: ``train/dev.jsonl`` as JSON and as a PNG figure."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from uclip.app.plotting import pyplot
from uclip.train.trainer import DEV_LOG_FILE

CURVES = (("score", "dev score"), ("multi30k-val", "Multi30K val"), ("tatoeba-dev", "Tatoeba dev"))


def write_dev_curve(train_dir: Path, dev: dict[str, Any], title: str) -> dict[str, Path]:
    """``dev_curve.json`` (the points plus the ridge and ceiling references) and
    ``dev_curve.png`` next to ``train_dir/dev.jsonl``; nothing when there is no curve."""
    path = train_dir / DEV_LOG_FILE
    if not path.is_file():
        return {}
    points = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    payload = {
        "points": points,
        "best_step": dev.get("best_step"),
        "ridge": dev.get("ridge"),
        "ceiling": dev.get("ceiling"),
        "metric": "X -> English top-1 (fraction); score = mean of the two domains' means",
    }
    out_json = train_dir / "dev_curve.json"
    out_json.write_text(json.dumps(payload, indent=2))
    out_png = train_dir / "dev_curve.png"
    _plot(points, payload, title, out_png)
    return {"json": out_json, "png": out_png}


def _plot(points: list[dict[str, Any]], refs: dict[str, Any], title: str, out: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    steps = [p["step"] for p in points]
    for (key, label), colour in zip(CURVES, ("black", "tab:blue", "tab:orange"), strict=True):
        if all(key in p for p in points):
            ax.plot(steps, [100 * p[key] for p in points], color=colour, label=f"heads: {label}")
            for ref, style in (("ridge", ":"), ("ceiling", "--")):
                if refs.get(ref) and key in refs[ref]:
                    ax.axhline(100 * refs[ref][key], color=colour, linestyle=style, linewidth=0.8)
    if refs.get("best_step") is not None:
        ax.axvline(refs["best_step"], color="grey", linewidth=0.8)
    ax.plot([], [], "k:", linewidth=0.8, label="ridge baseline")
    ax.plot([], [], "k--", linewidth=0.8, label="ceiling (e5 both sides)")
    ax.set_xlabel("training step (grey: best dev step, kept)")
    ax.set_ylabel("X → English top-1 (%)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
