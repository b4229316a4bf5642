"""``/auth/``: log in and out, the caller's own account, and user management."""

from __future__ import annotations

from typing import NoReturn
from urllib.parse import parse_qsl

from aiohttp import web
from pydantic import ValidationError

from compere.http.auth import (
    AuthenticatedUser,
    auth_unavailable,
    caller_address,
    clear_session_cookies,
    log_auth_failure,
    require_superuser,
    require_user,
    set_session_cookies,
    unauthorized,
)
from compere.http.errors import ApiError, json_response, not_found, validation_error
from compere.http.keys import DATABASE, LOGIN_THROTTLE, PASSWORDS, REVOKED_TOKENS, SETTINGS, TOKENS, USER
from compere.http.schemas import LoginForm, UserCreate, UserListQuery
from compere.http.validation import parse_json, path_id, read_body, read_query
from compere.http.views.shapes import user_out
from compere.infra.auth_state import AuthStateUnavailable
from compere.infra.passwords import password_problem
from compere.storage import users

# The one answer to a failed login, whether or not the username exists.
LOGIN_FAILED = "Incorrect username or password"
LOCKED_OUT = "Too many failed login attempts. Try again later."
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


async def login(request: web.Request) -> web.Response:
    form = await _login_form(request)
    app = request.app
    client = caller_address(request)
    throttle = app[LOGIN_THROTTLE]
    try:
        wait = await throttle.attempt(form.username, client)
    except AuthStateUnavailable:
        raise auth_unavailable() from None
    if wait:
        log_auth_failure(request, "locked out after repeated failures", form.username)
        raise ApiError(429, LOCKED_OUT, headers={"Retry-After": str(wait)})
    row = await users.credentials(app[DATABASE], form.username)
    # Unknown users are checked against a stand-in hash: same work, same answer.
    matched = await app[PASSWORDS].verify(form.password, row["hashed_password"] if row else None)
    if row is None or not matched:
        log_auth_failure(request, "wrong username or password", form.username)
        raise unauthorized(LOGIN_FAILED)
    if row["disabled"]:
        log_auth_failure(request, "disabled account", form.username)
        raise ApiError(403, "This account is disabled")
    try:
        await throttle.succeeded(form.username, client)
    except AuthStateUnavailable:
        raise auth_unavailable() from None
    tokens = app[TOKENS]
    token, claims = tokens.issue(row["id"])
    body: dict[str, object] = {
        "access_token": token,
        "token_type": "bearer",
        "expires_in": tokens.lifetime_seconds,
    }
    cookie_mode = app[SETTINGS].auth_cookie
    if cookie_mode:
        body["csrf_token"] = tokens.csrf_token(claims.token_id)
    response = json_response(body)
    if cookie_mode:
        set_session_cookies(response, tokens, token, claims.token_id)
    return response


async def logout(request: web.Request) -> web.Response:
    """Revoke the presented token until it would have expired anyway."""
    user = require_user(request)
    try:
        await request.app[REVOKED_TOKENS].revoke(user.token_id, user.token_expires_at)
    except AuthStateUnavailable:
        raise auth_unavailable() from None
    response = json_response({"message": "Logged out"})
    if request.app[SETTINGS].auth_cookie:
        clear_session_cookies(response)
    return response


async def me(request: web.Request) -> web.Response:
    user = require_user(request)
    row = await users.get_user(request.app[DATABASE], user.id)
    if row is None:  # deleted between the identity check and now
        raise unauthorized("Could not validate credentials")
    return json_response(user_out(row))


async def create_user(request: web.Request) -> web.Response:
    """The first user becomes a superuser; after that only superusers create users."""
    app = request.app
    caller = request.get(USER)
    creator_is_superuser = caller is not None and caller.is_superuser
    db = app[DATABASE]
    if not creator_is_superuser and await users.any_user(db):
        # Cheap early refusal, before any bcrypt work; the insert re-checks under a lock.
        _refuse_signup(request, caller)
    body = await read_body(request, UserCreate)
    problem = password_problem(
        body.password, min_length=app[SETTINGS].password_min_length, username=body.username
    )
    if problem:
        raise validation_error(["body", "password"], f"Password {problem}")
    hashed = await app[PASSWORDS].hash(body.password)
    try:
        row = await users.create_user(
            db,
            username=body.username,
            email=body.email,
            full_name=body.full_name,
            hashed_password=hashed,
            creator_is_superuser=creator_is_superuser,
            make_superuser=body.is_superuser and creator_is_superuser,
        )
    except users.SignupClosed:
        _refuse_signup(request, caller)
    except users.DuplicateUser as exc:
        # The original's status and words ("Username already registered").
        raise ApiError(400, f"{exc.field.capitalize()} already registered") from None
    return json_response(user_out(row))


def _refuse_signup(request: web.Request, caller: AuthenticatedUser | None) -> NoReturn:
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
