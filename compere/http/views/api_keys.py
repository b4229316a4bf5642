"""``/auth/api-keys``: a user's keys for scripts and pipelines (created, listed, revoked).

The key itself appears once, in the answer to its creation; afterwards only its prefix.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from compere.http.auth import require_user
from compere.http.errors import json_response, not_found, validation_error
from compere.http.keys import DATABASE
from compere.http.schemas import ApiKeyCreate
from compere.http.validation import path_id, read_body
from compere.services.api_keys import KeyRequestError, issue_key
from compere.storage import api_keys as store
from compere.storage import projects
from compere.storage.database import Row
from compere.storage.timestamps import as_datetime


def key_out(row: Row) -> dict[str, Any]:
    def moment(name: str) -> Any:
        return None if row[name] is None else as_datetime(row[name])

    return {
        "id": row["id"],
        "name": row["name"],
        "prefix": row["prefix"],
        "scopes": row["scopes"],
        "project_id": row["project_id"],
        "rate_limit": row["rate_limit"],
        "rate_window": row["rate_window"],
        "created_at": moment("created_at"),
        "expires_at": moment("expires_at"),
        "last_used_at": moment("last_used_at"),
        "revoked": row["revoked_at"] is not None,
    }


async def create_api_key(request: web.Request) -> web.Response:
    user = require_user(request)
    body = await read_body(request, ApiKeyCreate)
    db = request.app[DATABASE]
    if body.project_id is not None and not user.is_superuser:
        # Only for a project the user belongs to (the same answer whether it exists or not).
        if await projects.role_of(db, body.project_id, user.id) is None:
            raise validation_error(
                ["body", "project_id"], f"You are not a member of a project with id {body.project_id}"
            )
    elif body.project_id is not None and await projects.by_id(db, body.project_id) is None:
        raise validation_error(["body", "project_id"], f"There is no project with id {body.project_id}")
    try:
        row, key = await issue_key(
            db,
            user_id=user.id,
            scopes=list(body.scopes),
            name=body.name,
            project_id=body.project_id,
            expires_at=body.expires_at,
            rate_limit=body.rate_limit,
            rate_window=body.rate_window,
        )
    except KeyRequestError as exc:
        raise validation_error(["body", exc.field], str(exc)) from None
    return json_response({**key_out(row), "key": key})


async def list_api_keys(request: web.Request) -> web.Response:
    user = require_user(request)
    rows = await store.keys_of(request.app[DATABASE], user.id)
    return json_response([key_out(row) for row in rows])


async def revoke_api_key(request: web.Request) -> web.Response:
    user = require_user(request)
    key_id = path_id(request, "key_id", "API key")
    db = request.app[DATABASE]
    row = await store.get_key(db, key_id)
    # Another user's key is reported missing, as if it did not exist (superusers excepted).
    if row is None or (row["user_id"] != user.id and not user.is_superuser):
        raise not_found("API key", key_id)
    await store.revoke_key(db, key_id)  # a second revoke changes nothing
    return json_response({"message": f"API key {row['prefix']} revoked"})
