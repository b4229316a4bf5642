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
