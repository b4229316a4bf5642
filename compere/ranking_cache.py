"""Leaderboard computations that need every entity, cached until the data changes.

Shared ranks (by Bayesian score) and the offline Bradley-Terry fit read the whole
board or the whole vote log; they are recomputed only when the storage change marker
(latest vote id, latest entity id, latest edit) moves, i.e. cached until the next vote.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from compere.domain.bayes import Z95, Prior
from compere.domain.bt import fit_votes
from compere.domain.leaderboard import shared_ranks
from compere.settings import Settings
from compere.storage import leaderboard
from compere.storage.database import Connection


def prior_of(settings: Settings) -> Prior:
    return Prior(0.0, settings.bayes_prior_sigma)


@dataclass(frozen=True, slots=True)
class Board:
    """Entity ids best first, with score, uncertainty and shared rank for each."""

    ids: list[int]
    score: dict[int, float]
    uncertainty: dict[int, float]
    rank: dict[int, int]
    tied: set[int]


def _board(ids: list[int], score: list[float], se: list[float]) -> Board:
    order = sorted(range(len(ids)), key=lambda k: (-score[k], ids[k]))
    lower = [s - Z95 * e for s, e in zip(score, se, strict=True)]
    upper = [s + Z95 * e for s, e in zip(score, se, strict=True)]
    ranks = shared_ranks(lower, upper)
    counts: dict[int, int] = {}
    for r in ranks:
        counts[r] = counts.get(r, 0) + 1
    return Board(
        ids=[ids[k] for k in order],
        score=dict(zip(ids, score, strict=True)),
        uncertainty=dict(zip(ids, se, strict=True)),
        rank=dict(zip(ids, ranks, strict=True)),
        tied={i for i, r in zip(ids, ranks, strict=True) if counts[r] > 1},
    )


@dataclass
class RankingCache:
    _entries: dict[str, tuple[tuple[Any, ...], Board]] = field(default_factory=dict)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def board(self, db: Connection, model: str, prior: Prior) -> Board:
        """The ``online`` (stored mu/sigma) or ``bt`` (fitted) board, fresh for the current data."""
        marker = await leaderboard.change_marker(db)
        cached = self._entries.get(model)
        if cached is not None and cached[0] == marker:
            return cached[1]
        async with self._lock:  # one computation at a time; others wait and reuse it
            cached = self._entries.get(model)
            if cached is not None and cached[0] == marker:
                return cached[1]
            board = await (self._fit(db, prior) if model == "bt" else self._online(db))
            self._entries[model] = (marker, board)
            return board

    async def _online(self, db: Connection) -> Board:
        rows = await leaderboard.strengths(db)
        return _board([r["id"] for r in rows], [r["mu"] for r in rows], [r["sigma"] for r in rows])

    async def _fit(self, db: Connection, prior: Prior) -> Board:
        ids = await leaderboard.live_ids(db)
        first, second, winner = await leaderboard.vote_log(db)
        # The fit is CPU-bound (numpy): keep it off the event loop.
        fitted = await asyncio.get_running_loop().run_in_executor(
            None, lambda: fit_votes(ids, first, second, winner, prior=prior)
        )
        return _board(ids, [fitted[i][0] for i in ids], [fitted[i][1] for i in ids])
