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


def paired_bootstrap(
    a: Sequence[Sequence[float]],
    b: Sequence[Sequence[float]],
    *,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, float | int]:
    """Paired bootstrap over items of "mean over languages of (a - b)".

    ``a[l][i]`` and ``b[l][i]`` are two systems' outcomes (e.g. 1 for a top-1 hit, else 0) on
    item ``i`` of language ``l``. Each replicate resamples the items of every language with
    replacement, the same indices for both systems (the pairing), and takes the mean over
    languages of the per-language mean difference: the summary a table reports. Returns the
    observed difference, the percentile interval at ``level`` and ``p_a_not_better``, the share
    of replicates where the difference is <= 0 (a one-sided bootstrap p-value for "a is
    better").
    """
    import numpy as np

    if len(a) != len(b) or not a:
        raise UclipError(f"bootstrap needs the same non-empty languages: {len(a)}, {len(b)}")
    diffs = []
    for lang, (x, y) in enumerate(zip(a, b, strict=True)):
        if len(x) != len(y) or not len(x):
            raise UclipError(f"language {lang}: {len(x)} vs {len(y)} items; pair the same items")
        diffs.append(np.asarray(x, dtype=np.float64) - np.asarray(y, dtype=np.float64))
    rng = np.random.default_rng(seed)
    replicates = np.zeros(n_boot)
    for d in diffs:
        idx = rng.integers(0, len(d), size=(n_boot, len(d)))
        replicates += d[idx].mean(axis=1)
    replicates /= len(diffs)
    tail = (1.0 - level) / 2
    return {
        "diff": float(np.mean([d.mean() for d in diffs])),
        "ci_low": float(np.quantile(replicates, tail)),
        "ci_high": float(np.quantile(replicates, 1.0 - tail)),
        "level": level,
        "p_a_not_better": float((replicates <= 0).mean()),
        "n_boot": n_boot,
        "languages": len(diffs),
        "items": int(sum(len(d) for d in diffs)),
    }
