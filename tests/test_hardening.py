"""Browser-facing hardening: CORS, security headers, the cookie session with CSRF
protection, and logs that never hold a password, a token or the database password."""

from __future__ import annotations

import logging
from http.cookies import SimpleCookie
from urllib.parse import urlsplit, urlunsplit

import pytest

from compere.http.auth import CSRF_COOKIE, CSRF_HEADER, TOKEN_COOKIE
from compere.infra.logging import JsonFormatter
from tests.helpers import ADMIN, ALICE, bearer, log_in, sign_up

APP = "https://app.example.com"
EVIL = "https://evil.example.net"


# --- CORS ----------------------------------------------------------------------------


async def test_listed_origins_get_cors_headers_and_others_none(make_client):
    client = await make_client(CORS_ORIGINS=f"{APP},https://admin.example.com")
    allowed = await client.get("/health", headers={"Origin": APP})
    assert allowed.headers["Access-Control-Allow-Origin"] == APP
    assert allowed.headers["Access-Control-Allow-Credentials"] == "true"
    assert "X-Total-Count" in allowed.headers["Access-Control-Expose-Headers"]
    assert "Origin" in allowed.headers["Vary"]

    refused = await client.get("/health", headers={"Origin": EVIL})
    assert refused.status == 200  # the server answers; the browser hides it from the page
    assert "Access-Control-Allow-Origin" not in refused.headers
    assert "Access-Control-Allow-Credentials" not in refused.headers
    assert "Origin" in refused.headers["Vary"]


async def test_preflights_are_answered_for_listed_origins_only(make_auth_client):
    client = await make_auth_client(CORS_ORIGINS=APP)
    request_headers = {
        "Origin": APP,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "Authorization, Content-Type",
    }
    ok = await client.options("/entities/", headers=request_headers)
    assert ok.status == 200
    assert ok.headers["Access-Control-Allow-Origin"] == APP
    assert "POST" in ok.headers["Access-Control-Allow-Methods"]
    assert "AUTHORIZATION" in ok.headers["Access-Control-Allow-Headers"].upper()
    assert int(ok.headers["Access-Control-Max-Age"]) > 0

    bad = await client.options("/entities/", headers={**request_headers, "Origin": EVIL})
    assert bad.status == 403
    assert "Access-Control-Allow-Origin" not in bad.headers
    # Errors reach a listed origin's page too, so it can tell "log in" from "offline".
    unauthorized = await client.get("/entities/", headers={"Origin": APP})
    assert unauthorized.status == 401
    assert unauthorized.headers["Access-Control-Allow-Origin"] == APP


async def test_wildcard_allows_any_origin_but_never_credentials(make_client):
    client = await make_client(CORS_ORIGINS="*")
    resp = await client.get("/health", headers={"Origin": EVIL})
    assert resp.headers["Access-Control-Allow-Origin"] in ("*", EVIL)
    assert "Access-Control-Allow-Credentials" not in resp.headers


async def test_without_cors_origins_there_are_no_cors_headers(client):
    resp = await client.get("/health", headers={"Origin": APP})
    assert not [h for h in resp.headers if h.lower().startswith("access-control-")]
    preflight = await client.options(
        "/entities/", headers={"Origin": APP, "Access-Control-Request-Method": "POST"}
    )
    # Refused: in development only this machine's own pages are allowed by default.
    assert preflight.status == 403 and "Access-Control-Allow-Origin" not in preflight.headers


# --- security headers --------------------------------------------------------------


async def test_security_headers_on_every_kind_of_response(client):
    for path in ("/health", "/entities/999", "/docs", "/openapi.json", "/no/such/page"):
        resp = await client.get(path)
        assert resp.headers["X-Content-Type-Options"] == "nosniff", path
        assert resp.headers["X-Frame-Options"] == "SAMEORIGIN", path
        assert resp.headers["Referrer-Policy"] == "strict-origin-when-cross-origin", path
        assert resp.headers.get("Cache-Control") != "no-store" or path.startswith("/auth/"), path
    token_answer = await client.post("/auth/token", data={"username": "x", "password": "y"})
    assert token_answer.headers["Cache-Control"] == "no-store"


# --- cookie sessions ---------------------------------------------------------------


def cookies_from(resp) -> dict[str, object]:
    jar: dict[str, object] = {}
    for header in resp.headers.getall("Set-Cookie"):
        parsed = SimpleCookie()
        parsed.load(header)
        jar.update(parsed)
    return jar


async def test_cookie_sessions_are_httponly_secure_strict_and_need_csrf_for_writes(make_auth_client):
    client = await make_auth_client(AUTH_COOKIE="true")
    assert (await sign_up(client, *ADMIN)).status == 200
    login = await client.post("/auth/token", data={"username": "admin", "password": ADMIN[1]})
    assert login.status == 200
    body = await login.json()
    jar = cookies_from(login)
    session, csrf = jar[TOKEN_COOKIE], jar[CSRF_COOKIE]
    assert session.value == body["access_token"]
    assert session["httponly"] and session["secure"] and session["samesite"] == "Strict"
    assert session["path"] == "/" and not session["domain"]
    assert csrf.value == body["csrf_token"] and not csrf["httponly"] and csrf["secure"]
    cookie = {"Cookie": f"{TOKEN_COOKIE}={session.value}"}

    assert (await client.get("/auth/users/me", headers=cookie)).status == 200
    new_entity = {"name": "from a browser"}
    assert (await client.post("/entities/", json=new_entity, headers=cookie)).status == 403
    wrong = {**cookie, CSRF_HEADER: "forged-value"}
    assert (await client.post("/entities/", json=new_entity, headers=wrong)).status == 403
    right = {**cookie, CSRF_HEADER: body["csrf_token"]}
    assert (await client.post("/entities/", json=new_entity, headers=right)).status == 200
    # A bearer token is not sent by browsers on their own, so it needs no CSRF token.
    assert (
        await client.post("/entities/", json=new_entity, headers=bearer(body["access_token"]))
    ).status == 200

    out = await client.post("/auth/logout", headers=right)
    assert out.status == 200
    cleared = cookies_from(out)
    assert cleared[TOKEN_COOKIE].value == "" and cleared[TOKEN_COOKIE]["max-age"] == "0"
    assert (await client.get("/auth/users/me", headers=cookie)).status == 401


async def test_cookie_mode_refuses_logins_and_writes_sent_from_other_sites(make_auth_client):
    client = await make_auth_client(AUTH_COOKIE="true", CORS_ORIGINS="https://app.example.com")
    assert (await sign_up(client, *ADMIN)).status == 200
    credentials = {"username": "admin", "password": ADMIN[1]}
    # A hostile page signing the visitor in to the attacker's account (login CSRF).
    for headers in (
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Referer": "https://evil.example/page"},
        {"Origin": "https://app.example.com.evil.example"},
    ):
        resp = await client.post("/auth/token", data=credentials, headers=headers)
        assert resp.status == 403, headers
        assert "Origin" in (await resp.json())["detail"]
        assert "Set-Cookie" not in resp.headers
    # Allowed: a listed origin, the service's own host, and clients that are not web pages.
    own = f"http://{client.host}:{client.port}"
    for headers in ({"Origin": "https://app.example.com"}, {"Origin": own}, {"Referer": own + "/app/"}, {}):
        resp = await client.post("/auth/token", data=credentials, headers=headers)
        assert resp.status == 200, headers
    body = await resp.json()
    session = {"Cookie": f"{TOKEN_COOKIE}={body['access_token']}", CSRF_HEADER: body["csrf_token"]}
    # A cookie-authenticated write, even with the right CSRF value, from another site.
    evil = {**session, "Origin": "https://evil.example"}
    assert (await client.post("/entities/", json={"name": "x"}, headers=evil)).status == 403
    assert (await client.post("/entities/", json={"name": "x"}, headers=session)).status == 200


async def test_cookies_are_ignored_unless_cookie_mode_is_on(admin_and_alice):
    client, _, alice_token = admin_and_alice
    resp = await client.get("/auth/users/me", headers={"Cookie": f"{TOKEN_COOKIE}={alice_token}"})
    assert resp.status == 401


# --- logs ----------------------------------------------------------------------------


def _with_password(url: str, password: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(
        parts._replace(netloc=f"{parts.username or 'postgres'}:{password}@{parts.hostname}:{parts.port}")
    )


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_no_password_token_or_database_password_is_ever_logged(make_auth_client, database_url, caplog):
    db_password = "Db-Pa55word-never-in-logs"  # the local server trusts; the password is only carried
    caplog.set_level(logging.DEBUG)
    # Other code (configure_logging) may have quietened the access log in this process;
    # turn it on so the test sees the request lines a server would write.
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    client = await make_auth_client(DATABASE_URL=_with_password(database_url, db_password), LOG_LEVEL="DEBUG")
    wrong_password = "Wrong-Guess-Should-Stay-Secret-1"
    url_password = "Url-Password-Should-Stay-Secret-2"

    assert (await sign_up(client, *ADMIN)).status == 200
    admin_token = await log_in(client, *ADMIN)
    assert (await sign_up(client, *ALICE, token=admin_token)).status == 200
    alice_token = await log_in(client, *ALICE)
    await client.post("/auth/token", data={"username": "alice", "password": wrong_password})
    await client.post("/auth/token", data={"username": "nobody", "password": wrong_password})
    await client.post("/auth/token", params={"username": "alice", "password": url_password})
    await client.get("/entities/", params={"access_token": alice_token})
    await client.get("/entities/", headers=bearer(alice_token + "tampered"))
    await client.get("/auth/users", headers=bearer(alice_token))
    await client.post("/auth/logout", headers=bearer(alice_token))
    await client.get("/auth/users/me", headers=bearer(alice_token))
    await client.post(
        "/auth/users/",
        json={"username": "weak", "password": wrong_password + "é" * 40},
        headers=bearer(admin_token),
    )

    text = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    as_json = JsonFormatter()
    written = "\n".join(f"{text.format(r)}\n{as_json.format(r)}" for r in caplog.records)
    for secret in (ADMIN[1], ALICE[1], wrong_password, url_password, admin_token, alice_token, db_password):
        assert secret not in written
    # What should be there is there: failures with the username and the client address.
    failures = [r for r in caplog.records if r.name == "compere.auth"]
    assert any("user=nobody" in r.getMessage() and "client=127.0.0.1" in r.getMessage() for r in failures)
    assert any("credentials in the query string" in r.getMessage() for r in failures)
    assert any("token revoked" in r.getMessage() for r in failures)
    assert any("database ready: postgresql://postgres:***@" in r.getMessage() for r in caplog.records)
    # The server's access log still writes request lines, without their query strings.
    access = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert any('"POST /auth/token HTTP/1.1" 400' in line for line in access)
