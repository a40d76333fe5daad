"""Paired tests for "system A beats system B" claims (issue 22: every heads-vs-baseline claim
gets a paired per-language sign test)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from uclip.errors import UclipError


def sign_test(a: Sequence[float], b: Sequence[float]) -> dict[str, float | int]:
    """Paired sign test of ``a`` against ``b`` (one value per language, same order).

    Ties are dropped (the usual convention). ``p_a`` is the one-sided exact binomial p-value
    of "a is better": P(X >= wins) for X ~ Binomial(wins + losses, 1/2); ``p_b`` the same for
    b. Returns ``{"wins", "losses", "ties", "p_a", "p_b"}``.
    """
    if len(a) != len(b) or not a:
        raise UclipError(f"sign test needs two equally long, non-empty lists: {len(a)}, {len(b)}")
    wins = sum(x > y for x, y in zip(a, b, strict=True))
    losses = sum(x < y for x, y in zip(a, b, strict=True))
    n = wins + losses

    def tail(k: int) -> float:
        return sum(math.comb(n, i) for i in range(k, n + 1)) / 2**n if n else 1.0

    return {
        "wins": wins,
        "losses": losses,
        "ties": len(a) - n,
        "p_a": tail(wins),
        "p_b": tail(losses),
    }
