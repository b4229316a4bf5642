"""``/ratings``: the leaderboard by Elo rating or Bayesian score, online or fitted."""

from __future__ import annotations

import asyncio
import collections
from typing import Any

import numpy as np
import orjson
from aiohttp import web

from compere.domain import covariates, honesty
from compere.domain.bayes import Z95
from compere.http.errors import json_response, start_stream, validation_error
from compere.http.keys import DATABASE, PROJECT, RANKING_CACHE
from compere.http.schemas import ProgressQuery, RatingsQuery
from compere.http.validation import read_query
from compere.http.views.shapes import entity_out, strength_fields
from compere.services.boards import Board, Detail, detail_of
from compere.storage import leaderboard
from compere.storage.entities import count_entities
from compere.storage.rows import EntityRow


def _ranked(row: EntityRow, rank: int, board: Board | None, model: str) -> dict[str, Any]:
    out = entity_out(row)
    if board is not None:
        if model == "bt":
            out.update(strength_fields(board.score[row.id], board.uncertainty[row.id]))
        out["rank"] = board.rank[row.id]
        out["tied"] = row.id in board.tied
    else:
        out["rank"] = rank
        out["tied"] = False
    return out


async def ratings(request: web.Request) -> web.StreamResponse:
    query = read_query(request, RatingsQuery)
    if query.control is not None:
        return await _controlled(request, query)
    if query.detail == "full":
        return await _full(request, query)
    db = request.app[DATABASE].reader()  # a board may be slightly stale: the replica's
    project = request[PROJECT]
    # The fitted model always orders by its own score; so does by=score. A category's
    # board is always fitted.
    fitted = query.model == "bt" or query.category is not None
    by = "score" if fitted else query.by
    board = None
    if by == "score":
        board = await request.app[RANKING_CACHE].board(
            db, project.id, query.model, project.settings.prior, project.settings.trust, query.category
        )
    if board is not None and fitted:
        ids = board.ids[query.skip : query.skip + query.limit if query.limit else None]
        found = await leaderboard.by_ids(db, project.id, ids)
        body = [_ranked(found[i], 0, board, "bt") for i in ids if i in found]
        return json_response(body, headers={"X-Total-Count": str(len(board.ids))})
    if query.limit is not None:
        rows = await leaderboard.page(db, project.id, by, query.skip, query.limit)
        total = len(board.ids) if board is not None else await count_entities(db, project.id)
        body = [_ranked(r, query.skip + k + 1, board, "online") for k, r in enumerate(rows)]
        return json_response(body, headers={"X-Total-Count": str(total)})
    return await _stream_all(request, by, board, query.skip)


async def _stream_all(request: web.Request, by: str, board: Board | None, skip: int) -> web.StreamResponse:
    """The whole board as one JSON array, written in batches (kept for compatibility)."""
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    if not await start_stream(request, response):
        return response
    await response.write(b"[")
    position = 0
    first = True
    async for rows in leaderboard.stream(request.app[DATABASE].reader(), request[PROJECT].id, by):
        batch = []
        for row in rows:
            position += 1
            if position > skip:
                batch.append(_ranked(row, position, board, "online"))
        if batch:
            # One encoder call per batch; strip the batch's own brackets to splice it in.
            await response.write((b"" if first else b",") + orjson.dumps(batch)[1:-1])
            first = False
    await response.write(b"]")
    await response.write_eof()
    return response


async def _full(request: web.Request, query: RatingsQuery) -> web.StreamResponse:
    """``detail=full``: the board by score with provisional flags and rank intervals.

    The plain ``/ratings`` keeps the original's fields and order; this opt-in view adds
    ``provisional`` and ``rank_interval_95`` and, unless ``provisional=inline``, lists the
    provisional entries after the settled ones.
    """
    if query.by == "rating" and "by" in query.model_fields_set:
        raise validation_error(["query", "by"], "detail=full orders by score: use by=score or leave by out")
    db = request.app[DATABASE].reader()
    project = request[PROJECT]
    own = project.settings
    board, detail = await request.app[RANKING_CACHE].detail(
        db,
        project.id,
        query.model,
        own.prior,
        own.provisional_max_uncertainty,
        own.provisional_min_votes,
        query.category,
        own.trust,
    )
    order = detail.ordered(board, provisional_last=query.provisional == "last")
    ids = order[query.skip : query.skip + query.limit if query.limit else None]
    found = await leaderboard.by_ids(db, project.id, ids)
    body = [_detailed(found[i], board, detail) for i in ids if i in found]
    return json_response(body, headers={"X-Total-Count": str(len(board.ids))})


async def _controlled(request: web.Request, query: RatingsQuery) -> web.Response:
    """``control=a,b``: the fitted board with those entity attributes controlled for.

    The entries carry the adjusted score and rank (and, with ``detail=full``, the adjusted
    board's provisional flags and rank intervals) beside the unadjusted score and rank;
    the answer carries the fitted coefficients.
    """
    if query.by == "rating" and "by" in query.model_fields_set:
        raise validation_error(
            ["query", "by"], "control= orders by the fitted score: use by=score or leave by out"
        )
    assert query.control is not None
    names = covariates.parse_names(query.control)
    db = request.app[DATABASE].reader()
    project = request[PROJECT]
    settings = project.settings
    try:
        found = await request.app[RANKING_CACHE].controlled(
            db, project.id, settings.prior, settings.trust, names, query.category
        )
    except covariates.DesignError as exc:
        raise validation_error(["query", "control"], str(exc)) from None
    board = found.board
    detail = None
    order = board.ids
    if query.detail == "full":
        detail = await asyncio.get_running_loop().run_in_executor(
            None,
            detail_of,
            board,
            settings.provisional_max_uncertainty,
            settings.provisional_min_votes,
        )
        order = detail.ordered(board, provisional_last=query.provisional == "last")
    ids = order[query.skip : query.skip + query.limit if query.limit else None]
    rows = await leaderboard.by_ids(db, project.id, ids)
    entries = []
    for i in ids:
        if i not in rows:
            continue
        out = _detailed(rows[i], board, detail) if detail is not None else _ranked(rows[i], 0, board, "bt")
        out["unadjusted_score"] = float(found.unadjusted.score[i])
        out["unadjusted_rank"] = found.unadjusted.rank[i]
        out["imputed"] = found.imputed.get(i, [])
        entries.append(out)
    body = {
        "control": names,
        "category": query.category,
        "coefficients": [
            {
                "attribute": c.attribute,
                "coefficient": c.value,
                "standard_error": c.standard_error,
                "interval_95": [c.value - Z95 * c.standard_error, c.value + Z95 * c.standard_error],
                "mean": c.mean,
                "standard_deviation": c.standard_deviation,
            }
            for c in found.coefficients
        ],
        "entries": entries,
    }
    return json_response(body, headers={"X-Total-Count": str(len(board.ids))})


def _detailed(row: EntityRow, board: Board, detail: Detail) -> dict[str, Any]:
    out = entity_out(row)
    out.update(strength_fields(board.score[row.id], board.uncertainty[row.id]))
    out["rank"] = board.rank[row.id]
    out["tied"] = row.id in board.tied
    out["provisional"] = row.id in detail.provisional
    out["rank_interval_95"] = [detail.rank_lower[row.id], detail.rank_upper[row.id]]
    return out


async def progress(request: web.Request) -> web.Response:
    """``GET /ratings/progress``: how far the board is from the truth, and how many more
    votes it should take (``compere.domain.honesty``)."""
    query = read_query(request, ProgressQuery)
    db = request.app[DATABASE].reader()
    project = request[PROJECT]
    model = "bt" if query.category is not None else query.model
    board = await request.app[RANKING_CACHE].board(
        db, project.id, model, project.settings.prior, project.settings.trust, query.category
    )
    mu = np.array([board.score[i] for i in board.ids], dtype=float)
    se = np.array([board.relative_uncertainty(i) for i in board.ids], dtype=float)
    strategy = project.settings.strategy
    information = honesty.INFORMATION_PER_VOTE.get(strategy, honesty.INFORMATION_PER_VOTE["random"])
    top_k = project.settings.ranking_top_k if query.top_k is None else query.top_k
    found = await asyncio.get_running_loop().run_in_executor(
        None, honesty.progress, mu, se, query.target_tau, top_k, information
    )
    return json_response(
        {
            "model": model,
            "category": query.category,
            "entities": found.entities,
            "votes": sum(board.votes.values()) // 2
            if query.category
            else await leaderboard.vote_count(db, project.id),
            "expected_tau": found.expected_tau,
            "settled_adjacent_share": found.settled_adjacent_share,
            "target_tau": found.target_tau,
            "votes_to_target": None if found.votes_to_target is None else int(found.votes_to_target),
            "top_k": found.top_k,
            "votes_to_settle_top_k": (
                None if found.votes_to_settle_top_k is None else int(found.votes_to_settle_top_k)
            ),
            "strategy": strategy,
            "information_per_vote": information,
        }
    )


async def categories(request: web.Request) -> web.Response:
    """``GET /ratings/categories``: every category votes were given in, with its votes."""
    found = await leaderboard.categories(request.app[DATABASE].reader(), request[PROJECT].id)
    return json_response([{"category": name, "votes": votes} for name, votes in found.items()])


async def attributes(request: web.Request) -> web.Response:
    """``GET /ratings/attributes``: every attribute the project's live entities carry, with
    how many carry it (what ``control=`` can name)."""
    found = await leaderboard.live_attributes(request.app[DATABASE].reader(), request[PROJECT].id)
    counts = collections.Counter(name for values in found.values() for name in values)
    return json_response([{"attribute": name, "entities": counts[name]} for name in sorted(counts)])
