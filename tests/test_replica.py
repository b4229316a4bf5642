"""Reads that may be stale go to a real streaming replica (``pg_basebackup -R`` of a
PostgreSQL instance the test initialises), and back to the primary when the replica
lags or is down; votes and read-after-write always use the primary."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from compere.http.app import create_app
from compere.settings import load_settings
from compere.storage.replica import ReplicaLag, parse_lsn
from tests.helpers import NO_DOTENV
from tests.servers import PostgresInstance

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def primary_and_replica() -> Iterator[tuple[PostgresInstance, PostgresInstance]]:
    primary = PostgresInstance()
    primary.start()
    replica = None
    try:
        replica = PostgresInstance(replica_of=primary)
        replica.start()
        yield primary, replica
    finally:
        if replica is not None:
            replica.destroy()
        primary.destroy()


@pytest.fixture
def databases(primary_and_replica, request: pytest.FixtureRequest) -> tuple[str, str]:
    """A new database on the primary, and its URL on the replica once replayed there."""
    primary, replica = primary_and_replica
    name = "ct_" + request.node.name.lower()[:40]
    primary.sql(f'CREATE DATABASE "{name}"')
    deadline = time.monotonic() + 20
    while not replica.sql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'"):
        assert time.monotonic() < deadline, "the replica did not replay CREATE DATABASE"
        time.sleep(0.05)
    return primary.url(name), replica.url(name)


async def _app(aiohttp_client, primary_url: str, replica_url: str, **env: str):
    settings = load_settings(
        {
            "DATABASE_URL": primary_url,
            "DATABASE_REPLICA_URL": replica_url,
            "REPLICA_MAX_LAG_SECONDS": "1",
            "REPLICA_CHECK_INTERVAL": "0.1",
            "READY_CACHE_SECONDS": "0",
            "METRICS_ENABLED": "true",
            "LOG_REQUESTS": "false",
            **env,
        },
        dotenv=NO_DOTENV,
    )
    return await aiohttp_client(await create_app(settings, configure_logs=False))


async def _names(client) -> set[str]:
    resp = await client.get("/entities/")
    assert resp.status == 200
    return {e["name"] for e in await resp.json()}


async def _until(predicate, within: float, what: str):
    deadline = time.monotonic() + within
    while True:
        result = await predicate()
        if result:
            return result
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


async def _replica_status(client) -> dict:
    resp = await client.get("/health/ready")
    assert resp.status == 200  # a lagging or missing replica never makes the app unready
    return (await resp.json())["replica"]


async def test_lists_come_from_the_replica_until_it_lags_then_from_the_primary(
    aiohttp_client, databases, primary_and_replica
) -> None:
    _, replica = primary_and_replica
    client = await _app(aiohttp_client, *databases)
    assert (await client.post("/entities/", json={"name": "first"})).status == 200
    await _until(lambda: _names_include(client, "first"), 10, "the replica never showed the entity")
    assert (await _replica_status(client))["status"] == "ok"

    replica.sql("SELECT pg_wal_replay_pause()")
    try:
        resp = await client.post("/entities/", json={"name": "second"})
        assert resp.status == 200
        created = await resp.json()
        # Read-after-write of the entity itself: the primary.
        assert (await client.get(f"/entities/{created['id']}")).status == 200
        # The list is the replica's, which has not replayed it (lag still under 1 s).
        assert "second" not in await _names(client)
        # Once the replica lags beyond REPLICA_MAX_LAG_SECONDS, lists come from the primary.
        await _until(lambda: _names_include(client, "second"), 10, "lists never fell back to the primary")
        status = await _replica_status(client)
        assert status["status"] == "lagging" and status["lag_seconds"] > 1, status
        metrics = await (await client.get("/metrics")).text()
        assert "compere_db_replica_in_use 0.0" in metrics
        lag_line = next(
            line for line in metrics.splitlines() if line.startswith("compere_db_replica_lag_seconds ")
        )
        assert float(lag_line.split()[1]) > 1
    finally:
        replica.sql("SELECT pg_wal_replay_resume()")
    await _until(lambda: _status_is(client, "ok"), 10, "the replica was not used again after catching up")
    assert "compere_db_replica_in_use 1.0" in await (await client.get("/metrics")).text()


async def _names_include(client, name: str) -> bool:
    return name in await _names(client)


async def _status_is(client, status: str) -> bool:
    return (await _replica_status(client))["status"] == status


async def test_replica_down_under_load_answers_only_200_or_503_and_loses_no_vote(
    aiohttp_client, databases, primary_and_replica
) -> None:
    primary, replica = primary_and_replica
    client = await _app(aiohttp_client, *databases)
    ids = []
    for i in range(12):
        resp = await client.post("/entities/", json={"name": f"e{i}"})
        ids.append((await resp.json())["id"])
    await _until(lambda: _status_is(client, "ok"), 10, "the replica was never in use")

    rng = random.Random(5)
    statuses: Counter[tuple[str, int]] = Counter()
    acknowledged: list[int] = []
    gate = asyncio.Semaphore(16)
    loop = asyncio.get_running_loop()

    async def one(i: int) -> None:
        kind = ("vote", "board", "list", "pair")[i % 4]
        async with gate:
            if kind == "vote":
                a, b = rng.sample(ids, 2)
                resp = await client.post(
                    "/comparisons/", json={"entity1_id": a, "entity2_id": b, "selected_entity_id": a}
                )
                if resp.status == 200:
                    acknowledged.append((await resp.json())["id"])
            else:
                path = {
                    "board": "/ratings?by=score&limit=10",
                    "list": "/entities/",
                    "pair": "/mab/next_comparison",
                }[kind]
                resp = await client.get(path)
                await resp.read()
            statuses[(kind, resp.status)] += 1

    async def stop_replica_midway() -> None:
        await asyncio.sleep(0.5)
        await loop.run_in_executor(None, replica.stop, "immediate")

    try:
        await asyncio.gather(stop_replica_midway(), *(one(i) for i in range(1200)))
        assert {status for _, status in statuses} <= {200, 503}, statuses
        assert statuses[("list", 200)] > 0 and statuses[("vote", 200)] > 0
        status = await _replica_status(client)
        assert status["status"] == "unavailable", status
        # Lists still answer, from the primary.
        assert (await client.get("/entities/")).status == 200
    finally:
        if replica.pid() is None:
            await loop.run_in_executor(None, replica.start)
    # Nothing lost: every acknowledged vote is in the primary exactly once, no other.
    name = databases[0].rsplit("/", 1)[1]
    stored = [row[0] for row in primary.sql("SELECT id FROM comparisons", name)]
    assert sorted(stored) == sorted(acknowledged)
    total = primary.sql("SELECT sum(rating) FROM entities", name)[0][0]
    assert total == pytest.approx(12 * 1500.0)
    # The replica comes back into use without restarting Compere.
    await _until(lambda: _status_is(client, "ok"), 20, "the restarted replica was not used again")


async def test_without_a_replica_setting_reads_use_the_one_database(aiohttp_client, databases) -> None:
    settings = load_settings({"DATABASE_URL": databases[0], "LOG_REQUESTS": "false"}, dotenv=NO_DOTENV)
    client = await aiohttp_client(await create_app(settings, configure_logs=False))
    body = await (await client.get("/health/ready")).json()
    assert "replica" not in body and "replica" not in body["checks"]


def test_a_replica_needs_postgresql() -> None:
    from compere.settings import SettingsError

    with pytest.raises(SettingsError, match="DATABASE_REPLICA_URL"):
        load_settings({"DATABASE_REPLICA_URL": "sqlite:///x.db"}, dotenv=NO_DOTENV)
    with pytest.raises(SettingsError, match="DATABASE_REPLICA_URL needs a PostgreSQL DATABASE_URL"):
        load_settings(
            {"DATABASE_URL": "sqlite:///x.db", "DATABASE_REPLICA_URL": "postgresql://u@h/db"},
            dotenv=NO_DOTENV,
        )


def test_lag_is_the_age_of_the_newest_primary_position_the_replica_has_replayed() -> None:
    now = [100.0]
    lag = ReplicaLag(clock=lambda: now[0])
    lag.note_primary(10)
    assert lag.lag(5) == 0.0  # behind every noted position: at least as old as the oldest
    assert parse_lsn("16/B374D848") == (0x16 << 32) | 0xB374D848
    lag.note_primary(10)
    now[0] = 101.0
    lag.note_primary(20)
    now[0] = 102.0
    lag.note_primary(30)
    now[0] = 102.5
    assert lag.lag(20) == 1.5  # it has what the primary had at 101.0
    assert lag.lag(30) == 0.5
    now[0] = 110.0
    assert lag.lag(30) == 8.0  # no newer position noted: still caught up as of 102.0
