"""``/projects/``: create, list, read, change, archive and restore projects; members."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from compere.domain.projects import DEFAULT_SLUG, SETTING_NAMES, Project, Role, slug_problem
from compere.http.auth import require_project_access, require_superuser, require_user
from compere.http.errors import ApiError, json_response, validation_error
from compere.http.keys import DATABASE, PROJECT, PROJECTS, SETTINGS, USER
from compere.http.schemas import MemberSet, ProjectCreate, ProjectListQuery, ProjectUpdate
from compere.http.validation import read_body, read_query
from compere.services.projects import change_project, project_from_row
from compere.storage import projects as store
from compere.storage.database import ConflictError


def project_out(project: Project, role: Role | None) -> dict[str, Any]:
    own = project.settings
    return {
        "id": project.id,
        "slug": project.slug,
        "name": project.name,
        "description": project.description,
        "visibility": project.visibility,
        "created_at": project.created_at,
        "archived_at": project.archived_at,
        "overrides": project.overrides,
        "settings": {
            "strategy": own.strategy,
            "elo_k_factor": own.elo_k_factor,
            "prior_sd": own.prior.sigma0,
            "exploration": own.exploration,
            "allow_ties": own.allow_ties,
            "allow_anonymous": own.allow_anonymous,
            "daily_vote_cap": own.daily_vote_cap,
            "trust_mode": own.trust.mode,
            "provisional_max_uncertainty": own.provisional_max_uncertainty,
            "provisional_min_votes": own.provisional_min_votes,
            "ranking_objective": own.ranking_objective,
            "ranking_top_k": own.ranking_top_k,
        },
        "role": role,
    }


def _settings_changes(body: Any, fields: set[str]) -> dict[str, Any]:
    return {name: getattr(body, name) for name in SETTING_NAMES if name in fields}


async def list_projects(request: web.Request) -> web.Response:
    query = read_query(request, ProjectListQuery)
    user = request.get(USER)
    open_api = not request.app[SETTINGS].auth_enabled
    if query.archived and not open_api:
        require_superuser(request)
    everything = open_api or (user is not None and user.is_superuser)
    db = request.app[DATABASE]
    rows = await store.visible(
        db,
        user_id=None if user is None else user.id,
        everything=everything,
        archived=query.archived,
        skip=query.skip,
        limit=query.limit,
    )
    settings = request.app[SETTINGS]
    out = []
    for row in rows:
        project = project_from_row(row, settings)
        role = await store.role_of(db, project.id, user.id) if user is not None else None
        out.append(project_out(project, role))  # type: ignore[arg-type]
    return json_response(out)


async def create_project(request: web.Request) -> web.Response:
    body = await read_body(request, ProjectCreate)
    user = require_user(request) if request.app[SETTINGS].auth_enabled else request.get(USER)
    problem = slug_problem(body.slug)
    if problem is not None:
        raise validation_error(["body", "slug"], problem)
    values = {
        "slug": body.slug,
        "name": body.name,
        "description": body.description,
        "visibility": body.visibility,
        **_settings_changes(body, body.model_fields_set),
    }
    try:
        row = await store.create(request.app[DATABASE], values, None if user is None else user.id)
    except ConflictError:
        raise ApiError(409, f"A project with slug '{body.slug}' already exists") from None
    request.app[PROJECTS].forget(body.slug)
    project = project_from_row(row, request.app[SETTINGS])
    # 200, as every create of this API (the original answered 200 to creates).
    return json_response(project_out(project, "owner" if user is not None else None))


async def get_project(request: web.Request) -> web.Response:
    role = await require_project_access(request, "read")
    return json_response(project_out(request[PROJECT], role))


async def update_project(request: web.Request) -> web.Response:
    role = await require_project_access(request, "admin")
    body = await read_body(request, ProjectUpdate)
    fields = body.model_fields_set
    changes = _settings_changes(body, fields)
    for name in ("name", "description", "visibility"):
        if name in fields:
            if getattr(body, name) is None:
                raise validation_error(["body", name], "must not be null")
            changes[name] = getattr(body, name)
    project = request[PROJECT]
    row, replayed = await change_project(request.app[DATABASE], project.id, changes, request.app[SETTINGS])
    request.app[PROJECTS].forget(project.slug)
    out = project_out(project_from_row(row, request.app[SETTINGS]), role)
    out["ratings_rebuilt"] = replayed
    return json_response(out)


async def archive_project(request: web.Request) -> web.Response:
    await require_project_access(request, "admin")
    project = request[PROJECT]
    if project.slug == DEFAULT_SLUG:
        raise ApiError(400, "The default project cannot be archived")
    await store.set_archived(request.app[DATABASE], project.id, True)
    request.app[PROJECTS].forget(project.slug)
    return json_response({"message": "Project archived"})


async def restore_project(request: web.Request) -> web.Response:
    if request.app[SETTINGS].auth_enabled:
        require_superuser(request)
    project = request[PROJECT]
    row = await store.set_archived(request.app[DATABASE], project.id, False)
    assert row is not None
    request.app[PROJECTS].forget(project.slug)
    return json_response(project_out(project_from_row(row, request.app[SETTINGS]), None))


async def list_members(request: web.Request) -> web.Response:
    await require_project_access(request, "admin")
    rows = await store.members(request.app[DATABASE], request[PROJECT].id)
    return json_response(
        [{"user_id": r["user_id"], "username": r["username"], "role": r["role"]} for r in rows]
    )


async def _member(request: web.Request) -> tuple[int, str]:
    username = request.match_info["username"]
    user = await store.user_by_name(request.app[DATABASE], username)
    if user is None:
        raise ApiError(404, f"User '{username}' not found")
    return int(user["id"]), str(user["username"])


async def set_member(request: web.Request) -> web.Response:
    await require_project_access(request, "admin")
    body = await read_body(request, MemberSet)
    user_id, username = await _member(request)
    project = request[PROJECT]
    db = request.app[DATABASE]
    demoted = body.role != "owner" and await store.role_of(db, project.id, user_id) == "owner"
    if demoted and await store.count_owners(db, project.id) <= 1:
        raise ApiError(409, "A project keeps at least one owner: make someone else owner first")
    await store.set_member(db, project.id, user_id, body.role)
    return json_response({"user_id": user_id, "username": username, "role": body.role})


async def remove_member(request: web.Request) -> web.Response:
    await require_project_access(request, "admin")
    user_id, _ = await _member(request)
    project = request[PROJECT]
    db = request.app[DATABASE]
    role = await store.role_of(db, project.id, user_id)
    if role is None:
        raise ApiError(404, "Not a member of this project")
    if role == "owner" and await store.count_owners(db, project.id) <= 1:
        raise ApiError(409, "A project keeps at least one owner: make someone else owner first")
    await store.remove_member(db, project.id, user_id)
    return json_response({"message": "Member removed"})
