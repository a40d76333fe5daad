"""Hubness-aware scorers for nearest-neighbour retrieval in a joint embedding space.

Maps between embedding spaces (uCLIP's heads, a ridge map) produce *hubs*: a few candidates that
sit near almost every query and win the top-1 of many of them. The scorers here subtract a
per-candidate hubness penalty from the cosine similarity (queries and candidates L2-normalised):

* ``cosine``: ``s(x, y) = cos(x, y)``, the default and the standard protocol.
* ``csls``: cross-domain similarity local scaling (Conneau et al. 2018, "Word Translation
  Without Parallel Data", Sec. 2.3): ``CSLS(x, y) = 2 cos(x, y) - r_T(x) - r_S(y)``, where
  ``r_S(y)`` is the mean cosine of candidate ``y`` to its ``k`` nearest queries. ``r_T(x)`` is
  constant for a query, so ranking candidates needs only ``2 cos(x, y) - r(y)``, which is the
  score returned here (:func:`csls_penalty` gives ``r(y)``).
* ``qbnorm``: querybank normalisation with the inverted softmax (Bogolin et al. 2022, "Cross
  Modal Retrieval with Querybank Normalisation"): ``exp(b cos(x, y)) / sum_q exp(b cos(q,
  y))`` over a querybank; its logarithm ``b cos(x, y) - logsumexp_q(b cos(q, y))`` ranks the
  same way and is the score here (:func:`qbnorm_penalty` gives the log-sum-exp).
* ``csls-transductive``: CSLS whose neighbourhood is taken over the *test queries themselves*.
  It sees the whole test batch, so it is for offline bitext mining only and is labelled
  "transductive" in its name wherever it appears.

Both penalties depend on the candidate only, so they are computed once from a reference query
set that is *not* the test queries (bank M projected by f_M, a user's text file, a log of past
queries) and stored beside the candidates: scoring a query costs one dot product, as cosine does
(:func:`dot_form`). Margin scoring (Artetxe & Schwenk 2019) divides instead of subtracting, which
makes the correction depend on the query; it is not implemented.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import torch
from torch import Tensor

from uclip.errors import UclipError

ScorerKind = Literal["cosine", "csls", "qbnorm", "csls-transductive"]
KINDS: tuple[str, ...] = get_args(ScorerKind)
DEFAULT_K = 10
DEFAULT_BETA = 20.0
"""Inverted-softmax scale (1 / temperature) of ``qbnorm``; a hyperparameter to choose on dev
data, as Bogolin et al. 2022 do."""
CANDIDATE_CHUNK = 1024
REFERENCE_CHUNK = 8192


@dataclass(frozen=True)
class ScorerSpec:
    """Which score ranks candidates for a query (module docstring); ``k`` is CSLS's
    neighbourhood size, ``beta`` the inverted-softmax scale of ``qbnorm``."""

    kind: ScorerKind = "cosine"
    k: int = DEFAULT_K
    beta: float = DEFAULT_BETA

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise UclipError(f"unknown scorer {self.kind!r}: use one of {', '.join(KINDS)}")
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise UclipError(f"scorer k must be an integer >= 1, got {self.k!r}")
        if not isinstance(self.beta, int | float) or not 0 < float(self.beta) < float("inf"):
            raise UclipError(f"scorer beta must be a positive number, got {self.beta!r}")

    @property
    def transductive(self) -> bool:
        """True when the penalty comes from the test queries themselves (batch mining only)."""
        return self.kind == "csls-transductive"

    @property
    def needs_reference(self) -> bool:
        """True when a reference query set (never the test queries) must be given."""
        return self.kind in ("csls", "qbnorm")

    @property
    def weight(self) -> float:
        """The factor on cos(x, y) in the score: 1 (cosine), 2 (CSLS) or beta (qbnorm)."""
        return {"cosine": 1.0, "qbnorm": float(self.beta)}.get(self.kind, 2.0)

    @property
    def name(self) -> str:
        """Short, parseable name recorded with results: ``cosine``, ``csls(k=10)``,
        ``qbnorm(beta=20)``, ``csls-transductive(k=10)``."""
        if self.kind == "cosine":
            return "cosine"
        if self.kind == "qbnorm":
            return f"qbnorm(beta={float(self.beta):g})"
        return f"{self.kind}(k={self.k})"

    def describe(self) -> str:
        """One human sentence for tables and banners."""
        if self.kind == "cosine":
            return "cosine similarity (standard protocol)"
        if self.kind == "qbnorm":
            return (
                f"querybank normalisation, inverted softmax with beta={float(self.beta):g} "
                "(Bogolin et al. 2022)"
            )
        text = f"CSLS with k={self.k} (Conneau et al. 2018)"
        if self.transductive:
            text += (
                ", transductive: hubness taken over the test queries themselves "
                "(offline bitext mining only)"
            )
        return text


COSINE = ScorerSpec()


def parse_scorer(text: str | ScorerSpec) -> ScorerSpec:
    """``"cosine"``, ``"csls"``, ``"csls:k=5"``, ``"qbnorm:beta=30"``,
    ``"csls-transductive:k=10"``, or a :attr:`ScorerSpec.name` such as ``"csls(k=10)"``."""
    if isinstance(text, ScorerSpec):
        return text
    match = re.fullmatch(r"\s*([a-z-]+)\s*(?::(.*)|\((.*)\))?\s*", str(text))
    if match is None or match.group(1) not in KINDS:
        raise UclipError(
            f"unknown scorer {text!r}: use cosine, csls[:k=N], qbnorm[:beta=B] or "
            "csls-transductive[:k=N]"
        )
    kind = match.group(1)
    options: dict[str, int | float] = {}
    for item in filter(None, (match.group(2) or match.group(3) or "").split(",")):
        key, _, value = (part.strip() for part in item.partition("="))
        allowed = {"csls": "k", "csls-transductive": "k", "qbnorm": "beta"}.get(kind)
        if key != allowed:
            raise UclipError(
                f"scorer {kind} takes {'no options' if allowed is None else allowed + '=...'}, "
                f"got {item.strip()!r} in {text!r}"
            )
        try:
            options[key] = int(value) if key == "k" else float(value)
        except ValueError:
            raise UclipError(
                f"scorer option {item.strip()!r} in {text!r} is not a number"
            ) from None
    return ScorerSpec(kind, **options)  # type: ignore[arg-type]


@dataclass(frozen=True, eq=False)
class ReferenceQueries:
    """The reference query set a penalty is computed from: texts (embedded with the model being
    scored) or embeddings already in the joint space, plus a description recorded with every
    result (for example ``"file refs.txt: 500 texts"``)."""

    description: str
    texts: tuple[str, ...] | None = None
    embeddings: Tensor | None = None
    lang: str | None = None

    def __post_init__(self) -> None:
        if (self.texts is None) == (self.embeddings is None):
            raise UclipError("a reference query set takes either texts or embeddings, not both")
        if self.texts is not None and not self.texts:
            raise UclipError(f"reference query set {self.description} is empty: give queries")

    @classmethod
    def from_texts(
        cls, texts: Sequence[str], description: str, lang: str | None = None
    ) -> ReferenceQueries:
        return cls(f"{description}: {len(texts)} texts", texts=tuple(texts), lang=lang)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], lang: str | None = None) -> ReferenceQueries:
        """One query per line of a UTF-8 text file (blank lines skipped); the description
        names the file and the sha256 of its bytes, so a result says which queries it used."""
        file = Path(path)
        try:
            data = file.read_bytes()
            lines = data.decode("utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise UclipError(
                f"cannot read reference queries {file} ({exc}): give a UTF-8 text file, "
                "one query per line"
            ) from None
        texts = [line.strip() for line in lines if line.strip()]
        if not texts:
            raise UclipError(f"reference queries {file} holds no text: one query per line")
        digest = hashlib.sha256(data).hexdigest()[:12]
        return cls.from_texts(texts, f"file {file.name} (sha256 {digest})", lang=lang)

    def embed(
        self, encode_text: Callable[[Sequence[str], str | None], Tensor] | None = None
    ) -> Tensor:
        """(N_ref, d) reference embeddings: stored ones, or ``encode_text(texts, lang)``."""
        if self.embeddings is not None:
            return self.embeddings
        if encode_text is None:
            raise UclipError(
                f"reference queries {self.description} are texts: embed them with the model "
                "(or give ReferenceQueries(embeddings=...))"
            )
        return encode_text(list(self.texts or ()), self.lang)


def check_reference(scorer: ScorerSpec | str, reference: ReferenceQueries | None) -> ScorerSpec:
    """The parsed scorer, once ``reference`` is known to be given exactly when the scorer needs
    one (``csls``, ``qbnorm``) and, for CSLS, to hold at least ``k`` texts."""
    spec = parse_scorer(scorer)
    if spec.needs_reference and reference is None:
        raise UclipError(
            f"scorer {spec.name} needs a reference query set that is not the test queries: "
            "pass --scorer-reference FILE (bank M's texts, a log of queries)"
        )
    if not spec.needs_reference and reference is not None:
        raise UclipError(
            f"scorer {spec.name} takes no reference query set: drop --scorer-reference, or use "
            "csls or qbnorm"
        )
    if spec.kind == "csls" and reference is not None:
        size = len(reference.texts) if reference.texts is not None else len(reference.embeddings)
        if size < spec.k:
            raise UclipError(
                f"scorer {spec.name} needs at least {spec.k} reference queries, "
                f"{reference.description} has {size}: give more or lower k"
            )
    return spec


def _check(name: str, x: Tensor) -> None:
    if not isinstance(x, Tensor) or x.ndim != 2 or x.shape[0] == 0:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise UclipError(f"{name} must be a non-empty 2-D tensor (N, d), got {shape}")


def _check_pair(candidates: Tensor, reference_queries: Tensor) -> None:
    _check("candidates", candidates)
    _check("reference_queries", reference_queries)
    if candidates.shape[1] != reference_queries.shape[1]:
        raise UclipError(
            f"candidates dim {candidates.shape[1]} != reference queries dim "
            f"{reference_queries.shape[1]}: embed both with the same model"
        )


def csls_penalty(
    candidates: Tensor,
    reference_queries: Tensor,
    k: int = DEFAULT_K,
    *,
    chunk_size: int = CANDIDATE_CHUNK,
    reference_chunk_size: int = REFERENCE_CHUNK,
) -> Tensor:
    """CSLS's ``r(y)``: mean cosine of each candidate to its ``k`` nearest reference queries.

    Args:
        candidates: (N_c, d) L2-normalised; reference_queries: (N_ref, d) L2-normalised.

    Returns (N_c,) float32. Memory: one (chunk_size, reference_chunk_size + k) block at a time;
    the running top-k is merged chunk by chunk over the reference set.
    """
    _check_pair(candidates, reference_queries)
    if k > reference_queries.shape[0]:
        raise UclipError(
            f"CSLS k={k} needs at least {k} reference queries, got "
            f"{reference_queries.shape[0]}: give more or lower k"
        )
    out = torch.empty(candidates.shape[0], dtype=torch.float32, device=candidates.device)
    for lo in range(0, candidates.shape[0], chunk_size):
        block = candidates[lo : lo + chunk_size].float()
        best = torch.empty(block.shape[0], 0, device=block.device)
        for rlo in range(0, reference_queries.shape[0], reference_chunk_size):
            sims = block @ reference_queries[rlo : rlo + reference_chunk_size].float().T
            merged = torch.cat([best, sims], dim=1)
            best = merged.topk(min(k, merged.shape[1]), dim=1).values
        out[lo : lo + block.shape[0]] = best.mean(dim=1)
    return out


def qbnorm_penalty(
    candidates: Tensor,
    reference_queries: Tensor,
    beta: float = DEFAULT_BETA,
    *,
    chunk_size: int = CANDIDATE_CHUNK,
    reference_chunk_size: int = REFERENCE_CHUNK,
) -> Tensor:
    """Querybank normalisation's ``log sum_q exp(beta cos(q, y))`` over the reference queries
    (the querybank), for each candidate ``y``: (N_c,) float32, streamed as a running
    log-sum-exp over reference chunks."""
    _check_pair(candidates, reference_queries)
    out = torch.empty(candidates.shape[0], dtype=torch.float32, device=candidates.device)
    for lo in range(0, candidates.shape[0], chunk_size):
        block = candidates[lo : lo + chunk_size].float()
        total = torch.full((block.shape[0],), -torch.inf, device=block.device)
        for rlo in range(0, reference_queries.shape[0], reference_chunk_size):
            sims = block @ reference_queries[rlo : rlo + reference_chunk_size].float().T
            total = torch.logaddexp(total, torch.logsumexp(beta * sims, dim=1))
        out[lo : lo + block.shape[0]] = total
    return out


def candidate_penalty(
    candidates: Tensor,
    reference_queries: Tensor,
    scorer: ScorerSpec | str,
    *,
    chunk_size: int = CANDIDATE_CHUNK,
    reference_chunk_size: int = REFERENCE_CHUNK,
) -> Tensor:
    """The scorer's per-candidate penalty (N_c,): :func:`csls_penalty` for both CSLS kinds,
    :func:`qbnorm_penalty` for ``qbnorm``, zeros for ``cosine``. For ``csls-transductive`` pass
    the test queries as ``reference_queries``; otherwise never pass them."""
    spec = parse_scorer(scorer)
    chunks = {"chunk_size": chunk_size, "reference_chunk_size": reference_chunk_size}
    if spec.kind == "cosine":
        _check_pair(candidates, reference_queries)
        return torch.zeros(candidates.shape[0], dtype=torch.float32, device=candidates.device)
    if spec.kind == "qbnorm":
        return qbnorm_penalty(candidates, reference_queries, spec.beta, **chunks)
    return csls_penalty(candidates, reference_queries, spec.k, **chunks)


def _same_set(a: Tensor, b: Tensor) -> bool:
    return a is b or (a.shape == b.shape and bool(torch.equal(a, b)))


def resolve_penalty(
    queries: Tensor,
    candidates: Tensor,
    scorer: ScorerSpec | str,
    penalty: Tensor | None = None,
    reference_queries: Tensor | None = None,
) -> Tensor | None:
    """The penalty :func:`score` subtracts: ``penalty`` if given, else computed from the test
    ``queries`` (transductive) or from ``reference_queries`` (required, and never equal to the
    test queries); ``None`` for cosine."""
    spec = parse_scorer(scorer)
    if spec.kind == "cosine":
        return None
    if penalty is not None:
        if penalty.shape != (candidates.shape[0],):
            raise UclipError(
                f"penalty has shape {tuple(penalty.shape)}, expected ({candidates.shape[0]},): "
                "one value per candidate"
            )
        return penalty
    if spec.transductive:
        if reference_queries is not None:
            raise UclipError(
                f"{spec.name} takes its reference from the test queries: give no reference set"
            )
        return candidate_penalty(candidates, queries, spec)
    if reference_queries is None:
        raise UclipError(
            f"scorer {spec.name} needs a reference query set that is not the test queries "
            "(bank M, a text file of queries): pass one, or use csls-transductive for offline "
            "bitext mining"
        )
    if _same_set(reference_queries, queries):
        raise UclipError(
            f"the reference query set of {spec.name} is the test query set: that is "
            "csls-transductive; pass other queries or name the transductive scorer"
        )
    return candidate_penalty(candidates, reference_queries, spec)


def score(
    queries: Tensor,
    candidates: Tensor,
    scorer: ScorerSpec | str = COSINE,
    penalty: Tensor | None = None,
    *,
    reference_queries: Tensor | None = None,
) -> Tensor:
    """(N_q, N_c) scores: ``weight * cos(x, y) - penalty(y)`` (cosine: ``cos``; CSLS:
    ``2 cos - r(y)``; qbnorm: ``beta cos - logsumexp_q(beta cos(q, y))``), queries and
    candidates L2-normalised. The penalty comes as in :func:`resolve_penalty`."""
    _check("queries", queries)
    _check("candidates", candidates)
    spec = parse_scorer(scorer)
    sims = queries.float() @ candidates.float().T
    p = resolve_penalty(queries, candidates, spec, penalty, reference_queries)
    return sims if p is None else spec.weight * sims - p[None, :].float()


def dot_form(
    queries: Tensor,
    candidates: Tensor,
    scorer: ScorerSpec | str,
    penalty: Tensor | None = None,
    *,
    reference_queries: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """``(queries', candidates')`` with ``queries' @ candidates'.T == score(...)``: one extra
    column, ``[weight * x, 1]`` and ``[y, -penalty(y)]``. Any dot-product ranking code (the
    chunked metrics, an inner-product index) then ranks by the scorer with no other change.
    Cosine returns the inputs unchanged."""
    spec = parse_scorer(scorer)
    p = resolve_penalty(queries, candidates, spec, penalty, reference_queries)
    if p is None:
        return queries, candidates
    dtype = torch.promote_types(torch.promote_types(queries.dtype, candidates.dtype), torch.float32)
    ones = torch.ones(queries.shape[0], 1, dtype=dtype, device=queries.device)
    q = torch.cat([spec.weight * queries.to(dtype), ones], dim=1)
    c = torch.cat([candidates.to(dtype), -p.to(dtype)[:, None]], dim=1)
    return q, c
