"""Logging in: body formats, no credentials in URLs, no user enumeration, lockout."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.helpers import ADMIN, ALICE, bearer, log_in, sign_up

WRONG = "not-the-right-password-00"


async def test_form_and_json_bodies_both_log_in(admin_and_alice):
    client, _, _ = admin_and_alice
    form = await client.post(
        "/auth/token", data={"grant_type": "password", "username": "alice", "password": ALICE[1]}
    )
    assert form.status == 200
    as_json = await client.post("/auth/token", json={"username": "alice", "password": ALICE[1]})
    assert as_json.status == 200
    assert (await form.json())["access_token"] != (await as_json.json())["access_token"]
    assert form.headers["Cache-Control"] == "no-store"


async def test_bad_login_bodies_get_clear_4xx(admin_and_alice):
    client, _, _ = admin_and_alice
    other_grant = await client.post(
        "/auth/token", data={"grant_type": "client_credentials", "username": "alice", "password": ALICE[1]}
    )
    assert other_grant.status == 422
    assert (await client.post("/auth/token", data={"username": "alice"})).status == 422
    assert (await client.post("/auth/token", json=["alice", ALICE[1]])).status == 422
    assert (
        await client.post("/auth/token", data=b"alice:secret", headers={"Content-Type": "text/plain"})
    ).status == 415
    assert (
        await client.post("/auth/token", data=b"{not json", headers={"Content-Type": "application/json"})
    ).status == 400


async def test_credentials_in_the_query_string_are_refused(admin_and_alice):
    client, _, alice_token = admin_and_alice
    resp = await client.post("/auth/token", params={"username": "alice", "password": ALICE[1]})
    assert resp.status == 400
    assert "URL" in (await resp.json())["detail"]
    # Even alongside a correct body: the URL already leaked, so the request is refused.
    resp = await client.post(
        "/auth/token?password=" + ALICE[1], data={"username": "alice", "password": ALICE[1]}
    )
    assert resp.status == 400
    # A token in the URL is refused anywhere, not just at login.
    resp = await client.get("/entities/", params={"access_token": alice_token})
    assert resp.status == 400


async def test_unknown_user_and_wrong_password_look_the_same(admin_and_alice):
    client, _, _ = admin_and_alice

    async def attempt(username: str) -> tuple[int, dict[str, str], dict[str, object], float]:
        started = time.perf_counter()
        resp = await client.post("/auth/token", data={"username": username, "password": WRONG})
        elapsed = time.perf_counter() - started
        body = await resp.json()
        body.pop("request_id")
        interesting = {k: resp.headers[k] for k in ("Content-Type", "WWW-Authenticate")}
        return resp.status, interesting, body, elapsed

    known, unknown = [], []
    for i in range(4):  # interleaved, so both see the same machine load
        known.append(await attempt("alice"))
        unknown.append(await attempt(f"nobody{i}"))
    assert {(s, tuple(h.items()), b["detail"]) for s, h, b, _ in known + unknown} == {
        (
            401,
            (("Content-Type", "application/json"), ("WWW-Authenticate", "Bearer")),
            "Incorrect username or password",
        )
    }
    # An unknown user still costs a bcrypt check; without it the answer would come back
    # tens of times faster. Load only ever adds time, so the fastest of each kind is the
    # fairest comparison, and the bound is loose.
    fastest_known = min(t for *_, t in known)
    fastest_unknown = min(t for *_, t in unknown)
    assert fastest_unknown > 0.3 * fastest_known, (fastest_known, fastest_unknown)


# Counted in the shared Redis, and in process when there is no Redis (local development).
@pytest.mark.parametrize("store", [{}, {"REDIS_URL": ""}], ids=["redis", "in-process"])
async def test_repeated_failures_lock_the_username_then_the_lock_expires(make_auth_client, clock, store):
    client = await make_auth_client(clock=clock, LOGIN_MAX_FAILURES="3", LOGIN_FAILURE_WINDOW="4", **store)
    assert (await sign_up(client, *ADMIN)).status == 200
    for _ in range(3):
        resp = await client.post("/auth/token", data={"username": "admin", "password": WRONG})
        assert resp.status == 401
    # Locked: even the right password is refused, with a generic message and a wait.
    locked = await client.post("/auth/token", data={"username": "admin", "password": ADMIN[1]})
    assert locked.status == 429
    assert 1 <= int(locked.headers["Retry-After"]) <= 4
    detail = (await locked.json())["detail"]
    assert detail == "Too many failed login attempts. Try again later."
    # A username that does not exist locks the same way, with the same answer.
    for _ in range(3):
        assert (await client.post("/auth/token", data={"username": "ghost", "password": WRONG})).status == 401
    ghost = await client.post("/auth/token", data={"username": "ghost", "password": WRONG})
    assert ghost.status == 429 and (await ghost.json())["detail"] == detail

    clock.advance(int(locked.headers["Retry-After"]) - 0.5)
    still = await client.post("/auth/token", data={"username": "admin", "password": ADMIN[1]})
    assert still.status == 429 and (await still.json())["detail"] == detail
    clock.advance(1)
    assert (await client.post("/auth/token", data={"username": "admin", "password": ADMIN[1]})).status == 200


async def test_a_success_clears_the_username_count(make_auth_client):
    client = await make_auth_client(LOGIN_MAX_FAILURES="3")
    assert (await sign_up(client, *ADMIN)).status == 200
    for _ in range(2):
        assert (await client.post("/auth/token", data={"username": "admin", "password": WRONG})).status == 401
    await log_in(client, *ADMIN)
    for _ in range(2):
        assert (await client.post("/auth/token", data={"username": "admin", "password": WRONG})).status == 401
    await log_in(client, *ADMIN)


async def test_failures_from_one_client_across_usernames_are_limited(make_auth_client):
    client = await make_auth_client(LOGIN_MAX_FAILURES="100", LOGIN_MAX_FAILURES_PER_CLIENT="4")
    assert (await sign_up(client, *ADMIN)).status == 200
    for i in range(4):
        assert (
            await client.post("/auth/token", data={"username": f"user{i}", "password": WRONG})
        ).status == 401
    resp = await client.post("/auth/token", data={"username": "admin", "password": ADMIN[1]})
    assert resp.status == 429 and "Retry-After" in resp.headers


async def test_parallel_guesses_cannot_exceed_the_limit(make_auth_client):
    client = await make_auth_client(LOGIN_MAX_FAILURES="3")
    assert (await sign_up(client, *ADMIN)).status == 200
    answers = await asyncio.gather(
        *(
            client.post("/auth/token", data={"username": "admin", "password": f"{WRONG}{i}"})
            for i in range(12)
        )
    )
    statuses = sorted(r.status for r in answers)
    assert statuses == [401] * 3 + [429] * 9


async def test_login_does_not_block_the_event_loop(make_auth_client):
    # bcrypt at cost 12 takes a quarter of a second or more: if it ran on the event
    # loop, the health check sent meanwhile could only be answered after the login.
    client = await make_auth_client(BCRYPT_ROUNDS="12")
    assert (await sign_up(client, *ADMIN)).status == 200
    login = asyncio.create_task(client.post("/auth/token", data={"username": "admin", "password": ADMIN[1]}))
    await asyncio.sleep(0.03)
    health = await client.get("/health")
    assert health.status == 200
    assert not login.done()
    assert (await login).status == 200


async def test_tokens_in_auth_responses_are_not_cached(admin_and_alice):
    client, _, alice_token = admin_and_alice
    for resp in (
        await client.get("/auth/users/me", headers=bearer(alice_token)),
        await client.post("/auth/token", data={"username": "alice", "password": WRONG}),
    ):
        assert resp.headers["Cache-Control"] == "no-store"


async def test_login_failures_count_per_ipv6_64_like_the_rate_limiter(make_auth_client):
    client = await make_auth_client(
        LOGIN_MAX_FAILURES="100", LOGIN_MAX_FAILURES_PER_CLIENT="3", TRUSTED_PROXIES="127.0.0.1"
    )
    assert (await sign_up(client, *ADMIN)).status == 200

    async def attempt(address: str, username: str, password: str) -> int:
        resp = await client.post(
            "/auth/token",
            data={"username": username, "password": password},
            headers={"X-Forwarded-For": address},
        )
        return resp.status

    # Three addresses, one /64: one client, as the rate limiter counts it.
    for i, address in enumerate(("2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:aaaa::3")):
        assert await attempt(address, f"user{i}", WRONG) == 401
    assert await attempt("2001:db8:1:2:ffff:ffff:ffff:ffff", ADMIN[0], ADMIN[1]) == 429
    # The next /64 is someone else.
    assert await attempt("2001:db8:1:3::1", ADMIN[0], ADMIN[1]) == 200
