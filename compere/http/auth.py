"""Who is calling (identity) and what they may do (guards), kept apart.

The identity middleware reads a bearer token (or, in cookie mode, the session
cookie), checks it and stores the caller under ``USER``; it never refuses a request
for lack of credentials. Guards decide, and all of them live here:
:func:`require_user`, :func:`require_superuser` and :func:`require_bulk_access` are
called by views, :func:`guarded` applies the access level a route declares in the
route table, and :func:`require_project_access` is the one rule of what a caller may
do in a project (every /projects/{slug}/ route goes through it).
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from compere.domain.projects import Action, Role, refusal
from compere.http.errors import ApiError
from compere.http.keys import (
    AUTH_FAILURE,
    CLIENT,
    DATABASE,
    KEY_CACHE,
    LOGIN_THROTTLE,
    PASSWORDS,
    PENDING_IDENTITY,
    PROJECT,
    PROJECT_GRANTED,
    REDIS,
    SETTINGS,
    TOKENS,
    USER,
)
from compere.infra import api_keys as key_material
from compere.infra.auth_state import MemoryLoginThrottle, RedisLoginThrottle
from compere.infra.passwords import PasswordHasher
from compere.infra.ratelimit_policy import RateLimitPolicy
from compere.infra.tokens import TokenClaims, TokenError, TokenIssuer
from compere.services.projects import role_of
from compere.settings import Settings
from compere.storage import api_keys, users
from compere.storage.database import Row
from compere.storage.tables import DEFAULT_PROJECT_ID
from compere.storage.timestamps import as_datetime, utc_now

auth_log = logging.getLogger("compere.auth")

# "__Host-" cookies must be Secure, have Path=/ and no Domain: browsers refuse to let a
# sibling subdomain or a plain-HTTP page set or overwrite them.
TOKEN_COOKIE = "__Host-compere_token"
CSRF_COOKIE = "__Host-compere_csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Never accepted in a URL: URLs end up in proxy logs, browser history and Referer headers.
URL_SECRETS = frozenset({"password", "access_token", "client_secret"})

# The original Compere's one answer to a missing or bad token.
INVALID_CREDENTIALS = "Could not validate credentials"
NOT_ALLOWED = "Not enough permissions"
AUTH_UNAVAILABLE = "Authentication is temporarily unavailable. Please retry shortly."


# What each API key scope lets a key do, as the project role it stands for.
SCOPE_ROLES = {"read": "viewer", "vote": "voter", "write": "editor", "admin": "owner"}
# Routes a key never reaches: managing accounts and keys needs the owner's own login, so
# a leaked key cannot make itself a successor.
KEY_REFUSED_PREFIX = "/auth/"
KEY_ALLOWED_AUTH_PATHS = frozenset({"/auth/users/me"})
# last_used_at is written at most this often per key and worker (not once per request).
KEY_TOUCH_INTERVAL = 60.0


@dataclass(frozen=True, slots=True)
class ApiKeyGrant:
    """What an API key adds to its owner's identity: which key, and its limits."""

    id: int
    scopes: frozenset[str]
    project_id: int | None  # None: every project of its owner
    rate_limit: RateLimitPolicy | None  # the key's own quota, when it was given one

    def allows(self, scope: str) -> bool:
        """Whether the key's scopes cover ``scope`` (read < vote < write < admin)."""
        return any(_SCOPE_RANK[have] >= _SCOPE_RANK[scope] for have in self.scopes)


_SCOPE_RANK = {"read": 0, "vote": 1, "write": 2, "admin": 3}


@dataclass(frozen=True, slots=True)
class AuthenticatedUser:
    id: int
    username: str
    is_superuser: bool
    token_id: str
    token_expires_at: int
    via_cookie: bool = False
    api_key: ApiKeyGrant | None = None  # set when the caller presented an API key

    @property
    def voter(self) -> str:
        """Who a vote by this caller is recorded as (``comparisons.voter``)."""
        return f"k:{self.api_key.id}" if self.api_key is not None else f"u:{self.id}"


@dataclass(slots=True)
class PendingIdentity:
    """An identity look-up the identity middleware prepared, so the rate limiter can
    start its Redis call and let the database answer meanwhile (:meth:`start`).

    ``subject``: whose quota the request will spend if the credentials hold (from the
    signed token, or from a key this worker has seen before), or None when unknown
    until the look-up ends; ``policy``: the key's own quota, when known.
    """

    lookup: Coroutine[Any, Any, AuthenticatedUser | None]
    subject: str | None
    policy: RateLimitPolicy | None = None
    task: asyncio.Task[AuthenticatedUser | None] | None = None
    settled: bool = False

    def start(self) -> None:
        """Run the look-up in the background from now on."""
        if self.task is None:
            self.task = asyncio.ensure_future(self.lookup)

    async def result(self) -> AuthenticatedUser | None:
        return await (self.task if self.task is not None else self.lookup)

    def abandon(self) -> None:
        """The request ended before anyone waited for the look-up."""
        if self.task is None:
            self.lookup.close()
        elif not self.task.done():
            self.task.cancel()


def unauthorized(detail: str) -> ApiError:
    return ApiError(401, detail, headers={"WWW-Authenticate": "Bearer"})


def auth_unavailable() -> ApiError:
    return ApiError(503, AUTH_UNAVAILABLE, headers={"Retry-After": "1"})


def _printable(text: str, limit: int = 64) -> str:
    """A username as it may appear in a log line: bounded, no control characters."""
    cleaned = "".join(ch if ch.isprintable() else "?" for ch in text[:limit])
    return cleaned + ("..." if len(text) > limit else "")


def log_auth_failure(request: web.Request, reason: str, username: str | None = None) -> None:
    """One warning per failed authentication: reason, username, client, path.

    The log record has the time. Passwords and tokens are never passed here.
    """
    client = request[CLIENT].address
    shown = _printable(username) if username is not None else "-"
    auth_log.warning(
        "authentication failed: %s user=%s client=%s path=%s",
        reason,
        shown,
        client,
        request.path,
        extra={"event": "auth_failure", "reason": reason, "username": shown, "client": client},
    )


# --- identity ----------------------------------------------------------------------


def _presented_token(request: web.Request, cookie_mode: bool) -> tuple[str | None, bool]:
    """The token and whether it came from the cookie; (None, False) when none came."""
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return "", False  # present but unusable: refused below like a bad token
        return token.strip(), False
    if cookie_mode:
        cookie = request.cookies.get(TOKEN_COOKIE)
        if cookie:
            return cookie, True
    return None, False


async def _authenticate(
    request: web.Request, claims: TokenClaims, via_cookie: bool
) -> AuthenticatedUser | None:
    app = request.app
    tokens = app[TOKENS]
    # One primary-key read answers everything: the user's flags, their token epoch and
    # whether this token was logged out. All of it lives in the database, so it holds on
    # every worker at once and survives losing Redis.
    row = await users.identity(app[DATABASE], claims.user_id, claims.token_id)
    if row is None:
        _refuse(request, "token of a user that no longer exists")
        return None
    if row["revoked"]:
        _refuse(request, "token revoked (logged out)", row["username"])
        return None
    if row["disabled"]:
        _refuse(request, "token of a disabled user", row["username"])
        return None
    if claims.epoch != row["token_epoch"]:
        _refuse(
            request, "token revoked (password changed, disabled or logged out everywhere)", row["username"]
        )
        return None
    if via_cookie and request.method not in SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent.encode(), tokens.csrf_token(claims.token_id).encode()):
            log_auth_failure(request, "missing or wrong CSRF token", row["username"])
            raise ApiError(403, "CSRF token missing or invalid")
    return AuthenticatedUser(
        id=row["id"],
        username=row["username"],
        is_superuser=bool(row["is_superuser"]),
        token_id=claims.token_id,
        token_expires_at=claims.expires_at,
        via_cookie=via_cookie,
    )


class KeyCache:
    """Per worker: what never changes about a key (its id and its quota) by the hash of
    the key, so the limiter can key a request by it before the look-up answers, and when
    each key's last use was last written. Whether a key still works is never cached: it
    is read from the database on every request."""

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self.known: dict[str, tuple[int, RateLimitPolicy | None]] = {}
        self.touched: dict[int, float] = {}

    def remember(self, key_hash: str, key_id: int, policy: RateLimitPolicy | None) -> None:
        if len(self.known) >= self.size:
            self.known.clear()  # a worker rarely sees this many keys: start over
        self.known[key_hash] = (key_id, policy)

    def due_for_touch(self, key_id: int, now: float) -> bool:
        last = self.touched.get(key_id)
        if last is not None and now - last < KEY_TOUCH_INTERVAL:
            return False
        if len(self.touched) >= self.size:
            self.touched.clear()
        self.touched[key_id] = now
        return True


def key_policy(row: Row) -> RateLimitPolicy | None:
    if row["rate_limit"] is None:
        return None
    return RateLimitPolicy("apikey", int(row["rate_limit"]), float(row["rate_window"] or 60))


async def _authenticate_key(request: web.Request, key: str, key_hash: str) -> AuthenticatedUser | None:
    """The owner of ``key`` acting through it, or None (logged) when the key does not work.

    One read answers everything (the key by its hash, its owner's flags joined), from the
    database on every request, so a revoked or expired key, or one whose owner was
    disabled, stops on every worker from the next request on.
    """
    app = request.app
    row = await api_keys.by_hash(app[DATABASE], key_hash) if key_material.well_formed(key) else None
    if row is None:
        _refuse(request, "unknown API key")
        return None
    if row["revoked_at"] is not None:
        _refuse(request, f"API key {row['prefix']} revoked", row["username"])
        return None
    if row["expires_at"] is not None and as_datetime(row["expires_at"]) <= datetime.now(UTC):
        _refuse(request, f"API key {row['prefix']} expired", row["username"])
        return None
    if row["disabled"]:
        _refuse(request, f"API key {row['prefix']} of a disabled user", row["username"])
        return None
    grant = ApiKeyGrant(
        id=row["id"],
        scopes=frozenset(row["scopes"]),
        project_id=row["project_id"],
        rate_limit=key_policy(row),
    )
    cache = app[KEY_CACHE]
    cache.remember(key_hash, grant.id, grant.rate_limit)
    if cache.due_for_touch(grant.id, time.monotonic()):
        await _touch(app, grant.id)
    return AuthenticatedUser(
        id=row["user_id"],
        username=row["username"],
        # A key acts as a superuser only with the admin scope over every project.
        is_superuser=bool(row["is_superuser"]) and "admin" in grant.scopes and grant.project_id is None,
        token_id="",
        token_expires_at=0,
        api_key=grant,
    )


async def _touch(app: web.Application, key_id: int) -> None:
    """Write the key's last use (at most once a minute per key and worker); a failure
    here costs the list a timestamp, not the request its answer."""
    try:
        await api_keys.touch_key(app[DATABASE], key_id, utc_now())
    except Exception:
        auth_log.warning("could not record the last use of API key %s", key_id, exc_info=True)


def _presented_key(request: web.Request, token: str | None) -> str | None:
    """An API key from ``X-API-Key``, or from ``Authorization: Bearer ck_...``."""
    header = request.headers.get("X-API-Key")
    if header is not None:
        return header.strip()
    if token and key_material.looks_like_key(token):
        return token
    return None


def _start_identity(request: web.Request, cookie_mode: bool) -> PendingIdentity | None:
    """Check what can be checked without I/O and start the look-up that needs the
    database; None when the request carries no credentials (or only unusable ones)."""
    token, via_cookie = _presented_token(request, cookie_mode)
    key = _presented_key(request, token)
    if key is not None:
        key_hash = key_material.hash_key(key)
        known = request.app[KEY_CACHE].known.get(key_hash)
        return PendingIdentity(
            _authenticate_key(request, key, key_hash),
            subject=None if known is None else f"key:{known[0]}",
            policy=None if known is None else known[1],
        )
    if token is None:
        return None
    if not token:
        _refuse(request, "unsupported Authorization scheme")
        return None
    try:
        claims = request.app[TOKENS].decode(token)
    except TokenError as exc:
        _refuse(request, f"invalid token ({exc})")
        return None
    # The subject is signed: a request can only spend the quota of a user whose token it
    # holds (a revoked one included, which is charged to its client as well).
    return PendingIdentity(_authenticate(request, claims, via_cookie), subject=f"user:{claims.user_id}")


async def settle_identity(request: web.Request) -> AuthenticatedUser | None:
    """Wait for the identity look-up the identity middleware started (if any) and store
    the caller under ``USER``. Every path to a handler goes through here once."""
    pending = request.get(PENDING_IDENTITY)
    if pending is None or pending.settled:
        return request.get(USER)
    pending.settled = True
    request[USER] = await pending.result()
    return request[USER]


def pending_identity(request: web.Request) -> PendingIdentity | None:
    pending = request.get(PENDING_IDENTITY)
    return None if pending is None or pending.settled else pending


def _refuse(request: web.Request, reason: str, username: str | None = None) -> None:
    request[AUTH_FAILURE] = reason
    log_auth_failure(request, reason, username)
    return None


def _sent_from_allowed_origin(request: web.Request, allowed: frozenset[str]) -> bool:
    """Whether the page that sent ``request`` may write with the user's cookies.

    The page's origin comes from ``Origin`` (or from ``Referer`` when a browser left
    ``Origin`` out). It may write when it is one of ``CORS_ORIGINS`` or on the host the
    request was sent to (the built-in web app). A request with neither header was not
    sent by a web page: browsers send ``Origin`` with every cross-site unsafe request.
    """
    source = request.headers.get("Origin") or request.headers.get("Referer")
    if source is None:
        return True
    try:
        sender = urlsplit(source)
        own_host = urlsplit("//" + request.host).hostname
    except ValueError:
        return False
    if f"{sender.scheme}://{sender.netloc}".lower() in allowed:
        return True
    return sender.hostname is not None and sender.hostname == own_host


def identity(settings: Settings, *, settled_by_next: bool = False) -> Middleware:
    """Find out who is calling; never refuse for missing credentials (guards do).

    In cookie mode it also refuses (403) a write that a browser could send with the
    user's cookies from another site's page: every unsafe request without an
    ``Authorization`` header (logging in sets the cookies; everything else may use them)
    must come from an allowed origin.

    ``settled_by_next``: the next middleware (the rate limiter) waits for the identity
    look-up itself, after starting its own Redis call, so the two round trips overlap
    (where the database answers on the event loop: PostgreSQL); otherwise this
    middleware waits before passing the request on.
    """
    cookie_mode = settings.auth_cookie
    allowed_origins = frozenset(origin.lower() for origin in settings.cors_origins if origin != "*")

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        request[USER] = None
        if request.method == "OPTIONS":
            return await handler(request)  # CORS preflights carry no credentials
        if (
            cookie_mode
            and request.method not in SAFE_METHODS
            and "Authorization" not in request.headers
            and not _sent_from_allowed_origin(request, allowed_origins)
        ):
            log_auth_failure(request, "cross-site write in cookie mode (Origin not allowed)")
            raise ApiError(
                403, "Cross-site request refused: the Origin (or Referer) is not an allowed origin"
            )
        if not URL_SECRETS.isdisjoint(request.query.keys()):
            # The request log shows the path only, so the secret is not written anywhere.
            log_auth_failure(request, "credentials in the query string")
            raise ApiError(
                400, "Credentials must not be sent in the URL; send them in the request body or headers"
            )
        pending = _start_identity(request, cookie_mode)
        if pending is None:
            return await handler(request)
        request[PENDING_IDENTITY] = pending
        try:
            if not (settled_by_next and request.app[DATABASE].reads_on_event_loop):
                await settle_identity(request)
            return await handler(request)
        finally:
            if not pending.settled:
                pending.abandon()

    return middleware


# --- guards ------------------------------------------------------------------------


def refuse_invalid_credentials(request: web.Request) -> None:
    """401 with ``WWW-Authenticate: Bearer`` when the request presented credentials (a
    token, a session cookie, an API key, any ``Authorization`` header) that did not hold:
    they are refused whatever the route would allow an anonymous caller, never taken as
    no credentials. The refusal was logged when the credentials were read."""
    if request.get(USER) is None and AUTH_FAILURE in request:
        raise unauthorized(INVALID_CREDENTIALS)


def credentials_checked(handler: Handler) -> Handler:
    """``handler`` behind :func:`refuse_invalid_credentials` (after the rate limiter, so
    guessing credentials is still counted)."""

    @functools.wraps(handler)
    async def checked(request: web.Request) -> web.StreamResponse:
        await settle_identity(request)
        refuse_invalid_credentials(request)
        return await handler(request)

    return checked


def require_user(request: web.Request) -> AuthenticatedUser:
    """The caller, or 401 with ``WWW-Authenticate: Bearer``.

    A caller with an API key must also hold the scope the request needs
    (:func:`required_scope`), else 403.
    """
    user = request.get(USER)
    if user is None:
        if AUTH_FAILURE not in request:  # a refused token was logged when it was read
            log_auth_failure(request, "no credentials")
        raise unauthorized(INVALID_CREDENTIALS)
    if user.api_key is not None:
        check_key_scope(request, user, user.api_key)
    return user


def required_scope(method: str, path: str) -> str:
    """The API key scope a request needs: reading needs ``read``; votes ``vote``;
    other writes ``write``; bulk and administrative routes (a project's settings and
    members included) ``admin``. A project's board routes are checked by their declared
    action instead (:func:`require_project_access`)."""
    if path.startswith("/projects/"):
        slug, _, tail = path.removeprefix("/projects/").partition("/")
        if not slug or not tail or tail.startswith(("members", "restore")):
            return "read" if method in SAFE_METHODS else "admin"
        path = "/" + tail
    if path.startswith(("/export", "/webhooks", "/comparisons/export", "/entities/import")):
        return "admin"
    if method in SAFE_METHODS:
        return "read"
    if path.rstrip("/") in ("/comparisons", "/mab/update"):
        return "vote"
    if method == "DELETE":
        return "admin"
    return "write"


def check_key_scope(request: web.Request, user: AuthenticatedUser, grant: ApiKeyGrant) -> None:
    if request.path.startswith(KEY_REFUSED_PREFIX) and request.path not in KEY_ALLOWED_AUTH_PATHS:
        log_auth_failure(request, "API key used to manage accounts or keys", user.username)
        raise ApiError(403, "API keys cannot manage accounts or keys; log in with a password")
    if not request.path.startswith("/projects/"):  # the top-level routes act on default
        check_key_project(request, user, grant, DEFAULT_PROJECT_ID)
    check_key_action(request, user, grant, required_scope(request.method, request.path))


def check_key_action(request: web.Request, user: AuthenticatedUser, grant: ApiKeyGrant, scope: str) -> None:
    if not grant.allows(scope):
        log_auth_failure(request, f"API key lacks the {scope} scope", user.username)
        raise ApiError(403, f"This API key lacks the '{scope}' scope")


def check_key_project(
    request: web.Request, user: AuthenticatedUser, grant: ApiKeyGrant, project_id: int
) -> None:
    if grant.project_id is not None and grant.project_id != project_id:
        log_auth_failure(request, "API key used on another project", user.username)
        raise ApiError(403, "This API key is for another project")


def require_superuser(request: web.Request) -> AuthenticatedUser:
    """The caller if a superuser; 401 when anonymous, 403 otherwise."""
    user = require_user(request)
    if not user.is_superuser:
        log_auth_failure(request, "superuser required", user.username)
        raise ApiError(403, NOT_ALLOWED)
    return user


def require_bulk_access(request: web.Request) -> None:
    """The bulk endpoints' rule (export, import, webhooks): a superuser when
    ``AUTH_ENABLED=true``, anyone otherwise (open, as the original API).

    Their routes declare ``access="superuser"``; their views call this too, so the rule
    holds even for a route registered some other way. On a project's route the
    project's roles decide instead (:func:`require_project_access`).
    """
    if PROJECT_GRANTED in request:
        return
    if request.app[SETTINGS].auth_enabled:
        require_superuser(request)


async def require_project_access(request: web.Request, action: Action) -> Role | None:
    """May the caller do ``action`` (read, vote, write, admin) in ``request[PROJECT]``?

    Returns the caller's role there (None for non-members, superusers and open
    deployments); raises 404 for a private project the caller may not know of, 401 for
    an anonymous caller who must sign in, 403 with the reason otherwise. An archived
    project is read-only even with ``AUTH_ENABLED=false``; otherwise that setting opens
    everything, as it always has.
    """
    project = request[PROJECT]
    user = request.get(USER)
    role: Role | None = None
    if not request.app[SETTINGS].auth_enabled:
        found = refusal(project, action, role=None, signed_in=True, superuser=True)
    else:
        if user is not None and not user.is_superuser:
            role = await role_of(request.app[DATABASE], project, user.id)
        found = refusal(
            project,
            action,
            role=role,
            signed_in=user is not None,
            superuser=user is not None and user.is_superuser,
        )
    if found is not None:
        status, reason = found
        if status == 401:
            require_user(request)  # logs the refusal and answers with WWW-Authenticate
        log_auth_failure(request, f"project {action} refused", user.username if user else None)
        raise ApiError(status, reason)
    if user is not None and user.api_key is not None:
        # A key acts with its owner's role (checked above) and no more than its scopes
        # allow, and only on its own project when it was made for one.
        check_key_project(request, user, user.api_key, project.id)
        check_key_action(request, user, user.api_key, action)
    request[PROJECT_GRANTED] = action
    return role


_GUARDS: dict[str, Callable[[web.Request], AuthenticatedUser]] = {
    "user": require_user,
    "superuser": require_superuser,
}


def guarded(handler: Handler, access: str) -> Handler:
    """``handler`` behind the guard for ``access`` ("public" returns it unchanged)."""
    if access == "public":
        return handler
    guard = _GUARDS[access]

    @functools.wraps(handler)
    async def checked(request: web.Request) -> web.StreamResponse:
        guard(request)
        return await handler(request)

    return checked


# --- cookies -----------------------------------------------------------------------


def set_session_cookies(response: web.StreamResponse, tokens: TokenIssuer, token: str, token_id: str) -> None:
    """Put the token in an httpOnly cookie and its CSRF value in a readable one."""
    csrf = tokens.csrf_token(token_id)
    common = {"path": "/", "secure": True, "samesite": "Strict", "max_age": tokens.lifetime_seconds}
    response.set_cookie(TOKEN_COOKIE, token, httponly=True, **common)  # type: ignore[arg-type]
    # Readable by the page's script, which echoes it in the X-CSRF-Token header.
    response.set_cookie(CSRF_COOKIE, csrf, httponly=False, **common)  # type: ignore[arg-type]


def clear_session_cookies(response: web.StreamResponse) -> None:
    for name in (TOKEN_COOKIE, CSRF_COOKIE):
        response.del_cookie(name, path="/", secure=True, samesite="Strict")


# --- set-up ------------------------------------------------------------------------


async def auth_context(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context (after Redis): token issuer, password hasher, shared state."""
    settings = app[SETTINGS]
    # Without a configured key (allowed only while auth is off) tokens are signed with a
    # key that lives as long as this process.
    app[TOKENS] = TokenIssuer(
        settings.secret_key or secrets.token_urlsafe(32), settings.access_token_expire_minutes
    )
    app[PASSWORDS] = PasswordHasher(settings.bcrypt_rounds)
    limits = {
        "per_user": settings.login_max_failures,
        "per_client": settings.login_max_failures_per_client,
        "window": settings.login_failure_window,
    }
    app[KEY_CACHE] = KeyCache()
    client = app[REDIS]
    prefix = f"{settings.redis_key_prefix}auth:"
    app[LOGIN_THROTTLE] = (
        RedisLoginThrottle(client, **limits, prefix=prefix)
        if client is not None
        else MemoryLoginThrottle(**limits)
    )
    try:
        yield
    finally:
        await app[LOGIN_THROTTLE].aclose()
