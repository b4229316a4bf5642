"""API keys through HTTP on both backends: created once, used by header, listed by prefix
with their last use, scoped, rate limited on their own quota, refused once revoked,
expired or owned by a disabled user (on another server process too), and never written
to a log or shown again."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from compere.http.keys import DATABASE
from compere.storage.database import Query
from tests.helpers import ADMIN, ALICE, TEST_SECRET_KEY, bearer, log_in, sign_up

SERVER_AUTH = {
    "AUTH_ENABLED": "true",
    "SECRET_KEY": TEST_SECRET_KEY,
    "BCRYPT_ROUNDS": "10",
    "RATE_LIMIT_ENABLED": "true",
    "RATE_LIMIT_REQUESTS": "100000",
}


def account(pair: tuple[str, str]) -> dict[str, str]:
    return {"username": pair[0], "password": pair[1]}


def key_header(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


async def create_key(client, token: str, **body: object) -> dict:
    resp = await client.post("/auth/api-keys", json=body, headers=bearer(token))
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def two_entities(client, headers: dict[str, str]) -> tuple[int, int]:
    ids = []
    for name in ("left", "right"):
        resp = await client.post("/entities/", json={"name": name}, headers=headers)
        assert resp.status == 200, await resp.text()
        ids.append((await resp.json())["id"])
    return ids[0], ids[1]


async def test_a_key_is_shown_once_works_by_either_header_and_is_listed_by_prefix(admin_and_alice):
    client, _, alice = admin_and_alice
    created = await create_key(client, alice, name="pipeline", scopes=["read", "write"])
    key = created["key"]
    assert key.startswith("ck_") and key.startswith(created["prefix"] + "_") and len(key) >= 50
    assert created["scopes"] == ["read", "write"] and created["last_used_at"] is None

    for headers in (key_header(key), bearer(key)):
        resp = await client.get("/auth/users/me", headers=headers)
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["username"] == ALICE[0]
    assert (await client.post("/entities/", json={"name": "by key"}, headers=bearer(key))).status == 200

    resp = await client.get("/auth/api-keys", headers=bearer(alice))
    listed = await resp.json()
    assert [k["prefix"] for k in listed] == [created["prefix"]]
    assert listed[0]["last_used_at"] is not None and not listed[0]["revoked"]
    assert key not in await resp.text()
    # Another user does not see it, and cannot revoke it.
    _, admin_token = admin_and_alice[0], admin_and_alice[1]
    assert await (await client.get("/auth/api-keys", headers=bearer(admin_token))).json() == []


async def test_a_wrong_or_malformed_key_is_refused_like_a_bad_token(admin_and_alice):
    client, _, alice = admin_and_alice
    key = (await create_key(client, alice, scopes=["read"]))["key"]
    for wrong in (key[:-1] + ("A" if key[-1] != "A" else "B"), "ck_nothing", "ck_" + "0" * 60):
        resp = await client.get("/entities/", headers=key_header(wrong))
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"] == "Bearer"


async def test_scopes_decide_what_a_key_may_do(admin_and_alice):
    client, admin, alice = admin_and_alice
    first, second = await two_entities(client, bearer(alice))
    read = (await create_key(client, alice, scopes=["read"]))["key"]
    vote = (await create_key(client, alice, scopes=["vote"]))["key"]
    vote_body = {"entity1_id": first, "entity2_id": second, "selected_entity_id": first}

    assert (await client.get("/ratings", headers=key_header(read))).status == 200
    refused = await client.post("/comparisons/", json=vote_body, headers=key_header(read))
    assert refused.status == 403
    assert "vote" in (await refused.json())["detail"]
    assert (await client.post("/entities/", json={"name": "x"}, headers=key_header(vote))).status == 403
    assert (await client.post("/comparisons/", json=vote_body, headers=key_header(vote))).status == 200
    # A key never manages keys or accounts, whatever its scopes.
    admin_key = (await create_key(client, admin, scopes=["admin"]))["key"]
    assert (
        await client.post("/auth/api-keys", json={"scopes": ["admin"]}, headers=key_header(admin_key))
    ).status == 403
    assert (await client.get("/auth/users/", headers=key_header(admin_key))).status == 403
    # A superuser's admin key for every project is a superuser key; a user's is not.
    assert (await client.get("/export/comparisons", headers=key_header(admin_key))).status == 200
    alice_admin = (await create_key(client, alice, scopes=["admin"]))["key"]
    assert (await client.get("/export/comparisons", headers=key_header(alice_admin))).status == 403


async def test_an_expired_key_is_refused(admin_and_alice):
    client, _, alice = admin_and_alice
    soon = datetime.now(UTC) + timedelta(days=1)
    created = await create_key(client, alice, scopes=["read"], expires_at=soon.isoformat())
    assert datetime.fromisoformat(created["expires_at"]) == soon
    assert (await client.get("/entities/", headers=key_header(created["key"]))).status == 200
    # Move its expiry into the past (the API refuses past expiries at creation).
    past = (datetime.now(UTC) - timedelta(seconds=1)).isoformat(timespec="microseconds")
    db = client.app[DATABASE]
    async with db.transaction() as tx:
        from compere.storage.tables import api_keys

        await tx.execute(Query(api_keys.update().values(expires_at=past)), {})
    assert (await client.get("/entities/", headers=key_header(created["key"]))).status == 401
    bad = await client.post(
        "/auth/api-keys", json={"scopes": ["read"], "expires_at": past}, headers=bearer(alice)
    )
    assert bad.status == 422


async def test_a_key_spends_its_own_quota(make_auth_client, ratelimit_redis, ratelimit_redis_prefix):
    client = await make_auth_client(
        RATE_LIMIT_ENABLED="true",
        RATE_LIMIT_REQUESTS="1000",
        RATE_LIMIT_KEY_PREFIX=ratelimit_redis_prefix,
        REDIS_URL=ratelimit_redis.url,
        # A slow machine must not turn a Redis answer into a fail-open pass.
        RATE_LIMIT_REDIS_TIMEOUT="2",
    )
    assert (await sign_up(client, *ADMIN)).status == 200
    token = await log_in(client, *ADMIN)
    small = await create_key(client, token, scopes=["read"], rate_limit=3, rate_window=60)
    other = (await create_key(client, token, scopes=["read"]))["key"]
    statuses = [(await client.get("/entities/", headers=key_header(small["key"]))).status for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    limited = await client.get("/entities/", headers=key_header(small["key"]))
    assert limited.headers["X-RateLimit-Limit"] == "3"
    # Neither the owner's token nor the owner's other key share that quota.
    assert (await client.get("/entities/", headers=bearer(token))).status == 200
    assert (await client.get("/entities/", headers=key_header(other))).status == 200


async def test_bad_key_requests_are_clear_4xx(admin_and_alice):
    client, _, alice = admin_and_alice
    for body in (
        {"scopes": []},
        {"scopes": ["root"]},
        {"scopes": ["read"], "expires_at": "2999-01-01T00:00:00"},  # no time zone
        {"scopes": ["read"], "rate_window": 10},
        {"scopes": ["read"], "rate_limit": 0},
    ):
        resp = await client.post("/auth/api-keys", json=body, headers=bearer(alice))
        assert resp.status == 422, body
        assert "detail" in await resp.json()
    assert (await client.delete("/auth/api-keys/999", headers=bearer(alice))).status == 404
    assert (await client.post("/auth/api-keys", json={"scopes": ["read"]})).status == 401


async def test_votes_record_the_user_the_key_or_the_keys_end_user(admin_and_alice):
    client, admin, alice = admin_and_alice
    first, second = await two_entities(client, bearer(alice))
    created = await create_key(client, alice, scopes=["vote"])
    vote = {"entity1_id": first, "entity2_id": second, "selected_entity_id": second}
    answers = [
        await client.post("/comparisons/", json=vote, headers=bearer(alice)),
        await client.post("/comparisons/", json=vote, headers=key_header(created["key"])),
        await client.post(
            "/comparisons/", json={**vote, "voter": "respondent-7"}, headers=key_header(created["key"])
        ),
        await client.post(
            "/comparisons/", json={**vote, "voter": "respondent-8"}, headers=key_header(created["key"])
        ),
        await client.post(
            "/comparisons/", json={**vote, "voter": "respondent-7"}, headers=key_header(created["key"])
        ),
    ]
    for answer in answers:
        assert answer.status == 200, await answer.text()
        # The top-level answer keeps the original shape: no voter field.
        assert "voter" not in await answer.json()
    # Only a key may name an end user.
    refused = await client.post("/comparisons/", json={**vote, "voter": "x"}, headers=bearer(alice))
    assert refused.status == 403

    export = await client.get("/export/comparisons?format=csv", headers=bearer(admin))
    text = await export.text()
    assert "respondent" not in text
    voters = [row["voter"] for row in csv.DictReader(io.StringIO(text))]
    alice_id = (await (await client.get("/auth/users/me", headers=bearer(alice))).json())["id"]
    assert voters[:2] == [f"u:{alice_id}", f"k:{created['id']}"]
    assert voters[2].startswith("a:") and voters[2] == voters[4] != voters[3]


async def test_anonymous_voters_get_distinct_signed_cookies(make_client):
    """Two browsers (cookie jars) voting anonymously are two voters; one browser stays one."""
    client = await make_client()
    ids = []
    for name in ("a", "b"):
        resp = await client.post("/entities/", json={"name": name})
        ids.append((await resp.json())["id"])
    vote = {"entity1_id": ids[0], "entity2_id": ids[1], "selected_entity_id": ids[0]}
    base = str(client.make_url(""))
    for _ in range(2):
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
            for attempt in range(2):
                async with browser.post(f"{base}/comparisons/", json=vote) as resp:
                    assert resp.status == 200
                    cookie = resp.headers.get("Set-Cookie")
                    if attempt == 0:
                        assert cookie is not None
                        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
                        assert "Secure" not in cookie  # plain http here; https gets Secure
                    else:
                        assert cookie is None  # the browser's cookie was accepted
    # A forged cookie is not taken: it gets a new voter id.
    forged = await client.post("/comparisons/", json=vote, headers={"Cookie": "compere_voter=abc.def"})
    assert "compere_voter=" in forged.headers.get("Set-Cookie", "")
    export = await client.get("/export/comparisons?format=csv")
    voters = [row["voter"] for row in csv.DictReader(io.StringIO(await export.text()))]
    assert len(voters) == 5 and all(v.startswith("a:") for v in voters)
    assert voters[0] == voters[1] and voters[2] == voters[3]
    assert len({voters[0], voters[2], voters[4]}) == 3


# --- across server processes -------------------------------------------------------------


async def _request(session: aiohttp.ClientSession, method: str, url: str, **kwargs: object) -> int:
    async with session.request(method, url, **kwargs) as resp:
        await resp.read()
        return resp.status


async def test_revoking_or_disabling_stops_a_key_on_another_server_at_once(start_server):
    """Two app processes on one database: a key revoked through one (or whose owner is
    disabled) is refused by the other on its very next request, and the key never
    reaches either log."""
    one = start_server(**SERVER_AUTH)
    two = start_server(**SERVER_AUTH)
    async with aiohttp.ClientSession() as http:
        assert await _request(http, "POST", f"{one.url}/auth/users/", json=account(ADMIN)) == 200
        async with http.post(f"{one.url}/auth/token", data=account(ADMIN)) as resp:
            admin = (await resp.json())["access_token"]
        user = account(ALICE)
        assert await _request(http, "POST", f"{one.url}/auth/users/", json=user, headers=bearer(admin)) == 200
        async with http.post(f"{one.url}/auth/token", data=user) as resp:
            alice = (await resp.json())["access_token"]
        async with http.get(f"{one.url}/auth/users/me", headers=bearer(alice)) as resp:
            alice_id = (await resp.json())["id"]

        keys = []
        for _ in range(2):
            async with http.post(
                f"{one.url}/auth/api-keys", json={"scopes": ["read"]}, headers=bearer(alice)
            ) as resp:
                assert resp.status == 200
                keys.append(await resp.json())
        revoked, second = keys
        for server in (one, two):  # both workers have seen (and remembered) both keys and the token
            assert await _request(http, "GET", f"{server.url}/entities/", headers=bearer(alice)) == 200
            for key in keys:
                assert (
                    await _request(http, "GET", f"{server.url}/entities/", headers=key_header(key["key"]))
                    == 200
                )

        assert (
            await _request(http, "DELETE", f"{one.url}/auth/api-keys/{revoked['id']}", headers=bearer(alice))
            == 200
        )
        # The very next request on the other server is refused: no cache to wait out.
        assert await _request(http, "GET", f"{two.url}/entities/", headers=key_header(revoked["key"])) == 401
        assert await _request(http, "GET", f"{two.url}/entities/", headers=bearer(revoked["key"])) == 401
        assert await _request(http, "GET", f"{two.url}/entities/", headers=key_header(second["key"])) == 200

        path = f"{one.url}/auth/users/{alice_id}/disable"
        assert await _request(http, "POST", path, headers=bearer(admin)) == 200
        assert await _request(http, "GET", f"{two.url}/entities/", headers=key_header(second["key"])) == 401
        assert await _request(http, "GET", f"{two.url}/entities/", headers=bearer(alice)) == 401

        async with http.get(f"{one.url}/auth/api-keys", headers=bearer(admin)) as resp:
            assert resp.status == 200

    logs = one.log_path.read_text(errors="replace") + two.log_path.read_text(errors="replace")
    assert "revoked" in logs and revoked["prefix"] in logs  # the refusal is logged by prefix
    for key in keys:
        secret = key["key"].split("_", 2)[2]
        assert key["key"] not in logs and secret not in logs


@pytest.mark.parametrize("header", ["X-API-Key", "Authorization"])
async def test_a_refused_key_is_logged_without_the_key(admin_and_alice, caplog, header):
    client, _, alice = admin_and_alice
    created = await create_key(client, alice, scopes=["read"])
    await client.delete(f"/auth/api-keys/{created['id']}", headers=bearer(alice))
    value = created["key"] if header == "X-API-Key" else f"Bearer {created['key']}"
    with caplog.at_level("INFO"):
        assert (await client.get("/entities/", headers={header: value})).status == 401
    assert created["prefix"] in caplog.text
    assert created["key"] not in caplog.text


# --- keys and projects --------------------------------------------------------------------


async def _project(client, token: str, slug: str, **settings: object) -> None:
    body = {"slug": slug, "name": slug, **settings}
    resp = await client.post("/projects/", json=body, headers=bearer(token))
    assert resp.status in (200, 201), await resp.text()


async def test_a_key_acts_with_its_owners_role_within_its_scopes_on_its_project(admin_and_alice):
    client, admin, alice = admin_and_alice
    await _project(client, admin, "alpha")
    await _project(client, admin, "beta")
    for slug, role in (("alpha", "viewer"), ("beta", "editor")):
        resp = await client.put(
            f"/projects/{slug}/members/{ALICE[0]}", json={"role": role}, headers=bearer(admin)
        )
        assert resp.status == 200, await resp.text()
    first, second = [
        (
            await (
                await client.post("/projects/beta/entities/", json={"name": n}, headers=bearer(admin))
            ).json()
        )["id"]
        for n in ("x", "y")
    ]
    vote = {"entity1_id": first, "entity2_id": second, "selected_entity_id": first}
    everywhere = (await create_key(client, alice, scopes=["vote"]))["key"]
    only_alpha = (
        await create_key(client, alice, scopes=["admin"], project_id=await _id(client, admin, "alpha"))
    )["key"]

    # A vote key of an editor votes in beta; its scopes keep it from writing there.
    assert (
        await client.post("/projects/beta/comparisons/", json=vote, headers=key_header(everywhere))
    ).status == 200
    assert (
        await client.post("/projects/beta/entities/", json={"name": "z"}, headers=key_header(everywhere))
    ).status == 403
    # An admin key of a viewer is still a viewer in alpha (the owner's role bounds it).
    assert (await client.get("/projects/alpha/ratings", headers=key_header(only_alpha))).status == 200
    assert (
        await client.post("/projects/alpha/entities/", json={"name": "z"}, headers=key_header(only_alpha))
    ).status == 403
    # A key made for alpha does nothing elsewhere, the top-level (default) routes included.
    assert (await client.get("/projects/beta/ratings", headers=key_header(only_alpha))).status == 403
    assert (await client.get("/ratings", headers=key_header(only_alpha))).status == 403
    # Only for a project of one's own.
    stranger = await client.post(
        "/auth/api-keys", json={"scopes": ["read"], "project_id": 999}, headers=bearer(alice)
    )
    assert stranger.status == 422


async def _id(client, token: str, slug: str) -> int:
    resp = await client.get(f"/projects/{slug}", headers=bearer(token))
    assert resp.status == 200, await resp.text()
    return int((await resp.json())["id"])


async def test_two_browsers_on_a_public_project_are_two_anonymous_voters(admin_and_alice):
    client, admin, _ = admin_and_alice
    await _project(client, admin, "open", visibility="public", allow_anonymous=True)
    ids = [
        (
            await (
                await client.post("/projects/open/entities/", json={"name": n}, headers=bearer(admin))
            ).json()
        )["id"]
        for n in ("x", "y")
    ]
    vote = {"entity1_id": ids[0], "entity2_id": ids[1], "selected_entity_id": ids[1]}
    base = str(client.make_url(""))
    for _ in range(2):
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
            for _ in range(2):
                async with browser.post(f"{base}/projects/open/comparisons/", json=vote) as resp:
                    assert resp.status == 200, await resp.text()
    export = await client.get("/projects/open/export/comparisons?format=csv", headers=bearer(admin))
    assert export.status == 200, await export.text()
    voters = [row["voter"] for row in csv.DictReader(io.StringIO(await export.text()))]
    assert len(voters) == 4 and all(v.startswith("a:") for v in voters)
    assert voters[0] == voters[1] != voters[2] == voters[3]


async def test_the_python_client_creates_uses_lists_and_revokes_keys(start_server):
    from compere.client import AsyncClient
    from compere.client.errors import Unauthorized

    server = start_server(**SERVER_AUTH)
    async with AsyncClient(server.url) as owner:
        await owner.create_user(*ADMIN)
        await owner.login(*ADMIN)
        created = await owner.create_api_key(["read", "vote"], name="eval loop")
        async with AsyncClient(server.url, token=created.key) as script:
            assert (await script.list_entities()).items == []
        (listed,) = await owner.list_api_keys()
        assert listed.prefix == created.prefix and listed.last_used_at is not None
        assert not hasattr(listed, "key")
        await owner.revoke_api_key(created.id)
        async with AsyncClient(server.url, token=created.key) as script:
            with pytest.raises(Unauthorized):
                await script.list_entities()
        assert (await owner.list_api_keys())[0].revoked
