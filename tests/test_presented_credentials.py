"""Credentials that are presented and do not hold are refused with 401, whatever the
route would allow an anonymous caller: a revoked, expired, malformed or disabled owner's
API key, a bad, expired or logged-out token, on a public project's reads and votes and on
the top-level routes anyone may call. They are never taken as no credentials. Routes that
never act as their caller (health checks, logging in) ignore them, and with
``AUTH_ENABLED=false`` the ranking API stays open as documented."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import jwt

from compere.http.keys import DATABASE
from compere.storage.database import Query
from compere.storage.tables import api_keys
from tests.helpers import ADMIN, ALICE, TEST_SECRET_KEY, bearer, log_in, sign_up


async def _key(client, token: str, **body: object) -> dict:
    resp = await client.post("/auth/api-keys", json={"scopes": ["vote"], **body}, headers=bearer(token))
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def _public_project(client, admin: str) -> list[int]:
    body = {"slug": "open", "name": "Open", "visibility": "public", "allow_anonymous": True}
    resp = await client.post("/projects/", json=body, headers=bearer(admin))
    assert resp.status == 200, await resp.text()
    ids = []
    for name in ("left", "right"):
        resp = await client.post("/projects/open/entities/", json={"name": name}, headers=bearer(admin))
        assert resp.status == 200, await resp.text()
        ids.append((await resp.json())["id"])
    return ids


def _expired_token(user_id: int) -> str:
    past = int(time.time()) - 3600
    claims = {"sub": str(user_id), "iat": past, "nbf": past, "exp": past + 60, "jti": "old", "ep": 0}
    return jwt.encode(claims, TEST_SECRET_KEY, algorithm="HS256")


def _assert_refused(resp, what: str) -> None:
    assert resp.status == 401, (what, resp.status)
    assert resp.headers["WWW-Authenticate"] == "Bearer", what


async def _votes(client, admin: str) -> int:
    resp = await client.get("/projects/open/comparisons/", headers=bearer(admin))
    assert resp.status == 200, await resp.text()
    return len(await resp.json())


async def test_invalid_api_keys_on_a_public_project_are_refused_not_anonymous(admin_and_alice):
    client, admin, alice = admin_and_alice
    left, right = await _public_project(client, admin)
    vote = {"entity1_id": left, "entity2_id": right, "selected_entity_id": left}
    # Anonymous callers read and vote there; a working key does too.
    assert (await client.get("/projects/open/ratings")).status == 200
    working = await _key(client, alice)
    assert (await client.get("/projects/open/ratings", headers={"X-API-Key": working["key"]})).status == 200

    revoked = await _key(client, alice)
    assert (await client.delete(f"/auth/api-keys/{revoked['id']}", headers=bearer(alice))).status == 200
    expired = await _key(client, alice, expires_at=(datetime.now(UTC) + timedelta(days=1)).isoformat())
    async with client.app[DATABASE].transaction() as tx:
        past = (datetime.now(UTC) - timedelta(seconds=1)).isoformat(timespec="microseconds")
        await tx.execute(
            Query(api_keys.update().where(api_keys.c.id == expired["id"]).values(expires_at=past)), {}
        )
    unknown = working["key"][:-1] + ("A" if working["key"][-1] != "A" else "B")
    bad_keys = {
        "revoked": revoked["key"],
        "expired": expired["key"],
        "unknown": unknown,
        "malformed": "ck_nothing",
    }
    before = await _votes(client, admin)
    for what, key in bad_keys.items():
        for headers in ({"X-API-Key": key}, bearer(key)):
            _assert_refused(await client.get("/projects/open/ratings", headers=headers), what)
            _assert_refused(await client.get("/projects/open/entities/", headers=headers), what)
            _assert_refused(await client.get("/projects/open", headers=headers), what)
            _assert_refused(await client.get("/projects/", headers=headers), what)
            _assert_refused(
                await client.post("/projects/open/comparisons/", json=vote, headers=headers), what
            )
    assert await _votes(client, admin) == before  # no refused key voted as an anonymous voter

    # The keys of a disabled owner stop the same way.
    me = await (await client.get("/auth/users/me", headers=bearer(alice))).json()
    assert (await client.post(f"/auth/users/{me['id']}/disable", headers=bearer(admin))).status == 200
    for headers in ({"X-API-Key": working["key"]}, bearer(working["key"])):
        _assert_refused(await client.get("/projects/open/ratings", headers=headers), "disabled owner")
        _assert_refused(await client.get("/projects/", headers=headers), "disabled owner")
    assert (await client.get("/projects/open/ratings")).status == 200  # anonymous still reads


async def test_invalid_tokens_on_public_routes_are_refused(admin_and_alice):
    client, admin, alice = admin_and_alice
    await _public_project(client, admin)
    me = await (await client.get("/auth/users/me", headers=bearer(alice))).json()
    logged_out = await log_in(client, *ALICE)
    assert (await client.post("/auth/logout", headers=bearer(logged_out))).status == 200
    tampered = alice[:-2] + ("AA" if not alice.endswith("AA") else "BB")
    bad = {
        "expired": bearer(_expired_token(me["id"])),
        "garbage": bearer("not-a-token"),
        "tampered": bearer(tampered),
        "logged out": bearer(logged_out),
        "other scheme": {"Authorization": "Basic YWxpY2U6cGFzc3dvcmQ="},
        "empty bearer": {"Authorization": "Bearer "},
    }
    for what, headers in bad.items():
        _assert_refused(await client.get("/projects/open/ratings", headers=headers), what)
        _assert_refused(await client.get("/projects/", headers=headers), what)
        _assert_refused(await client.get("/projects/no-such-project", headers=headers), what)
        # Routes that never act as their caller ignore what was sent.
        assert (await client.get("/health", headers=headers)).status == 200, what
        login = await client.post(
            "/auth/token", json={"username": ALICE[0], "password": ALICE[1]}, headers=headers
        )
        assert login.status == 200, (what, await login.text())
    # A disabled user's token too.
    assert (await client.post(f"/auth/users/{me['id']}/disable", headers=bearer(admin))).status == 200
    _assert_refused(await client.get("/projects/open/ratings", headers=bearer(alice)), "disabled")
    assert (await client.get("/projects/")).status == 200


async def test_with_auth_off_the_ranking_api_stays_open_to_any_header(make_auth_client):
    client = await make_auth_client(AUTH_ENABLED="false")
    assert (await sign_up(client, *ADMIN)).status == 200
    headers = bearer("not-a-token")
    assert (await client.get("/entities/", headers=headers)).status == 200
    assert (await client.get("/projects/default/ratings", headers=headers)).status == 200
    # The /auth/ endpoints behave the same in both modes.
    _assert_refused(await client.get("/auth/users/me", headers=headers), "auth route")
    _assert_refused(await client.post("/auth/users/", json={}, headers=headers), "sign-up")
