"""``/ratings``: the leaderboard by Elo rating or Bayesian score, online or fitted."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from compere.http.errors import json_response, start_stream
from compere.http.keys import DATABASE, PROJECT, RANKING_CACHE
from compere.http.schemas import RatingsQuery
from compere.http.validation import read_query
from compere.http.views.shapes import entity_out, strength_fields
from compere.services.boards import Board
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
    db = request.app[DATABASE]
    project = request[PROJECT]
    # The fitted model always orders by its own score; so does by=score.
    by = "score" if query.model == "bt" else query.by
    board = None
    if by == "score":
        board = await request.app[RANKING_CACHE].board(db, project.id, query.model, project.settings.prior)
    if board is not None and query.model == "bt":
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
    async for rows in leaderboard.stream(request.app[DATABASE], request[PROJECT].id, by):
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
