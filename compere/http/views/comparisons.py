"""``/comparisons/``: record a vote, read the vote log."""

from __future__ import annotations

from aiohttp import web

from compere.http.errors import ApiError, json_response, not_found
from compere.http.keys import DATABASE, PAIR_TOKENS, SETTINGS, USER, WEBHOOKS
from compere.http.schemas import ComparisonCreate, ComparisonListQuery
from compere.http.validation import path_id, read_body, read_query
from compere.http.views.shapes import comparison_out
from compere.infra import metrics
from compere.infra.signing import InvalidPairToken
from compere.storage import comparisons as store
from compere.storage.database import ConflictError
from compere.storage.entities import EntityNotFound


async def create_comparison(request: web.Request) -> web.Response:
    body = await read_body(request, ComparisonCreate)
    if body.entity1_id == body.entity2_id:
        raise ApiError(400, "An entity cannot be compared with itself")
    if body.selected_entity_id is not None and body.selected_entity_id not in (
        body.entity1_id,
        body.entity2_id,
    ):
        raise ApiError(400, "Selected entity must be one of the compared entities")  # the original's words
    if body.verdict == "win" and body.selected_entity_id is None:
        raise ApiError(400, "A win needs selected_entity_id")
    if body.verdict in ("tie", "both_bad") and body.selected_entity_id is not None:
        raise ApiError(400, f"A {body.verdict} verdict needs selected_entity_id null")
    voter = request.get(USER)
    provenance = _provenance(request, body) if body.pair_token else None
    try:
        row = await store.record_comparison(
            request.app[DATABASE],
            entity1_id=body.entity1_id,
            entity2_id=body.entity2_id,
            selected_entity_id=body.selected_entity_id,
            k_factor=request.app[SETTINGS].elo_k_factor,
            user_id=voter.id if voter is not None else None,
            provenance=provenance,
            # Only while a subscription wants votes: one more row in the vote's statement.
            announce=request.app[WEBHOOKS].wants(store.VOTE_EVENT),
            verdict=body.verdict,
            category=body.category,
        )
    except EntityNotFound as exc:
        raise not_found("Entity", exc.entity_id) from None
    except ConflictError:
        if provenance is None:
            raise
        raise ApiError(409, "This pair_token was already used for a vote") from None
    metrics.VOTES.labels("tie" if body.selected_entity_id is None else "win").inc()
    return json_response(comparison_out(row))


def _provenance(request: web.Request, body: ComparisonCreate) -> store.PairProvenance:
    assert body.pair_token is not None
    try:
        claims = request.app[PAIR_TOKENS].verify(body.pair_token)
    except InvalidPairToken as exc:
        raise ApiError(400, str(exc)) from None
    if {claims.entity1_id, claims.entity2_id} != {body.entity1_id, body.entity2_id}:
        raise ApiError(400, "pair_token was issued for a different pair")
    return store.PairProvenance(claims.strategy, claims.probability, claims.token_id)


async def list_comparisons(request: web.Request) -> web.Response:
    query = read_query(request, ComparisonListQuery)
    rows = await store.list_comparisons(
        request.app[DATABASE], skip=query.skip, limit=query.limit, entity_id=query.entity_id
    )
    return json_response([comparison_out(r) for r in rows])


async def get_comparison(request: web.Request) -> web.Response:
    comparison_id = path_id(request, "comparison_id", "Comparison")
    row = await store.get_comparison(request.app[DATABASE], comparison_id)
    if row is None:
        raise not_found("Comparison", comparison_id)
    return json_response(comparison_out(row))
