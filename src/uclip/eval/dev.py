"""Dev scoring for model selection: X -> English top-1 on data no reported table uses.

The dev sets (:func:`uclip.features.corpora.dev_sets`) are Multi30K val captions (de/fr/cs, caption
domain) and a reserved part of the Tatoeba pairs (cs/fi/hr/hu/ro, general domain). They share no
sentence with XM3600, FLORES-200, the banks or the training text. Embeddings are computed once
(cached), so scoring a checkpoint costs two head passes and a few small similarity matrices:
cheap enough to run every few dozen training steps.

The dev score is the mean of the domains' mean top-1 accuracies, so 3 caption languages,
5 Tatoeba languages and (with ``news_per_lang``) 11 news languages weigh equally per domain.

Dev is scored by cosine (the standard protocol) unless a hubness scorer is named
(:mod:`uclip.features.scoring`); its reference queries are bank M's multilingual embeddings, put
through the same map as the dev queries (never the dev queries themselves).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from uclip.eval.metrics import query_ranks
from uclip.features.scoring import COSINE, ScorerSpec, dot_form, parse_scorer

Projection = Callable[[Tensor], Tensor]


@dataclass
class DevTask:
    """One dev set's cached embeddings: ``foreign[i]`` translates ``english[i]``."""

    name: str
    lang: str
    foreign_multilingual: Tensor  # (N, d_M)
    english_anchor: Tensor  # (N, d_C)
    english_multilingual: Tensor  # (N, d_M), for the ceiling
    foreign_anchor: Tensor  # (N, d_C), for the English-only baseline


def embed_dev_tasks(
    sets: Sequence[Any], cache: Any, anchor: Any, multilingual: Any, progress: bool = False
) -> list[DevTask]:
    """Embed :class:`uclip.features.corpora.DevSet` s through the cache (both towers)."""

    def embed(encoder: Any, texts: list[str], what: str) -> Tensor:
        return cache.embed(encoder, texts, progress=progress, desc=f"dev {what}")

    return [
        DevTask(
            s.name,
            s.lang,
            embed(multilingual, s.foreign, f"{s.name} {s.lang}"),
            embed(anchor, s.english, f"{s.name} en · anchor"),
            embed(multilingual, s.english, f"{s.name} en · multilingual"),
            embed(anchor, s.foreign, f"{s.name} {s.lang} · anchor"),
        )
        for s in sets
    ]


def x2en_top1(
    foreign: Tensor,
    english: Tensor,
    scorer: ScorerSpec | str = COSINE,
    reference: Tensor | None = None,
) -> float:
    """Fraction of foreign rows whose best English row is their translation (row i translates
    row i; pessimistic ties), by cosine or by ``scorer`` with ``reference`` queries (rows in
    the foreign side's space)."""
    if parse_scorer(scorer).kind != "cosine":
        foreign, english = dot_form(foreign, english, scorer, reference_queries=reference)
    ranks = query_ranks(foreign, english, torch.arange(foreign.shape[0]))
    return float((ranks == 0).double().mean())


def dev_metrics(
    tasks: Sequence[DevTask],
    f_m: Projection,
    f_c: Projection,
    scorer: ScorerSpec | str = COSINE,
    reference: Tensor | None = None,
) -> dict[str, float]:
    """Top-1 of f_M(foreign) against f_C(English) per task, per domain and the dev ``score``.

    ``reference`` (N_ref, d_M): multilingual embeddings of the scorer's reference queries (bank
    M), mapped by ``f_m`` like the queries. Returns ``{"<name> <lang>": acc, "<name>": domain
    mean, "score": mean of domain means}`` (fractions in [0, 1]).
    """
    with torch.no_grad():
        ref = None if reference is None else f_m(reference)
        return _summarise(
            tasks,
            [
                x2en_top1(f_m(t.foreign_multilingual), f_c(t.english_anchor), scorer, ref)
                for t in tasks
            ],
        )


def dev_ceiling(
    tasks: Sequence[DevTask], scorer: ScorerSpec | str = COSINE, reference: Tensor | None = None
) -> dict[str, float]:
    """The multilingual tower on both sides: the dev metrics the heads are measured against
    (``reference``: the reference queries' multilingual embeddings)."""
    return _summarise(
        tasks,
        [
            x2en_top1(t.foreign_multilingual, t.english_multilingual, scorer, reference)
            for t in tasks
        ],
    )


def dev_english_only(
    tasks: Sequence[DevTask], scorer: ScorerSpec | str = COSINE, reference: Tensor | None = None
) -> dict[str, float]:
    """The English anchor tower on both sides (the English-only baseline; ``reference``: the
    reference queries' anchor embeddings)."""
    return _summarise(
        tasks,
        [x2en_top1(t.foreign_anchor, t.english_anchor, scorer, reference) for t in tasks],
    )


def _summarise(tasks: Sequence[DevTask], accs: Sequence[float]) -> dict[str, float]:
    out: dict[str, float] = {}
    by_domain: dict[str, list[float]] = {}
    for t, acc in zip(tasks, accs, strict=True):
        out[f"{t.name} {t.lang}"] = acc
        by_domain.setdefault(t.name, []).append(acc)
    for name, values in by_domain.items():
        out[name] = sum(values) / len(values)
    out["score"] = sum(out[name] for name in by_domain) / len(by_domain)
    return out
