"""Concurrent votes never lose or double-count a rating update.

Elo is zero-sum, so however the votes interleave the ratings must add up to
``N * initial``; every acknowledged vote must be stored exactly once, and the
per-entity counters must agree with the log.
"""

from __future__ import annotations

import asyncio
import random

import aiohttp
import pytest

from compere.http.app import create_app
from compere.settings import load_settings
from tests.helpers import NO_DOTENV, empty_postgres

ENTITIES = 20
VOTES = 2000
IN_FLIGHT = 50


async def fire_votes(base_urls: list[str], entity_ids: list[int], seed: int) -> list[dict]:
    rng = random.Random(seed)
    plan = []
    for i in range(VOTES):
        a, b = rng.sample(entity_ids, 2)
        plan.append((base_urls[i % len(base_urls)], a, b, rng.choice([a, b, b, a, None])))
    gate = asyncio.Semaphore(IN_FLIGHT)
    acknowledged: list[dict] = []

    async def one(session: aiohttp.ClientSession, url: str, a: int, b: int, winner: int | None) -> None:
        async with gate:
            body = {"entity1_id": a, "entity2_id": b, "selected_entity_id": winner}
            async with session.post(f"{url}/comparisons/", json=body) as resp:
                assert resp.status == 200, await resp.text()
                acknowledged.append(await resp.json())

    connector = aiohttp.TCPConnector(limit=IN_FLIGHT)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(one(session, *step) for step in plan))
    return acknowledged


async def check_invariants(base_url: str, acknowledged: list[dict]) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base_url}/ratings") as resp:
            board = await resp.json()
        stored: list[dict] = []
        skip = 0
        while True:
            async with session.get(f"{base_url}/comparisons/", params={"skip": skip, "limit": 1000}) as resp:
                page = await resp.json()
            stored += page
            skip += len(page)
            if len(page) < 1000:
                break
    assert len(acknowledged) == VOTES
    assert sorted(c["id"] for c in stored) == sorted(c["id"] for c in acknowledged)  # each exactly once
    assert sum(e["rating"] for e in board) == pytest.approx(ENTITIES * 1500.0, abs=1e-6)
    assert sum(e["comparisons"] for e in board) == 2 * VOTES
    wins = sum(e["wins"] for e in board)
    ties = sum(e["ties"] for e in board)
    assert wins == sum(1 for c in stored if c["selected_entity_id"] is not None)
    assert ties == 2 * sum(1 for c in stored if c["selected_entity_id"] is None)


async def seed(base_url: str) -> list[int]:
    async with aiohttp.ClientSession() as session:
        ids = []
        for i in range(ENTITIES):
            async with session.post(f"{base_url}/entities/", json={"name": f"e{i}"}) as resp:
                ids.append((await resp.json())["id"])
    return ids


@pytest.mark.slow
async def test_two_instances_on_one_postgres_lose_nothing(aiohttp_server, shared_postgres_url):
    empty_postgres(shared_postgres_url)
    settings = load_settings(
        {"DATABASE_URL": shared_postgres_url, "LOG_REQUESTS": "false", "DB_POOL_MAX": "10"}, dotenv=NO_DOTENV
    )
    servers = [await aiohttp_server(await create_app(settings, configure_logs=False)) for _ in range(2)]
    urls = [str(s.make_url("")).rstrip("/") for s in servers]
    ids = await seed(urls[0])
    acknowledged = await fire_votes(urls, ids, seed=7)
    await check_invariants(urls[1], acknowledged)


@pytest.mark.slow
async def test_one_instance_on_sqlite_loses_nothing(aiohttp_server, tmp_path):
    settings = load_settings(
        {"DATABASE_URL": f"sqlite:///{tmp_path / 'c.db'}", "LOG_REQUESTS": "false"}, dotenv=NO_DOTENV
    )
    server = await aiohttp_server(await create_app(settings, configure_logs=False))
    url = str(server.make_url("")).rstrip("/")
    ids = await seed(url)
    acknowledged = await fire_votes([url], ids, seed=11)
    await check_invariants(url, acknowledged)
