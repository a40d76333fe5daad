"""``uclip.load``: one loader for every saved model kind, dispatched on ``config.json``'s
``"method"`` (``"uclip"``, the default of folders saved before the key existed, or ``"clt"``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from uclip.errors import UclipError

if TYPE_CHECKING:
    from uclip.clt.model import CLTModel
    from uclip.method.model import UCLIPModel

CONFIG_NAME = "config.json"


def _saved_method(config: dict[str, Any]) -> str:
    """The method a saved ``config.json`` belongs to: its ``"method"``, else its spec's (uCLIP
    folders record it there), else ``"uclip"``."""
    method = config.get("method")
    if method is None:
        spec = config.get("spec")
        method = spec.get("method", "uclip") if isinstance(spec, dict) else "uclip"
    if isinstance(method, dict):  # a `uclip clt train` run directory: its "method" section
        raise UclipError(
            "this is a CLT run directory, not a saved model: save its model with "
            "CLTModel.save(dir) and load that folder"
        )
    return str(method)


def load(name_or_path: str, **config_overrides: Any) -> UCLIPModel | CLTModel:
    """Load a saved model: a directory, a pretrained name (``uclip models``) or a Hugging Face Hub
    id (``org/name``). A uCLIP folder holds ``config.json`` + ``heads.safetensors``
    (``config_overrides`` replace fields of its model section); a CLT folder, saved by
    :meth:`~uclip.clt.model.CLTModel.save`, holds ``config.json`` (``"method": "clt"``) +
    ``model.safetensors``."""
    from uclip.pretrained import resolve_model_dir

    directory = resolve_model_dir(name_or_path)
    config_file = directory / CONFIG_NAME
    method = "uclip"
    if config_file.is_file():
        try:
            payload = json.loads(config_file.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, OSError):
            payload = None  # the uCLIP loader says what is wrong with the file
        if isinstance(payload, dict):
            try:
                method = _saved_method(payload)
            except UclipError as exc:
                raise UclipError(f"{directory}: {exc}") from None
    if method == "clt":
        if config_overrides:
            raise UclipError(
                f"{directory} is a CLT model: config overrides "
                f"({', '.join(sorted(config_overrides))}) apply to uCLIP models only"
            )
        from uclip.clt.model import load_clt

        return load_clt(directory)
    if method != "uclip":
        raise UclipError(
            f'{config_file} says "method": {method!r}; uclip loads "uclip" and "clt" models'
        )
    return _load_uclip(str(name_or_path), directory, config_overrides)


def _load_uclip(name: str, directory: Path, config_overrides: dict[str, Any]) -> UCLIPModel:
    from uclip.data.io import file_sha256
    from uclip.method.model import HEADS_NAME
    from uclip.method.model import load as load_heads
    from uclip.pretrained import expected_sha256

    expected = expected_sha256(name)
    if expected and (directory / HEADS_NAME).is_file():
        found = file_sha256(directory / HEADS_NAME)
        if found != expected:
            raise UclipError(
                f"pretrained model {name!r}: {directory / HEADS_NAME} has sha256 "
                f"{found[:12]}…, the registry lists {expected[:12]}…: reinstall uclip"
            )
    return load_heads(directory, **config_overrides)
