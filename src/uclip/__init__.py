"""uclip: make English vision-language models multilingual cheaply (uCLIP, CLT)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from uclip.version import __version__

if TYPE_CHECKING:
    from uclip.method.model import UCLIPModel


def load(name_or_path: str, **config_overrides: Any) -> UCLIPModel:
    """Load a trained uCLIP model: a directory (``config.json`` + ``heads.safetensors``), a
    pretrained name (``uclip models``) or a Hugging Face Hub id (``org/name``)."""
    from uclip.data.io import file_sha256
    from uclip.errors import UclipError
    from uclip.method.model import HEADS_NAME
    from uclip.method.model import load as _load
    from uclip.pretrained import expected_sha256, resolve_model_dir

    directory = resolve_model_dir(name_or_path)
    expected = expected_sha256(str(name_or_path))
    if expected and (directory / HEADS_NAME).is_file():
        found = file_sha256(directory / HEADS_NAME)
        if found != expected:
            raise UclipError(
                f"pretrained model {name_or_path!r}: {directory / HEADS_NAME} has sha256 "
                f"{found[:12]}…, the registry lists {expected[:12]}…: reinstall uclip"
            )
    return _load(directory, **config_overrides)


__all__ = ["__version__", "load"]
