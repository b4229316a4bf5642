"""Leaderboard computations that need every entity, cached until the data changes.

Shared ranks (by Bayesian score) and the offline Bradley-Terry fit read the whole
board or the whole vote log; they are recomputed only when the storage change marker
(latest vote id, latest entity id, latest edit) moves, i.e. cached until the next vote.

On a large board under a steady stream of votes that would mean recomputing on every
read, so a result that took long to compute is also kept for a while after the data
moved on: at most ten times its computation time (never over 30 s). Small boards,
which compute in milliseconds, are therefore always current.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from compere.domain.bayes import Prior
from compere.domain.bt import fit_votes
from compere.domain.leaderboard import rank_with_ties
from compere.storage import leaderboard
from compere.storage.database import Connection


@dataclass(frozen=True, slots=True)
class Board:
    """Entity ids best first, with score, uncertainty and shared rank for each."""

    ids: list[int]
    score: dict[int, float]
    uncertainty: dict[int, float]
    rank: dict[int, int]
    tied: set[int]


def _board(ids: list[int], score: list[float], se: list[float]) -> Board:
    ranked = rank_with_ties(list(zip(ids, score, se, strict=True)))
    return Board(
        ids=[e.id for e in ranked],
        score=dict(zip(ids, score, strict=True)),
        uncertainty=dict(zip(ids, se, strict=True)),
        rank={e.id: e.rank for e in ranked},
        tied={e.id for e in ranked if e.tied},
    )


@dataclass(frozen=True, slots=True)
class _Entry:
    marker: tuple[Any, ...]
    board: Board
    computed_at: float
    cost: float  # seconds the computation took

    def usable(self, marker: tuple[Any, ...], now: float) -> bool:
        if marker == self.marker:
            return True
        slow = self.cost > 0.05
        return slow and now - self.computed_at < min(10 * self.cost, 30.0)


@dataclass
class RankingCache:
    """Boards per (project, model)."""

    _entries: dict[tuple[int, str], _Entry] = field(default_factory=dict)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def board(self, db: Connection, project_id: int, model: str, prior: Prior) -> Board:
        """A project's ``online`` (stored mu/sigma) or ``bt`` (fitted) board for the
        current data."""
        key = (project_id, model)
        marker = await leaderboard.change_marker(db, project_id)
        entry = self._entries.get(key)
        if entry is not None and entry.usable(marker, time.monotonic()):
            return entry.board
        async with self._lock:  # one computation at a time; others wait and reuse it
            entry = self._entries.get(key)
            if entry is not None and entry.usable(marker, time.monotonic()):
                return entry.board
            started = time.monotonic()
            board = await (
                self._fit(db, project_id, prior) if model == "bt" else self._online(db, project_id)
            )
            now = time.monotonic()
            self._entries[key] = _Entry(marker, board, now, now - started)
            return board

    async def _online(self, db: Connection, project_id: int) -> Board:
        rows = await leaderboard.strengths(db, project_id)
        return _board([r["id"] for r in rows], [r["mu"] for r in rows], [r["sigma"] for r in rows])

    async def _fit(self, db: Connection, project_id: int, prior: Prior) -> Board:
        ids = await leaderboard.live_ids(db, project_id)
        first, second, winner = await leaderboard.vote_log(db, project_id)
        # The fit is CPU-bound (numpy): keep it off the event loop.
        fitted = await asyncio.get_running_loop().run_in_executor(
            None, lambda: fit_votes(ids, first, second, winner, prior=prior)
        )
        return _board(ids, [fitted[i][0] for i in ids], [fitted[i][1] for i in ids])
