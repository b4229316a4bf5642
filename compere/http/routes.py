"""The route table: every endpoint, its handler, who may call it, and what it
accepts and answers.

The table drives the router, the access checks and the OpenAPI document, so a route
cannot be served without being documented, and is protected unless it says otherwise.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel

from compere.http import schemas
from compere.http.auth import guarded
from compere.http.idempotency import idempotent
from compere.http.keys import SETTINGS
from compere.http.views import auth, comparisons, content, entities, export, health, mab, ratings, webhooks

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Who may call a route when access is checked: anyone, any active user, a superuser.
Access = Literal["public", "user", "superuser"]


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
    access: Access = "user"  # checked when AUTH_ENABLED=true (protected unless declared public)
    auth_always: bool = False  # checked even with AUTH_ENABLED=false (the /auth/ endpoints)
    open_until_first_user: bool = False  # the view applies ``access`` itself, under a lock
    form_body: bool = False  # the body may also be application/x-www-form-urlencoded
    idempotent: bool = False  # accepts Idempotency-Key (compere.http.idempotency)

    def effective_access(self, auth_enabled: bool) -> Access:
        """The guard the router puts in front of the handler."""
        if self.open_until_first_user or not (auth_enabled or self.auth_always):
            return "public"
        return self.access


ROUTES: list[Route] = [
    Route("GET", "/health", health.health, "Liveness", "health", schemas.Health, access="public"),
    Route(
        "GET",
        "/health/ready",
        health.ready,
        "Readiness of the database and Redis",
        "health",
        schemas.Readiness,
        errors=(503,),
        access="public",
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
        "POST",
        "/entities/import",
        entities.import_entities,
        "Bulk import from a CSV or JSON Lines body, matched on external_id (superusers)",
        "entities",
        schemas.ImportResult,
        query=schemas.ImportQuery,
        errors=(400, 401, 403, 413, 422),
        access="superuser",
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
        access="superuser",
    ),
    Route(
        "POST",
        "/comparisons/",
        comparisons.create_comparison,
        "Record a comparison and update both ratings atomically",
        "comparisons",
        schemas.Comparison,
        body=schemas.ComparisonCreate,
        errors=(400, 404, 409, 413, 422),
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
    # Before /comparisons/{comparison_id}, which would otherwise take "next" as an id.
    Route(
        "GET",
        "/comparisons/next",
        content.next_by_content,
        "A pair chosen by content dissimilarity (TF-IDF cosine of name and description)",
        "pairing",
        schemas.ContentPair,
        query=schemas.ContentPairQuery,
        errors=(400, 422),
    ),
    Route(
        "GET",
        "/dissimilar_entities",
        content.dissimilar_entities,
        "The most dissimilar pair of entities, as a list of two",
        "pairing",
        list[schemas.Entity],
        query=schemas.ContentPairQuery,
        errors=(400, 422),
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
        "The next pair to compare, chosen by a strategy (active, ucb or random)",
        "pairing",
        schemas.Pair,
        query=schemas.PairQuery,
        errors=(400, 422),
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
        ratings.ratings,
        "The leaderboard by Elo rating (default) or Bayesian score, online or fitted",
        "ratings",
        list[schemas.RankedEntity],
        query=schemas.RatingsQuery,
        errors=(422,),
        headers={"X-Total-Count": "Number of entities on the leaderboard"},
    ),
    Route(
        "POST",
        "/auth/token",
        auth.login,
        "Log in: exchange a username and password for an access token",
        "auth",
        schemas.Token,
        body=schemas.LoginForm,
        errors=(400, 401, 403, 415, 422, 429, 503),
        access="public",
        form_body=True,
    ),
    Route(
        "POST",
        "/auth/logout",
        auth.logout,
        "Log out: the presented token stops working at once",
        "auth",
        schemas.Message,
        errors=(503,),
        auth_always=True,
    ),
    Route(
        "GET",
        "/auth/users/me",
        auth.me,
        "The account the token belongs to",
        "auth",
        schemas.User,
        auth_always=True,
    ),
    Route(
        "POST",
        "/auth/users/",
        auth.create_user,
        "Create a user (the first user ever becomes a superuser; then superusers only)",
        "auth",
        schemas.User,
        body=schemas.UserCreate,
        errors=(400, 409, 413, 422),
        access="superuser",
        auth_always=True,
        open_until_first_user=True,
        idempotent=True,
    ),
    Route(
        "GET",
        "/auth/users",
        auth.list_users,
        "List users",
        "auth",
        list[schemas.User],
        query=schemas.UserListQuery,
        errors=(422,),
        access="superuser",
        auth_always=True,
    ),
    Route(
        "POST",
        "/auth/users/{user_id}/disable",
        auth.disable_user,
        "Disable a user: their tokens stop working at once and they cannot log in",
        "auth",
        schemas.User,
        errors=(400, 404, 422),
        path_params=("user_id",),
        access="superuser",
        auth_always=True,
    ),
    Route(
        "POST",
        "/auth/users/{user_id}/enable",
        auth.enable_user,
        "Enable a disabled user again",
        "auth",
        schemas.User,
        errors=(404, 422),
        path_params=("user_id",),
        access="superuser",
        auth_always=True,
    ),
    Route(
        "GET",
        "/export/comparisons",
        export.export_comparisons,
        "Every comparison, oldest first, streamed as JSON Lines or CSV (superusers)",
        "export",
        query=schemas.ExportQuery,
        errors=(401, 403, 422),
        access="superuser",
    ),
    Route(
        "GET",
        "/comparisons/export/preferences",
        export.export_preferences,
        "Preference data for training, streamed as JSON Lines: DPO pairs or arena battles (superusers)",
        "export",
        query=schemas.PreferenceExportQuery,
        errors=(401, 403, 422),
        access="superuser",
    ),
    Route(
        "POST",
        "/webhooks/",
        webhooks.create_webhook,
        "Subscribe a URL to events; the answer shows the signing secret, once (superusers)",
        "webhooks",
        schemas.WebhookCreated,
        body=schemas.WebhookCreate,
        errors=(400, 401, 403, 413, 422),
        access="superuser",
        # Not idempotent: a stored answer would keep the signing secret in Redis for a day.
    ),
    Route(
        "GET",
        "/webhooks/",
        webhooks.list_webhooks,
        "List webhook subscriptions (superusers)",
        "webhooks",
        list[schemas.Webhook],
        errors=(401, 403),
        access="superuser",
    ),
    Route(
        "GET",
        "/webhooks/{webhook_id}",
        webhooks.get_webhook,
        "Read a webhook subscription (superusers)",
        "webhooks",
        schemas.Webhook,
        errors=(401, 403, 404, 422),
        path_params=("webhook_id",),
        access="superuser",
    ),
    Route(
        "PATCH",
        "/webhooks/{webhook_id}",
        webhooks.update_webhook,
        "Change a subscription's URL, events, description or active flag (superusers)",
        "webhooks",
        schemas.Webhook,
        body=schemas.WebhookUpdate,
        errors=(400, 401, 403, 404, 413, 422),
        path_params=("webhook_id",),
        access="superuser",
    ),
    Route(
        "DELETE",
        "/webhooks/{webhook_id}",
        webhooks.delete_webhook,
        "Delete a subscription and its delivery log (superusers)",
        "webhooks",
        schemas.Message,
        errors=(401, 403, 404, 422),
        path_params=("webhook_id",),
        access="superuser",
    ),
    Route(
        "GET",
        "/webhooks/{webhook_id}/deliveries",
        webhooks.list_deliveries,
        "The delivery log of a subscription, newest first (superusers)",
        "webhooks",
        list[schemas.WebhookDelivery],
        query=schemas.DeliveryListQuery,
        errors=(401, 403, 404, 422),
        path_params=("webhook_id",),
        access="superuser",
    ),
    Route(
        "POST",
        "/webhooks/{webhook_id}/deliveries/{delivery_id}/replay",
        webhooks.replay_delivery,
        "Send a logged delivery again, as a new delivery queued after the pending ones (superusers)",
        "webhooks",
        schemas.WebhookDelivery,
        errors=(401, 403, 404, 422),
        path_params=("webhook_id", "delivery_id"),
        access="superuser",
    ),
]


def setup_routes(app: web.Application, routes: list[Route] = ROUTES) -> None:
    """Register every route behind the guard its access level asks for."""
    auth_enabled = app[SETTINGS].auth_enabled
    for route in routes:
        handler = idempotent(route.handler) if route.idempotent else route.handler
        handler = guarded(handler, route.effective_access(auth_enabled))
        app.router.add_route(route.method, route.path, handler)
