"""The matplotlib set-up every plot of the app shares: the Agg backend, and PNG files written
atomically at exactly ``figsize × dpi`` pixels."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from uclip.data.io import atomic_target


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (no display; imported only when drawing)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_png(fig: Any, path: str | os.PathLike[str], dpi: int) -> Path:
    """Write ``fig`` to ``path`` as PNG, close it, and return the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    # No bbox_inches="tight": the file keeps exactly figsize x dpi pixels. Written beside and
    # renamed, so a report rebuilt over an old one never leaves a cut figure.
    with atomic_target(out) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    pyplot().close(fig)
    return out
