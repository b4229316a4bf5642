"""Content pairing: the two entities whose texts differ most (TF-IDF cosine)."""

from __future__ import annotations

from aiohttp import web

from compere.http.errors import ApiError, json_response
from compere.http.keys import DATABASE, PROJECT
from compere.http.schemas import ContentPairQuery
from compere.http.validation import read_query
from compere.http.views.shapes import entity_out
from compere.services.pairs import most_dissimilar
from compere.storage.database import Row
from compere.storage.rows import entity_row


async def _dissimilar(request: web.Request) -> list[Row]:
    query = read_query(request, ContentPairQuery)
    return await most_dissimilar(request.app[DATABASE].reader(), request[PROJECT].id, query.seed)


async def next_by_content(request: web.Request) -> web.Response:
    rows = await _dissimilar(request)
    if len(rows) < 2:
        raise ApiError(400, "Not enough entities for comparison (need at least 2)")
    return json_response(
        {"entity1": entity_out(entity_row(rows[0])), "entity2": entity_out(entity_row(rows[1]))}
    )


async def dissimilar_entities(request: web.Request) -> web.Response:
    # As the original: with fewer than two entities, the ones there are (200, not 400).
    return json_response([entity_out(entity_row(row)) for row in await _dissimilar(request)])
