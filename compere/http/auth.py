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

import functools
import hmac
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from compere.domain.projects import Action, Role, refusal
from compere.http.errors import ApiError
from compere.http.keys import (
    AUTH_FAILURE,
    CLIENT,
    DATABASE,
    LOGIN_THROTTLE,
    PASSWORDS,
    PROJECT,
    PROJECT_GRANTED,
    REDIS,
    SETTINGS,
    TOKENS,
    USER,
)
from compere.infra.auth_state import MemoryLoginThrottle, RedisLoginThrottle
from compere.infra.passwords import PasswordHasher
from compere.infra.tokens import TokenError, TokenIssuer
from compere.services.projects import role_of
from compere.settings import Settings
from compere.storage import users

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


@dataclass(frozen=True, slots=True)
class AuthenticatedUser:
    id: int
    username: str
    is_superuser: bool
    token_id: str
    token_expires_at: int
    via_cookie: bool = False


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


async def _authenticate(request: web.Request, token: str, via_cookie: bool) -> AuthenticatedUser | None:
    app = request.app
    tokens = app[TOKENS]
    try:
        claims = tokens.decode(token)
    except TokenError as exc:
        _refuse(request, f"invalid token ({exc})")
        return None
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


def identity(settings: Settings) -> Middleware:
    """Find out who is calling; never refuse for missing credentials (guards do).

    In cookie mode it also refuses (403) a write that a browser could send with the
    user's cookies from another site's page: every unsafe request without an
    ``Authorization`` header (logging in sets the cookies; everything else may use them)
    must come from an allowed origin.
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
        token, via_cookie = _presented_token(request, cookie_mode)
        if token is not None:
            if token:
                request[USER] = await _authenticate(request, token, via_cookie)
            else:
                _refuse(request, "unsupported Authorization scheme")
        return await handler(request)

    return middleware


# --- guards ------------------------------------------------------------------------


def require_user(request: web.Request) -> AuthenticatedUser:
    """The caller, or 401 with ``WWW-Authenticate: Bearer``."""
    user = request.get(USER)
    if user is None:
        if AUTH_FAILURE not in request:  # a refused token was logged when it was read
            log_auth_failure(request, "no credentials")
        raise unauthorized(INVALID_CREDENTIALS)
    return user


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
