"""``/mab/``: the next pair to compare, and the original's explicit update call."""

from __future__ import annotations

import random

from aiohttp import web

from compere.domain.selection import Candidate, CandidatePlan, Selection, SelectionContext, select_pair
from compere.domain.ucb import ArmState, choose_second, draw_first, ucb_pair_probability
from compere.http.errors import ApiError, json_response
from compere.http.keys import DATABASE, PAIR_TOKENS, SETTINGS
from compere.http.schemas import MabUpdateQuery, PairQuery
from compere.http.validation import read_query
from compere.http.views.shapes import entity_out
from compere.settings import Settings
from compere.storage import comparisons, pairing
from compere.storage.database import Connection, Row
from compere.storage.rows import entity_row

_rng = random.SystemRandom()
PLAN = CandidatePlan()


async def _select_ucb(db: Connection, rows: list[Row], settings: Settings) -> Selection:
    """The original's algorithm on the candidate set, fed by the stored bandit counters."""
    arms = [
        ArmState(r["id"], float(r["rating"]), r["comparisons"], r["wins"] + 0.5 * r["ties"]) for r in rows
    ]
    # UCB1's n counts pulls; every comparison pulls two arms.
    total = 2 * await pairing.latest_comparison_id(db)
    params = settings.ucb
    first = draw_first(arms, total, params, _rng)
    # Recent opponents matter only for the entity drawn first: fetch them after the draw.
    limit = settings.recent_comparison_limit
    recent = {first.id: set(await comparisons.recent_opponents(db, first.id, limit))}
    second = choose_second(first, arms, total, recent[first.id], params, _rng)
    recent[second.id] = set(await comparisons.recent_opponents(db, second.id, limit))
    probability = ucb_pair_probability(arms, total, recent, params, (first.id, second.id))
    return Selection(first.id, second.id, probability, "ucb")


async def next_comparison(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    db = request.app[DATABASE]
    strategy = read_query(request, PairQuery).strategy or settings.ranking_strategy
    rows = await pairing.pair_candidates(db, PLAN, _rng)
    if len(rows) < 2:
        raise ApiError(400, "Need at least 2 entities for comparison")
    if strategy == "ucb":
        chosen = await _select_ucb(db, rows, settings)
    else:
        candidates = [
            Candidate(
                r["id"],
                r["mu"],
                r["sigma"],
                float(r["rating"]),
                r["comparisons"],
                r["wins"] + 0.5 * r["ties"],
            )
            for r in rows
        ]
        context = SelectionContext(exploration=settings.pair_exploration, prior=settings.prior)
        chosen = select_pair(strategy, candidates, _rng, context)
    by_id = {r["id"]: r for r in rows}
    token = request.app[PAIR_TOKENS].issue(
        chosen.entity1_id, chosen.entity2_id, chosen.strategy, chosen.probability
    )
    return json_response(
        {
            "entity1": entity_out(entity_row(by_id[chosen.entity1_id])),
            "entity2": entity_out(entity_row(by_id[chosen.entity2_id])),
            "pair_token": token,
            "strategy": chosen.strategy,
            "selection_probability": chosen.probability,
        }
    )


async def update_bandit(request: web.Request) -> web.Response:
    """Kept for compatibility: every recorded comparison already updates the bandit.

    The original needed this call after each vote; applying the vote again here would
    count it twice, so this only confirms the comparison exists.
    """
    query = read_query(request, MabUpdateQuery)
    if await comparisons.get_comparison(request.app[DATABASE], query.comparison_id) is None:
        raise ApiError(404, "Comparison not found")  # the original's words, without the id
    return json_response({"message": "MAB updated successfully"})
