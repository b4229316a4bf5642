"""The original Compere's documented pair selection: UCB1 bandit plus rating closeness.

Per entity: ``win_rate + c * sqrt(2 ln n / n_i)``, where ``n_i`` is how often the
entity was compared and ``n`` the total over all entities; entities never compared
get the fixed ``unexplored_weight`` so they are shown first. The first entity is a
UCB-weighted random draw; the second maximises
``ucb_weight * UCB + similarity_weight * closeness + random_weight * U(0, 1)``
among candidates that are not among the first entity's recent opponents.
"""

from __future__ import annotations

import math
import random
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class ArmState:
    """What the bandit knows about one entity."""

    id: int
    rating: float
    comparisons: int
    wins: float  # ties count half

    @property
    def win_rate(self) -> float:
        return self.wins / self.comparisons if self.comparisons else 0.0


@dataclass(frozen=True, slots=True)
class UCBParams:
    exploration: float = 1.414
    unexplored_weight: float = 1000.0
    ucb_weight: float = 0.3
    similarity_weight: float = 0.4
    random_weight: float = 0.3
    rating_threshold: float = 200.0


def ucb_score(arm: ArmState, total_comparisons: int, exploration: float) -> float:
    """UCB1 upper bound of one arm; ``inf`` for an arm never pulled."""
    if arm.comparisons == 0:
        return math.inf
    n = max(total_comparisons, 1)
    return arm.win_rate + exploration * math.sqrt(2.0 * math.log(n) / arm.comparisons)


def _weight(score: float, params: UCBParams) -> float:
    return params.unexplored_weight if math.isinf(score) else max(score, 0.1)


def draw_first(
    arms: Sequence[ArmState], total_comparisons: int, params: UCBParams, rng: random.Random
) -> ArmState:
    """The first entity: a random draw weighted by UCB score (unexplored ones weigh most)."""
    weights = [_weight(ucb_score(a, total_comparisons, params.exploration), params) for a in arms]
    return rng.choices(arms, weights=weights, k=1)[0]


def choose_second(
    first: ArmState,
    arms: Sequence[ArmState],
    total_comparisons: int,
    recent_opponents: Collection[int],
    params: UCBParams,
    rng: random.Random,
) -> ArmState:
    """The opponent: best mix of UCB, rating closeness and chance, avoiding recent opponents."""
    others = [a for a in arms if a.id != first.id]
    if not others:
        raise ValueError("need at least two entities")
    candidates = [a for a in others if a.id not in recent_opponents] or others
    best, best_value = candidates[0], -math.inf
    for arm in candidates:
        # An unexplored arm's UCB is infinite; cap its pull as the first draw does.
        value = params.ucb_weight * _weight(ucb_score(arm, total_comparisons, params.exploration), params)
        gap = abs(first.rating - arm.rating)
        if gap < params.rating_threshold:
            value += (params.rating_threshold - gap) / params.rating_threshold * params.similarity_weight
        value += rng.random() * params.random_weight
        if value > best_value:
            best, best_value = arm, value
    return best


def select_pair_ucb(
    arms: Sequence[ArmState],
    total_comparisons: int,
    recent_opponents_of: Mapping[int, Collection[int]],
    params: UCBParams,
    rng: random.Random,
) -> tuple[ArmState, ArmState]:
    """Pick two distinct arms (needs at least two); ``recent_opponents_of`` maps id -> recent opponent ids."""
    if len(arms) < 2:
        raise ValueError("need at least two entities")
    first = draw_first(arms, total_comparisons, params, rng)
    second = choose_second(first, arms, total_comparisons, recent_opponents_of.get(first.id, ()), params, rng)
    return first, second


def _second_pick_probability(
    arms: Sequence[ArmState],
    scores: Sequence[float],
    first_index: int,
    target_index: int,
    recent_opponents_of: Mapping[int, Collection[int]],
    params: UCBParams,
) -> float:
    """P(``select_pair_ucb`` picks ``target`` second, given it drew ``first`` first).

    Each candidate's value is a fixed base plus ``random_weight * U(0, 1)``; the
    target wins when its value beats every other candidate's. That probability is
    an integral of a product of piecewise-linear CDFs, done here by Gauss-Legendre
    quadrature between the CDFs' break points, with enough nodes per piece to be
    exact for the polynomial there.
    """
    first = arms[first_index]
    recent = recent_opponents_of.get(first.id, ())
    others = [i for i in range(len(arms)) if i != first_index]
    fresh = [i for i in others if arms[i].id not in recent]
    candidates = fresh or others
    if target_index not in candidates:
        return 0.0
    bases = {}
    for i in candidates:
        ucb = params.unexplored_weight if math.isinf(scores[i]) else scores[i]
        value = params.ucb_weight * ucb
        gap = abs(first.rating - arms[i].rating)
        if gap < params.rating_threshold:
            value += (params.rating_threshold - gap) / params.rating_threshold * params.similarity_weight
        bases[i] = value
    width = params.random_weight
    own = bases.pop(target_index)
    rivals = list(bases.values())
    if width <= 0.0:
        # Deterministic: strict '>' keeps the earliest candidate among equals.
        best = max([own, *rivals])
        if own < best:
            return 0.0
        earlier = [i for i in candidates if i < target_index and bases.get(i) == best]
        return 0.0 if earlier else 1.0
    # Substitute x = own + width * u, u in [0, 1]; rival j's CDF at x is
    # clip((own - base_j) / width + u, 0, 1).
    offsets = np.array([(own - b) / width for b in rivals])
    if offsets.size == 0:
        return 1.0
    if offsets.min() <= -1.0:
        return 0.0
    # Only rivals whose CDF is strictly between 0 and 1 somewhere matter.
    offsets = offsets[offsets < 1.0]
    if offsets.size == 0:
        return 1.0
    cuts = np.unique(np.concatenate(([0.0, 1.0], -offsets, 1.0 - offsets)))
    cuts = cuts[(cuts >= 0.0) & (cuts <= 1.0)]
    lo, hi = cuts[:-1], cuts[1:]
    mid = 0.5 * (lo + hi)
    # A piece where some rival's CDF is 0 contributes nothing.
    alive = (offsets[None, :] + mid[:, None] > 0.0).all(axis=1)
    lo, hi, mid = lo[alive], hi[alive], mid[alive]
    if lo.size == 0:
        return 0.0
    nodes, weights = _legendre(offsets.size // 2 + 1)
    half = 0.5 * (hi - lo)
    u = mid[:, None] + half[:, None] * nodes[None, :]  # pieces x nodes
    factors = np.clip(offsets[None, None, :] + u[:, :, None], 0.0, 1.0)
    integrand = factors.prod(axis=2)
    return float((integrand * weights[None, :] * half[:, None]).sum())


_LEGENDRE_CACHE: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def _legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre rule on [-1, 1], exact for polynomials of degree < 2n."""
    rule = _LEGENDRE_CACHE.get(n)
    if rule is None:
        rule = np.polynomial.legendre.leggauss(n)
        _LEGENDRE_CACHE[n] = rule
    return rule


def ucb_pair_probability(
    arms: Sequence[ArmState],
    total_comparisons: int,
    recent_opponents_of: Mapping[int, Collection[int]],
    params: UCBParams,
    pair: tuple[int, int],
) -> float:
    """Probability that ``select_pair_ucb`` returns the unordered pair of ids ``pair``.

    Sums both orders (drawn first, then picked second). ``recent_opponents_of``
    must cover both ids of the pair for this to be exact.
    """
    index = {a.id: i for i, a in enumerate(arms)}
    a, b = index[pair[0]], index[pair[1]]
    scores = [ucb_score(arm, total_comparisons, params.exploration) for arm in arms]
    weights = [params.unexplored_weight if math.isinf(s) else max(s, 0.1) for s in scores]
    total_weight = sum(weights)
    result = 0.0
    for first, second in ((a, b), (b, a)):
        p_first = weights[first] / total_weight
        result += p_first * _second_pick_probability(arms, scores, first, second, recent_opponents_of, params)
    return result
