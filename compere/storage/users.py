"""Queries on users: sign-up (with the first-user rule), look-ups, listing, disabling."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import bindparam as param

from compere.storage.database import Connection, Database, Query, Row
from compere.storage.queries import utc_now
from compere.storage.tables import users

USER_COLUMNS = (
    users.c.id,
    users.c.username,
    users.c.email,
    users.c.full_name,
    users.c.disabled,
    users.c.is_superuser,
    users.c.created_at,
)


class SignupClosed(PermissionError):
    """Users exist already and the caller is not a superuser."""


class DuplicateUser(ValueError):
    """The username or e-mail address is taken (letter case ignored)."""

    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field


_COUNT_USERS = Query(sa.select(sa.func.count()).select_from(users))
_ANY_USER = Query(sa.select(users.c.id).limit(1))
_INSERT_USER = Query(
    sa.insert(users)
    .values(
        username=param("username"),
        email=param("email"),
        full_name=param("full_name"),
        hashed_password=param("hashed_password"),
        disabled=param("disabled"),
        is_superuser=param("is_superuser"),
        created_at=param("now"),
    )
    .returning(*USER_COLUMNS)
)
_TAKEN = Query(
    sa.select(
        sa.func.lower(users.c.username) == sa.func.lower(param("username")),
    ).where(
        sa.or_(
            sa.func.lower(users.c.username) == sa.func.lower(param("username")),
            sa.func.lower(users.c.email) == sa.func.lower(param("email")),
        )
    )
)
# What every authenticated request reads: one primary-key look-up.
_IDENTITY = Query(
    sa.select(users.c.id, users.c.username, users.c.disabled, users.c.is_superuser).where(
        users.c.id == param("id")
    )
)
_GET_USER = Query(sa.select(*USER_COLUMNS).where(users.c.id == param("id")))
_CREDENTIALS = Query(
    sa.select(*USER_COLUMNS, users.c.hashed_password).where(
        sa.func.lower(users.c.username) == sa.func.lower(param("username"))
    )
)
_LIST_USERS = Query(sa.select(*USER_COLUMNS).order_by(users.c.id).limit(param("limit")).offset(param("skip")))
_SET_DISABLED = Query(
    sa.update(users)
    .where(users.c.id == param("id"))
    .values(disabled=param("disabled"))
    .returning(*USER_COLUMNS)
)


async def create_user(
    db: Database,
    *,
    username: str,
    email: str | None,
    full_name: str | None,
    hashed_password: str,
    creator_is_superuser: bool,
    make_superuser: bool = False,
) -> Row:
    """Insert a user. The first user ever becomes a superuser; after that only a
    superuser may create users (else :class:`SignupClosed`).

    "Is this the first user?" and the insert happen under one lock, so two sign-ups on
    an empty database cannot both become superusers: PostgreSQL takes a table lock that
    conflicts with itself; SQLite's ``BEGIN IMMEDIATE`` already serialises writers.
    """
    async with db.transaction() as tx:
        if db.name == "postgresql":
            await tx.raw("LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE")
        first = int(await tx.fetch_value(_COUNT_USERS)) == 0
        if not first and not creator_is_superuser:
            raise SignupClosed()
        taken = await tx.fetch_one(_TAKEN, {"username": username, "email": email})
        if taken is not None:
            raise DuplicateUser("username" if next(iter(taken.values())) else "email")
        row = await tx.fetch_one(
            _INSERT_USER,
            {
                "username": username,
                "email": email,
                "full_name": full_name,
                "hashed_password": hashed_password,
                "disabled": False,
                "is_superuser": first or make_superuser,
                "now": utc_now(),
            },
        )
    assert row is not None
    return row


async def any_user(db: Connection) -> bool:
    return await db.fetch_one(_ANY_USER) is not None


async def identity(db: Connection, user_id: int) -> Row | None:
    """The few columns authorisation needs, by primary key."""
    return await db.fetch_one(_IDENTITY, {"id": user_id})


async def get_user(db: Connection, user_id: int) -> Row | None:
    return await db.fetch_one(_GET_USER, {"id": user_id})


async def credentials(db: Connection, username: str) -> Row | None:
    """The user and its password hash, by username (letter case ignored)."""
    return await db.fetch_one(_CREDENTIALS, {"username": username})


async def list_users(db: Connection, *, skip: int, limit: int) -> list[Row]:
    return await db.fetch_all(_LIST_USERS, {"skip": skip, "limit": limit})


async def set_disabled(db: Database, user_id: int, disabled: bool) -> Row | None:
    # A write: through the writer (SQLite) in a transaction like every other write.
    async with db.transaction() as tx:
        return await tx.fetch_one(_SET_DISABLED, {"id": user_id, "disabled": disabled})
