"""``/comparisons/``: record a vote, read the vote log."""

from __future__ import annotations

from aiohttp import web

from compere.http.auth import AuthenticatedUser
from compere.http.errors import ApiError, json_response, not_found
from compere.http.keys import DATABASE, PAIR_TOKENS, PROJECT, USER, VOTER_IDS, WEBHOOKS
from compere.http.schemas import ComparisonCreate, ComparisonListQuery
from compere.http.validation import path_id, read_body, read_query
from compere.http.views.shapes import comparison_out
from compere.infra import metrics
from compere.infra.signing import InvalidPairToken
from compere.infra.voters import COOKIE_MAX_AGE, VOTER_COOKIE
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
    project = request[PROJECT]
    if body.selected_entity_id is None and not project.settings.allow_ties:
        raise ApiError(400, "This project does not accept ties: select one of the two entities")
    caller = request.get(USER)
    voter, new_cookie = _voter(request, caller, body.voter)
    provenance = _provenance(request, body) if body.pair_token else None
    try:
        row = await store.record_comparison(
            request.app[DATABASE],
            project.id,
            entity1_id=body.entity1_id,
            entity2_id=body.entity2_id,
            selected_entity_id=body.selected_entity_id,
            k_factor=project.settings.elo_k_factor,
            user_id=caller.id if caller is not None else None,
            provenance=provenance,
            # Only while a subscription wants votes: one more row in the vote's statement.
            announce=request.app[WEBHOOKS].wants(store.VOTE_EVENT),
            voter=voter,
            daily_cap=project.settings.daily_vote_cap,
        )
    except EntityNotFound as exc:
        raise not_found("Entity", exc.entity_id) from None
    except store.DailyCapReached:
        raise ApiError(429, "This voter has reached today's vote limit for this project") from None
    except ConflictError:
        if provenance is None:
            raise
        raise ApiError(409, "This pair_token was already used for a vote") from None
    metrics.VOTES.labels("tie" if body.selected_entity_id is None else "win").inc()
    # The stored voter stays out of the answer: the original API's shape is kept.
    response = json_response(comparison_out(row))
    if new_cookie is not None:
        set_voter_cookie(request, response, new_cookie)
    return response


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
