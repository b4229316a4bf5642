"""PostgreSQL and Redis go away under load and come back: nothing lost, nothing doubled.

Each test starts its own server (see ``tests/servers.py``) so that stopping it never
touches the shared ones, and drives votes through a real HTTP server while it stops
and restarts that server.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import aiohttp
import orjson
import psycopg2
import pytest

from compere.http.app import create_app
from compere.settings import load_settings
from tests.helpers import (
    NO_DOTENV,
    OUTAGE_VOTERS,
    VoteLoad,
    assert_exactly_once,
    empty_postgres,
    seed,
    wait_ready,
)
from tests.servers import RedisInstance


@pytest.fixture
def own_redis() -> Iterator[RedisInstance]:
    server = RedisInstance(persistent=True)
    server.start()
    yield server
    server.destroy()


async def serve(aiohttp_server, **env: str) -> str:
    # Readiness is read right after each stop and start: no cached answer in between.
    env = {"READY_CACHE_SECONDS": "0", **env}
    app = await create_app(load_settings(env, dotenv=NO_DOTENV), configure_logs=False)
    server = await aiohttp_server(app)
    return str(server.make_url("")).rstrip("/")


async def test_postgres_stopped_and_restarted_under_load(aiohttp_server, own_postgres):
    url = own_postgres.create_database("compere")
    base = await serve(
        aiohttp_server, DATABASE_URL=url, DB_POOL_MAX="4", DB_POOL_TIMEOUT="1", DB_STATEMENT_TIMEOUT_MS="2000"
    )
    recoveries = []
    async with aiohttp.ClientSession() as session:
        ids = await seed(session, base)
        load = VoteLoad(session, base, ids, keyed=False)
        load.start()
        for mode in ("fast", "immediate"):  # a maintenance restart, then a crash
            await asyncio.sleep(0.8)
            await asyncio.to_thread(own_postgres.stop, mode)
            for _ in range(3):
                async with session.get(f"{base}/health/ready") as resp:
                    assert resp.status == 503
                    assert (await resp.json())["checks"]["database"] == "unavailable"
                await asyncio.sleep(0.2)
            await asyncio.to_thread(own_postgres.start)
            recoveries.append(await wait_ready(session, base, within=10))
        await asyncio.sleep(0.8)
        await load.stop()

    print(f"\nstatuses {dict(load.statuses)}, recovery after restart {[round(r, 2) for r in recoveries]} s")
    assert set(load.statuses) <= {200, 503}
    assert load.statuses[200] > 0 and load.statuses[503] > 0
    assert load.slowest_refusal < 3.0  # refused fast, not after a long hang
    assert all(r < 5 for r in recoveries)
    # A vote in flight when a stop kills its backend may be committed yet answered 503.
    assert_exactly_once(url, load.acknowledged, in_doubt=OUTAGE_VOTERS * 2)


async def test_redis_stopped_and_restarted_under_keyed_load(aiohttp_server, own_redis, shared_postgres_url):
    empty_postgres(shared_postgres_url)
    base = await serve(
        aiohttp_server,
        DATABASE_URL=shared_postgres_url,
        REDIS_URL=own_redis.url(),
        IDEMPOTENCY_LOCK_TTL="5",
    )
    async with aiohttp.ClientSession() as session:
        ids = await seed(session, base)
        first_key = str(uuid.uuid4())
        first_body = {"entity1_id": ids[0], "entity2_id": ids[1], "selected_entity_id": ids[0]}
        headers = {"Idempotency-Key": first_key}
        async with session.post(f"{base}/comparisons/", json=first_body, headers=headers) as resp:
            assert resp.status == 200
            first = await resp.read()

        load = VoteLoad(session, base, ids, keyed=True)
        load.start()
        await asyncio.sleep(0.8)
        await asyncio.to_thread(own_redis.stop)
        async with session.get(f"{base}/health/ready") as resp:
            assert resp.status == 503
            assert (await resp.json())["checks"] == {"database": "ok", "redis": "unavailable"}
        # Writes without a key do not depend on Redis.
        plain = {"entity1_id": ids[2], "entity2_id": ids[3], "selected_entity_id": None}
        async with session.post(f"{base}/comparisons/", json=plain) as resp:
            assert resp.status == 200
            unkeyed = await resp.json()
        await asyncio.sleep(0.8)
        await asyncio.to_thread(own_redis.start)
        recovery = await wait_ready(session, base, within=10)
        await asyncio.sleep(0.8)
        await load.stop()

        # The record made before the outage survived it (Redis with AOF): still replayed.
        async with session.post(f"{base}/comparisons/", json=first_body, headers=headers) as resp:
            assert resp.headers["Idempotent-Replayed"] == "true"
            assert await resp.read() == first

    print(f"\nstatuses {dict(load.statuses)}, recovery after restart {recovery:.2f} s")
    assert set(load.statuses) <= {200, 409, 503}
    assert load.statuses[503] > 0
    assert recovery < 5
    first_comparison = orjson.loads(first)
    assert_exactly_once(shared_postgres_url, [first_comparison, unkeyed, *load.acknowledged])


async def test_an_answer_finished_during_a_redis_restart_is_still_stored(
    aiohttp_server, own_redis, shared_postgres_url
):
    """The vote commits while Redis is down: its lock survives the restart, the answer is
    stored once Redis is back, and a retry (a client that lost the answer) replays it."""
    empty_postgres(shared_postgres_url)
    base = await serve(
        aiohttp_server, DATABASE_URL=shared_postgres_url, REDIS_URL=own_redis.url(), IDEMPOTENCY_LOCK_TTL="10"
    )
    async with aiohttp.ClientSession() as session:
        ids = await seed(session, base)
        body = {"entity1_id": ids[0], "entity2_id": ids[1], "selected_entity_id": None}
        headers = {"Idempotency-Key": str(uuid.uuid4())}

        async def post() -> tuple[int, bytes, str | None]:
            async with session.post(f"{base}/comparisons/", json=body, headers=headers) as resp:
                return resp.status, await resp.read(), resp.headers.get("Idempotent-Replayed")

        blocker = psycopg2.connect(shared_postgres_url)
        with blocker.cursor() as cur:
            cur.execute("SELECT id FROM entities FOR UPDATE")
        first = asyncio.create_task(post())
        await asyncio.sleep(0.3)  # claimed in Redis, waiting for the row lock
        await asyncio.to_thread(own_redis.stop)
        blocker.rollback()
        blocker.close()
        status, answer, replayed = await first
        assert (status, replayed) == (200, None)  # committed: the client hears so

        await asyncio.to_thread(own_redis.start)
        await wait_ready(session, base, within=10)
        deadline = time.monotonic() + 5
        while True:
            retry = await post()
            if retry[0] != 409 or time.monotonic() > deadline:  # 409 until the answer is stored
                break
            await asyncio.sleep(0.1)
        assert retry == (200, answer, "true")
    assert_exactly_once(shared_postgres_url, [orjson.loads(answer)])
