"""``/auth/``: log in and out, the caller's own account, and user management."""

from __future__ import annotations

import math
import time
from typing import NoReturn
from urllib.parse import parse_qsl

from aiohttp import web
from pydantic import ValidationError

from compere.http.auth import (
    INVALID_CREDENTIALS,
    AuthenticatedUser,
    auth_unavailable,
    clear_session_cookies,
    log_auth_failure,
    require_superuser,
    require_user,
    set_session_cookies,
    unauthorized,
)
from compere.http.errors import ApiError, json_response, not_found, validation_error
from compere.http.idempotency import record_in_transaction
from compere.http.keys import CLIENT, CLOCK, DATABASE, LOGIN_THROTTLE, PASSWORDS, SETTINGS, TOKENS, USER
from compere.http.schemas import LoginForm, PasswordChange, UserCreate, UserListQuery
from compere.http.validation import parse_json, path_id, read_body, read_query
from compere.http.views.shapes import user_out
from compere.infra.auth_state import AuthStateUnavailable
from compere.infra.passwords import password_problem
from compere.settings import Settings
from compere.storage import users
from compere.storage.database import Row

# The one answer to a failed login, whether or not the username exists.
LOGIN_FAILED = "Incorrect username or password"
LOCKED_OUT = "Too many failed login attempts. Try again later."
# A right password whose success Redis could not record is taken back in the background
# for this long (compere.infra.auth_state.LoginThrottle.succeeded_later).
SUCCESS_RETRY_SECONDS = 60.0
AWAITING_SUPERUSER = (
    "Sign-up is closed until the first superuser exists; "
    "create it on the server with `compere createsuperuser`"
)
# The original Compere's refusals of POST /auth/users/ once a user exists.
SIGNUP_NEEDS_LOGIN = "Authentication required to create users"
SIGNUP_NEEDS_SUPERUSER = "Only superusers can create new users"
_CREDENTIAL_FIELDS = frozenset({"username", "password", "grant_type", "client_secret"})


async def _login_form(request: web.Request) -> LoginForm:
    """Credentials from a form body or a JSON body; never from the URL."""
    if not _CREDENTIAL_FIELDS.isdisjoint(request.query.keys()):
        log_auth_failure(request, "credentials in the query string")
        raise ApiError(400, "Credentials must be sent in the request body, not in the URL")
    raw = await request.read()
    if request.content_type == "application/x-www-form-urlencoded":
        try:
            data: object = dict(parse_qsl(raw.decode("utf-8"), strict_parsing=bool(raw), max_num_fields=20))
        except (UnicodeDecodeError, ValueError):
            raise ApiError(400, "Request body is not a valid form") from None
    elif request.content_type == "application/json":
        data = parse_json(raw)
    else:
        raise ApiError(415, "Send credentials as application/x-www-form-urlencoded or application/json")
    if not isinstance(data, dict):
        raise ApiError(422, [{"loc": ["body"], "msg": "Input should be an object", "type": "model_type"}])
    try:
        return LoginForm.model_validate(data)
    except ValidationError as exc:
        issues = exc.errors(include_url=False, include_context=False, include_input=False)
        raise ApiError(
            422, [{"loc": ["body", *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in issues]
        ) from None


async def _password_matches(
    request: web.Request, username: str, password: str, row: Row | None, reason: str
) -> bool:
    """Check a password against the account ``row`` (None: no such user), counting the
    attempt first: Redis's counters per username and per client group, then the
    account's own lockout in the database (which outlives Redis). Locked out: 429."""
    app = request.app
    settings = app[SETTINGS]
    throttle = app[LOGIN_THROTTLE]
    client = request[CLIENT].group
    now = app[CLOCK]()
    try:
        wait = await throttle.attempt(username, client, now)
    except AuthStateUnavailable:
        raise auth_unavailable() from None
    if not wait and row is not None and row["locked_until"] > now:
        wait = math.ceil(row["locked_until"] - now)
    if wait:
        log_auth_failure(request, "locked out after repeated failures", username)
        raise ApiError(429, LOCKED_OUT, headers={"Retry-After": str(wait)})
    db = app[DATABASE]
    # Unknown users are checked against a stand-in hash: same work, same answer.
    if not await app[PASSWORDS].verify(password, row["hashed_password"] if row else None) or row is None:
        if row is not None:
            await users.record_login_failure(
                db,
                row["id"],
                now=int(now),
                window=settings.login_failure_window,
                max_failures=settings.login_max_failures,
            )
        log_auth_failure(request, reason, username)
        return False
    if row["failed_logins"]:
        await users.clear_login_failures(db, row["id"])
    try:
        await throttle.succeeded(username, client)
    except AuthStateUnavailable:
        # Take the attempt back once Redis answers again, so that an outage does not
        # lock out a user who kept giving the right password.
        throttle.succeeded_later(username, client, within=SUCCESS_RETRY_SECONDS)
        raise auth_unavailable() from None
    return True


def _token_response(
    request: web.Request, user_id: int, epoch: int, message: str | None = None
) -> web.Response:
    """A new access token (and, in cookie mode, the session cookies) for the user."""
    tokens = request.app[TOKENS]
    token, claims = tokens.issue(user_id, epoch)
    body: dict[str, object] = {
        "access_token": token,
        "token_type": "bearer",
        "expires_in": tokens.lifetime_seconds,
    }
    if message is not None:
        body["message"] = message
    cookie_mode = request.app[SETTINGS].auth_cookie
    if cookie_mode:
        body["csrf_token"] = tokens.csrf_token(claims.token_id)
    response = json_response(body)
    if cookie_mode:
        set_session_cookies(response, tokens, token, claims.token_id)
    return response


async def login(request: web.Request) -> web.Response:
    form = await _login_form(request)
    row = await users.credentials(request.app[DATABASE], form.username)
    if not await _password_matches(request, form.username, form.password, row, "wrong username or password"):
        raise unauthorized(LOGIN_FAILED)
    assert row is not None
    if row["disabled"]:
        log_auth_failure(request, "disabled account", form.username)
        raise ApiError(403, "This account is disabled")
    return _token_response(request, row["id"], row["token_epoch"])


async def logout(request: web.Request) -> web.Response:
    """Revoke the presented token until it would have expired anyway."""
    user = require_user(request)
    await users.revoke_token(
        request.app[DATABASE],
        token_id=user.token_id,
        user_id=user.id,
        expires_at=user.token_expires_at,
        now=int(time.time()),
    )
    return _logged_out("Logged out", request)


async def logout_all(request: web.Request) -> web.Response:
    """End every token of the caller's account, this one included."""
    user = require_user(request)
    if await users.end_all_tokens(request.app[DATABASE], user.id) is None:
        raise unauthorized(INVALID_CREDENTIALS)  # deleted meanwhile
    return _logged_out("Logged out everywhere", request)


def _logged_out(message: str, request: web.Request) -> web.Response:
    response = json_response({"message": message})
    if request.app[SETTINGS].auth_cookie:
        clear_session_cookies(response)
    return response


async def change_password(request: web.Request) -> web.Response:
    """Set a new password (the current one must be given); every older token ends and a
    new token is returned, so this session goes on."""
    user = require_user(request)
    app = request.app
    body = await read_body(request, PasswordChange)
    db = app[DATABASE]
    row = await users.credentials_by_id(db, user.id)
    if row is None:
        raise unauthorized(INVALID_CREDENTIALS)
    if not await _password_matches(
        request, row["username"], body.current_password, row, "wrong current password"
    ):
        raise ApiError(400, "The current password is not correct")
    _check_password_policy(request, body.new_password, row["username"], "new_password")
    epoch = await users.set_password(db, user.id, await app[PASSWORDS].hash(body.new_password))
    if epoch is None:
        raise unauthorized(INVALID_CREDENTIALS)
    return _token_response(request, user.id, epoch, "Password changed; every other session has ended")


def _check_password_policy(request: web.Request, password: str, username: str, field: str) -> None:
    problem = password_problem(
        password, min_length=request.app[SETTINGS].password_min_length, username=username
    )
    if problem:
        raise validation_error(["body", field], f"Password {problem}")


async def me(request: web.Request) -> web.Response:
    user = require_user(request)
    row = await users.get_user(request.app[DATABASE], user.id)
    if row is None:  # deleted between the identity check and now
        raise unauthorized("Could not validate credentials")
    return json_response(user_out(row))


def signup_rules(settings: Settings) -> users.SignupRules:
    """Outside production the first user becomes a superuser; in production the first
    superuser comes from ``compere createsuperuser``. ``OPEN_SIGNUP`` lets anyone create
    an ordinary account once a superuser exists."""
    return users.SignupRules(
        first_user_is_superuser=not settings.is_production, open_signup=settings.open_signup
    )


async def create_user(request: web.Request) -> web.Response:
    """Superusers create users; anyone else only as :func:`signup_rules` allow."""
    app = request.app
    caller = request.get(USER)
    creator_is_superuser = caller is not None and caller.is_superuser
    db = app[DATABASE]
    rules = signup_rules(app[SETTINGS])
    if not creator_is_superuser:
        # Cheap early refusal, before any bcrypt work; the insert re-checks under a lock.
        refusal = await users.signup_refusal(db, rules)
        if refusal is not None:
            _refuse_signup(request, caller, refusal)
    body = await read_body(request, UserCreate)
    _check_password_policy(request, body.password, body.username, "password")
    hashed = await app[PASSWORDS].hash(body.password)
    try:
        row = await users.create_user(
            db,
            username=body.username,
            email=body.email,
            full_name=body.full_name,
            hashed_password=hashed,
            creator_is_superuser=creator_is_superuser,
            rules=rules,
            make_superuser=body.is_superuser and creator_is_superuser,
            then=lambda tx, row: record_in_transaction(request, tx, json_response(user_out(row))),
        )
    except users.SignupClosed as refusal:
        _refuse_signup(request, caller, refusal)
    except users.DuplicateUser as exc:
        # The original's status and words ("Username already registered").
        raise ApiError(400, f"{exc.field.capitalize()} already registered") from None
    return json_response(user_out(row))


def _refuse_signup(
    request: web.Request, caller: AuthenticatedUser | None, refusal: users.SignupClosed
) -> NoReturn:
    if refusal.awaiting_superuser:
        log_auth_failure(request, "sign-up before the first superuser exists")
        raise ApiError(403, AWAITING_SUPERUSER)
    try:
        if caller is None:
            require_user(request)  # raises 401 (and logs why)
        else:
            require_superuser(request)  # raises 403 (and logs why)
    except ApiError as refused:
        refused.detail = SIGNUP_NEEDS_LOGIN if refused.status == 401 else SIGNUP_NEEDS_SUPERUSER
        raise
    raise AssertionError("unreachable: the caller is not a superuser")


async def list_users(request: web.Request) -> web.Response:
    query = read_query(request, UserListQuery)
    rows = await users.list_users(request.app[DATABASE], skip=query.skip, limit=query.limit)
    return json_response([user_out(r) for r in rows])


async def disable_user(request: web.Request) -> web.Response:
    return await _set_disabled(request, True)


async def enable_user(request: web.Request) -> web.Response:
    return await _set_disabled(request, False)


async def _set_disabled(request: web.Request, disabled: bool) -> web.Response:
    caller = require_superuser(request)
    user_id = path_id(request, "user_id", "User")
    if disabled and user_id == caller.id:
        raise ApiError(400, "You cannot disable your own account")
    row = await users.set_disabled(request.app[DATABASE], user_id, disabled)
    if row is None:
        raise not_found("User", user_id)
    return json_response(user_out(row))
