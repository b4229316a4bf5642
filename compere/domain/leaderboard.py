"""Leaderboard ranks that admit statistical ties.

Each entity has a strength estimate ``mu`` with standard error ``sigma`` (from the
online Bayesian model or the offline Bradley-Terry fit) and the 95% interval
``[mu - 1.96 sigma, mu + 1.96 sigma]``. Entities are listed by ``mu``, highest
first (then by id). The shared rank is defined as:

    rank(e) = 1 + #{ f : lower(f) > upper(e) }

the number of entities whose whole interval lies above e's interval, plus one,
then made non-decreasing down the list (a very uncertain entity never shows a
better rank than a confident one listed above it). So entities whose intervals
overlap the leader's share rank 1, and an entity moves to a worse rank only once
some entities are distinguishably better than it. ``tied`` marks every entity
that shares its rank with another. Non-overlap of two 95% intervals is a
conservative test of a difference (about 99.4% when the sigmas are equal), so a
shared rank means "not shown to differ", not "shown to be equal".
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from compere.domain.bayes import Z95


class RankedEntry(NamedTuple):
    id: int
    mu: float
    sigma: float
    lower: float
    upper: float
    rank: int
    tied: bool


def rank_with_ties(entries: Sequence[tuple[int, float, float]], z: float = Z95) -> list[RankedEntry]:
    """Order ``(id, mu, sigma)`` entries best first and assign shared ranks (see module doc).

    O(N log N), so it is fine for the whole leaderboard of 100,000 entities.
    """
    ordered = sorted(entries, key=lambda e: (-e[1], e[0]))
    if not ordered:
        return []
    mu = np.array([e[1] for e in ordered], dtype=float)
    sigma = np.array([e[2] for e in ordered], dtype=float)
    lower = mu - z * sigma
    upper = mu + z * sigma
    sorted_lower = np.sort(lower)
    # entities whose lower bound is strictly above this entity's upper bound
    better = sorted_lower.size - np.searchsorted(sorted_lower, upper, side="right")
    ranks = np.maximum.accumulate(better + 1)
    counts = Counter(ranks.tolist())
    return [
        RankedEntry(e[0], e[1], e[2], float(lo), float(hi), int(r), counts[int(r)] > 1)
        for e, lo, hi, r in zip(ordered, lower, upper, ranks, strict=True)
    ]
