"""Exactly-once without trusting Redis: the database is the record of every keyed write.

Each test runs real server processes (``python -m compere serve``) on a redis-server of
its own, kills and wipes that Redis or kills a worker by PID at the worst moment, and
then replays the same keyed requests: each vote is stored once and every replay gets
the original answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import time
import uuid
from collections.abc import Iterator

import aiohttp
import psycopg2
import pytest
import redis

from tests.servers import RedisInstance

VOTES = 100
IDEM_KEYS = "compere:idem:*"


async def post(session: aiohttp.ClientSession, url: str, body: dict, key: str) -> tuple[int, bytes, dict]:
    """One keyed vote, retried on 503 as every client should (the app's pooled Redis
    connections fail once when Redis restarts)."""
    for _ in range(20):
        async with session.post(url, json=body, headers={"Idempotency-Key": key}) as resp:
            answer = resp.status, await resp.read(), dict(resp.headers)
        if answer[0] != 503:
            break
        await asyncio.sleep(0.1)
    return answer


async def post_all(session: aiohttp.ClientSession, url: str, votes: list[tuple[str, dict]]) -> list[tuple]:
    """Every keyed vote, 8 in flight (enough for group commits, few Redis connects at once)."""
    gate = asyncio.Semaphore(8)

    async def one(key: str, body: dict) -> tuple[int, bytes, dict]:
        async with gate:
            return await post(session, url, body, key)

    return await asyncio.gather(*(one(key, body) for key, body in votes))


async def seed(session: aiohttp.ClientSession, base: str, count: int = 4) -> list[int]:
    ids = []
    for i in range(count):
        async with session.post(f"{base}/entities/", json={"name": f"durable {i}"}) as resp:
            ids.append((await resp.json())["id"])
    return ids


async def stored_log(session: aiohttp.ClientSession, base: str) -> list[dict]:
    async with session.get(f"{base}/comparisons/", params={"limit": 1000}) as resp:
        return await resp.json()


@contextlib.contextmanager
def holding_the_vote_locks(database_url: str, ids: list[int]) -> Iterator[None]:
    """Keep every vote on ``ids`` waiting: their rows locked (PostgreSQL) or the
    database's one write lock held (SQLite)."""
    if database_url.startswith("sqlite"):
        conn = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
            conn.close()
        return
    pg = psycopg2.connect(database_url)
    try:
        with pg.cursor() as cur:
            cur.execute("SELECT id FROM entities WHERE id = ANY(%s) FOR UPDATE", (ids,))
        yield
    finally:
        pg.rollback()
        pg.close()


def idempotency_keys(url: str) -> int:
    with redis.Redis.from_url(url) as client:
        return len(list(client.scan_iter(match=IDEM_KEYS)))


def wait_for_running_key(client: redis.Redis, within: float = 20) -> bytes:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        for key in client.scan_iter(match=IDEM_KEYS):
            value = client.get(key)
            if value and value.startswith(b"running"):
                return key
        time.sleep(0.02)
    raise AssertionError("the request never claimed its key in Redis")


@pytest.mark.slow
async def test_keyed_votes_replayed_after_redis_lost_everything_are_stored_once(
    start_server, own_redis_server
):
    server = start_server(REDIS_URL=own_redis_server.url())
    async with aiohttp.ClientSession() as session:
        ids = await seed(session, server.url)
        votes = [
            (
                str(uuid.uuid4()),
                {"entity1_id": ids[i % 4], "entity2_id": ids[(i + 1) % 4], "selected_entity_id": ids[i % 4]},
            )
            for i in range(VOTES)
        ]
        first = await post_all(session, f"{server.url}/comparisons/", votes)
        assert [status for status, _, _ in first] == [200] * VOTES
        assert idempotency_keys(own_redis_server.url()) == VOTES

        own_redis_server.stop()  # no persistence: it comes back empty, as after a failover
        own_redis_server.start()
        assert idempotency_keys(own_redis_server.url()) == 0

        again = await post_all(session, f"{server.url}/comparisons/", votes)
        for (status, body, headers), (_, original, _) in zip(again, first, strict=True):
            assert status == 200
            assert headers["Idempotent-Replayed"] == "true"
            assert body == original
        log = await stored_log(session, server.url)
    assert sorted(c["id"] for c in log) == sorted(orjson_id(body) for _, body, _ in first)


def orjson_id(body: bytes) -> int:
    import orjson

    return int(orjson.loads(body)["id"])


@pytest.mark.slow
async def test_a_worker_killed_before_its_vote_committed_leaves_nothing_behind(
    start_server, own_redis_server, database_url
):
    env = {"REDIS_URL": own_redis_server.url(), "IDEMPOTENCY_LOCK_TTL": "2", "DB_POOL_TIMEOUT": "30"}
    doomed = start_server(**env)
    spare = start_server(**env)
    watcher = redis.Redis.from_url(own_redis_server.url())
    async with aiohttp.ClientSession() as session, contextlib.AsyncExitStack() as cleanup:
        cleanup.callback(watcher.close)
        ids = await seed(session, doomed.url)
        body = {"entity1_id": ids[0], "entity2_id": ids[1], "selected_entity_id": ids[0]}
        key = str(uuid.uuid4())
        with holding_the_vote_locks(database_url, ids):
            pending = asyncio.ensure_future(post(session, f"{doomed.url}/comparisons/", body, key))
            await asyncio.to_thread(wait_for_running_key, watcher)
            doomed.stop(signal.SIGKILL)  # by its own PID, while it holds the key
            with pytest.raises(aiohttp.ClientError):
                await pending
        # Redis still says "running"; the database knows nothing was stored.
        status, _, headers = await post(session, f"{spare.url}/comparisons/", body, key)
        assert status == 409 and headers["Retry-After"] == "1"
        assert await stored_log(session, spare.url) == []
        await asyncio.sleep(2.2)  # the dead worker's lock expires
        status, answer, _ = await post(session, f"{spare.url}/comparisons/", body, key)
        assert status == 200
        status, replay, headers = await post(session, f"{spare.url}/comparisons/", body, key)
        assert (status, replay, headers["Idempotent-Replayed"]) == (200, answer, "true")
        assert [c["id"] for c in await stored_log(session, spare.url)] == [orjson_id(answer)]


@pytest.mark.slow
async def test_a_worker_killed_after_its_vote_committed_is_answered_from_the_database(
    start_server, database_url
):
    # Redis with persistence (AOF): it keeps the dead worker's "running" lock across its
    # own crash, so only the database can say that the vote was stored.
    store = RedisInstance(persistent=True)
    store.start()
    try:
        env = {"REDIS_URL": store.url(), "IDEMPOTENCY_LOCK_TTL": "600", "DB_POOL_TIMEOUT": "30"}
        doomed = start_server(**env)
        watcher = redis.Redis.from_url(store.url())
        async with aiohttp.ClientSession() as session, contextlib.AsyncExitStack() as cleanup:
            cleanup.callback(watcher.close)
            ids = await seed(session, doomed.url)
            body = {"entity1_id": ids[2], "entity2_id": ids[3], "selected_entity_id": None}
            key = str(uuid.uuid4())
            assert store.process is not None
            with holding_the_vote_locks(database_url, ids):
                pending = asyncio.ensure_future(post(session, f"{doomed.url}/comparisons/", body, key))
                redis_key = await asyncio.to_thread(wait_for_running_key, watcher)
                os.kill(store.process.pid, signal.SIGSTOP)  # Redis hangs: the worker cannot tell it
            status, original, _ = await pending  # committed; the client has its answer
            assert status == 200
            doomed.stop(signal.SIGKILL)  # while it still retries to store the answer in Redis
            store.process.kill()  # and Redis crashes too, then restarts from its log
            store.process.wait(timeout=10)
            store.start()
            assert watcher.get(redis_key).startswith(b"running")

            spare = start_server(**env)
            status, replay, headers = await post(session, f"{spare.url}/comparisons/", body, key)
            assert (status, replay, headers["Idempotent-Replayed"]) == (200, original, "true")
            assert [c["id"] for c in await stored_log(session, spare.url)] == [orjson_id(original)]
    finally:
        store.destroy()
