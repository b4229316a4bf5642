"""``/mab/``: the next pair to compare, and the original's explicit update call."""

from __future__ import annotations

from aiohttp import web

from compere.http.errors import ApiError, json_response
from compere.http.keys import DATABASE, PAIR_TOKENS, PROJECT, RANKING_CACHE, SETTINGS
from compere.http.schemas import MabUpdateQuery, PairQuery
from compere.http.validation import read_query
from compere.http.views.shapes import entity_out
from compere.services.pairs import next_pair
from compere.storage import comparisons


async def next_comparison(request: web.Request) -> web.Response:
    query = read_query(request, PairQuery)
    app = request.app
    project = request[PROJECT]
    # Candidates may be slightly stale (the replica's); the vote checks the pair on the primary.
    reader = app[DATABASE].reader()
    focus = None
    if query.category is not None:  # choose by what is known in this category
        focus = await app[RANKING_CACHE].board(
            reader, project.id, "bt", project.settings.prior, project.settings.trust, query.category
        )
    pair = await next_pair(reader, project, app[SETTINGS], app[PAIR_TOKENS], query.strategy, focus)
    if pair is None:
        raise ApiError(400, "Need at least 2 entities for comparison")
    return json_response(
        {
            "entity1": entity_out(pair.entity1),
            "entity2": entity_out(pair.entity2),
            "pair_token": pair.pair_token,
            "strategy": pair.strategy,
            "selection_probability": pair.probability,
        }
    )


async def update_bandit(request: web.Request) -> web.Response:
    """Kept for compatibility: every recorded comparison already updates the bandit.

    The original needed this call after each vote; applying the vote again here would
    count it twice, so this only confirms the comparison exists.
    """
    query = read_query(request, MabUpdateQuery)
    if (
        await comparisons.get_comparison(request.app[DATABASE], query.comparison_id, request[PROJECT].id)
        is None
    ):
        raise ApiError(404, "Comparison not found")  # the original's words, without the id
    return json_response({"message": "MAB updated successfully"})
