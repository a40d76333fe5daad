"""Statistics of per-language scores and matched pairs.

- :func:`sign_test`: paired test for "system A beats system B" claims (issue 22: every
  heads-vs-baseline claim gets a paired per-language sign test).
- :func:`pair_similarity`, :func:`matched_pair_zscores`, :func:`matched_pair_zscore`: how far
  each matched pair's similarity stands out from the non-matched ones (the Fig. 2 analogue).
- :func:`cross_language_zscore`: the uCLIP paper's Fig. 2 statistic, a metric's z-score across
  languages, averaged over models; :func:`zscore_defined` says when it exists.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

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


def pair_similarity(queries: Tensor, candidates: Tensor) -> Tensor:
    """(n, n) float64 cosine similarities of (n, d) ``queries`` and ``candidates``; row i is
    query i, and candidate i is its match.

    Rows are L2-normalised here, so raw (unnormalised) embeddings are fine.
    """
    if queries.ndim != 2 or candidates.ndim != 2 or queries.shape != candidates.shape:
        raise UclipError(
            f"pair_similarity needs two (n, d) matrices of equal shape, got "
            f"{tuple(queries.shape)} and {tuple(candidates.shape)}"
        )
    q = torch.nn.functional.normalize(queries.double(), dim=1)
    c = torch.nn.functional.normalize(candidates.double(), dim=1)
    return q @ c.T


def matched_pair_zscores(sim: Tensor) -> Tensor:
    """Per-row z-score of the matched pair against the non-matched ones.

    For an (n, n) similarity matrix S whose diagonal holds the matched pairs (n >= 3)::

        mu_i    = mean_{j != i} S[i, j]
        sigma_i = sqrt( mean_{j != i} (S[i, j] - mu_i)^2 )      (population std, ddof = 0)
        z_i     = (S[i, i] - mu_i) / sigma_i

    z_i says how many standard deviations query i's true counterpart stands above its n - 1
    distractors. Returns (n,) float64; a row whose distractors are all equal has sigma_i = 0 and
    raises UclipError.
    """
    if sim.ndim != 2 or sim.shape[0] != sim.shape[1]:
        raise UclipError(
            f"matched_pair_zscores needs a square (n, n) matrix, got {tuple(sim.shape)}"
        )
    n = sim.shape[0]
    if n < 3:
        raise UclipError(f"matched_pair_zscores needs n >= 3 pairs (got {n}) for a spread")
    s = sim.double()
    off = ~torch.eye(n, dtype=torch.bool, device=s.device)
    distractors = s[off].view(n, n - 1)
    mu = distractors.mean(dim=1)
    sigma = distractors.std(dim=1, correction=0)
    if bool((sigma == 0).any()):
        raise UclipError("a row's non-matched similarities are all equal: its z-score is undefined")
    return (s.diagonal() - mu) / sigma


def matched_pair_zscore(sim: Tensor) -> float:
    """Mean over rows of :func:`matched_pair_zscores` — the per-language statistic we plot."""
    return float(matched_pair_zscores(sim).mean())


def zscore_defined(values: Sequence[float]) -> bool:
    """Whether a z-score across ``values`` exists: at least two of them, not all equal
    (population std > 0). A system at a ceiling of 100 % in every language has none."""
    return len(values) >= 2 and float(np.std(np.asarray(values, dtype=np.float64))) > 0


def cross_language_zscore(scores: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """The paper's Fig. 2 statistic: ``scores[model][lang]`` (e.g. Recall@10) → z per language.

    For each model m over its languages L_m: ``z_m(l) = (R_m(l) - mean_L_m R_m) / std_L_m R_m``
    (population std, ddof = 0); then ``z(l)`` is the mean of ``z_m(l)`` over the models that
    have l. Negative z marks a language the models under-serve. Each model needs
    :func:`zscore_defined` scores, else UclipError.
    """
    if not scores:
        raise UclipError("cross_language_zscore needs scores of at least one model")
    per_lang: dict[str, list[float]] = {}
    for model, by_lang in scores.items():
        if not zscore_defined(list(by_lang.values())):
            raise UclipError(
                f"model {model!r} needs scores for >= 2 languages that are not all equal"
            )
        values = np.array(list(by_lang.values()), dtype=np.float64)
        for lang, value in by_lang.items():
            per_lang.setdefault(lang, []).append((value - values.mean()) / values.std())
    return {lang: float(np.mean(z)) for lang, z in per_lang.items()}
