"""The route table: every endpoint, its handler, and what it accepts and answers.

The table drives both the router and the OpenAPI document, so a route cannot be
served without being documented.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from compere.http import schemas
from compere.http.idempotency import idempotent
from compere.http.views import comparisons, entities, health, mab, ratings

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    response: Any = None  # a model, list[model], or None
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    errors: tuple[int, ...] = ()
    path_params: tuple[str, ...] = ()
    headers: dict[str, str] = field(default_factory=dict)  # response headers: name -> description
    idempotent: bool = False  # accepts Idempotency-Key (compere.http.idempotency)


ROUTES: list[Route] = [
    Route("GET", "/health", health.health, "Liveness", "health", schemas.Health),
    Route(
        "GET",
        "/health/ready",
        health.ready,
        "Readiness of the database and Redis",
        "health",
        schemas.Readiness,
        errors=(503,),
    ),
    Route(
        "POST",
        "/entities/",
        entities.create_entity,
        "Create an entity",
        "entities",
        schemas.Entity,
        body=schemas.EntityCreate,
        errors=(400, 413, 422),
        idempotent=True,
    ),
    Route(
        "GET",
        "/entities/",
        entities.list_entities,
        "List entities, best rated first",
        "entities",
        list[schemas.Entity],
        query=schemas.EntityListQuery,
        errors=(422,),
        headers={"X-Total-Count": "Number of entities matching the search"},
    ),
    Route(
        "GET",
        "/entities/{entity_id}",
        entities.get_entity,
        "Read an entity",
        "entities",
        schemas.Entity,
        errors=(404, 422),
        path_params=("entity_id",),
    ),
    Route(
        "PUT",
        "/entities/{entity_id}",
        entities.update_entity,
        "Change some fields of an entity",
        "entities",
        schemas.Entity,
        body=schemas.EntityUpdate,
        errors=(400, 404, 413, 422),
        path_params=("entity_id",),
    ),
    Route(
        "DELETE",
        "/entities/{entity_id}",
        entities.delete_entity,
        "Delete an entity (its recorded comparisons stay in the log)",
        "entities",
        schemas.Message,
        errors=(404, 422),
        path_params=("entity_id",),
    ),
    Route(
        "POST",
        "/comparisons/",
        comparisons.create_comparison,
        "Record a comparison and update both ratings atomically",
        "comparisons",
        schemas.Comparison,
        body=schemas.ComparisonCreate,
        errors=(400, 404, 413, 422),
        idempotent=True,
    ),
    Route(
        "GET",
        "/comparisons/",
        comparisons.list_comparisons,
        "The comparison log, newest first",
        "comparisons",
        list[schemas.Comparison],
        query=schemas.ComparisonListQuery,
        errors=(422,),
    ),
    Route(
        "GET",
        "/comparisons/{comparison_id}",
        comparisons.get_comparison,
        "Read a comparison",
        "comparisons",
        schemas.Comparison,
        errors=(404, 422),
        path_params=("comparison_id",),
    ),
    Route(
        "GET",
        "/mab/next_comparison",
        mab.next_comparison,
        "The pair the bandit picks next",
        "pairing",
        schemas.Pair,
        errors=(400,),
    ),
    Route(
        "POST",
        "/mab/update",
        mab.update_bandit,
        "Compatibility no-op: every recorded comparison already updates the bandit",
        "pairing",
        schemas.Message,
        query=schemas.MabUpdateQuery,
        errors=(404, 422),
    ),
    Route(
        "GET",
        "/ratings",
        ratings.leaderboard,
        "The leaderboard, highest rating first",
        "ratings",
        list[schemas.Entity],
        headers={"X-Total-Count": "Number of entities on the leaderboard"},
    ),
]


def setup_routes(app: web.Application, routes: list[Route] = ROUTES) -> None:
    for route in routes:
        handler = idempotent(route.handler) if route.idempotent else route.handler
        app.router.add_route(route.method, route.path, handler)
