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
import collections
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from compere.domain import covariates, honesty
from compere.domain.bayes import Prior
from compere.domain.bt import fit_vote_log
from compere.domain.leaderboard import rank_with_ties
from compere.domain.trust import POLICIES, BoardFit, TrustPolicy, board_fit
from compere.storage import leaderboard, voters
from compere.storage.database import Connection


@dataclass(frozen=True, slots=True)
class Board:
    """Entity ids best first, with score, uncertainty and shared rank for each."""

    ids: list[int]
    score: dict[int, float]
    uncertainty: dict[int, float]
    rank: dict[int, int]
    tied: set[int]
    votes: dict[int, int] = field(default_factory=dict)  # votes each entity took part in
    # Uncertainty relative to the board's mean (the fit's, without the shared level, which
    # moves every score together and no rank); the online model's sigma as it is.
    relative: dict[int, float] = field(default_factory=dict)

    def relative_uncertainty(self, entity_id: int) -> float:
        return self.relative.get(entity_id, self.uncertainty[entity_id])


def _board(
    ids: list[int],
    score: list[float],
    se: list[float],
    votes: list[int] | None = None,
    relative: list[float] | None = None,
) -> Board:
    ranked = rank_with_ties(list(zip(ids, score, se, strict=True)))
    return Board(
        ids=[e.id for e in ranked],
        score=dict(zip(ids, score, strict=True)),
        uncertainty=dict(zip(ids, se, strict=True)),
        rank={e.id: e.rank for e in ranked},
        tied={e.id for e in ranked if e.tied},
        votes=dict(zip(ids, votes if votes is not None else [0] * len(ids), strict=True)),
        relative=dict(zip(ids, relative, strict=True)) if relative is not None else {},
    )


@dataclass(frozen=True, slots=True)
class Detail:
    """What a board does not know yet (``/ratings?detail=full``): provisional entries and
    the 95% interval of each entity's rank."""

    provisional: set[int]
    rank_lower: dict[int, int]
    rank_upper: dict[int, int]

    def ordered(self, board: Board, provisional_last: bool) -> list[int]:
        """The board's order; with ``provisional_last`` the settled entries come first."""
        if not provisional_last:
            return board.ids
        settled = [i for i in board.ids if i not in self.provisional]
        return settled + [i for i in board.ids if i in self.provisional]


def detail_of(board: Board, max_uncertainty: float, min_votes: int) -> Detail:
    ids = board.ids
    mu = np.array([board.score[i] for i in ids], dtype=float)
    se = np.array([board.relative_uncertainty(i) for i in ids], dtype=float)
    votes = np.array([board.votes.get(i, 0) for i in ids])
    flags = honesty.provisional(se, votes, max_uncertainty, min_votes)
    lower, upper = honesty.rank_intervals(mu, se)
    return Detail(
        provisional={i for i, f in zip(ids, flags.tolist(), strict=True) if f},
        rank_lower=dict(zip(ids, lower.tolist(), strict=True)),
        rank_upper=dict(zip(ids, upper.tolist(), strict=True)),
    )


@dataclass(frozen=True, slots=True)
class _Entry:
    marker: tuple[Any, ...]
    board: Any  # a Board, or a (Board, Detail) pair
    computed_at: float
    cost: float  # seconds the computation took
    # The project settings it was computed with. The online board too: a change of trust
    # mode rewrites the stored strengths without moving the change marker.
    made_with: tuple[Any, ...] = ()

    def usable(self, marker: tuple[Any, ...], now: float, made_with: tuple[Any, ...] = ()) -> bool:
        if made_with != self.made_with:  # a changed setting (trust mode, prior) shows at once
            return False
        if marker == self.marker:
            return True
        slow = self.cost > 0.05
        return slow and now - self.computed_at < min(10 * self.cost, 30.0)


# Cache keys made of what a client asked for (a category, a list of attributes).
_CLIENT_CHOSEN = ("category:", "control:")


@dataclass
class RankingCache:
    """Boards per (project, model)."""

    _entries: dict[tuple[int, str], _Entry] = field(default_factory=dict)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def board(
        self,
        db: Connection,
        project_id: int,
        model: str,
        prior: Prior,
        trust: TrustPolicy = POLICIES["off"],
        category: str | None = None,
    ) -> Board:
        """A project's ``online`` (stored mu/sigma) or ``bt`` (fitted) board for the
        current data.

        With a ``category`` it is always the fitted board of that category's votes only
        (the online strengths are one per entity, over every vote).
        """
        if category is not None:
            model = f"category:{category}"

        async def compute() -> Board:
            if model == "online":
                return await self._online(db, project_id)
            return await self._fit(db, project_id, prior, trust, category)

        board: Board = await self._cached(db, project_id, model, (trust, prior), compute)
        return board

    async def controlled(
        self,
        db: Connection,
        project_id: int,
        prior: Prior,
        trust: TrustPolicy,
        names: list[str],
        category: str | None = None,
    ) -> Controlled:
        """The fitted board (of ``category``'s votes, when given) with the entity
        attributes ``names`` controlled for, beside the board without; raises
        :class:`compere.domain.covariates.DesignError` when they cannot be fitted."""
        key = f"control:{category or ''}:{','.join(names)}"

        async def compute() -> Controlled:
            return await _controlled(db, project_id, prior, trust, names, category)

        controlled: Controlled = await self._cached(db, project_id, key, (trust, prior), compute)
        return controlled

    async def _cached(
        self,
        db: Connection,
        project_id: int,
        model: str,
        made_with: tuple[Any, ...],
        compute: Callable[[], Awaitable[Any]],
    ) -> Any:
        key = (project_id, model)
        marker = await leaderboard.change_marker(db, project_id)
        entry = self._entries.get(key)
        if entry is not None and entry.usable(marker, time.monotonic(), made_with):
            return entry.board
        async with self._lock:  # one computation at a time; others wait and reuse it
            entry = self._entries.get(key)
            if entry is not None and entry.usable(marker, time.monotonic(), made_with):
                return entry.board
            started = time.monotonic()
            value = await compute()
            now = time.monotonic()
            if model.startswith(_CLIENT_CHOSEN):
                self._forget_client_chosen(keep=32)
            self._entries[key] = _Entry(marker, value, now, now - started, made_with)
            return value

    def _forget_client_chosen(self, keep: int) -> None:
        """Bound the cache: categories and controlled attributes are client-chosen strings."""
        keys = [k for k in self._entries if k[1].startswith(_CLIENT_CHOSEN)]
        if len(keys) >= keep:
            for key in keys:
                del self._entries[key]

    async def detail(
        self,
        db: Connection,
        project_id: int,
        model: str,
        prior: Prior,
        max_uncertainty: float,
        min_votes: int,
        category: str | None = None,
        trust: TrustPolicy = POLICIES["off"],
    ) -> tuple[Board, Detail]:
        """The board with its :class:`Detail`, cached like the board itself."""
        board = await self.board(db, project_id, model, prior, trust, category)
        where = model if category is None else f"category:{category}"
        key = (project_id, f"{where}:detail:{max_uncertainty}:{min_votes}")
        entry = self._entries.get(key)
        if entry is not None and entry.board[0] is board:
            return entry.board
        started = time.monotonic()
        detail = await asyncio.get_running_loop().run_in_executor(
            None, detail_of, board, max_uncertainty, min_votes
        )
        now = time.monotonic()
        self._entries[key] = _Entry((), (board, detail), now, now - started)
        return board, detail

    async def _online(self, db: Connection, project_id: int) -> Board:
        rows = await leaderboard.strengths(db, project_id)
        return _board(
            [r["id"] for r in rows],
            [r["mu"] for r in rows],
            [r["sigma"] for r in rows],
            [r["comparisons"] for r in rows],
        )

    async def _fit(
        self, db: Connection, project_id: int, prior: Prior, trust: TrustPolicy, category: str | None = None
    ) -> Board:
        ids = await leaderboard.live_ids(db, project_id)
        if not ids:  # an empty board has nothing to fit (the fit needs an entity)
            return _board([], [], [])
        log, fit = await weighted_fit(db, project_id, ids, prior, trust, category)
        return _fitted_board(ids, log, fit.fitted)


def _fitted_board(
    ids: list[int], log: leaderboard.VoteColumns, fitted: dict[int, tuple[float, float, float]]
) -> Board:
    counts = collections.Counter(log.first)
    counts.update(log.second)
    return _board(
        ids,
        [fitted[i][0] for i in ids],
        [fitted[i][1] for i in ids],
        [counts.get(i, 0) for i in ids],
        [fitted[i][2] for i in ids],
    )


@dataclass(frozen=True, slots=True)
class Coefficient:
    """What one standard deviation of an attribute is worth on a controlled board."""

    attribute: str
    value: float  # logits per standard deviation of the attribute
    standard_error: float
    mean: float  # the attribute's mean over the board's entities that have it
    standard_deviation: float  # and its standard deviation there


@dataclass(frozen=True, slots=True)
class Controlled:
    """A fitted board with entity attributes controlled for, and the board without."""

    board: Board  # adjusted: strengths with what the attributes explain taken out
    unadjusted: Board
    coefficients: list[Coefficient]
    imputed: dict[int, list[str]]  # entities that lacked a controlled attribute (at the mean)


async def _controlled(
    db: Connection, project_id: int, prior: Prior, trust: TrustPolicy, names: list[str], category: str | None
) -> Controlled:
    attributes = await leaderboard.live_attributes(db, project_id)
    ids = list(attributes)
    found = covariates.design([attributes[i] for i in ids], names)
    log, fit = await weighted_fit(db, project_id, ids, prior, trust, category)
    # The same voter weights as the unadjusted board: they are the voters' record,
    # which the attributes do not change.
    weights = fit.vote_weights if trust.active else None
    adjusted = await asyncio.get_running_loop().run_in_executor(
        None,
        lambda: fit_vote_log(
            ids, log.first, log.second, log.winner, prior=prior, weights=weights, covariates=found.z
        ),
    )
    relative = adjusted.se if adjusted.se_relative is None else adjusted.se_relative
    fitted = {
        i: (float(m), float(s), float(r))
        for i, m, s, r in zip(ids, adjusted.mu, adjusted.se, relative, strict=True)
    }
    assert adjusted.beta is not None and adjusted.beta_se is not None
    coefficients = [
        Coefficient(name, float(b), float(se), float(mean), float(sd))
        for name, b, se, mean, sd in zip(
            names, adjusted.beta, adjusted.beta_se, found.mean, found.scale, strict=True
        )
    ]
    return Controlled(
        board=_fitted_board(ids, log, fitted),
        unadjusted=_fitted_board(ids, log, fit.fitted),
        coefficients=coefficients,
        imputed={i: lacking for i, lacking in zip(ids, found.imputed, strict=True) if lacking},
    )


class WeightedFit(NamedTuple):
    """A fit of a project's vote log with the log it was fitted on."""

    log: leaderboard.VoteColumns
    fit: BoardFit


async def weighted_fit(
    db: Connection,
    project_id: int,
    ids: list[int],
    prior: Prior,
    trust: TrustPolicy,
    category: str | None = None,
) -> WeightedFit:
    """The fit (Davidson's ties) of a project's whole log, or of one ``category``'s votes,
    each vote weighed by its voter's record (compere.domain.trust.board_fit)."""
    log = await leaderboard.vote_log(db, project_id, category=category)
    evidence = await voters.evidence_by_voter(db, project_id) if trust.active else {}
    by_voter = log.voter
    # The fit is CPU-bound (numpy): keep it off the event loop.
    fit = await asyncio.get_running_loop().run_in_executor(
        None,
        lambda: board_fit(
            ids, by_voter, log.first, log.second, log.winner, log.served, evidence, trust, prior
        ),
    )
    return WeightedFit(log, fit)
