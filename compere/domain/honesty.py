"""What a board does not know yet: provisional entries, rank intervals and progress.

Every function takes the board as arrays of strengths ``mu`` and their standard errors
``sigma`` (logit units, from the online model or the offline Bradley-Terry fit) and
treats the strengths as independent normal posteriors. Independence ignores the positive
correlation a shared level gives every estimate, which makes differences look slightly
more uncertain than they are: the intervals below err on the wide side.

- :func:`provisional` marks an entry whose uncertainty is above a threshold or whose
  vote count is below a minimum.
- :func:`rank_intervals` samples strengths from the posterior and reads the 2.5% and
  97.5% quantiles of each entity's rank.
- :func:`expected_tau` is the posterior expectation of Kendall tau between the board's
  order and the true order; :func:`settled_adjacent_share` the share of neighbours on
  the board whose order is at least 95% certain.
- :func:`votes_to_tau` and :func:`votes_to_settle_top` estimate how many more votes
  that needs, by a preposterior calculation: ``V`` more votes spread over the board
  raise each entity's precision by ``2 V h / N`` (``h`` the information a vote carries,
  ``p (1 - p)`` averaged over votes); the estimate a board will have then is still
  unknown, it moves from today's ``mu`` by a normal amount with the variance the votes
  remove, and the expected agreement with the truth is averaged over that movement.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

FloatArray = np.ndarray

# Information per vote, p(1 - p) averaged over a run, measured in bench/ranking_sim.py
# (N = 200, strengths N(0, 1.5^2)): what the pair strategies feed each vote.
MEASURED_INFORMATION = {"active": 0.213, "ucb": 0.207, "random": 0.136}
# Treating the strengths as independent undercounts what a vote does for the order: it
# also ties the two entities' errors together, so their difference (what a rank sees) is
# better known than the two marginals say. The projection uses the measured information
# times this factor, calibrated in bench/honesty_sim.py (N = 200, seeds 1000-1019:
# 1.4 brought the estimate's mean to 0.96-1.03 of the votes actually needed) and checked
# on fresh seeds there (docs/ranking.md).
CALIBRATION = 1.4
INFORMATION_PER_VOTE = {name: value * CALIBRATION for name, value in MEASURED_INFORMATION.items()}
SETTLED = 0.95  # an order is settled when it is at least this probable
_NODES, _WEIGHTS = np.polynomial.hermite_e.hermegauss(8)
_WEIGHTS = _WEIGHTS / _WEIGHTS.sum()
_MAX_PAIRS = 200_000  # beyond this many pairs, expected tau is estimated on a sample


def ndtr(x: FloatArray) -> FloatArray:
    """The standard normal distribution function, vectorised (error below 1e-7).

    Abramowitz and Stegun 7.1.26 for erf; numpy has no erf of its own.
    """
    x = np.asarray(x, dtype=float)
    z = np.abs(x) / math.sqrt(2.0)
    t = 1.0 / (1.0 + 0.3275911 * z)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    erf = 1.0 - poly * np.exp(-z * z)
    return 0.5 * (1.0 + np.sign(x) * erf)


def provisional(sigma: FloatArray, votes: FloatArray, max_sigma: float, min_votes: int) -> np.ndarray:
    """True where an entry is still provisional: too uncertain or too few votes."""
    return (np.asarray(sigma, dtype=float) > max_sigma) | (np.asarray(votes) < min_votes)


def rank_intervals(
    mu: FloatArray, sigma: FloatArray, samples: int = 400, seed: int = 0, level: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """The ``level`` interval of each entity's rank (1 = best) under the posterior.

    Draws ``samples`` boards (fewer on very large boards, at least 40), ranks each and
    returns the lower and upper quantiles per entity, as integers. Seeded, so the same
    board always shows the same intervals.
    """
    mu = np.asarray(mu, dtype=float)
    sigma = np.asarray(sigma, dtype=float)
    n = mu.size
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    samples = max(40, min(samples, 4_000_000 // max(n, 1)))
    rng = np.random.default_rng(seed)
    ranks = np.empty((samples, n), dtype=np.int32)
    for k in range(samples):
        draw = mu + sigma * rng.standard_normal(n)
        order = np.argsort(-draw, kind="stable")
        ranks[k, order] = np.arange(1, n + 1, dtype=np.int32)
    tail = (1.0 - level) / 2.0
    lower = np.quantile(ranks, tail, axis=0, method="lower")
    upper = np.quantile(ranks, 1.0 - tail, axis=0, method="higher")
    return lower.astype(np.int64), upper.astype(np.int64)


def _pairs(n: int, seed: int = 0, max_pairs: int = _MAX_PAIRS) -> tuple[np.ndarray, np.ndarray]:
    """Every unordered pair, or a seeded uniform sample of ``max_pairs`` of them."""
    if n * (n - 1) // 2 <= max_pairs:
        i, j = np.triu_indices(n, 1)
        return i, j
    rng = np.random.default_rng(seed)
    i = rng.integers(0, n, max_pairs)
    j = rng.integers(0, n - 1, max_pairs)
    j = j + (j >= i)
    return i, j


def _agreement(gap: FloatArray, moved: FloatArray, left: FloatArray) -> FloatArray:
    """Expected ``P(order of the later estimate is the true order)`` per pair.

    ``gap`` is today's difference of estimates, ``moved`` the variance of the change the
    future votes bring to it, ``left`` the variance of the difference left after them.
    """
    gap = np.abs(gap)
    b = np.sqrt(np.maximum(left, 1e-300))
    if not np.any(moved > 0):
        return ndtr(gap / b)
    a = np.sqrt(np.maximum(moved, 0.0))
    later = np.abs(gap[:, None] + a[:, None] * _NODES[None, :])
    return (ndtr(later / b[:, None]) * _WEIGHTS[None, :]).sum(axis=1)


def _after(sigma: FloatArray, votes: float, information: float, n: int) -> FloatArray:
    """Posterior variances after ``votes`` more votes spread evenly over ``n`` entities."""
    gain = 2.0 * votes * information / max(n, 1)
    return 1.0 / (1.0 / sigma**2 + gain)


def expected_tau(mu: FloatArray, sigma: FloatArray, votes: float = 0.0, information: float = 0.2) -> float:
    """Posterior expected Kendall tau of the board (after ``votes`` more) against the truth."""
    mu = np.asarray(mu, dtype=float)
    sigma = np.asarray(sigma, dtype=float)
    n = mu.size
    if n < 2:
        return 1.0
    var = sigma**2
    later = _after(sigma, votes, information, n)
    i, j = _pairs(n)
    p = _agreement(mu[i] - mu[j], (var[i] - later[i]) + (var[j] - later[j]), later[i] + later[j])
    return float(2.0 * p.mean() - 1.0)


def settled_adjacent_share(mu: FloatArray, sigma: FloatArray) -> float:
    """Share of neighbouring entries (by ``mu``) whose order is at least 95% probable."""
    mu = np.asarray(mu, dtype=float)
    sigma = np.asarray(sigma, dtype=float)
    if mu.size < 2:
        return 1.0
    order = np.argsort(-mu, kind="stable")
    m, s = mu[order], sigma[order]
    p = ndtr((m[:-1] - m[1:]) / np.sqrt(s[:-1] ** 2 + s[1:] ** 2))
    return float(np.mean(p >= SETTLED))


def _search(reached, limit: float) -> float | None:
    """Smallest ``V`` in ``[0, limit]`` with ``reached(V)``, to 2%; None beyond ``limit``."""
    if reached(0.0):
        return 0.0
    if not reached(limit):
        return None
    low, high = 0.0, 1.0
    while not reached(high):
        low, high = high, high * 2.0
    while high - low > max(0.02 * high, 1.0):
        middle = (low + high) / 2.0
        if reached(middle):
            high = middle
        else:
            low = middle
    return high


def votes_to_tau(
    mu: FloatArray, sigma: FloatArray, target: float, information: float, max_votes_per_entity: float = 1000
) -> float | None:
    """More votes expected to bring the board's expected tau to ``target`` (None: out of reach)."""
    mu = np.asarray(mu, dtype=float)
    sigma = np.asarray(sigma, dtype=float)
    n = mu.size
    if n < 2:
        return 0.0
    if n * (n - 1) // 2 > 8_000:  # the search evaluates the sum often: a fixed sample
        i, j = _pairs(n, seed=1, max_pairs=8_000)
    else:
        i, j = _pairs(n)
    var = sigma**2
    gap = mu[i] - mu[j]

    def reached(votes: float) -> bool:
        later = _after(sigma, votes, information, n)
        p = _agreement(gap, (var[i] - later[i]) + (var[j] - later[j]), later[i] + later[j])
        return 2.0 * p.mean() - 1.0 >= target

    return _search(reached, max_votes_per_entity * n)


def votes_to_settle_top(
    mu: FloatArray, sigma: FloatArray, k: int, information: float, max_votes_per_entity: float = 1000
) -> float | None:
    """More votes expected before each of the top ``k`` entries is ordered against the next
    with probability at least 95% (None: out of reach)."""
    mu = np.asarray(mu, dtype=float)
    sigma = np.asarray(sigma, dtype=float)
    n = mu.size
    k = min(k, n - 1)
    if k < 1:
        return 0.0
    order = np.argsort(-mu, kind="stable")[: k + 1]
    top_mu, top_var = mu[order], sigma[order] ** 2
    gap = top_mu[:-1] - top_mu[1:]

    def reached(votes: float) -> bool:
        later = _after(np.sqrt(top_var), votes, information, n)
        moved = (top_var - later)[:-1] + (top_var - later)[1:]
        p = _agreement(gap, moved, later[:-1] + later[1:])
        return bool(np.all(p >= SETTLED))

    return _search(reached, max_votes_per_entity * n)


class Progress(NamedTuple):
    entities: int
    expected_tau: float
    settled_adjacent_share: float
    target_tau: float
    votes_to_target: float | None
    top_k: int
    votes_to_settle_top_k: float | None
    information_per_vote: float


def progress(mu: FloatArray, sigma: FloatArray, target: float, top_k: int, information: float) -> Progress:
    """Everything ``GET /ratings/progress`` reports, for one board."""
    to_target = votes_to_tau(mu, sigma, target, information)
    to_top = votes_to_settle_top(mu, sigma, top_k, information)
    return Progress(
        entities=int(np.asarray(mu).size),
        expected_tau=expected_tau(mu, sigma),
        settled_adjacent_share=settled_adjacent_share(mu, sigma),
        target_tau=target,
        votes_to_target=None if to_target is None else float(math.ceil(to_target)),
        top_k=top_k,
        votes_to_settle_top_k=None if to_top is None else float(math.ceil(to_top)),
        information_per_vote=information,
    )
