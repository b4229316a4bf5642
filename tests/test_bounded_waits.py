"""Every wait on PostgreSQL is bounded and ends in a clean JSON 503, never a hang or a cut.

A statement past ``DB_STATEMENT_TIMEOUT_MS`` (aiopg reports it as a CancelledError) and a
pool with no free connection within ``DB_POOL_TIMEOUT`` both answer 503 with
``Retry-After`` and a message that names the database and nothing of its internals.
"""

from __future__ import annotations

import time

import psycopg2
import pytest
from aiohttp import web

from compere.http.app import create_app
from compere.http.keys import DATABASE
from compere.settings import load_settings
from tests.helpers import NO_DOTENV, empty_postgres

INTERNALS = ("psycopg", "aiopg", "pg_sleep", "select", "cancelled", "traceback", "statement_timeout", "pool")


@pytest.fixture
def pg_url(shared_postgres_url: str) -> str:
    empty_postgres(shared_postgres_url)
    return shared_postgres_url


async def postgres_client(aiohttp_client, url: str, *, routes=(), **env: str):
    settings = load_settings({"DATABASE_URL": url, **env}, dotenv=NO_DOTENV)
    app = await create_app(settings, configure_logs=False)
    for method, path, handler in routes:
        app.router.add_route(method, path, handler)
    return await aiohttp_client(app)


async def assert_clean_503(resp) -> str:
    assert resp.status == 503
    assert resp.headers["Content-Type"].startswith("application/json")
    assert resp.headers["Retry-After"] == "1"
    body = await resp.json()
    detail = body["detail"]
    assert "database" in detail.lower()
    assert not any(word in detail.lower() for word in INTERNALS), detail
    assert body["request_id"] == resp.headers["X-Request-ID"]
    return detail


async def test_a_query_past_the_statement_timeout_is_a_json_503(aiohttp_client, pg_url):
    async def slow(request: web.Request) -> web.Response:  # test-only route
        await request.app[DATABASE].raw("SELECT pg_sleep(5)")
        return web.json_response({})

    client = await postgres_client(
        aiohttp_client, pg_url, routes=[("GET", "/slow", slow)], DB_STATEMENT_TIMEOUT_MS="200"
    )
    started = time.monotonic()
    resp = await client.get("/slow")
    assert time.monotonic() - started < 3
    await assert_clean_503(resp)
    # The connection that timed out is not handed to the next request in a broken state.
    for _ in range(3):
        assert (await client.get("/entities/")).status == 200


async def test_a_vote_stuck_behind_a_row_lock_is_a_503_and_writes_nothing(aiohttp_client, pg_url):
    client = await postgres_client(aiohttp_client, pg_url, DB_STATEMENT_TIMEOUT_MS="300")
    ids = [(await (await client.post("/entities/", json={"name": n})).json())["id"] for n in "ab"]
    blocker = psycopg2.connect(pg_url)
    try:
        with blocker.cursor() as cur:
            cur.execute("SELECT id FROM entities WHERE id = %s FOR UPDATE", (ids[1],))
        started = time.monotonic()
        resp = await client.post(
            "/comparisons/", json={"entity1_id": ids[0], "entity2_id": ids[1], "selected_entity_id": ids[0]}
        )
        elapsed = time.monotonic() - started
        await assert_clean_503(resp)
        assert elapsed < 3
    finally:
        blocker.rollback()
        blocker.close()
    assert await (await client.get("/comparisons/")).json() == []
    board = await (await client.get("/ratings")).json()
    assert [(e["rating"], e["comparisons"]) for e in board] == [(1500.0, 0), (1500.0, 0)]
    ok = await client.post(
        "/comparisons/", json={"entity1_id": ids[0], "entity2_id": ids[1], "selected_entity_id": ids[0]}
    )
    assert ok.status == 200


async def test_an_exhausted_pool_answers_503_within_the_pool_timeout(aiohttp_client, pg_url):
    client = await postgres_client(
        aiohttp_client,
        pg_url,
        DB_POOL_MIN="1",
        DB_POOL_MAX="1",
        DB_POOL_TIMEOUT="0.5",
        READY_CACHE_SECONDS="0",
    )
    db = client.server.app[DATABASE]
    async with db.session():  # the only connection is taken
        started = time.monotonic()
        resp = await client.get("/entities/")
        elapsed = time.monotonic() - started
        await assert_clean_503(resp)
        assert 0.4 < elapsed < 2.5
        ready = await client.get("/health/ready")
        assert ready.status == 503
        assert (await ready.json())["checks"]["database"] == "unavailable"
    assert (await client.get("/entities/")).status == 200
    assert (await client.get("/health/ready")).status == 200
