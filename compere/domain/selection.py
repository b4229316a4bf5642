"""Pair selection strategies over a caller-supplied candidate subset.

At 100,000 entities a request cannot read every entity, so every strategy works on
a *candidate set* that the storage layer fetches with a few indexed queries
(:class:`CandidatePlan` says which). :func:`select_pair` is the one entry point:

- ``active`` (default): the pair whose vote is expected to shrink the leaderboard's
  uncertainty (the two entities' variances, weighted by how crowded the board is
  at their strengths) the most under the Bayesian model (see
  :func:`expected_shrinkage`), plus an ``exploration`` share of uniformly
  random candidate pairs so every entity keeps a chance of being shown;
- ``ucb``: the original Compere's documented algorithm
  (:func:`compere.domain.ucb.select_pair_ucb`) on the candidates;
- ``random``: a uniformly random pair of distinct candidates.

Every call returns the pair and the probability with which that unordered pair was
chosen *given the candidate set*, so offline estimates can weight votes for
adaptive sampling. Results are deterministic for a seeded ``random.Random``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from compere.domain.bayes import DEFAULT_PRIOR, Prior
from compere.domain.strategies import STRATEGIES
from compere.domain.ucb import (
    ArmState,
    UCBParams,
    select_pair_ucb,
    ucb_pair_probability,
)


@dataclass(frozen=True, slots=True)
class Candidate:
    """What a selector may know about one entity (one row of the candidate query)."""

    id: int
    mu: float = DEFAULT_PRIOR.mu0
    sigma: float = DEFAULT_PRIOR.sigma0
    rating: float = 1500.0
    comparisons: int = 0
    wins: float = 0.0  # ties count half


class Selection(NamedTuple):
    """The pair to show and how likely this unordered pair was to be chosen."""

    entity1_id: int
    entity2_id: int
    probability: float
    strategy: str


@dataclass(frozen=True)
class SelectionContext:
    """Global facts some strategies need besides the candidates."""

    total_comparisons: int = 0  # over all entities (UCB's n)
    # entity id -> its most recent opponents (UCB skips them); for an exact
    # probability it must cover both ids of the chosen pair.
    recent_opponents_of: Mapping[int, Collection[int]] = field(default_factory=dict)
    ucb: UCBParams = field(default_factory=UCBParams)
    exploration: float = 0.1  # share of uniformly random pairs in ``active``
    # The population the strengths come from; ``active`` weights each entity's
    # variance drop by how crowded its strength is under it (None: no weighting).
    prior: Prior | None = DEFAULT_PRIOR
    # ``ucb``'s probability needs a numerical integral (about a millisecond at 60
    # candidates); callers that do not store it (the simulation) may skip it: NaN.
    ucb_probability: bool = True
    # The ``top_k`` objective: the strength between the K-th and the (K+1)-th entity of
    # the board. ``active`` then weights each entity by its chance to belong to the top
    # K instead of by crowding, so votes go to finding and ordering the best K.
    top_threshold: float | None = None


@dataclass(frozen=True)
class CandidatePlan:
    """The candidate set the storage layer fetches per request (all index scans).

    1. ``most_uncertain`` entities with the largest ``sigma``
       (``ORDER BY sigma DESC LIMIT k``; new entities come first, as in the original);
    2. ``random`` entities drawn uniformly (e.g. random ids probed through the
       primary key, or ``TABLESAMPLE``), so every entity stays reachable;
    3. for each of the ``anchors`` most uncertain entities, its ``neighbours``
       nearest by ``mu`` (half just above, half just below, via an index on ``mu``),
       which are its most informative opponents.

    Duplicates are dropped. At or below ``most_uncertain + random`` entities the
    storage may simply pass every entity.
    """

    most_uncertain: int = 24
    random: int = 32
    anchors: int = 4
    neighbours: int = 8


def expected_shrinkage(
    mu1: np.ndarray,
    sigma1: np.ndarray,
    mu2: np.ndarray,
    sigma2: np.ndarray,
    prior: Prior | None = None,
    top_threshold: float | None = None,
) -> np.ndarray:
    """Expected drop of ``sigma1^2 + sigma2^2`` from one vote between 1 and 2.

    The Gaussian (Laplace) update of a vote with predicted win probability ``p``
    removes ``sigma_k^4 h / (1 + h v)`` from entity k's variance, where
    ``h = p (1 - p)`` and ``v = sigma1^2 + sigma2^2``. Summed over both entities
    this favours an uncertain entity against a well-known one of similar strength:
    a close match (``h`` near 1/4) that anchors the uncertain entity to the rest
    of the leaderboard instead of to another unknown.

    With a ``prior``, each entity's drop is weighted by
    ``exp(-(mu - mu0)^2 / (2 sigma0^2))``, the relative density of strengths near
    ``mu`` in the population the prior describes. The leaderboard is judged by the
    pairs it puts in the wrong order, and an error in one entity's strength only
    mis-orders the entities whose strengths are close to it: a mid-table entity has
    many such neighbours, one at the extremes few. Spending votes where the board
    is crowded reached Kendall tau 0.8 in fewer votes in the simulation
    (docs/ranking.md).

    With a ``top_threshold`` (the ``top_k`` objective) the weight is instead the
    probability that the entity's strength lies above the threshold,
    ``Phi((mu - threshold) / sigma)`` (at least 0.001): entities that cannot be in the
    top K get almost no votes, the top K and the contenders at its edge get them all.
    """
    var1 = sigma1 * sigma1
    var2 = sigma2 * sigma2
    v = var1 + var2
    p = 1.0 / (1.0 + np.exp(-(mu1 - mu2) / np.sqrt(1.0 + math.pi * v / 8.0)))
    h = p * (1.0 - p)
    drop1 = var1 * var1
    drop2 = var2 * var2
    if top_threshold is not None:
        drop1 = drop1 * np.maximum(_phi((mu1 - top_threshold) / sigma1), 1e-3)
        drop2 = drop2 * np.maximum(_phi((mu2 - top_threshold) / sigma2), 1e-3)
    elif prior is not None:
        spread = 2.0 * prior.sigma0 * prior.sigma0
        drop1 = drop1 * np.exp(-((mu1 - prior.mu0) ** 2) / spread)
        drop2 = drop2 * np.exp(-((mu2 - prior.mu0) ** 2) / spread)
    return (drop1 + drop2) * h / (1.0 + h * v)


def _phi(x: np.ndarray) -> np.ndarray:
    """The standard normal distribution function (logistic approximation, error < 0.01)."""
    return 1.0 / (1.0 + np.exp(-1.702 * x))


def _select_random(candidates: Sequence[Candidate], rng: random.Random) -> Selection:
    n = len(candidates)
    i, j = rng.sample(range(n), 2)
    return Selection(candidates[i].id, candidates[j].id, 2.0 / (n * (n - 1)), "random")


def _select_active(
    candidates: Sequence[Candidate],
    rng: random.Random,
    exploration: float,
    prior: Prior | None,
    top_threshold: float | None = None,
) -> Selection:
    n = len(candidates)
    uniform = 2.0 / (n * (n - 1))
    # Always draw both numbers so the random stream does not depend on the branch.
    explore = rng.random() < exploration
    if explore:
        i, j = rng.sample(range(n), 2)
    mu = np.fromiter((c.mu for c in candidates), float, n)
    sigma = np.fromiter((c.sigma for c in candidates), float, n)
    rows, cols = np.triu_indices(n, 1)
    gain = expected_shrinkage(mu[rows], sigma[rows], mu[cols], sigma[cols], prior, top_threshold)
    best = float(gain.max())
    winners = np.flatnonzero(gain >= best - 1e-12)
    pick = winners[rng.randrange(winners.size)] if winners.size > 1 else winners[0]
    if not explore:
        i, j = int(rows[pick]), int(cols[pick])
    chosen_is_best = bool(gain[_pair_index(i, j, n)] >= best - 1e-12)
    probability = exploration * uniform
    if chosen_is_best:
        probability += (1.0 - exploration) / winners.size
    return Selection(candidates[i].id, candidates[j].id, probability, "active")


def _pair_index(i: int, j: int, n: int) -> int:
    """Position of pair (i, j) in ``np.triu_indices(n, 1)`` order."""
    a, b = (i, j) if i < j else (j, i)
    return a * n - a * (a + 1) // 2 + (b - a - 1)


def _select_ucb(candidates: Sequence[Candidate], rng: random.Random, context: SelectionContext) -> Selection:
    arms = [ArmState(c.id, c.rating, c.comparisons, c.wins) for c in candidates]
    first, second = select_pair_ucb(
        arms, context.total_comparisons, context.recent_opponents_of, context.ucb, rng
    )
    probability = math.nan
    if context.ucb_probability:
        probability = ucb_pair_probability(
            arms,
            context.total_comparisons,
            context.recent_opponents_of,
            context.ucb,
            (first.id, second.id),
        )
    return Selection(first.id, second.id, probability, "ucb")


def select_pair(
    strategy: str,
    candidates: Sequence[Candidate],
    rng: random.Random,
    context: SelectionContext | None = None,
) -> Selection:
    """Choose two distinct entities among ``candidates`` with ``strategy``.

    Raises ``ValueError`` for an unknown strategy, fewer than two candidates or
    duplicate ids.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}")
    if len(candidates) < 2:
        raise ValueError("need at least two entities")
    if len({c.id for c in candidates}) != len(candidates):
        raise ValueError("candidate ids must be unique")
    context = context or SelectionContext()
    if strategy == "random":
        return _select_random(candidates, rng)
    if strategy == "ucb":
        return _select_ucb(candidates, rng, context)
    return _select_active(candidates, rng, context.exploration, context.prior, context.top_threshold)


def plan_candidates(
    plan: CandidatePlan,
    ids: Sequence[int],
    mu: Sequence[float],
    sigma: Sequence[float],
    rng: random.Random,
) -> list[int]:
    """In-memory reference of the storage layer's candidate queries (see :class:`CandidatePlan`).

    Returns candidate positions into ``ids``; used by the simulation and tests so
    they exercise the same candidate set the server will.
    """
    n = len(ids)
    if n <= plan.most_uncertain + plan.random:
        return list(range(n))
    sig = np.asarray(sigma, dtype=float)
    mus = np.asarray(mu, dtype=float)
    # ORDER BY sigma DESC, id: stable sort on -sigma keeps the id order among equals.
    by_sigma = np.argsort(-sig, kind="stable")
    chosen: dict[int, None] = dict.fromkeys(int(i) for i in by_sigma[: plan.most_uncertain])
    for i in rng.sample(range(n), plan.random):
        chosen.setdefault(i, None)
    if plan.anchors and plan.neighbours:
        by_mu = np.argsort(mus, kind="stable")
        rank = np.empty(n, dtype=np.int64)
        rank[by_mu] = np.arange(n)
        half = plan.neighbours // 2
        for anchor in by_sigma[: plan.anchors]:
            r = int(rank[anchor])
            for k in by_mu[max(r - half, 0) : r + half + 1]:
                chosen.setdefault(int(k), None)
    return list(chosen)
