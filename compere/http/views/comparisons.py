"""``/comparisons/``: record a vote (alone or in a batch), read the vote log."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from compere.http.auth import AuthenticatedUser
from compere.http.errors import ApiError, json_response, not_found, validation_error
from compere.http.keys import (
    ANSWER_RECORDED,
    DATABASE,
    IDEMPOTENCY_RECEIPT,
    PAIR_TOKENS,
    PROJECT,
    SETTINGS,
    USER,
    VOTER_IDS,
    VOTES,
    WEBHOOKS,
)
from compere.http.schemas import ComparisonBatch, ComparisonCreate, ComparisonListQuery
from compere.http.validation import path_id, read_body, read_query
from compere.http.views.shapes import comparison_out
from compere.infra import metrics
from compere.infra.signing import InvalidPairToken
from compere.infra.voters import COOKIE_MAX_AGE, VOTER_COOKIE
from compere.storage import comparisons as store
from compere.storage.database import ConflictError
from compere.storage.entities import EntityNotFound
from compere.storage.rows import ComparisonRow

PAIR_TOKEN_USED = "This pair_token was already used for a vote"
DAILY_CAP_REACHED = "This voter has reached today's vote limit for this project"


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
    voter, new_cookie = _voter(request, request.get(USER), body.voter)
    # Waits for the group commit this vote joins (compere/storage/vote_queue.py).
    outcome = await request.app[VOTES].submit(_vote(request, body, provenance, receipt, voter))
    if isinstance(outcome, ComparisonRow):
        if receipt is not None:
            request[ANSWER_RECORDED] = True
        metrics.VOTES.labels("tie" if body.selected_entity_id is None else "win").inc()
        # The stored voter stays out of the answer: the original API's shape is kept.
        response = web.Response(body=vote_answer(outcome), content_type="application/json")
        if new_cookie is not None:
            set_voter_cookie(request, response, new_cookie)
        return response
    if isinstance(outcome, store.AlreadyRecorded):
        raise outcome  # the Idempotency-Key wrapper replays the recorded answer
    raise _refusal(outcome)


async def create_comparison_batch(request: web.Request) -> web.Response:
    """Up to 1,000 votes in one transaction, in order; one result per vote."""
    body = await read_body(request, ComparisonBatch)
    caller = request.get(USER)
    # One voter for the whole batch unless an item names its own (a key's end users).
    voter, new_cookie = _voter(request, caller, None)
    votes = []
    for index, item in enumerate(body.votes):
        problem = _pair_problem(request, item)
        if problem is not None:
            raise validation_error(["body", "votes", index], problem)
        try:
            provenance = _provenance(request, item)
        except InvalidPairToken as exc:
            raise validation_error(["body", "votes", index, "pair_token"], str(exc)) from None
        item_voter = voter if item.voter is None else _voter(request, caller, item.voter)[0]
        votes.append(_vote(request, item, provenance, None, item_voter))
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
    response = web.Response(body=orjson.dumps(_batch_out(outcomes)), content_type="application/json")
    if new_cookie is not None:
        set_voter_cookie(request, response, new_cookie)
    return response


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
    if isinstance(outcome, store.DailyCapReached):
        return ApiError(429, DAILY_CAP_REACHED)
    return ApiError(409, "This Idempotency-Key was already used")


def _pair_problem(request: web.Request, body: ComparisonCreate) -> str | None:
    if body.entity1_id == body.entity2_id:
        return "An entity cannot be compared with itself"
    if body.selected_entity_id is not None and body.selected_entity_id not in (
        body.entity1_id,
        body.entity2_id,
    ):
        return "Selected entity must be one of the compared entities"  # the original's words
    if body.verdict == "win" and body.selected_entity_id is None:
        return "A win needs selected_entity_id"
    if body.verdict in ("tie", "both_bad") and body.selected_entity_id is not None:
        return f"A {body.verdict} verdict needs selected_entity_id null"
    if body.selected_entity_id is None and not request[PROJECT].settings.allow_ties:
        if body.verdict == "both_bad":
            return "This project does not accept both_bad verdicts (they count as ties): select one"
        return "This project does not accept ties: select one of the two entities"
    return None


def _vote(
    request: web.Request,
    body: ComparisonCreate,
    provenance: store.PairProvenance | None,
    receipt: Any,
    voter: str,
) -> store.Vote:
    caller = request.get(USER)
    project = request[PROJECT]
    return store.Vote(
        entity1_id=body.entity1_id,
        entity2_id=body.entity2_id,
        selected_entity_id=body.selected_entity_id,
        k_factor=project.settings.elo_k_factor,
        project_id=project.id,
        user_id=caller.id if caller is not None else None,
        provenance=provenance,
        receipt=receipt,
        voter=voter,
        daily_cap=project.settings.daily_vote_cap,
        verdict=body.verdict,
        category=body.category,
        trust=request.app[SETTINGS].trust,  # where the project sets no mode
        prior=project.settings.prior,
    )


def _voter(
    request: web.Request, caller: AuthenticatedUser | None, on_behalf_of: str | None
) -> tuple[str, str | None]:
    """Who casts this vote, and a voter cookie to set when an anonymous voter needs one.

    A user votes as ``u:<id>``, a key as ``k:<id>``, and a key with the vote scope may
    name its own end user (``voter``), stored as a keyed hash. An anonymous voter is
    known by the signed cookie this server issued (a new one on the first vote).
    """
    voter_ids = request.app[VOTER_IDS]
    if on_behalf_of is not None:
        if caller is None or caller.api_key is None or not caller.api_key.allows("vote"):
            raise ApiError(403, "Only an API key with the vote scope may vote on behalf of a voter")
        return voter_ids.on_behalf_of(caller.api_key.id, on_behalf_of), None
    if caller is not None:
        return caller.voter, None
    voter_id = voter_ids.read_cookie(request.cookies.get(VOTER_COOKIE))
    if voter_id is not None:
        return voter_ids.anonymous(voter_id), None
    voter_id, cookie = voter_ids.new_cookie()
    return voter_ids.anonymous(voter_id), cookie


def set_voter_cookie(request: web.Request, response: web.StreamResponse, value: str) -> None:
    """The anonymous voter's id: httpOnly, first-party (SameSite=Lax), Secure over https."""
    response.set_cookie(
        VOTER_COOKIE,
        value,
        max_age=COOKIE_MAX_AGE,
        path="/",
        httponly=True,
        samesite="Lax",
        secure=request.secure,
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
