"""uclip: make English vision-language models multilingual cheaply (uCLIP, CLT)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from uclip.method.model import UCLIPModel


def load(directory: str, **config_overrides: Any) -> UCLIPModel:
    """Load a trained uCLIP model directory (``config.json`` + ``heads.safetensors``)."""
    from uclip.method.model import load as _load

    return _load(directory, **config_overrides)


__all__ = ["__version__", "load"]
