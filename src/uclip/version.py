"""The package version and the library versions recorded with every saved model and result."""

from __future__ import annotations

import platform

__version__ = "0.1.0"


def library_versions() -> dict[str, str]:
    """Versions recorded with every saved model and result."""
    import numpy
    import torch
    import transformers

    return {
        "uclip": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
    }
