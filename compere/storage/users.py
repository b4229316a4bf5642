"""Queries on users: sign-up (who may, under a lock), look-ups, listing, disabling,
and the authentication state that must outlive Redis (token epochs, single logouts,
login lockouts).

Usernames and e-mail addresses are matched by their canonical form
(:func:`compere.domain.accounts.canonical_name`), computed here from whatever the
caller passes, so no caller can compare spellings any other way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy import bindparam as param

from compere.domain.accounts import canonical_name
from compere.storage.database import ConflictError, Connection, Database, Query, Row
from compere.storage.tables import revoked_tokens, users
from compere.storage.timestamps import utc_now

USER_COLUMNS = (
    users.c.id,
    users.c.username,
    users.c.email,
    users.c.full_name,
    users.c.disabled,
    users.c.is_superuser,
    users.c.created_at,
)


@dataclass(frozen=True, slots=True)
class SignupRules:
    """Who may create an account without being a superuser."""

    first_user_is_superuser: bool  # the first account on an empty database (development)
    open_signup: bool  # anyone may create an ordinary account once a superuser exists


# Superusers only: what the command line uses (its caller controls the server anyway).
SUPERUSERS_ONLY = SignupRules(first_user_is_superuser=False, open_signup=False)


class SignupClosed(PermissionError):
    """The caller is not a superuser and the rules do not let them sign up.

    ``awaiting_superuser``: no superuser exists yet, so nobody but the server's operator
    (``compere createsuperuser``) can make the first account.
    """

    def __init__(self, *, awaiting_superuser: bool) -> None:
        super().__init__("awaiting superuser" if awaiting_superuser else "closed")
        self.awaiting_superuser = awaiting_superuser


class DuplicateUser(ValueError):
    """The username or e-mail address is taken (compared in canonical form)."""

    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field


_ANY_USER = Query(sa.select(users.c.id).limit(1))
_ANY_SUPERUSER = Query(sa.select(users.c.id).where(users.c.is_superuser == sa.true()).limit(1))
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
        username_canonical=param("username_canonical"),
        email_canonical=param("email_canonical"),
        token_epoch=0,
        failed_logins=0,
        failures_since=0,
        locked_until=0,
    )
    .returning(*USER_COLUMNS)
)
_TAKEN = Query(
    sa.select(users.c.username_canonical == param("username_canonical")).where(
        sa.or_(
            users.c.username_canonical == param("username_canonical"),
            users.c.email_canonical == param("email_canonical"),
        )
    )
)
# What every authenticated request reads: one primary-key look-up, with whether this
# token was logged out riding along (a primary-key probe of revoked_tokens). Prepared on
# PostgreSQL: planning it was about half of its time there (0.57 -> 0.38 ms p50).
_IDENTITY = Query(
    sa.select(
        users.c.id,
        users.c.username,
        users.c.disabled,
        users.c.is_superuser,
        users.c.token_epoch,
        sa.exists().where(revoked_tokens.c.token_id == param("token_id")).label("revoked"),
    ).where(users.c.id == param("id")),
    prepare=True,
)
_GET_USER = Query(sa.select(*USER_COLUMNS).where(users.c.id == param("id")))
_CREDENTIAL_COLUMNS = (
    *USER_COLUMNS,
    users.c.hashed_password,
    users.c.token_epoch,
    users.c.failed_logins,
    users.c.locked_until,
)
_CREDENTIALS = Query(
    sa.select(*_CREDENTIAL_COLUMNS).where(users.c.username_canonical == param("username_canonical"))
)
_CREDENTIALS_BY_ID = Query(sa.select(*_CREDENTIAL_COLUMNS).where(users.c.id == param("id")))
_LIST_USERS = Query(sa.select(*USER_COLUMNS).order_by(users.c.id).limit(param("limit")).offset(param("skip")))
# Disabling ends every token the user holds; enabling leaves the epoch where it is, so
# tokens from before the disable stay dead.
_SET_DISABLED = Query(
    sa.update(users)
    .where(users.c.id == param("id"))
    .values(
        disabled=param("disabled"),
        token_epoch=users.c.token_epoch + sa.case((param("disabled", type_=sa.Boolean), 1), else_=0),
    )
    .returning(*USER_COLUMNS)
)
_END_TOKENS = Query(
    sa.update(users)
    .where(users.c.id == param("id"))
    .values(token_epoch=users.c.token_epoch + 1)
    .returning(users.c.token_epoch)
)
_SET_PASSWORD = Query(
    sa.update(users)
    .where(users.c.id == param("id"))
    .values(hashed_password=param("hashed_password"), token_epoch=users.c.token_epoch + 1)
    .returning(users.c.token_epoch)
)

# A failure inside the current window adds one; one after it starts a new window. All
# right-hand sides read the row as it was, so the new count is spelled out for the lock.
_IN_WINDOW = users.c.failures_since > param("now") - param("window")
_NEW_COUNT = sa.case((_IN_WINDOW, users.c.failed_logins + 1), else_=1)
_NEW_START = sa.case((_IN_WINDOW, users.c.failures_since), else_=param("now"))
_RECORD_FAILURE = Query(
    sa.update(users)
    .where(users.c.id == param("id"))
    .values(
        failed_logins=_NEW_COUNT,
        failures_since=_NEW_START,
        locked_until=sa.case(
            (param("max_failures") <= _NEW_COUNT, _NEW_START + param("window")),
            else_=users.c.locked_until,
        ),
    )
    .returning(users.c.locked_until)
)
_CLEAR_FAILURES = Query(
    sa.update(users)
    .where(users.c.id == param("id"))
    .values(failed_logins=0, failures_since=0, locked_until=0)
)

_REVOKE = Query(
    sa.insert(revoked_tokens).values(
        token_id=param("token_id"), user_id=param("user_id"), expires_at=param("expires_at")
    )
)
_FORGET_EXPIRED = Query(sa.delete(revoked_tokens).where(revoked_tokens.c.expires_at < param("now")))

_WITHOUT_CANONICAL = Query(
    sa.select(users.c.id, users.c.username, users.c.email)
    .where(users.c.username_canonical.is_(None))
    .order_by(users.c.id)
)
_SET_CANONICAL = Query(
    sa.update(users)
    .where(users.c.id == param("id"))
    .values(username_canonical=param("username_canonical"), email_canonical=param("email_canonical"))
)


def _canonical_or_none(text: str | None) -> str | None:
    return None if text is None else canonical_name(text)


async def signup_refusal(db: Connection, rules: SignupRules) -> SignupClosed | None:
    """Why a caller who is not a superuser may not sign up now, or None if they may."""
    if await db.fetch_one(_ANY_SUPERUSER) is not None:
        return None if rules.open_signup else SignupClosed(awaiting_superuser=False)
    if rules.first_user_is_superuser and await db.fetch_one(_ANY_USER) is None:
        return None
    return SignupClosed(awaiting_superuser=True)


async def create_user(
    db: Database,
    *,
    username: str,
    email: str | None,
    full_name: str | None,
    hashed_password: str,
    creator_is_superuser: bool,
    rules: SignupRules = SUPERUSERS_ONLY,
    make_superuser: bool = False,
    then: Callable[[Connection, Row], Awaitable[None]] | None = None,
) -> Row:
    """Insert a user. A superuser may always create users; anyone else only as
    ``rules`` allow (else :class:`SignupClosed`), and the first user on an empty
    database becomes a superuser when ``rules.first_user_is_superuser``.

    The rules are decided and the row inserted under one lock, so two sign-ups on an
    empty database cannot both become superusers (``Connection.lock_tables``).
    ``then(tx, row)`` runs in the same transaction after the insert (the answer to an
    Idempotency-Key is recorded there).
    """
    names = {"username_canonical": canonical_name(username), "email_canonical": _canonical_or_none(email)}
    async with db.transaction() as tx:
        await tx.lock_tables("users")
        if not creator_is_superuser:
            refusal = await signup_refusal(tx, rules)
            if refusal is not None:
                raise refusal
            make_superuser = await tx.fetch_one(_ANY_USER) is None
        taken = await tx.fetch_one(_TAKEN, names)
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
                "is_superuser": make_superuser,
                "now": utc_now(),
                **names,
            },
        )
        assert row is not None
        if then is not None:
            await then(tx, row)
    return row


async def any_user(db: Connection) -> bool:
    return await db.fetch_one(_ANY_USER) is not None


async def identity(db: Connection, user_id: int, token_id: str) -> Row | None:
    """What authorisation needs, by primary key: the user's flags, token epoch, and
    whether the token ``token_id`` was logged out (``revoked``)."""
    return await db.fetch_one(_IDENTITY, {"id": user_id, "token_id": token_id})


async def get_user(db: Connection, user_id: int) -> Row | None:
    return await db.fetch_one(_GET_USER, {"id": user_id})


async def credentials(db: Connection, username: str) -> Row | None:
    """The user, its password hash, token epoch and lockout, by username in canonical form."""
    return await db.fetch_one(_CREDENTIALS, {"username_canonical": canonical_name(username)})


async def credentials_by_id(db: Connection, user_id: int) -> Row | None:
    return await db.fetch_one(_CREDENTIALS_BY_ID, {"id": user_id})


async def list_users(db: Connection, *, skip: int, limit: int) -> list[Row]:
    return await db.fetch_all(_LIST_USERS, {"skip": skip, "limit": limit})


async def set_disabled(db: Database, user_id: int, disabled: bool) -> Row | None:
    """Disable (ending every token the user holds) or enable; None if no such user."""
    # A write: through the writer (SQLite) in a transaction like every other write.
    async with db.transaction() as tx:
        return await tx.fetch_one(_SET_DISABLED, {"id": user_id, "disabled": disabled})


async def end_all_tokens(db: Database, user_id: int) -> int | None:
    """End every token issued to the user so far; the new token epoch (None: no user)."""
    async with db.transaction() as tx:
        return await tx.fetch_value(_END_TOKENS, {"id": user_id})


async def set_password(db: Database, user_id: int, hashed_password: str) -> int | None:
    """Store a new hash and end every older token; the new token epoch (None: no user)."""
    async with db.transaction() as tx:
        return await tx.fetch_value(_SET_PASSWORD, {"id": user_id, "hashed_password": hashed_password})


async def revoke_token(db: Database, *, token_id: str, user_id: int, expires_at: int, now: int) -> None:
    """Remember a logged-out token until it expires; forget those that have expired."""
    try:
        async with db.transaction() as tx:
            await tx.execute(_FORGET_EXPIRED, {"now": now})
            await tx.execute(_REVOKE, {"token_id": token_id, "user_id": user_id, "expires_at": expires_at})
    except ConflictError:
        pass  # logged out twice at the same moment: it is revoked either way


async def record_login_failure(
    db: Database, user_id: int, *, now: int, window: int, max_failures: int
) -> int:
    """Count a failed login for the account; the Unix time its lockout ends (0: none)."""
    async with db.transaction() as tx:
        until = await tx.fetch_value(
            _RECORD_FAILURE, {"id": user_id, "now": now, "window": window, "max_failures": max_failures}
        )
    return int(until or 0)


async def clear_login_failures(db: Database, user_id: int) -> None:
    async with db.transaction() as tx:
        await tx.execute(_CLEAR_FAILURES, {"id": user_id})


async def fill_canonical_names(conn: Connection) -> None:
    """Data step of ``0005_auth_durable.sql``: the canonical names of existing users.

    Runs inside the migration's transaction; two accounts that turn out to be one name
    stop the migration (nothing is applied) with a message naming both.
    """
    from compere.storage.migrations import MigrationError

    seen: dict[str, int] = {}
    seen_email: dict[str, int] = {}
    for row in await conn.fetch_all(_WITHOUT_CANONICAL):
        username, email = canonical_name(row["username"]), _canonical_or_none(row["email"])
        for kind, value, index in (("username", username, seen), ("e-mail", email, seen_email)):
            if value is None:
                continue
            if value in index:
                raise MigrationError(
                    f"users {index[value]} and {row['id']} have the same {kind} once letter case and "
                    "Unicode forms are ignored; rename or delete one of them, then migrate again"
                )
            index[value] = row["id"]
        await conn.execute(
            _SET_CANONICAL, {"id": row["id"], "username_canonical": username, "email_canonical": email}
        )
