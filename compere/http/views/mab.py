"""``/mab/``: the bandit's next pair, and the original's explicit update call."""

from __future__ import annotations

import random

from aiohttp import web

from compere.domain.ucb import ArmState, UCBParams, choose_second, draw_first
from compere.http.errors import ApiError, json_response, not_found
from compere.http.keys import DATABASE, SETTINGS
from compere.http.schemas import MabUpdateQuery
from compere.http.validation import read_query
from compere.http.views.shapes import entity_out
from compere.settings import Settings
from compere.storage import queries

_rng = random.SystemRandom()


def ucb_params(settings: Settings) -> UCBParams:
    return UCBParams(
        exploration=settings.ucb_exploration_constant,
        unexplored_weight=settings.ucb_unexplored_weight,
        ucb_weight=settings.pairing_ucb_weight,
        similarity_weight=settings.pairing_similarity_weight,
        random_weight=settings.pairing_random_weight,
        rating_threshold=settings.pairing_rating_threshold,
    )


async def next_comparison(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    db = request.app[DATABASE]
    arms = [
        ArmState(row["id"], float(row["rating"]), row["comparisons"], row["wins"] + 0.5 * row["ties"])
        for row in await queries.arm_states(db)
    ]
    if len(arms) < 2:
        raise ApiError(400, "Need at least 2 entities for comparison")
    # UCB1's n is the total number of pulls: every comparison pulls two arms.
    total = sum(arm.comparisons for arm in arms)
    params = ucb_params(settings)
    first = draw_first(arms, total, params, _rng)
    # Recent opponents matter only for the entity drawn first: fetch them after the draw.
    recent = await queries.recent_opponents(db, first.id, settings.recent_comparison_limit)
    second = choose_second(first, arms, total, set(recent), params, _rng)
    rows = [await queries.get_entity(db, first.id), await queries.get_entity(db, second.id)]
    if rows[0] is None or rows[1] is None:  # deleted between the two reads
        raise ApiError(
            503, "The entity set changed while choosing a pair; please retry", headers={"Retry-After": "1"}
        )
    return json_response({"entity1": entity_out(rows[0]), "entity2": entity_out(rows[1])})


async def update_bandit(request: web.Request) -> web.Response:
    """Kept for compatibility: every recorded comparison already updates the bandit.

    The original needed this call after each vote; applying the vote again here would
    count it twice, so this only confirms the comparison exists.
    """
    query = read_query(request, MabUpdateQuery)
    if await queries.get_comparison(request.app[DATABASE], query.comparison_id) is None:
        raise not_found("Comparison", query.comparison_id)
    return json_response({"message": f"Bandit state already includes comparison {query.comparison_id}"})
