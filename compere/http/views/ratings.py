"""``/ratings``: the leaderboard."""

from __future__ import annotations

from aiohttp import web

from compere.http.errors import json_response
from compere.http.keys import DATABASE
from compere.http.views.shapes import entity_out
from compere.storage import queries


async def leaderboard(request: web.Request) -> web.Response:
    rows = await queries.leaderboard(request.app[DATABASE])
    return json_response([entity_out(r) for r in rows], headers={"X-Total-Count": str(len(rows))})
