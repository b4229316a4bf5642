"""The route table: every endpoint, its handler, who may call it, and what it
accepts and answers.

The table drives the router, the access checks and the OpenAPI document, so a route
cannot be served without being documented (unless it says ``documented=False``, as
``/metrics``, which is for Prometheus, not part of the API), and is protected unless it
says otherwise.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import BaseModel

from compere.domain.projects import SLUG_PATTERN, Action
from compere.http import schemas
from compere.http.auth import credentials_checked, guarded, require_project_access, require_user
from compere.http.errors import ApiError
from compere.http.idempotency import idempotent
from compere.http.keys import DATABASE, PROJECT, PROJECTS, SETTINGS, USER
from compere.http.views import (
    api_keys,
    auth,
    comparisons,
    content,
    entities,
    export,
    health,
    mab,
    metrics,
    projects,
    ratings,
    vote_import,
    voters,
    webhooks,
)
from compere.settings import Settings

# Who may call a route when access is checked: anyone, any active user, a superuser;
# "project": the route names a project (/projects/{slug}/...) and its ``project_action``
# is checked by compere.http.auth.require_project_access, whatever AUTH_ENABLED says.
Access = Literal["public", "user", "superuser", "project"]


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
    error_bodies: dict[int, Any] = field(default_factory=dict)  # status -> model, where not Error
    path_params: tuple[str, ...] = ()
    headers: dict[str, str] = field(default_factory=dict)  # response headers: name -> description
    access: Access = "user"  # checked when AUTH_ENABLED=true (protected unless declared public)
    auth_always: bool = False  # checked even with AUTH_ENABLED=false (the /auth/ endpoints)
    # False: the route never acts as its caller (health checks, logging in), so it ignores
    # presented credentials; every other route refuses invalid ones with 401 when access is
    # checked (compere.http.auth.refuse_invalid_credentials), even where anyone may call it.
    reads_credentials: bool = True
    open_until_first_user: bool = False  # the view applies ``access`` itself, under a lock
    form_body: bool = False  # the body may also be application/x-www-form-urlencoded
    idempotent: bool = False  # accepts Idempotency-Key (compere.http.idempotency)
    documented: bool = True  # in the OpenAPI document (and so in the Python client)
    when: Callable[[Settings], bool] | None = None  # served only when this is true
    # A board route: served at the top level on the project ``default`` and, as a copy
    # (``project_routes``), under /projects/{slug}/ needing this action there.
    # On a project management route: the action its project needs.
    project_action: Action | None = None
    operation_prefix: str = ""  # keeps OpenAPI operation ids unique across the copies

    def effective_access(self, auth_enabled: bool) -> Access:
        """The guard the router puts in front of the handler."""
        if self.access == "project":
            return "project"
        if self.open_until_first_user or not (auth_enabled or self.auth_always):
            return "public"
        return self.access


ROUTE_TABLE: list[Route] = [
    Route(
        "GET",
        "/health",
        health.health,
        "Liveness",
        "health",
        schemas.Health,
        access="public",
        reads_credentials=False,
    ),
    Route(
        "GET",
        "/health/ready",
        health.ready,
        "Readiness of the database and Redis",
        "health",
        schemas.Readiness,
        errors=(503,),
        error_bodies={503: schemas.Readiness},
        access="public",
        reads_credentials=False,
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
        project_action="write",
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
        project_action="read",
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
        project_action="write",
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
        project_action="read",
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
        project_action="write",
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
        project_action="write",
    ),
    Route(
        "POST",
        "/comparisons/",
        comparisons.create_comparison,
        "Record a comparison and update both ratings atomically",
        "comparisons",
        schemas.Comparison,
        body=schemas.ComparisonCreate,
        # 403: a `voter` named by a caller that is not a key with the vote scope.
        errors=(400, 403, 404, 409, 413, 422),
        idempotent=True,
        project_action="vote",
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
        project_action="read",
    ),
    Route(
        "POST",
        "/comparisons/batch",
        comparisons.create_comparison_batch,
        "Record up to 1,000 comparisons in order in one transaction, with one result per vote",
        "comparisons",
        schemas.BatchResult,
        body=schemas.ComparisonBatch,
        errors=(400, 403, 413, 422),
        idempotent=True,
        project_action="vote",
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
        project_action="vote",
    ),
    Route(
        "GET",
        "/dissimilar_entities",
        content.dissimilar_entities,
        "The most dissimilar pair of entities, as a list of two (fewer when there are fewer)",
        "pairing",
        list[schemas.Entity],
        query=schemas.ContentPairQuery,
        errors=(422,),
        project_action="vote",
    ),
    Route(
        "POST",
        "/comparisons/import",
        vote_import.import_comparisons,
        "Import a vote log: a comparisons export or arena battles, streamed; resumable; verdicts, "
        "categories and voters kept (an arena judge: the voter a key's voter field makes) (superusers)",
        "comparisons",
        schemas.VoteImportResult,
        query=schemas.VoteImportQuery,
        errors=(401, 403, 422),
        access="superuser",
        project_action="write",
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
        project_action="read",
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
        project_action="vote",
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
        project_action="vote",
    ),
    Route(
        "GET",
        "/ratings",
        ratings.ratings,
        "The leaderboard by Elo rating (default) or Bayesian score, online or fitted; with control=, "
        "the fitted board with entity attributes controlled for",
        "ratings",
        list[schemas.RankedEntity] | schemas.ControlledBoard,
        query=schemas.RatingsQuery,
        errors=(422,),
        headers={"X-Total-Count": "Number of entities on the leaderboard"},
        project_action="read",
    ),
    Route(
        "GET",
        "/ratings/progress",
        ratings.progress,
        "How far the board is from the true order, and the votes still needed",
        "ratings",
        schemas.Progress,
        query=schemas.ProgressQuery,
        errors=(422,),
        project_action="read",
    ),
    Route(
        "GET",
        "/ratings/categories",
        ratings.categories,
        "Every category votes were given in, with its vote count",
        "ratings",
        list[schemas.CategoryCount],
        project_action="read",
    ),
    Route(
        "GET",
        "/ratings/attributes",
        ratings.attributes,
        "Every entity attribute a board can control for (control=), with how many entities have it",
        "ratings",
        list[schemas.AttributeCount],
        project_action="read",
    ),
    Route(
        "GET",
        "/voters",
        voters.list_voters,
        "Voters: reliability, weight and influence of each, and entities resting on few voters (superusers)",
        "ratings",
        schemas.VotersReport,
        query=schemas.VotersQuery,
        errors=(401, 403, 422),
        headers={"X-Total-Count": "Number of voters"},
        access="superuser",
        project_action="admin",  # /projects/{slug}/voters: the project's owners
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
        reads_credentials=False,  # a stale token or cookie must not keep anyone from logging in
    ),
    Route(
        "POST",
        "/auth/logout",
        auth.logout,
        "Log out: the presented token stops working at once",
        "auth",
        schemas.Message,
        auth_always=True,
    ),
    Route(
        "POST",
        "/auth/logout-all",
        auth.logout_all,
        "Log out everywhere: every token of the account stops working at once",
        "auth",
        schemas.Message,
        auth_always=True,
    ),
    Route(
        "POST",
        "/auth/users/me/password",
        auth.change_password,
        "Change your password: every older token of the account ends; a new token is returned",
        "auth",
        schemas.PasswordChanged,
        body=schemas.PasswordChange,
        errors=(400, 413, 422, 429, 503),
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
        "Create a user (superusers; others only while OPEN_SIGNUP or, outside production, as the first user)",
        "auth",
        schemas.User,
        body=schemas.UserCreate,
        errors=(400, 413, 422),  # a taken username or e-mail is 400, as in the original
        access="superuser",
        auth_always=True,
        open_until_first_user=True,
        idempotent=True,
    ),
    Route(
        "GET",
        "/auth/users/",  # beside POST /auth/users/ (the original's spelling); /auth/users redirects
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
        "POST",
        "/auth/api-keys",
        api_keys.create_api_key,
        "Create an API key for your projects; the answer shows the key, once",
        "auth",
        schemas.ApiKeyCreated,
        body=schemas.ApiKeyCreate,
        errors=(400, 413, 422),
        auth_always=True,
        # Not idempotent: a stored answer would keep the key in Redis for a day.
    ),
    Route(
        "GET",
        "/auth/api-keys",
        api_keys.list_api_keys,
        "Your API keys: prefix, scopes, project, dates, last use, revoked (never the key)",
        "auth",
        list[schemas.ApiKey],
        auth_always=True,
    ),
    Route(
        "DELETE",
        "/auth/api-keys/{key_id}",
        api_keys.revoke_api_key,
        "Revoke an API key: it stops working on every worker from the next request on",
        "auth",
        schemas.Message,
        errors=(404, 422),
        path_params=("key_id",),
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
        project_action="write",
    ),
    Route(
        "GET",
        "/export/entities",
        export.export_entities,
        "Every live entity, streamed as JSON Lines or CSV: a valid import file (superusers)",
        "export",
        query=schemas.ExportQuery,
        errors=(401, 403, 422),
        access="superuser",
        project_action="write",
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
        project_action="write",
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
        project_action="admin",
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
        project_action="admin",
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
        project_action="admin",
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
        project_action="admin",
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
        project_action="admin",
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
        project_action="admin",
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
        project_action="admin",
    ),
    Route(
        "GET",
        "/metrics",
        metrics.serve_metrics,
        "Prometheus metrics, for METRICS_ALLOWED_IPS (loopback by default) or a superuser token",
        "operations",
        access="public",  # the view applies the address list and the token itself
        documented=False,  # for Prometheus, not part of the API
        when=lambda settings: settings.metrics_enabled,
    ),
]

PROJECT_PREFIX = "/projects/{slug}"


def _in_project(route: Route) -> Route:
    """The copy of a board route under /projects/{slug}/."""
    assert route.project_action is not None
    return dataclasses.replace(
        route,
        path=PROJECT_PREFIX + route.path,
        summary=f"{route.summary}; in one project",
        path_params=("slug", *route.path_params),
        errors=tuple(sorted({*route.errors, 401, 403, 404})),
        access="project",
        operation_prefix="project_",
    )


_MANAGE: dict[str, Any] = {"access": "project", "path_params": ("slug",), "tag": "projects"}
PROJECT_ROUTES: list[Route] = [
    Route(
        "GET",
        "/projects/",
        projects.list_projects,
        "The projects the caller may see (public ones and their own; superusers: all)",
        "projects",
        list[schemas.ProjectOut],
        query=schemas.ProjectListQuery,
        errors=(401, 403, 422),
        access="public",
    ),
    Route(
        "POST",
        "/projects/",
        projects.create_project,
        "Create a project; the caller becomes its owner",
        "projects",
        schemas.ProjectOut,
        body=schemas.ProjectCreate,
        errors=(400, 401, 409, 413, 422),
    ),
    Route(
        "GET",
        PROJECT_PREFIX,
        projects.get_project,
        "Read a project: its settings (own and in force) and the caller's role",
        response=schemas.ProjectOut,
        errors=(401, 403, 404),
        **_MANAGE,
    ),
    Route(
        "PATCH",
        PROJECT_PREFIX,
        projects.update_project,
        "Change a project's name, description, visibility or settings (owners); a change of the trust "
        "mode in force recomputes the project's ratings from its vote log",
        response=schemas.ProjectUpdated,
        body=schemas.ProjectUpdate,
        errors=(400, 401, 403, 404, 413, 422),
        **_MANAGE,
    ),
    Route(
        "DELETE",
        PROJECT_PREFIX,
        projects.archive_project,
        "Archive a project: read-only and hidden from lists until a superuser restores it (owners)",
        response=schemas.Message,
        errors=(400, 401, 403, 404),
        **_MANAGE,
    ),
    Route(
        "POST",
        PROJECT_PREFIX + "/restore",
        projects.restore_project,
        "Restore an archived project (superusers)",
        response=schemas.ProjectOut,
        errors=(401, 403, 404),
        **_MANAGE,
    ),
    Route(
        "GET",
        PROJECT_PREFIX + "/members",
        projects.list_members,
        "A project's members and their roles (owners)",
        response=list[schemas.Member],
        errors=(401, 403, 404),
        **_MANAGE,
    ),
    Route(
        "PUT",
        PROJECT_PREFIX + "/members/{username}",
        projects.set_member,
        "Add a member or change their role (owners)",
        response=schemas.Member,
        body=schemas.MemberSet,
        errors=(400, 401, 403, 404, 409, 413, 422),
        **{**_MANAGE, "path_params": ("slug", "username")},
    ),
    Route(
        "DELETE",
        PROJECT_PREFIX + "/members/{username}",
        projects.remove_member,
        "Remove a member (owners)",
        response=schemas.Message,
        errors=(401, 403, 404, 409),
        **{**_MANAGE, "path_params": ("slug", "username")},
    ),
]
ROUTE_TABLE += PROJECT_ROUTES + [_in_project(r) for r in ROUTE_TABLE if r.project_action is not None]

# The API: the routes the OpenAPI document describes and the Python client covers.
ROUTES: list[Route] = [route for route in ROUTE_TABLE if route.documented]


def _on_default_project(handler: Handler) -> Handler:
    """A top-level board route: it acts on the project ``default``."""

    @functools.wraps(handler)
    async def run(request: web.Request) -> web.StreamResponse:
        request[PROJECT] = await request.app[PROJECTS].default(request.app[DATABASE])
        return await handler(request)

    return run


def _on_named_project(handler: Handler, action: Action | None) -> Handler:
    """A /projects/{slug}/ route: resolve the project once, then check ``action`` there
    (management routes check in the view)."""

    @functools.wraps(handler)
    async def run(request: web.Request) -> web.StreamResponse:
        slug = request.match_info["slug"]
        found = (
            await request.app[PROJECTS].get(request.app[DATABASE], slug) if SLUG_PATTERN.match(slug) else None
        )
        if found is None:
            if request.app[SETTINGS].auth_enabled and request.get(USER) is None:
                require_user(request)  # 401 as for a private project: existence is not told
            raise ApiError(404, f"Project '{slug}' not found")
        request[PROJECT] = found
        if action is not None:
            await require_project_access(request, action)
        return await handler(request)

    return run


def setup_routes(app: web.Application, routes: list[Route] = ROUTE_TABLE) -> None:
    """Register every route (whose ``when`` allows it) behind the guard its access level
    asks for.

    Every ``GET`` also answers ``HEAD`` (RFC 9110: the same status and headers, no body).
    """
    settings = app[SETTINGS]
    auth_enabled = settings.auth_enabled
    for route in routes:
        if route.when is not None and not route.when(settings):
            continue
        handler = idempotent(route.handler) if route.idempotent else route.handler
        access = route.effective_access(auth_enabled)
        if access == "project":
            in_copy = route.operation_prefix == "project_"
            handler = _on_named_project(handler, route.project_action if in_copy else None)
        else:
            if route.project_action is not None:
                handler = _on_default_project(handler)
            handler = guarded(handler, access)
        if route.reads_credentials and (auth_enabled or route.auth_always):
            handler = credentials_checked(handler)
        app.router.add_route(route.method, route.path, handler)
        if route.method == "GET":
            app.router.add_route("HEAD", route.path, handler)


def add_other_spellings(app: web.Application) -> None:
    """Answer each path's other spelling (with or without the trailing slash) with a 307.

    As the original Compere (FastAPI's ``redirect_slashes``) does: ``GET /entities``
    redirects to ``/entities/`` and ``POST /auth/users`` to ``/auth/users/``, keeping
    the method, body and query string. Works from whatever is registered when called
    (the route table, the docs and the web app), method by method, so a path declared
    in both spellings for different methods (``GET /auth/users``, ``POST /auth/users/``)
    redirects each method to its own. Call after every route is added; the OpenAPI
    document keeps listing each path once.
    """
    resources: dict[str, web.AbstractResource] = {}
    methods: dict[str, set[str]] = {}
    for resource in app.router.resources():
        if isinstance(resource, web.StaticResource) or resource.canonical == "/":
            continue
        resources.setdefault(resource.canonical, resource)
        methods.setdefault(resource.canonical, set()).update(route.method for route in resource)
    for path, declared in methods.items():
        other = path[:-1] if path.endswith("/") else f"{path}/"
        missing = declared - methods.get(other, set())
        if not missing:
            continue
        target = resources.get(other) or app.router.add_resource(other)
        assert isinstance(target, web.Resource)
        for method in sorted(missing):
            target.add_route(method, _redirect_to_other_spelling)


async def _redirect_to_other_spelling(request: web.Request) -> web.Response:
    # raw_path keeps the client's percent-encoding and query string as sent. Every
    # registered path starts with a literal segment, so the target never starts with
    # "//" (which a browser would read as another host).
    path, question_mark, query = request.raw_path.partition("?")
    target = path[:-1] if path.endswith("/") else f"{path}/"
    return web.Response(status=307, headers={"Location": f"{target}{question_mark}{query}"})
