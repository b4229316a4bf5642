"""Authentication that outlives Redis, and one spelling per account.

Logouts, disabled users, token epochs and account lockouts live in the database;
Redis only counts login attempts. Usernames and e-mail addresses compare in one
canonical form (Unicode NFKC + case folding) in sign-up, login, lockouts and the
database's unique indexes.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers import ADMIN, ALICE, AUTH_ENV, bearer, log_in, sign_up
from tests.servers import RedisInstance

WRONG = "not-the-right-password-00"
VICTIM = ("victim", "amber-walrus-harbour-58")
NEW_PASSWORD = "cobalt-finch-meadow-73"


async def login_status(client, username: str, password: str) -> int:
    resp = await client.post("/auth/token", data={"username": username, "password": password})
    return resp.status


# --- one spelling per account --------------------------------------------------------


async def test_a_look_alike_spelling_is_the_same_account_for_lockout_and_sign_up(make_auth_client):
    client = await make_auth_client(LOGIN_MAX_FAILURES="3")
    assert (await sign_up(client, *ADMIN)).status == 200
    admin = await log_in(client, *ADMIN)
    resp = await sign_up(client, *VICTIM, token=admin, email="victim@example.com")
    assert resp.status == 200
    for _ in range(3):
        assert await login_status(client, "victim", WRONG) == 401
    # U+0130 (dotted capital I), full-width letters and capitals are all "victim": the
    # lock holds for every spelling, even with the right password.
    for spelling in ("victİm", "VİCTİM", "ｖｉｃｔｉｍ", "Victim"):
        assert await login_status(client, spelling, VICTIM[1]) == 429, spelling

    # Nobody can register a second account under a look-alike name or address.
    for username in ("victİm", "ＶＩＣＴＩＭ"):
        resp = await sign_up(client, username, ALICE[1], token=admin)
        assert resp.status == 400, username
        assert (await resp.json())["detail"] == "Username already registered"
    resp = await sign_up(client, "another", ALICE[1], token=admin, email="VİCTİM@Example.COM")
    assert resp.status == 400
    assert (await resp.json())["detail"] == "Email already registered"


async def test_a_look_alike_spelling_logs_in_to_the_account_it_names(make_auth_client):
    client = await make_auth_client()
    assert (await sign_up(client, "Straße", ADMIN[1])).status == 200
    token = await log_in(client, "STRASSE", ADMIN[1])
    me = await (await client.get("/auth/users/me", headers=bearer(token))).json()
    assert me["username"] == "Straße"  # shown as it was entered


# --- the Redis-wipe test ---------------------------------------------------------------


@pytest.fixture
def own_redis() -> Iterator[RedisInstance]:
    """A Redis this test starts, empties by restarting, and stops (by its own process)."""
    server = RedisInstance(persistent=False)
    server.start()
    try:
        yield server
    finally:
        server.destroy()


async def test_logouts_disabled_users_and_lockouts_survive_losing_redis(make_client, own_redis, clock):
    env = {"REDIS_URL": own_redis.url(), "LOGIN_MAX_FAILURES": "3", "LOGIN_FAILURE_WINDOW": "60"}
    client = await make_client(clock=clock, **{**AUTH_ENV, **env})
    assert (await sign_up(client, *ADMIN)).status == 200
    admin = await log_in(client, *ADMIN)
    for name, password in (ALICE, VICTIM):
        assert (await sign_up(client, name, password, token=admin)).status == 200

    logged_out = await log_in(client, *ADMIN)
    assert (await client.post("/auth/logout", headers=bearer(logged_out))).status == 200
    alice = await log_in(client, *ALICE)
    alice_id = (await (await client.get("/auth/users/me", headers=bearer(alice))).json())["id"]
    assert (await client.post(f"/auth/users/{alice_id}/disable", headers=bearer(admin))).status == 200
    for _ in range(3):
        assert await login_status(client, VICTIM[0], WRONG) == 401
    assert await login_status(client, VICTIM[0], VICTIM[1]) == 429

    # Redis restarts empty: every counter and key it held is gone.
    own_redis.stop()
    own_redis.start()
    # The first command on a connection from before the restart may fail (503, retry).
    for _ in range(3):
        status = await login_status(client, VICTIM[0], VICTIM[1])
        if status != 503:
            break
    assert status == 429  # the account's lockout is kept in the database

    assert (await client.get("/auth/users/me", headers=bearer(logged_out))).status == 401
    assert (await client.get("/auth/users/me", headers=bearer(alice))).status == 401
    assert await login_status(client, *ALICE) == 403  # still disabled
    assert (await client.get("/auth/users/me", headers=bearer(admin))).status == 200
    # The database's lockout ends by the app's clock, like the Redis counters.
    clock.advance(61)
    assert await login_status(client, *VICTIM) == 200


# --- ending tokens -----------------------------------------------------------------------


async def test_logout_all_ends_every_token_of_the_account_only(admin_and_alice, make_auth_client):
    client, admin_token, alice_token = admin_and_alice
    other_instance = await make_auth_client()  # another worker or host: same database
    other_session = await log_in(client, *ALICE)
    resp = await client.post("/auth/logout-all", headers=bearer(alice_token))
    assert resp.status == 200 and (await resp.json())["message"] == "Logged out everywhere"
    for token in (alice_token, other_session):
        for app in (client, other_instance):
            assert (await app.get("/auth/users/me", headers=bearer(token))).status == 401
    assert (await client.get("/auth/users/me", headers=bearer(admin_token))).status == 200
    fresh = await log_in(client, *ALICE)
    assert (await client.get("/auth/users/me", headers=bearer(fresh))).status == 200


async def test_changing_the_password_ends_older_tokens_and_keeps_this_session(admin_and_alice):
    client, _, alice_token = admin_and_alice
    other_session = await log_in(client, *ALICE)
    change = "/auth/users/me/password"

    wrong = await client.post(
        change, json={"current_password": WRONG, "new_password": NEW_PASSWORD}, headers=bearer(alice_token)
    )
    assert wrong.status == 400 and (await wrong.json())["detail"] == "The current password is not correct"
    weak = await client.post(
        change,
        json={"current_password": ALICE[1], "new_password": "password123456"},
        headers=bearer(alice_token),
    )
    assert weak.status == 422
    assert (
        await client.post(change, json={"current_password": ALICE[1]}, headers=bearer(alice_token))
    ).status == 422
    assert (
        await client.post(change, json={"current_password": ALICE[1], "new_password": NEW_PASSWORD})
    ).status == 401

    resp = await client.post(
        change, json={"current_password": ALICE[1], "new_password": NEW_PASSWORD}, headers=bearer(alice_token)
    )
    assert resp.status == 200, await resp.text()
    new_token = (await resp.json())["access_token"]
    for token in (alice_token, other_session):
        assert (await client.get("/auth/users/me", headers=bearer(token))).status == 401
    assert (await client.get("/auth/users/me", headers=bearer(new_token))).status == 200
    assert await login_status(client, *ALICE) == 401
    assert await login_status(client, ALICE[0], NEW_PASSWORD) == 200


async def test_the_new_endpoints_are_documented(client):
    doc = await (await client.get("/openapi.json")).json()
    assert "post" in doc["paths"]["/auth/logout-all"]
    change = doc["paths"]["/auth/users/me/password"]["post"]
    schema = change["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert set(doc["components"]["schemas"][schema]["required"]) == {"current_password", "new_password"}
