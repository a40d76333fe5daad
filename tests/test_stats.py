"""Statistics of ``uclip.eval.stats`` (the figures' z-scores) against hand-computed cases and a
loop reference."""

from __future__ import annotations

import math

import pytest
import torch

from uclip.errors import UclipError
from uclip.eval.stats import (
    cross_language_zscore,
    matched_pair_zscore,
    matched_pair_zscores,
    pair_similarity,
    zscore_defined,
)


def test_pair_similarity_is_cosine_by_hand() -> None:
    a = torch.tensor([[3.0, 0.0], [1.0, 1.0], [0.0, 2.0]])
    b = torch.tensor([[1.0, 0.0], [0.0, 5.0], [1.0, 1.0]])
    expected = torch.tensor(
        [[1.0, 0.0, 2**-0.5], [2**-0.5, 2**-0.5, 1.0], [0.0, 1.0, 2**-0.5]], dtype=torch.float64
    )
    sim = pair_similarity(a, b)
    assert sim.dtype == torch.float64
    assert torch.allclose(sim, expected)
    with pytest.raises(UclipError, match="equal shape"):
        pair_similarity(a, b[:2])


def test_matched_pair_zscores_by_hand() -> None:
    sim = torch.tensor([[0.9, 0.1, 0.3], [0.2, 0.5, 0.4], [0.0, 0.6, 0.3]])
    # row 0: distractors 0.1, 0.3 -> mean 0.2, population std 0.1 -> z = (0.9 - 0.2) / 0.1 = 7
    # row 1: distractors 0.2, 0.4 -> mean 0.3, std 0.1 -> z = 2
    # row 2: distractors 0.0, 0.6 -> mean 0.3, std 0.3 -> z = 0
    z = matched_pair_zscores(sim)
    assert z.dtype == torch.float64
    assert z.tolist() == pytest.approx([7.0, 2.0, 0.0])
    assert matched_pair_zscore(sim) == pytest.approx(3.0)


def test_matched_pair_zscores_match_a_loop_reference() -> None:
    sim = torch.randn(7, 7, generator=torch.Generator().manual_seed(0))
    expected = []
    for i in range(7):
        others = [float(sim[i, j]) for j in range(7) if j != i]
        mu = sum(others) / len(others)
        sd = math.sqrt(sum((o - mu) ** 2 for o in others) / len(others))
        expected.append((float(sim[i, i]) - mu) / sd)
    assert matched_pair_zscores(sim).tolist() == pytest.approx(expected)


def test_matched_pair_zscores_bad_input() -> None:
    with pytest.raises(UclipError, match="square"):
        matched_pair_zscores(torch.zeros(3, 4))
    with pytest.raises(UclipError, match="n >= 3"):
        matched_pair_zscores(torch.eye(2))
    with pytest.raises(UclipError, match="all equal"):
        matched_pair_zscores(torch.eye(3))


def test_cross_language_zscore_three_languages_by_hand() -> None:
    # one model, R@10 = 10, 20, 30: mean 20, population std sqrt((100 + 0 + 100) / 3) = 10 sqrt(2/3)
    # -> z = -sqrt(3/2), 0, +sqrt(3/2)
    z = cross_language_zscore({"m": {"cs": 10.0, "fi": 20.0, "ja": 30.0}})
    assert list(z) == ["cs", "fi", "ja"]
    assert z["cs"] == pytest.approx(-math.sqrt(1.5))
    assert z["fi"] == pytest.approx(0.0)
    assert z["ja"] == pytest.approx(math.sqrt(1.5))


def test_cross_language_zscore_averages_over_the_models_that_have_a_language() -> None:
    # m1 as above; m2: 50, 70 -> mean 60, std 10 -> z = -1, +1
    scores = {"m1": {"cs": 10.0, "fi": 20.0, "ja": 30.0}, "m2": {"cs": 50.0, "fi": 70.0}}
    z = cross_language_zscore(scores)
    assert z["cs"] == pytest.approx((-math.sqrt(1.5) - 1.0) / 2)
    assert z["fi"] == pytest.approx((0.0 + 1.0) / 2)
    assert z["ja"] == pytest.approx(math.sqrt(1.5))  # only m1 has ja
    with pytest.raises(UclipError, match=">= 2 languages"):
        cross_language_zscore({"m": {"cs": 1.0}})
    with pytest.raises(UclipError, match="not all equal"):
        cross_language_zscore({"ceiling": {"cs": 100.0, "fi": 100.0}})
    with pytest.raises(UclipError, match="at least one model"):
        cross_language_zscore({})


def test_zscore_defined_needs_two_unequal_values() -> None:
    assert zscore_defined([0.4, 0.5])
    assert zscore_defined([1.0, 1.0, 1.5])
    assert not zscore_defined([0.7])
    assert not zscore_defined([])
    assert not zscore_defined([1.0, 1.0, 1.0])  # e.g. R@10 at 100 % in every language
