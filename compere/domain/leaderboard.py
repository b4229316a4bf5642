"""Leaderboard ranks that respect uncertainty."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def shared_ranks(lower: Sequence[float], upper: Sequence[float]) -> list[int]:
    """Rank of each entity: 1 + the number of entities *significantly* better.

    Entity ``j`` is significantly better than ``i`` when ``j``'s 95% interval lies
    wholly above ``i``'s (``lower_j > upper_i``). Entities whose intervals overlap
    the same leaders share a rank, so a leaderboard never claims an order the data
    cannot support. Ranks are non-decreasing in score order.
    """
    lo = np.asarray(lower, dtype=float)
    hi = np.asarray(upper, dtype=float)
    ordered = np.sort(lo)
    better = lo.size - np.searchsorted(ordered, hi, side="right")
    return [int(b) + 1 for b in better]
