"""API keys: creating, listing and revoking them, and the one read that checks a
presented key on every request (the key and its owner's flags together)."""

from __future__ import annotations

import orjson
import sqlalchemy as sa
from sqlalchemy import bindparam as param

from compere.storage.database import Connection, Database, Query, Row
from compere.storage.tables import api_keys, users
from compere.storage.timestamps import utc_now

KEY_COLUMNS = (
    api_keys.c.id,
    api_keys.c.user_id,
    api_keys.c.project_id,
    api_keys.c.name,
    api_keys.c.prefix,
    api_keys.c.scopes,
    api_keys.c.rate_limit,
    api_keys.c.rate_window,
    api_keys.c.created_at,
    api_keys.c.expires_at,
    api_keys.c.last_used_at,
    api_keys.c.revoked_at,
)

_INSERT = Query(
    sa.insert(api_keys)
    .values(
        user_id=param("user_id"),
        project_id=param("project_id"),
        name=param("name"),
        prefix=param("prefix"),
        key_hash=param("key_hash"),
        scopes=param("scopes"),
        rate_limit=param("rate_limit"),
        rate_window=param("rate_window"),
        created_at=param("now"),
        expires_at=param("expires_at"),
    )
    .returning(*KEY_COLUMNS)
)
# What every request with a key reads: one unique-index probe, the owner's flags joined.
_BY_HASH = Query(
    sa.select(
        *KEY_COLUMNS,
        users.c.username,
        users.c.disabled,
        users.c.is_superuser,
    )
    .select_from(api_keys.join(users, users.c.id == api_keys.c.user_id))
    .where(api_keys.c.key_hash == param("key_hash")),
    prepare=True,
)
_OF_USER = Query(
    sa.select(*KEY_COLUMNS).where(api_keys.c.user_id == param("user_id")).order_by(api_keys.c.id)
)
_GET = Query(sa.select(*KEY_COLUMNS).where(api_keys.c.id == param("id")))
_REVOKE = Query(
    sa.update(api_keys)
    .where(api_keys.c.id == param("id"), api_keys.c.revoked_at.is_(None))
    .values(revoked_at=param("now"))
)
_TOUCH = Query(sa.update(api_keys).where(api_keys.c.id == param("id")).values(last_used_at=param("now")))


def key_row(row: Row) -> Row:
    """A stored key with its scopes as a list."""
    scopes = row["scopes"]
    return {**row, "scopes": orjson.loads(scopes) if isinstance(scopes, str) else scopes}


async def create_key(
    db: Database,
    *,
    user_id: int,
    project_id: int | None,
    name: str,
    prefix: str,
    key_hash: str,
    scopes: list[str],
    rate_limit: int | None,
    rate_window: int | None,
    expires_at: str | None,
) -> Row:
    async with db.transaction() as tx:
        row = await tx.fetch_one(
            _INSERT,
            {
                "user_id": user_id,
                "project_id": project_id,
                "name": name,
                "prefix": prefix,
                "key_hash": key_hash,
                "scopes": orjson.dumps(scopes).decode(),
                "rate_limit": rate_limit,
                "rate_window": rate_window,
                "now": utc_now(),
                "expires_at": expires_at,
            },
        )
    assert row is not None
    return key_row(row)


async def by_hash(db: Connection, key_hash: str) -> Row | None:
    """The key with this hash and its owner's username, disabled and superuser flags."""
    row = await db.fetch_one(_BY_HASH, {"key_hash": key_hash})
    return None if row is None else key_row(row)


async def keys_of(db: Connection, user_id: int) -> list[Row]:
    return [key_row(row) for row in await db.fetch_all(_OF_USER, {"user_id": user_id})]


async def get_key(db: Connection, key_id: int) -> Row | None:
    row = await db.fetch_one(_GET, {"id": key_id})
    return None if row is None else key_row(row)


async def revoke_key(db: Database, key_id: int) -> None:
    """Mark the key revoked (a second revoke keeps the first moment)."""
    async with db.transaction() as tx:
        await tx.execute(_REVOKE, {"id": key_id, "now": utc_now()})


async def touch_key(db: Database, key_id: int, now: str) -> None:
    async with db.transaction() as tx:
        await tx.execute(_TOUCH, {"id": key_id, "now": now})
