"""``/auth/api-keys``: a user's keys for scripts and pipelines (created, listed, revoked).

The key itself appears once, in the answer to its creation; afterwards only its prefix.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from compere.http.auth import require_user
from compere.http.errors import json_response, not_found, validation_error
from compere.http.keys import DATABASE
from compere.http.schemas import ApiKeyCreate
from compere.http.validation import path_id, read_body
from compere.infra.api_keys import new_key
from compere.storage import api_keys as store
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
    expires_at = None
    if body.expires_at is not None:
        if body.expires_at.tzinfo is None:
            raise validation_error(["body", "expires_at"], "expires_at needs a time zone (e.g. Z)")
        if body.expires_at <= datetime.now(UTC):
            raise validation_error(["body", "expires_at"], "expires_at must be in the future")
        expires_at = body.expires_at.astimezone(UTC).isoformat(timespec="microseconds")
    if body.rate_window is not None and body.rate_limit is None:
        raise validation_error(["body", "rate_window"], "rate_window needs rate_limit")
    material = new_key()
    row = await store.create_key(
        request.app[DATABASE],
        user_id=user.id,
        project_id=body.project_id,
        name=body.name,
        prefix=material.prefix,
        key_hash=material.key_hash,
        scopes=sorted(set(body.scopes), key=["read", "vote", "write", "admin"].index),
        rate_limit=body.rate_limit,
        rate_window=(body.rate_window or 60) if body.rate_limit is not None else None,
        expires_at=expires_at,
    )
    return json_response({**key_out(row), "key": material.key})


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
