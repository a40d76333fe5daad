"""Evaluators: one task on one data set and language, any
:class:`~uclip.encoders.base.EmbeddingModel`.

Like sentence-transformers' evaluators, each has a ``name`` and a ``primary_metric`` and is called
on a model: ``metrics = evaluator(model)``. :meth:`Evaluator.run` wraps that call in a result
record (model, weights, data set, language, protocol, metrics, timings, versions, git commit,
date) that :func:`save_result` writes as one JSON file per run and ``uclip report`` tabulates
(CLIP_benchmark's habit: results as data first, tables second).

Metrics come from :mod:`uclip.eval.metrics` as fractions and are recorded in percent, as the
papers report them (uCLIP Tables 1-2, CLT Table 1).

Callers that already hold features (the quickstart, the ablation, CLT, the figures) use the
text evaluators' features-in entry point,
:meth:`EmbeddingPairEvaluator.compute_from_embeddings` (as sentence-transformers' evaluators
accept precomputed embeddings): the same metric path as ``run(model)``, and the same record.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from torch import Tensor

from uclip.data.records import (
    BitextDataset,
    ClassificationDataset,
    ClassificationPrompts,
    RetrievalDataset,
)
from uclip.encoders.base import EmbeddingModel
from uclip.errors import UclipError
from uclip.eval.metrics import (
    accuracy,
    distinct_candidates,
    macro_f1,
    query_ranks,
    recall_at_k,
    retrieval_recall,
)
from uclip.eval.report import run_metadata
from uclip.features.scoring import (
    COSINE,
    ReferenceQueries,
    ScorerSpec,
    check_reference,
    dot_form,
)
from uclip.validation import check_record

RESULT_FORMAT = "uclip-eval-run/1"
ENGLISH_CODES = frozenset({"en", "eng_Latn"})


def _percent(metrics: dict[str, float]) -> dict[str, float]:
    return {key: 100.0 * value for key, value in metrics.items()}


def check_limit(limit: int | None) -> None:
    """``limit`` is ``None`` (everything) or an integer >= 1."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise UclipError(
            f"limit {limit!r} leaves nothing to evaluate: pass --limit N with N >= 1, or no --limit"
        )


def take_images(dataset: RetrievalDataset, limit: int | None) -> RetrievalDataset:
    """The first ``limit`` images of ``dataset`` with all their captions (a prefix, since
    captions are grouped by image in source order)."""
    check_limit(limit)
    if limit is None or limit >= dataset.num_images:
        return dataset
    keep = [i for i, image in enumerate(dataset.caption_to_image) if image < limit]
    return RetrievalDataset(
        name=dataset.name,
        lang=dataset.lang,
        image_ids=dataset.image_ids[:limit],
        captions=[dataset.captions[i] for i in keep],
        caption_to_image=[dataset.caption_to_image[i] for i in keep],
        first_caption_index=dataset.first_caption_index[:limit],
        image_paths=None if dataset.image_paths is None else dataset.image_paths[:limit],
        english_captions=(
            None
            if dataset.english_captions is None
            else [dataset.english_captions[i] for i in keep]
        ),
        notes=list(dataset.notes),
    )


@dataclass
class EvalResult:
    """One run: who (model, weights), on what (task, data set, language, protocol), how well.

    ``metrics`` are in percent; ``sizes`` counts what was actually scored (``images`` and
    ``captions`` for retrieval, ``images`` and ``classes`` for zero-shot, ``queries`` and
    ``candidates`` for cross-lingual retrieval, ``pairs`` for bitext). ``limit`` is the
    ``--limit`` given (images per class for zero-shot), ``None`` for the whole set.
    ``scorer`` names how candidates were ranked (:attr:`ScorerSpec.name`: ``cosine``,
    ``csls(k=10)``, ``qbnorm(beta=20)``, ``csls-transductive(k=10)``) and ``scorer_reference``
    the reference query set its penalty came from (``None`` for cosine).
    """

    task: str
    model: str
    weights: str
    dataset: str
    lang: str
    protocol: str
    metrics: dict[str, float]
    primary_metric: str
    sizes: dict[str, int]
    limit: int | None = None
    notes: list[str] = field(default_factory=list)
    model_info: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    scorer: str = "cosine"
    scorer_reference: str | None = None
    format: str = RESULT_FORMAT

    @property
    def primary(self) -> float:
        return self.metrics[self.primary_metric]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "result") -> EvalResult:
        if data.get("format") != RESULT_FORMAT:
            raise UclipError(
                f"{source} is not a uclip eval run (format {data.get('format')!r}, expected "
                f"{RESULT_FORMAT!r}): point at the --out folder of `uclip eval`"
            )
        fix = "delete that file or rerun that eval"
        return cls(**check_record(data, cls, source, fix))

    def row(self) -> dict[str, Any]:
        """A flat table row: provenance, sizes and each metric rounded to 2 decimals."""
        return {
            "task": self.task,
            "dataset": self.dataset,
            "lang": self.lang,
            "protocol": self.protocol,
            "scorer": self.scorer,
            "model": self.model,
            "weights": self.weights,
            "n": next(iter(self.sizes.values()), None),
            **{key: round(value, 2) for key, value in self.metrics.items()},
        }


class Evaluator(ABC):
    """Base class: ``evaluator(model) -> metrics`` (percent), ``evaluator.run(model) -> record``.

    Subclasses set ``name`` (the task), ``primary_metric`` and :attr:`protocol`, and implement
    :meth:`compute`, which returns the metrics as fractions and the sizes scored.
    """

    name: str = ""
    primary_metric: str = ""
    scorer: ScorerSpec = COSINE
    reference: ReferenceQueries | None = None

    def __init__(self, dataset_name: str, lang: str, limit: int | None = None) -> None:
        check_limit(limit)
        self.dataset_name = dataset_name
        self.lang = lang
        self.limit = limit
        self.notes: list[str] = []
        self.timings: dict[str, float] = {}
        self.sizes: dict[str, int] = {}
        # The last computation's metrics as fractions (``__call__`` returns them in percent).
        self.fractions: dict[str, float] = {}

    @property
    def protocol(self) -> str:
        return "default"

    @abstractmethod
    def compute(self, model: EmbeddingModel) -> tuple[dict[str, float], dict[str, int]]:
        """``(metrics as fractions, sizes)``; adds to ``self.timings``."""

    def __call__(self, model: EmbeddingModel) -> dict[str, float]:
        self.timings = {}
        self.fractions, self.sizes = self.compute(model)
        return _percent(self.fractions)

    def run(self, model: EmbeddingModel) -> EvalResult:
        """Evaluate ``model`` and return the full record (see :class:`EvalResult`)."""
        started = time.perf_counter()
        metrics = self(model)
        self.timings["total_s"] = time.perf_counter() - started
        # weights are read after encoding: lazily built towers are known now
        return self.record(metrics, model.name, model.weights, model.describe())

    def record(
        self, metrics: dict[str, float], model: str, weights: str, model_info: dict[str, Any]
    ) -> EvalResult:
        """The run record of ``metrics`` (percent) from the last computation."""
        return EvalResult(
            task=self.name,
            model=model,
            weights=weights,
            dataset=self.dataset_name,
            lang=self.lang,
            protocol=self.protocol,
            metrics=metrics,
            primary_metric=self.primary_metric,
            sizes=dict(self.sizes),
            limit=self.limit,
            notes=list(self.notes),
            model_info=model_info,
            timings={k: round(v, 3) for k, v in self.timings.items()},
            meta=run_metadata(),
            scorer=self.scorer.name,
            scorer_reference=self._reference_description(),
        )

    def use_scorer(
        self,
        scorer: ScorerSpec | str,
        reference: ReferenceQueries | None,
        query_texts: Sequence[str],
    ) -> None:
        """Rank candidates by ``scorer`` (:mod:`uclip.features.scoring`). CSLS and qbnorm need
        ``reference``, a query set that is not the test queries (``query_texts``);
        ``csls-transductive`` takes the test queries and no reference."""
        spec = check_reference(scorer, reference)
        if reference is not None and reference.texts is not None:
            tests = set(query_texts)
            shared = len(tests & set(reference.texts))
            if shared * 2 >= len(tests):
                raise UclipError(
                    f"the reference set ({reference.description}) holds {shared} of the "
                    f"{len(tests)} test queries: use other queries, or csls-transductive for "
                    "offline bitext mining"
                )
            if shared:
                self.notes.append(
                    f"{shared} of the {len(tests)} test queries also occur in the reference set"
                )
        self.scorer, self.reference = spec, reference

    def _reference_description(self) -> str | None:
        if self.scorer.transductive:
            return "the test queries themselves (transductive)"
        return None if self.reference is None else self.reference.description

    def _embed_reference(self, encode: Any = None) -> Tensor | None:
        """The reference queries' embeddings (``encode`` embeds reference texts; a reference
        given as embeddings needs none); None for cosine and the transductive scorer."""
        if self.reference is None:
            return None
        return self._timed("encode_reference_s", self.reference.embed, encode)

    def _timed(self, key: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        out = fn(*args, **kwargs)
        self.timings[key] = self.timings.get(key, 0.0) + time.perf_counter() - started
        return out


class EmbeddingPairEvaluator(Evaluator):
    """An evaluator that scores query embeddings against candidate embeddings.

    :meth:`compute` encodes (:meth:`encode`) and scores (:meth:`score_embeddings`);
    :meth:`compute_from_embeddings` scores features a caller already holds, and returns the same
    record as :meth:`Evaluator.run`. Every query is ranked by :meth:`rank`, the one place where
    queries meet candidates.
    """

    @abstractmethod
    def texts(self) -> tuple[list[str], list[str]]:
        """``(query texts, candidate texts)``, row-aligned with what :meth:`encode` embeds."""

    @abstractmethod
    def encode(self, model: EmbeddingModel) -> tuple[Tensor, Tensor]:
        """``(queries, candidates)`` embedded by ``model``; adds to ``self.timings``."""

    @abstractmethod
    def score_embeddings(
        self, queries: Tensor, candidates: Tensor
    ) -> tuple[dict[str, float], dict[str, int]]:
        """``(metrics as fractions, sizes)`` of embeddings aligned with :meth:`texts`."""

    @abstractmethod
    def query_ranks(self, queries: Tensor, candidates: Tensor) -> Tensor:
        """(Q,) 0-based rank of each X -> English query's correct candidate: the per-item
        outcome behind the primary metric (paired bootstraps over items resample it)."""

    _reference_embeddings: Tensor | None = None

    def rank(self, queries: Tensor, candidates: Tensor, correct: Sequence[int]) -> Tensor:
        """(Q,) 0-based rank of each query's correct candidate under ``self.scorer`` (cosine of
        unit rows by default; pessimistic ties: :mod:`uclip.eval.metrics`). A hubness scorer
        enters as one extra column (:func:`~uclip.features.scoring.dot_form`), so the ranking
        code is cosine's."""
        if self.scorer.kind == "cosine":
            return query_ranks(queries, candidates, correct)
        queries, candidates = self._timed(
            "penalty_s",
            dot_form,
            queries,
            candidates,
            self.scorer,
            reference_queries=self._reference_embeddings,
        )
        return query_ranks(queries, candidates, correct)

    def _embed(self, model: EmbeddingModel) -> tuple[Tensor, Tensor]:
        """:meth:`encode`, and the scorer's reference queries embedded by the same model."""
        queries, candidates = self.encode(model)
        self._reference_embeddings = self._embed_reference(model.encode_text)
        return queries, candidates

    def item_ranks(self, model: EmbeddingModel) -> Tensor:
        """(Q,) :meth:`query_ranks` of ``model``, embedded and scored as :meth:`compute` does."""
        return self.query_ranks(*self._embed(model))

    def compute(self, model: EmbeddingModel) -> tuple[dict[str, float], dict[str, int]]:
        return self._timed("score_s", self.score_embeddings, *self._embed(model))

    def compute_from_embeddings(
        self,
        queries: Tensor,
        candidates: Tensor,
        *,
        model: str,
        weights: str = "real",
        model_info: dict[str, Any] | None = None,
        reference: Tensor | None = None,
    ) -> EvalResult:
        """The run record of precomputed embeddings, row-aligned with :meth:`texts` (unit rows).

        ``model``, ``weights`` and ``model_info`` name what produced them, as ``run(model)``
        takes them from the model. Under a CSLS / qbnorm scorer whose reference set holds
        texts, ``reference`` is their embeddings by the same model.
        """
        self.timings = {}
        started = time.perf_counter()
        self._reference_embeddings = reference if reference is not None else self._embed_reference()
        self.fractions, self.sizes = self._timed(
            "score_s", self.score_embeddings, queries, candidates
        )
        self.timings["total_s"] = time.perf_counter() - started
        return self.record(_percent(self.fractions), model, weights, dict(model_info or {}))

    def _check_rows(self, queries: Tensor, candidates: Tensor) -> None:
        want = tuple(len(side) for side in self.texts())
        got = (queries.shape[0], candidates.shape[0])
        if got != want:
            raise UclipError(
                f"{self.dataset_name} {self.lang}: got {got[0]} query and {got[1]} candidate "
                f"rows for {want[0]} and {want[1]} texts: embed the evaluator's texts() in order"
            )


class CrossModalRetrievalEvaluator(Evaluator):
    """Image<->text Recall@K (uCLIP Table 1: ``sim(f_C(v_q), f_M(m_j))``, R@10 both ways).

    ``protocol="all"`` ranks every caption (an image query counts the best of its captions);
    ``"first"`` keeps each image's first caption, uCLIP's one-caption-per-image setting. The
    translated sets and XM3600 have one caption per image, where the two agree.
    """

    name = "retrieval"
    primary_metric = "mean_R@10"

    def __init__(
        self,
        dataset: RetrievalDataset,
        *,
        protocol: str = "all",
        ks: Sequence[int] = (1, 5, 10),
        limit: int | None = None,
    ) -> None:
        super().__init__(dataset.name, dataset.lang, limit)
        if protocol not in ("all", "first"):
            raise UclipError(f"protocol must be 'all' or 'first', got {protocol!r}")
        if dataset.image_paths is None:
            raise UclipError(
                f"{dataset.name} retrieval needs the image files: pass --images DIR "
                "(images_dir=...) with the data set's images"
            )
        self.dataset = take_images(dataset, limit)
        self._protocol = protocol
        self.ks = tuple(ks)
        self.notes = list(self.dataset.notes)

    @property
    def protocol(self) -> str:
        return self._protocol

    def compute(self, model: EmbeddingModel) -> tuple[dict[str, float], dict[str, int]]:
        ds = self.dataset
        images = self._timed("encode_images_s", model.encode_image, ds.image_paths)
        texts = self._timed("encode_texts_s", model.encode_text, ds.captions, ds.lang)
        metrics = self._timed(
            "score_s",
            retrieval_recall,
            images,
            texts,
            ds.caption_to_image,
            self.ks,
            self._protocol,
        )
        if 10 in self.ks:
            metrics["mean_R@10"] = (metrics["i2t_R@10"] + metrics["t2i_R@10"]) / 2
        n_texts = ds.num_images if self._protocol == "first" else ds.num_captions
        return metrics, {"images": ds.num_images, "captions": n_texts}


class ZeroShotClassificationEvaluator(Evaluator):
    """Zero-shot classification with one translated prompt per class (uCLIP Table 2).

    Each image ``f_C(v)`` is assigned the class whose prompt embedding ``f_M(prompt)`` is most
    similar (cosine); ties go to the lower class index (``argmax``). Reports accuracy and
    macro-F1; the paper reports "average F1 scores", taken here as macro-F1 (the primary metric).
    """

    name = "zeroshot"
    primary_metric = "macro_f1"

    def __init__(
        self,
        dataset: ClassificationDataset,
        prompts: ClassificationPrompts,
        *,
        limit_per_class: int | None = None,
    ) -> None:
        # The prompts' data set key ("cifar10", "stl10") names the run: the loaders call the
        # same set "CIFAR-10" (folders) or "stl10" (binary).
        super().__init__(prompts.dataset, prompts.lang, limit_per_class)
        if list(prompts.class_names_en) != list(dataset.class_names_en):
            raise UclipError(
                f"{prompts.dataset} prompts name classes {prompts.class_names_en[:3]}... but "
                f"{dataset.name} has {dataset.class_names_en[:3]}...: use the data set's prompts"
            )
        self.dataset = dataset
        self.prompts = prompts
        self.keep = self._select(dataset.labels, limit_per_class)
        self.notes = [*dataset.notes, *prompts.notes]

    @staticmethod
    def _select(labels: Sequence[int], limit_per_class: int | None) -> list[int]:
        if limit_per_class is None:
            return list(range(len(labels)))
        seen: dict[int, int] = {}
        keep = []
        for index, label in enumerate(labels):
            if seen.get(label, 0) < limit_per_class:
                seen[label] = seen.get(label, 0) + 1
                keep.append(index)
        return keep

    @property
    def protocol(self) -> str:
        return "one prompt per class"

    def _images(self) -> list[Any]:
        ds = self.dataset
        if ds.image_paths is not None:
            return [ds.image_paths[i] for i in self.keep]
        return [ds.load_image(i) for i in self.keep]

    def compute(self, model: EmbeddingModel) -> tuple[dict[str, float], dict[str, int]]:
        classes = self._timed("encode_texts_s", model.encode_text, self.prompts.prompts, self.lang)
        images = self._timed("encode_images_s", model.encode_image, self._images())
        started = time.perf_counter()
        preds = (images @ classes.T).argmax(dim=1)
        labels = [self.dataset.labels[i] for i in self.keep]
        metrics = {
            "accuracy": accuracy(preds, labels),
            "macro_f1": macro_f1(preds, labels, len(self.prompts.prompts)),
        }
        self.timings["score_s"] = time.perf_counter() - started
        return metrics, {"images": len(self.keep), "classes": len(self.prompts.prompts)}


class CrossLingualTextRetrievalEvaluator(EmbeddingPairEvaluator):
    """Captions in language X -> English captions of the same images (text->text Recall@K).

    The quickstart's evaluation, and uCLIP's text-anchor setting: ``encode_text`` on the queries,
    ``encode_english`` on the candidates (for a uCLIP model, ``f_M(e^M(x))`` against
    ``f_C(e^C(en))``). Identical English captions are one candidate
    (:func:`~uclip.eval.metrics.distinct_candidates`), so a perfect model scores 100% (XM3600
    and COCO hold a few repeated captions, which would otherwise tie).
    """

    name = "crosslingual"
    primary_metric = "x2en_R@1"

    def __init__(
        self,
        dataset: RetrievalDataset,
        *,
        ks: Sequence[int] = (1, 5, 10),
        limit: int | None = None,
        scorer: ScorerSpec | str = COSINE,
        reference: ReferenceQueries | None = None,
    ) -> None:
        super().__init__(dataset.name, dataset.lang, limit)
        if dataset.lang in ENGLISH_CODES:
            raise UclipError(
                f"{dataset.name} {dataset.lang} is English already: cross-lingual retrieval "
                "needs a non-English language (--langs cs,fi,...)"
            )
        if dataset.english_captions is None:
            raise UclipError(
                f"{dataset.name} {dataset.lang} has no English captions aligned with its "
                "captions: it cannot be used for cross-lingual retrieval"
            )
        self.dataset = take_images(dataset.first_captions_only(), limit)
        self.ks = tuple(ks)
        # Row of ``english`` that stands for each distinct candidate text, and each query's one.
        self.candidate_rows, self.correct = distinct_candidates(self.dataset.english_captions)
        self.notes = list(self.dataset.notes)
        if len(self.candidate_rows) < len(self.correct):
            self.notes.append(
                f"{len(self.correct) - len(self.candidate_rows)} repeated English captions were "
                "merged into one candidate each"
            )
        self.use_scorer(scorer, reference, self.dataset.captions)

    @property
    def protocol(self) -> str:
        return "x->en text, first caption per image"

    @classmethod
    def from_pairs(
        cls,
        name: str,
        lang: str,
        foreign: Sequence[str],
        english: Sequence[str],
        *,
        ks: Sequence[int] = (1, 5, 10),
        limit: int | None = None,
    ) -> CrossLingualTextRetrievalEvaluator:
        """An evaluator of aligned (text in ``lang``, English text) pairs, one per image (the
        first ``limit`` pairs)."""
        n = len(foreign)
        ids = list(range(n))
        data = RetrievalDataset(
            name,
            lang,
            [str(i) for i in ids],
            list(foreign),
            ids,
            ids,
            english_captions=list(english),
        )
        return cls(data, ks=ks, limit=limit)

    def texts(self) -> tuple[list[str], list[str]]:
        # All English captions, in their aligned order (the cache then reuses the same shards as
        # any other run on this data set); repeated texts are dropped when scoring.
        return self.dataset.captions, list(self.dataset.english_captions or [])

    def encode(self, model: EmbeddingModel) -> tuple[Tensor, Tensor]:
        foreign, english = self.texts()
        queries = self._timed("encode_texts_s", model.encode_text, foreign, self.lang)
        return queries, self._timed("encode_english_s", model.encode_english, english)

    def query_ranks(self, queries: Tensor, candidates: Tensor) -> Tensor:
        self._check_rows(queries, candidates)
        return self.rank(queries, candidates[self.candidate_rows], self.correct)

    def score_embeddings(
        self, queries: Tensor, candidates: Tensor
    ) -> tuple[dict[str, float], dict[str, int]]:
        ranks = self.query_ranks(queries, candidates)
        metrics = {f"x2en_R@{k}": v for k, v in recall_at_k(ranks, self.ks).items()}
        return metrics, {"queries": len(self.correct), "candidates": len(self.candidate_rows)}


class BitextEvaluator(EmbeddingPairEvaluator):
    """FLORES-200 bitext matching: X->English and English->X top-1 accuracy (CLT, Table 1).

    For each sentence, the nearest translation by cosine similarity among all sentences of the
    other language; English goes through ``encode_english``. Rows are aligned one to one (every
    sentence is its own candidate, repeated or not). ``ks`` adds X->English Recall@K
    (``x2en_R@K``), as the quickstart and the ablation report it. Under a CSLS / qbnorm
    ``scorer`` only X->English is scored (its reference queries are X-side texts);
    ``csls-transductive`` scores both directions, each with the other side's test sentences as
    its queries.
    """

    name = "bitext"
    primary_metric = "x2en_acc"

    def __init__(
        self,
        dataset: BitextDataset,
        *,
        ks: Sequence[int] = (),
        limit: int | None = None,
        scorer: ScorerSpec | str = COSINE,
        reference: ReferenceQueries | None = None,
    ) -> None:
        super().__init__(dataset.name, dataset.src_lang, limit)
        if dataset.src_lang in ENGLISH_CODES:
            raise UclipError(
                f"{dataset.name} source language {dataset.src_lang} is English: bitext "
                "matching needs a non-English source (--langs ces_Latn,...)"
            )
        self.dataset = dataset
        self.src = dataset.src[:limit] if limit else list(dataset.src)
        self.tgt = dataset.tgt[:limit] if limit else list(dataset.tgt)
        self.ks = tuple(ks)
        self.notes = list(dataset.notes)
        self.use_scorer(scorer, reference, self.src)
        if self.scorer.needs_reference:
            self.notes.append(f"en2x_acc is not scored under {self.scorer.name}")

    @property
    def protocol(self) -> str:
        # The language is the run's ``lang``; keeping it out of the protocol puts all languages
        # of one target in one report table.
        return f"X<->{self.dataset.tgt_lang} top-1"

    def _encode_target(self, model: EmbeddingModel) -> Tensor:
        if self.dataset.tgt_lang in ENGLISH_CODES:
            return model.encode_english(self.tgt)
        return model.encode_text(self.tgt, self.dataset.tgt_lang)

    def texts(self) -> tuple[list[str], list[str]]:
        return self.src, self.tgt

    def encode(self, model: EmbeddingModel) -> tuple[Tensor, Tensor]:
        src = self._timed("encode_texts_s", model.encode_text, self.src, self.lang)
        return src, self._timed("encode_english_s", self._encode_target, model)

    def query_ranks(self, queries: Tensor, candidates: Tensor) -> Tensor:
        self._check_rows(queries, candidates)
        return self.rank(queries, candidates, list(range(len(self.src))))

    def score_embeddings(
        self, queries: Tensor, candidates: Tensor
    ) -> tuple[dict[str, float], dict[str, int]]:
        x2en = self.query_ranks(queries, candidates)
        diagonal = list(range(len(self.src)))
        metrics = {"x2en_acc": float((x2en == 0).double().mean())}
        # Under a reference-set scorer en2x would need English-side reference queries; the
        # transductive penalty of each X candidate is taken over the English test sentences.
        if not self.scorer.needs_reference:
            en2x = self.rank(candidates, queries, diagonal)
            metrics["en2x_acc"] = float((en2x == 0).double().mean())
        if self.ks:
            metrics.update({f"x2en_R@{k}": v for k, v in recall_at_k(x2en, self.ks).items()})
        return metrics, {"pairs": len(self.src)}
