"""Content pairing: the two entities whose texts differ most (TF-IDF cosine)."""

from __future__ import annotations

import random

from aiohttp import web

from compere.domain.text import TextEntity, most_dissimilar_pair
from compere.http.errors import ApiError, json_response
from compere.http.keys import DATABASE
from compere.http.schemas import ContentPairQuery
from compere.http.validation import read_query
from compere.http.views.shapes import entity_out
from compere.storage import pairing
from compere.storage.database import Row
from compere.storage.rows import entity_row

# TF-IDF over a sample: the cost is quadratic in the number of entities compared.
SAMPLE_SIZE = 200


async def _dissimilar(request: web.Request) -> list[Row]:
    """The most dissimilar pair, or every entity when there are fewer than two."""
    query = read_query(request, ContentPairQuery)
    rng = random.Random(query.seed) if query.seed is not None else random.SystemRandom()
    rows = await pairing.random_sample(request.app[DATABASE], SAMPLE_SIZE, rng)
    if len(rows) < 2:
        return rows
    pair = most_dissimilar_pair([TextEntity(r["id"], r["name"], r["description"]) for r in rows], rng)
    by_id = {r["id"]: r for r in rows}
    return [by_id[pair.entity1_id], by_id[pair.entity2_id]]


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
