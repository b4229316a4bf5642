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
from collections.abc import Collection, Sequence
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


def select_pair_ucb(
    arms: Sequence[ArmState],
    total_comparisons: int,
    recent_opponents_of: dict[int, Collection[int]],
    params: UCBParams,
    rng: random.Random,
) -> tuple[ArmState, ArmState]:
    """Pick two distinct arms; needs at least two.

    ``recent_opponents_of`` maps an entity id to the ids it met most recently; the
    caller only needs to fill it for the entity drawn first, so it may be a lazily
    computed mapping.
    """
    if len(arms) < 2:
        raise ValueError("need at least two entities")
    scores = [ucb_score(a, total_comparisons, params.exploration) for a in arms]
    weights = [
        params.unexplored_weight if math.isinf(s) else max(s, 0.1) for s in scores
    ]
    first_index = rng.choices(range(len(arms)), weights=weights, k=1)[0]
    first = arms[first_index]

    recent = recent_opponents_of.get(first.id, ())
    others = [i for i in range(len(arms)) if i != first_index]
    fresh = [i for i in others if arms[i].id not in recent]
    candidates = fresh or others

    best_index = candidates[0]
    best_value = -math.inf
    for i in candidates:
        arm = arms[i]
        # An unexplored arm's UCB is infinite; cap its pull like the first draw does.
        ucb = params.unexplored_weight if math.isinf(scores[i]) else scores[i]
        value = params.ucb_weight * ucb
        gap = abs(first.rating - arm.rating)
        if gap < params.rating_threshold:
            value += (
                (params.rating_threshold - gap)
                / params.rating_threshold
                * params.similarity_weight
            )
        value += rng.random() * params.random_weight
        if value > best_value:
            best_index, best_value = i, value
    return first, arms[best_index]
