"""The per-voter daily cap across two gunicorn workers: 50 votes sent at once by one
anonymous voter (one cookie) store exactly the cap, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import collections
import sqlite3
from pathlib import Path

import aiohttp
import psycopg2
import pytest

from tests.helpers import TEST_SECRET_KEY
from tests.servers import app_environment, migrate, start_gunicorn, stop_process

CAP = 10


def set_daily_cap(database_url: str, cap: int) -> None:
    statement = f"UPDATE projects SET daily_vote_cap = {int(cap)} WHERE slug = 'default'"
    if database_url.startswith("sqlite"):
        with sqlite3.connect(database_url.removeprefix("sqlite:///")) as conn:
            conn.execute(statement)
        return
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute(statement)
    conn.close()


@pytest.fixture
def two_workers(database_url: str, tmp_path: Path):
    """Two gunicorn workers on a database whose default project has a daily cap of CAP
    (set before the workers start, so no worker holds the old settings)."""
    migrate(app_environment(tmp_path, DATABASE_URL=database_url))
    set_daily_cap(database_url, CAP)
    # One SECRET_KEY for both workers, as in production: each signs and checks the other's
    # voter cookies (without one, each worker would use a random key of its own).
    server = start_gunicorn(tmp_path, workers=2, DATABASE_URL=database_url, SECRET_KEY=TEST_SECRET_KEY)
    yield server
    stop_process(server.proc)


async def test_fifty_votes_at_once_from_one_voter_store_exactly_the_cap(two_workers, database_url):
    base = f"http://127.0.0.1:{two_workers.port}"
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as voter:
        ids = []
        for name in ("a", "b"):
            async with voter.post(f"{base}/entities/", json={"name": name}) as resp:
                assert resp.status == 200, await resp.text()
                ids.append((await resp.json())["id"])
        vote = {"entity1_id": ids[0], "entity2_id": ids[1], "selected_entity_id": ids[0]}
        async with voter.post(f"{base}/comparisons/", json=vote) as resp:  # the cookie comes back
            assert resp.status == 200
        assert any(c.key == "compere_voter" for c in voter.cookie_jar)

        async def one() -> int:
            async with voter.post(f"{base}/comparisons/", json=vote) as resp:
                await resp.read()
                return resp.status

        statuses = await asyncio.gather(*(one() for _ in range(50)))
    assert sorted(statuses) == [200] * (CAP - 1) + [429] * (50 - CAP + 1), collections.Counter(statuses)
    async with aiohttp.ClientSession() as other:  # another voter is not affected
        async with other.post(f"{base}/comparisons/", json=vote) as resp:
            assert resp.status == 200
        async with other.get(f"{base}/export/comparisons?format=jsonl") as resp:
            lines = (await resp.text()).splitlines()
    assert len(lines) == CAP + 1
    # Both workers answered (the master spreads connections; the cap is in the database).
    pids = {line for line in two_workers.log_lines() if "database ready" in line}
    assert len(pids) >= 2
