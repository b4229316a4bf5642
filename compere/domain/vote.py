"""What one vote does to the two entities it names: Elo, Bayesian strengths, counters.

The one place where a vote meets the models; the online vote and the rebuild from the
vote log both use it, so a rebuild reproduces exactly what the votes did.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any, NamedTuple

from compere.domain.bayes import bayes_update
from compere.domain.elo import elo_update


class VoteEffect(NamedTuple):
    """One side's new ``rating``, ``mu`` and ``sigma``, and its counter steps (0 or 1)."""

    rating: float
    mu: float
    sigma: float
    win: int
    loss: int
    tie: int


def _effect(rating: float, mu: float, sigma: float, score: float) -> VoteEffect:
    return VoteEffect(rating, mu, sigma, int(score == 1.0), int(score == 0.0), int(score == 0.5))


def vote_effects(
    one: Mapping[str, Any], two: Mapping[str, Any], score1: float, k_factor: float, weight: float = 1.0
) -> tuple[VoteEffect, VoteEffect]:
    """The effect on each side of a vote where side one scored ``score1`` (1, 0.5 or 0).

    ``one`` and ``two`` hold each side's current ``rating``, ``mu`` and ``sigma``.
    ``weight`` is what the vote counts for (:func:`compere.domain.trust.weigh_vote`): it
    scales the Elo step and tempers the Bayesian update; the counters count the vote
    whatever its weight (they are the bandit's record of what was compared).
    """
    elo = elo_update(one["rating"], two["rating"], score1, k_factor, weight)
    bayes = bayes_update(one["mu"], one["sigma"], two["mu"], two["sigma"], score1, weight=weight)
    return (
        _effect(elo.rating1, bayes.mu1, bayes.sigma1, score1),
        _effect(elo.rating2, bayes.mu2, bayes.sigma2, 1.0 - score1),
    )


def apply_vote(
    one: MutableMapping[str, Any],
    two: MutableMapping[str, Any],
    score1: float,
    k_factor: float,
    weight: float = 1.0,
) -> None:
    """Apply a vote to two sides' state in place: ``rating``, ``mu``, ``sigma``, the
    total ``vote_weight`` its votes counted for, and the counters ``comparisons``,
    ``wins``, ``losses``, ``ties`` (what replaying a log needs). ``weight`` is what the
    voter's record makes the vote count for (compere/domain/trust.py; 1 without a voter)."""
    for side, effect in zip((one, two), vote_effects(one, two, score1, k_factor, weight), strict=True):
        side["rating"], side["mu"], side["sigma"] = effect.rating, effect.mu, effect.sigma
        side["vote_weight"] = side.get("vote_weight", 0.0) + weight
        side["comparisons"] += 1
        side["wins"] += effect.win
        side["losses"] += effect.loss
        side["ties"] += effect.tie
