"""Hubness-aware scorers (uclip.features.scoring) against their formulas written as loops."""

from __future__ import annotations

import math

import pytest
import torch

from uclip.errors import UclipError
from uclip.features.scoring import (
    COSINE,
    ReferenceQueries,
    ScorerSpec,
    candidate_penalty,
    csls_penalty,
    dot_form,
    parse_scorer,
    qbnorm_penalty,
    score,
)


def unit(n: int, d: int, seed: int) -> torch.Tensor:
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return x / x.norm(dim=1, keepdim=True)


def cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(sum(a[i] * b[i] for i in range(len(a))))


def brute_csls(queries, candidates, reference, k):
    """CSLS(x, y) = 2 cos(x, y) - r_S(y), r_S(y) = mean of y's k largest cosines to the
    reference queries (r_T(x) is constant per query and left out)."""
    r = []
    for y in candidates:
        sims = sorted((cos(y, q) for q in reference), reverse=True)
        r.append(sum(sims[:k]) / k)
    return [[2 * cos(x, y) - r[j] for j, y in enumerate(candidates)] for x in queries], r


def brute_qbnorm(queries, candidates, reference, beta):
    """log( exp(beta cos(x, y)) / sum_q exp(beta cos(q, y)) )."""
    return [
        [
            math.log(
                math.exp(beta * cos(x, y)) / sum(math.exp(beta * cos(q, y)) for q in reference)
            )
            for y in candidates
        ]
        for x in queries
    ]


def test_csls_matches_brute_force():
    queries, candidates, reference = unit(5, 6, 0), unit(7, 6, 1), unit(9, 6, 2)
    expected, r = brute_csls(queries, candidates, reference, k=3)
    penalty = csls_penalty(candidates, reference, 3)
    assert penalty.tolist() == pytest.approx(r, abs=1e-6)
    got = score(queries, candidates, "csls:k=3", reference_queries=reference)
    assert got.tolist() == [pytest.approx(row, abs=1e-5) for row in expected]


def test_qbnorm_matches_brute_force():
    queries, candidates, reference = unit(4, 5, 3), unit(6, 5, 4), unit(8, 5, 5)
    expected = brute_qbnorm(queries, candidates, reference, beta=7.0)
    got = score(queries, candidates, "qbnorm:beta=7", reference_queries=reference)
    assert got.tolist() == [pytest.approx(row, abs=1e-5) for row in expected]


def test_transductive_csls_uses_the_test_queries():
    queries, candidates = unit(8, 4, 6), unit(5, 4, 7)
    expected, _ = brute_csls(queries, candidates, queries, k=2)
    got = score(queries, candidates, "csls-transductive:k=2")
    assert got.tolist() == [pytest.approx(row, abs=1e-5) for row in expected]
    spec = parse_scorer("csls-transductive")
    assert spec.transductive and "transductive" in spec.name and "transductive" in spec.describe()
    assert not parse_scorer("csls").transductive and "transductive" not in parse_scorer("csls").name
    with pytest.raises(UclipError, match="test queries"):
        score(queries, candidates, spec, reference_queries=unit(3, 4, 8))


def test_reference_set_is_required_and_never_the_test_queries():
    queries, candidates = unit(6, 4, 9), unit(5, 4, 10)
    for name in ("csls", "qbnorm"):
        with pytest.raises(UclipError, match="reference query set"):
            score(queries, candidates, name)
        with pytest.raises(UclipError, match="is the test query set"):
            score(queries, candidates, name, reference_queries=queries.clone())


def test_hub_is_picked_by_cosine_and_demoted_by_csls():
    # Candidate 0 is a hub: close to every reference query. The query's true match is candidate
    # 1, slightly less similar than the hub by cosine.
    hub = torch.tensor([1.0, 0.0, 0.0])
    right = torch.tensor([0.0, 1.0, 0.0])
    candidates = torch.stack([hub, right])
    query = torch.nn.functional.normalize(torch.tensor([[0.75, 0.66, 0.0]]), dim=1)
    reference = torch.nn.functional.normalize(
        torch.tensor([[1.0, 0.1, 0.3], [1.0, -0.1, 0.3], [1.0, 0.1, -0.3], [0.2, 0.2, 1.0]]),
        dim=1,
    )
    assert score(query, candidates).argmax().item() == 0
    assert score(query, candidates, "csls:k=2", reference_queries=reference).argmax().item() == 1
    assert score(query, candidates, "qbnorm:beta=10", reference_queries=reference).argmax() == 1


@pytest.mark.parametrize("kind", ["csls:k=4", "qbnorm:beta=12"])
def test_chunking_equals_unchunked(kind):
    candidates, reference = unit(37, 8, 11).float(), unit(53, 8, 12).float()
    whole = candidate_penalty(
        candidates, reference, kind, chunk_size=1000, reference_chunk_size=1000
    )
    for chunk, ref_chunk in ((1, 1), (5, 3), (16, 7), (37, 53)):
        parts = candidate_penalty(
            candidates, reference, kind, chunk_size=chunk, reference_chunk_size=ref_chunk
        )
        assert torch.allclose(parts, whole, atol=1e-6)


def test_dot_form_equals_score():
    queries, candidates, reference = unit(6, 5, 13), unit(9, 5, 14), unit(11, 5, 15)
    for spec in ("csls:k=3", "qbnorm:beta=5"):
        q, c = dot_form(queries, candidates, spec, reference_queries=reference)
        expected = score(queries, candidates, spec, reference_queries=reference)
        assert torch.allclose((q @ c.T).float(), expected, atol=1e-6)
    same = dot_form(queries, candidates, COSINE)
    assert same[0] is queries and same[1] is candidates


def test_stored_penalty_is_used_as_given():
    queries, candidates, reference = unit(3, 4, 16), unit(5, 4, 17), unit(7, 4, 18)
    penalty = qbnorm_penalty(candidates, reference, 9.0)
    assert torch.allclose(
        score(queries, candidates, "qbnorm:beta=9", penalty),
        score(queries, candidates, "qbnorm:beta=9", reference_queries=reference),
    )
    with pytest.raises(UclipError, match="one value per candidate"):
        score(queries, candidates, "csls", penalty[:2])


def test_parse_scorer_round_trips_and_rejects_nonsense():
    assert parse_scorer("cosine") == COSINE
    assert parse_scorer("csls") == ScorerSpec("csls", k=10)
    assert parse_scorer("csls:k=5") == ScorerSpec("csls", k=5)
    assert parse_scorer("qbnorm:beta=30") == ScorerSpec("qbnorm", beta=30.0)
    for spec in (ScorerSpec("csls", k=7), ScorerSpec("qbnorm", beta=2.5), COSINE):
        assert parse_scorer(spec.name) == spec
    for bad in ("dot", "csls:beta=3", "qbnorm:k=3", "csls:k=0", "csls:k=x", "cosine:k=3"):
        with pytest.raises(UclipError):
            parse_scorer(bad)


def test_csls_needs_k_reference_queries():
    with pytest.raises(UclipError, match="at least 5 reference"):
        csls_penalty(unit(3, 4, 19), unit(4, 4, 20), 5)


def test_reference_queries_embed_texts_with_the_model():
    seen = []

    def encode(texts, lang):
        seen.append((list(texts), lang))
        return unit(len(texts), 3, 21)

    ref = ReferenceQueries.from_texts(["a", "b"], "file refs.txt", lang="de")
    assert ref.embed(encode).shape == (2, 3)
    assert seen == [(["a", "b"], "de")]
    assert ref.description == "file refs.txt: 2 texts"
    with pytest.raises(UclipError, match="embed them with the model"):
        ref.embed()
    stored = ReferenceQueries("bank M through f_M", embeddings=unit(4, 3, 22))
    assert stored.embed() is stored.embeddings
    with pytest.raises(UclipError, match="empty"):
        ReferenceQueries.from_texts([], "file empty.txt")
