"""Elo rating, kept as ``rating`` for compatibility with the original Compere."""

from __future__ import annotations

from typing import NamedTuple


class EloUpdate(NamedTuple):
    """New ratings of both entities after one comparison."""

    rating1: float
    rating2: float


def expected_score(rating_a: float, rating_b: float) -> float:
    """Probability that A beats B under Elo's logistic curve (base 10, scale 400)."""
    return 1.0 / (1.0 + 10.0 ** ((rating_b - rating_a) / 400.0))


def score_of(entity_id: int, selected_entity_id: int | None) -> float:
    """Actual score of ``entity_id`` in a comparison: 1 win, 0 loss, 0.5 tie."""
    if selected_entity_id is None:
        return 0.5
    return 1.0 if selected_entity_id == entity_id else 0.0


def elo_update(
    rating1: float, rating2: float, score1: float, k_factor: float, weight: float = 1.0
) -> EloUpdate:
    """Apply one comparison where entity 1 scored ``score1`` (1, 0.5 or 0).

    The update is zero-sum: whatever entity 1 gains, entity 2 loses, so the sum
    of all ratings stays ``N * initial`` however many comparisons are recorded.
    ``weight`` scales the step (a vote that counts as a fraction of one).
    """
    delta = k_factor * (score1 - expected_score(rating1, rating2))
    if weight != 1.0:
        delta *= weight
    return EloUpdate(rating1 + delta, rating2 - delta)
