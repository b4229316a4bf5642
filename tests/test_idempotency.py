"""Idempotency-Key: a retried write is applied once and answered with the first response.

Every test runs on SQLite and PostgreSQL, with the Redis store (the ``idempotency_redis``
fixture) and the in-process store that development uses without Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sqlite3
import uuid
from collections.abc import Iterator

import orjson
import psycopg2
import pytest
from aiohttp import web

from compere.http.app import create_app
from compere.http.idempotency import fingerprint, record_key
from compere.http.keys import IDEMPOTENCY
from compere.settings import SettingsError, load_settings
from tests.helpers import NO_DOTENV, RedisRole, bearer, delete_redis_keys


@pytest.fixture(params=["redis", "memory"])
def store_env(request: pytest.FixtureRequest) -> dict[str, str]:
    if request.param == "memory":
        return {}
    idempotency_redis: RedisRole = request.getfixturevalue("idempotency_redis")
    return idempotency_redis.env()


@pytest.fixture
async def client(make_client, store_env):
    return await make_client(**store_env)


def new_key() -> str:
    return str(uuid.uuid4())


async def vote(client, a, b, winner, key=None, **extra_headers):
    headers = {**extra_headers}
    if key is not None:
        headers["Idempotency-Key"] = key
    return await client.post(
        "/comparisons/",
        json={"entity1_id": a, "entity2_id": b, "selected_entity_id": winner},
        headers=headers,
    )


async def stored_comparisons(client) -> list[dict]:
    resp = await client.get("/comparisons/", params={"limit": 1000})
    return await resp.json()


@contextlib.contextmanager
def writes_blocked(database_url: str) -> Iterator[None]:
    """Hold a lock from another connection so a vote waits inside its transaction."""
    if database_url.startswith("sqlite:///"):
        conn = sqlite3.connect(database_url[len("sqlite:///") :], isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
            conn.close()
        return
    conn = psycopg2.connect(database_url)
    cur = conn.cursor()
    cur.execute("SELECT id FROM entities FOR UPDATE")  # psycopg2 opens the transaction
    try:
        yield
    finally:
        conn.rollback()
        conn.close()


async def test_a_retry_is_applied_once_and_gets_the_identical_response(client, create_entities):
    a, b = await create_entities(2)
    key = new_key()
    first = await vote(client, a["id"], b["id"], a["id"], key)
    assert first.status == 200
    assert "Idempotent-Replayed" not in first.headers
    first_body = await first.read()

    for _ in range(3):
        again = await vote(client, a["id"], b["id"], a["id"], key)
        assert again.status == 200
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.headers["Content-Type"] == first.headers["Content-Type"]
        assert await again.read() == first_body

    assert len(await stored_comparisons(client)) == 1
    winner = await (await client.get(f"/entities/{a['id']}")).json()
    assert (winner["wins"], winner["comparisons"]) == (1, 1)


async def test_the_same_body_in_another_layout_is_the_same_request(client, create_entities):
    a, b = await create_entities(2)
    key = new_key()
    first = await client.post(
        "/comparisons/",
        data=f'{{"entity1_id": {a["id"]}, "entity2_id": {b["id"]}, "selected_entity_id": null}}',
        headers={"Idempotency-Key": key, "Content-Type": "application/json"},
    )
    again = await client.post(
        "/comparisons/",
        data=f'{{"selected_entity_id":null,"entity2_id":{b["id"]},"entity1_id":{a["id"]}}}',
        headers={"Idempotency-Key": f'"{key}"', "Content-Type": "application/json"},  # IETF quoted form
    )
    assert first.status == again.status == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert len(await stored_comparisons(client)) == 1


async def test_the_same_key_with_a_different_body_is_refused(client, create_entities):
    a, b = await create_entities(2)
    key = new_key()
    assert (await vote(client, a["id"], b["id"], a["id"], key)).status == 200
    other = await vote(client, a["id"], b["id"], b["id"], key)
    assert other.status == 422
    assert "different request" in (await other.json())["detail"]
    # ... and on another route too: a key names one request, not one per path
    entity = await client.post("/entities/", json={"name": "x"}, headers={"Idempotency-Key": key})
    assert entity.status == 422
    assert len(await stored_comparisons(client)) == 1


async def test_a_duplicate_while_the_first_still_runs_gets_409(client, create_entities, database_url):
    a, b = await create_entities(2)
    key = new_key()
    with writes_blocked(database_url):
        first = asyncio.create_task(vote(client, a["id"], b["id"], a["id"], key))
        await asyncio.sleep(0.3)  # the first vote is now waiting for the lock
        assert not first.done()
        duplicate = await vote(client, a["id"], b["id"], a["id"], key)
        assert duplicate.status == 409
        assert duplicate.headers["Retry-After"] == "1"
        assert "still being processed" in (await duplicate.json())["detail"]
    resp = await first
    assert resp.status == 200
    replay = await vote(client, a["id"], b["id"], a["id"], key)
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert await replay.read() == await resp.read()
    assert len(await stored_comparisons(client)) == 1


async def test_failures_are_not_stored_so_a_retry_can_succeed(client, create_entities):
    a, b = await create_entities(2)
    key = new_key()
    missing = b["id"] + 1
    refused = await vote(client, a["id"], missing, a["id"], key)
    assert refused.status == 404
    await create_entities(1, prefix="late")  # now the entity exists
    retried = await vote(client, a["id"], missing, a["id"], key)
    assert retried.status == 200
    assert "Idempotent-Replayed" not in retried.headers


async def test_entity_creation_is_idempotent_too(client):
    key = new_key()
    first = await client.post("/entities/", json={"name": "once"}, headers={"Idempotency-Key": key})
    again = await client.post("/entities/", json={"name": "once"}, headers={"Idempotency-Key": key})
    assert first.status == again.status == 200
    assert await again.read() == await first.read()
    listed = await (await client.get("/entities/")).json()
    assert [e["name"] for e in listed] == ["once"]


async def test_requests_without_a_key_are_not_deduplicated(client, create_entities):
    a, b = await create_entities(2)
    for _ in range(2):
        assert (await vote(client, a["id"], b["id"], None)).status == 200
    assert len(await stored_comparisons(client)) == 2


@pytest.mark.parametrize("bad", ["", "x" * 256, "caf\u00e9", '""'])
async def test_a_malformed_key_is_a_400(client, create_entities, bad):
    a, b = await create_entities(2)
    resp = await client.post(
        "/comparisons/",
        data=f'{{"entity1_id": {a["id"]}, "entity2_id": {b["id"]}, "selected_entity_id": null}}'.encode(),
        headers={"Idempotency-Key": bad.encode().decode("latin-1"), "Content-Type": "application/json"},
    )
    assert resp.status == 400
    assert "Idempotency-Key" in (await resp.json())["detail"]
    assert await stored_comparisons(client) == []


@pytest.fixture
def idem_keys_cleared_in_auth_redis(auth_redis: RedisRole) -> Iterator[None]:
    yield
    delete_redis_keys(auth_redis.url, f"{auth_redis.key_prefix}idem:")


async def test_keys_are_scoped_to_the_signed_in_user(admin_and_alice, idem_keys_cleared_in_auth_redis):
    client, admin_token, alice_token = admin_and_alice
    ids = []
    for name in ("a", "b"):
        resp = await client.post("/entities/", json={"name": name}, headers=bearer(admin_token))
        ids.append((await resp.json())["id"])
    key = new_key()
    body = {"entity1_id": ids[0], "entity2_id": ids[1], "selected_entity_id": ids[0]}

    async def post(token):
        return await client.post(
            "/comparisons/", json=body, headers={**bearer(token), "Idempotency-Key": key}
        )

    admin, alice, admin_again = await post(admin_token), await post(alice_token), await post(admin_token)
    assert admin.status == alice.status == admin_again.status == 200
    assert "Idempotent-Replayed" not in alice.headers  # the same key, but another user's
    assert admin_again.headers["Idempotent-Replayed"] == "true"
    assert (await alice.json())["id"] != (await admin.json())["id"]
    log = await (await client.get("/comparisons/", headers=bearer(admin_token))).json()
    assert len(log) == 2


async def test_creating_a_user_is_idempotent(admin_and_alice, idem_keys_cleared_in_auth_redis):
    client, admin_token, _ = admin_and_alice
    headers = {**bearer(admin_token), "Idempotency-Key": new_key()}
    body = {"username": "bob", "password": "amber-falcon-ledger-58"}
    first = await client.post("/auth/users/", json=body, headers=headers)
    again = await client.post("/auth/users/", json=body, headers=headers)
    assert first.status == again.status == 200, await first.text()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await again.read() == await first.read()


async def test_a_lock_left_by_a_dead_worker_expires(make_client, make_settings, idempotency_redis):
    """A worker that died mid-request leaves only a short lock: 409 until it expires."""
    settings = make_settings(**idempotency_redis.env(), IDEMPOTENCY_LOCK_TTL="1")
    app = await create_app(settings, configure_logs=False)
    client = await make_client(app)
    ids = [(await (await client.post("/entities/", json={"name": n})).json())["id"] for n in "ab"]
    key = new_key()
    body = {"entity1_id": ids[0], "entity2_id": ids[1], "selected_entity_id": None}
    # The dead worker had claimed the key for exactly this request and never finished.
    digest = fingerprint("POST", "/comparisons/", orjson.dumps(body))
    claimed = await app[IDEMPOTENCY].claim(record_key("addr:127.0.0.1", key), digest, "dead", 1)
    assert claimed is None

    blocked = await client.post("/comparisons/", json=body, headers={"Idempotency-Key": key})
    assert blocked.status == 409
    await asyncio.sleep(1.1)
    resp = await client.post("/comparisons/", json=body, headers={"Idempotency-Key": key})
    assert resp.status == 200
    assert "Idempotent-Replayed" not in resp.headers


async def test_without_its_store_a_keyed_write_is_refused_and_unkeyed_ones_proceed(make_client):
    # Nothing listens on port 1: every Redis call fails at once.
    client = await make_client(REDIS_URL="redis://127.0.0.1:1/5")
    made = await client.post("/entities/", json={"name": "plain"})
    assert made.status == 200
    keyed = await client.post("/entities/", json={"name": "keyed"}, headers={"Idempotency-Key": new_key()})
    assert keyed.status == 503
    assert keyed.headers["Retry-After"] == "1"
    detail = (await keyed.json())["detail"]
    assert "Idempotency keys cannot be checked" in detail
    assert "redis" not in detail.lower()
    listed = await (await client.get("/entities/")).json()
    assert [e["name"] for e in listed] == ["plain"]


def test_a_lock_may_not_outlive_the_stored_answer():
    with pytest.raises(SettingsError, match="IDEMPOTENCY_LOCK_TTL"):
        load_settings({"IDEMPOTENCY_TTL": "60", "IDEMPOTENCY_LOCK_TTL": "120"}, dotenv=NO_DOTENV)
    settings = load_settings({}, dotenv=NO_DOTENV)
    assert (settings.idempotency_ttl, settings.idempotency_lock_ttl) == (86_400, 60)


async def test_refusals_do_not_keep_requests_alive(make_client):
    """Each 503 is a fresh exception: re-raising a shared one chained every traceback
    (and the request in its frames) onto it, and memory grew through a Redis outage."""
    client = await make_client(REDIS_URL="redis://127.0.0.1:1/5")
    for _ in range(20):
        resp = await client.post("/entities/", json={"name": "x"}, headers={"Idempotency-Key": new_key()})
        assert resp.status == 503
    gc.collect()
    assert sum(isinstance(obj, web.BaseRequest) for obj in gc.get_objects()) < 5


async def test_more_keyed_writes_in_flight_than_redis_connections_all_succeed(client):
    # The Redis pool has 64 connections; a burst beyond that waits briefly for one
    # instead of answering 503 "Too many connections".
    async def create(i: int) -> int:
        resp = await client.post(
            "/entities/", json={"name": f"burst {i}"}, headers={"Idempotency-Key": new_key()}
        )
        return resp.status

    statuses = await asyncio.gather(*(create(i) for i in range(200)))
    assert statuses.count(200) == 200, sorted(set(statuses))
