"""``/comparisons/``: record a vote (alone or in a batch), read the vote log."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from compere.http.errors import ApiError, json_response, not_found, validation_error
from compere.http.keys import (
    ANSWER_RECORDED,
    DATABASE,
    IDEMPOTENCY_RECEIPT,
    PAIR_TOKENS,
    PROJECT,
    USER,
    VOTES,
    WEBHOOKS,
)
from compere.http.schemas import ComparisonBatch, ComparisonCreate, ComparisonListQuery
from compere.http.validation import path_id, read_body, read_query
from compere.http.views.shapes import comparison_out
from compere.infra import metrics
from compere.infra.signing import InvalidPairToken
from compere.storage import comparisons as store
from compere.storage.database import ConflictError
from compere.storage.entities import EntityNotFound
from compere.storage.rows import ComparisonRow

PAIR_TOKEN_USED = "This pair_token was already used for a vote"


def vote_answer(row: ComparisonRow) -> bytes:
    """The body of a stored vote's answer, as recorded for its Idempotency-Key."""
    return orjson.dumps(comparison_out(row))


async def create_comparison(request: web.Request) -> web.Response:
    body = await read_body(request, ComparisonCreate)
    problem = _pair_problem(request, body)
    if problem is not None:
        raise ApiError(400, problem)
    try:
        provenance = _provenance(request, body)
    except InvalidPairToken as exc:
        raise ApiError(400, str(exc)) from None
    receipt = request.get(IDEMPOTENCY_RECEIPT)
    # Waits for the group commit this vote joins (compere/storage/vote_queue.py).
    outcome = await request.app[VOTES].submit(_vote(request, body, provenance, receipt))
    if isinstance(outcome, ComparisonRow):
        if receipt is not None:
            request[ANSWER_RECORDED] = True
        metrics.VOTES.labels("tie" if body.selected_entity_id is None else "win").inc()
        return web.Response(body=vote_answer(outcome), content_type="application/json")
    if isinstance(outcome, store.AlreadyRecorded):
        raise outcome  # the Idempotency-Key wrapper replays the recorded answer
    raise _refusal(outcome)


async def create_comparison_batch(request: web.Request) -> web.Response:
    """Up to 1,000 votes in one transaction, in order; one result per vote."""
    body = await read_body(request, ComparisonBatch)
    votes = []
    for index, item in enumerate(body.votes):
        problem = _pair_problem(request, item)
        if problem is not None:
            raise validation_error(["body", "votes", index], problem)
        try:
            provenance = _provenance(request, item)
        except InvalidPairToken as exc:
            raise validation_error(["body", "votes", index, "pair_token"], str(exc)) from None
        votes.append(_vote(request, item, provenance, None))
    receipt = request.get(IDEMPOTENCY_RECEIPT)
    for attempt in range(3):
        try:
            outcomes = await store.record_votes(
                request.app[DATABASE],
                votes,
                announce=request.app[WEBHOOKS].wants(store.VOTE_EVENT),
                batch_receipt=receipt,
                batch_answer=lambda done: orjson.dumps(_batch_out(done)),
            )
            break
        except ConflictError as exc:
            if receipt is not None and store.conflict_is_idempotency_key(exc):
                raise store.AlreadyRecorded(receipt.key) from None
            if attempt == 2:
                raise
            # A concurrent vote took one of the pair tokens after the check: run again,
            # and that vote is refused on its own.
    if receipt is not None:
        request[ANSWER_RECORDED] = True
    for outcome in outcomes:
        if isinstance(outcome, ComparisonRow):
            metrics.VOTES.labels("tie" if outcome.selected_entity_id is None else "win").inc()
    return web.Response(body=orjson.dumps(_batch_out(outcomes)), content_type="application/json")


def _batch_out(outcomes: list[store.VoteOutcome]) -> dict[str, Any]:
    results: list[dict[str, Any]] = []
    for index, outcome in enumerate(outcomes):
        if isinstance(outcome, ComparisonRow):
            results.append({"index": index, "status": 200, "comparison": comparison_out(outcome)})
        else:
            error = _refusal(outcome)
            results.append({"index": index, "status": error.status, "detail": error.detail})
    return {"stored": sum(1 for result in results if result["status"] == 200), "results": results}


def _refusal(outcome: store.VoteOutcome) -> ApiError:
    if isinstance(outcome, EntityNotFound):
        return not_found("Entity", outcome.entity_id)
    if isinstance(outcome, store.PairTokenUsed):
        return ApiError(409, PAIR_TOKEN_USED)
    return ApiError(409, "This Idempotency-Key was already used")


def _pair_problem(request: web.Request, body: ComparisonCreate) -> str | None:
    if body.entity1_id == body.entity2_id:
        return "An entity cannot be compared with itself"
    if body.selected_entity_id is not None and body.selected_entity_id not in (
        body.entity1_id,
        body.entity2_id,
    ):
        return "Selected entity must be one of the compared entities"  # the original's words
    if body.selected_entity_id is None and not request[PROJECT].settings.allow_ties:
        return "This project does not accept ties: select one of the two entities"
    return None


def _vote(
    request: web.Request,
    body: ComparisonCreate,
    provenance: store.PairProvenance | None,
    receipt: Any,
) -> store.Vote:
    voter = request.get(USER)
    project = request[PROJECT]
    return store.Vote(
        entity1_id=body.entity1_id,
        entity2_id=body.entity2_id,
        selected_entity_id=body.selected_entity_id,
        k_factor=project.settings.elo_k_factor,
        project_id=project.id,
        user_id=voter.id if voter is not None else None,
        provenance=provenance,
        receipt=receipt,
    )


def _provenance(request: web.Request, body: ComparisonCreate) -> store.PairProvenance | None:
    """The served pair's provenance from its token; raises ``InvalidPairToken``."""
    if body.pair_token is None:
        return None
    claims = request.app[PAIR_TOKENS].verify(body.pair_token)
    if {claims.entity1_id, claims.entity2_id} != {body.entity1_id, body.entity2_id}:
        raise InvalidPairToken("pair_token was issued for a different pair")
    return store.PairProvenance(claims.strategy, claims.probability, claims.token_id)


async def list_comparisons(request: web.Request) -> web.Response:
    query = read_query(request, ComparisonListQuery)
    rows = await store.list_comparisons(
        request.app[DATABASE],
        request[PROJECT].id,
        skip=query.skip,
        limit=query.limit,
        entity_id=query.entity_id,
    )
    return json_response([comparison_out(r) for r in rows])


async def get_comparison(request: web.Request) -> web.Response:
    comparison_id = path_id(request, "comparison_id", "Comparison")
    row = await store.get_comparison(request.app[DATABASE], comparison_id, request[PROJECT].id)
    if row is None:
        raise not_found("Comparison", comparison_id)
    return json_response(comparison_out(row))
