"""Compere behind a real PgBouncer in ``pool_mode = transaction``.

What a transaction pooler breaks (prepared statements, session settings, session
advisory locks) is either made to work with ``DB_POOLER=pgbouncer`` (no prepared
statements, the statement timeout sent with SET LOCAL, migrations under a
transaction-scoped lock) or refused at start-up with a message naming the setting.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from compere.http.app import create_app
from compere.settings import SettingsError, load_settings
from compere.storage.connect import open_database
from compere.storage.database import DatabaseMisconfigured, DatabaseUnavailable, Query
from tests.helpers import NO_DOTENV
from tests.servers import REPO, PgBouncer, PostgresInstance
from tests.test_concurrency import check_invariants, fire_votes, seed

pytestmark = pytest.mark.slow

_SLEEP = Query(sa.select(sa.func.pg_sleep(1.0)))
_TIMEOUT = Query(sa.select(sa.func.current_setting("statement_timeout").label("t")))


@pytest.fixture(scope="module")
def bouncer() -> Iterator[PgBouncer]:
    server = PostgresInstance(settings={"max_connections": "200"})
    server.start()
    bouncer = PgBouncer(server)
    try:
        bouncer.start()
        yield bouncer
    finally:
        bouncer.destroy()
        server.destroy()


@pytest.fixture
def database(bouncer: PgBouncer, request: pytest.FixtureRequest) -> str:
    """A new database on the server, named for the test; its URL through PgBouncer."""
    name = "ct_" + request.node.name.lower().replace("[", "_").replace("]", "")[:40]
    bouncer.server.sql(f'CREATE DATABASE "{name}"')
    return bouncer.url(name)


def pooled(url: str, **env: str):
    return load_settings(
        {"DATABASE_URL": url, "DB_POOLER": "pgbouncer", "LOG_REQUESTS": "false", **env}, dotenv=NO_DOTENV
    )


async def test_the_default_settings_are_refused_behind_pgbouncer_naming_db_pooler(database: str) -> None:
    # Before: every connection opened, and most votes then failed with
    # "prepared statement ... does not exist" (500) without a word at start-up.
    settings = load_settings({"DATABASE_URL": database}, dotenv=NO_DOTENV)
    with pytest.raises(DatabaseMisconfigured, match="DB_POOLER=pgbouncer"):
        await open_database(settings)


def test_the_command_line_says_which_setting_to_change(database: str) -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "DATABASE_URL": database}
    done = subprocess.run(
        [sys.executable, "-m", "compere", "migrate"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert "set DB_POOLER=pgbouncer" in done.stderr


def test_prepared_statements_cannot_be_asked_for_with_pgbouncer() -> None:
    with pytest.raises(
        SettingsError, match="DB_PREPARED_STATEMENTS=true cannot work with DB_POOLER=pgbouncer"
    ):
        load_settings({"DB_POOLER": "pgbouncer", "DB_PREPARED_STATEMENTS": "true"}, dotenv=NO_DOTENV)
    assert not load_settings({"DB_POOLER": "pgbouncer"}, dotenv=NO_DOTENV).db_prepared_statements


async def test_statement_timeout_holds_through_pgbouncer_and_stays_in_its_transaction(
    bouncer: PgBouncer, database: str
) -> None:
    db = await open_database(pooled(database, DB_STATEMENT_TIMEOUT_MS="200"))
    try:
        assert await db.fetch_value(_TIMEOUT) == "200ms"
        with pytest.raises(DatabaseUnavailable, match="in time"):
            await db.fetch_all(_SLEEP)
        async with db.transaction() as conn:
            assert await conn.fetch_value(_TIMEOUT) == "200ms"
        with pytest.raises(DatabaseUnavailable, match="in time"):
            async with db.transaction() as conn:
                await conn.fetch_all(_SLEEP)
    finally:
        await db.close()
    # SET LOCAL ended with each transaction: the server sessions PgBouncer lends to the
    # next client carry no timeout of ours.
    for _ in range(5):
        assert bouncer.server.sql("SELECT 1") == [(1,)]
    import psycopg2

    plain = psycopg2.connect(database)
    plain.autocommit = True
    with plain.cursor() as cur:
        for _ in range(5):
            cur.execute("SHOW statement_timeout")
            assert cur.fetchone() == ("0",)
    plain.close()


async def test_concurrent_migrations_through_pgbouncer_apply_each_file_once(
    bouncer: PgBouncer, database: str
) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(REPO),
        "DATABASE_URL": database,
        "DB_POOLER": "pgbouncer",
    }
    argv = (sys.executable, "-m", "compere", "migrate")
    pipe = asyncio.subprocess.PIPE
    runs = [await asyncio.create_subprocess_exec(*argv, env=env, stdout=pipe, stderr=pipe) for _ in range(3)]
    outputs = [await run.communicate() for run in runs]
    assert [run.returncode for run in runs] == [0, 0, 0], outputs
    name = database.rsplit("/", 1)[1]
    files = bouncer.server.sql("SELECT filename FROM schema_migrations ORDER BY 1", name)
    assert len(files) == len({f for (f,) in files}) >= 6
    # No advisory lock outlives its transaction on a server session PgBouncer keeps.
    assert bouncer.server.sql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == [(0,)]


async def test_every_query_path_works_through_pgbouncer(aiohttp_client, database: str) -> None:
    client = await aiohttp_client(await create_app(pooled(database), configure_logs=False))
    lines = "\n".join(f'{{"name": "item {i}", "external_id": "x{i}"}}' for i in range(30)).encode()
    resp = await client.post("/entities/import?format=jsonl", data=lines)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["created"] == 30
    for _ in range(20):
        pair = await (await client.get("/mab/next_comparison")).json()
        vote = {
            "entity1_id": pair["entity1"]["id"],
            "entity2_id": pair["entity2"]["id"],
            "selected_entity_id": pair["entity1"]["id"],
            "pair_token": pair["pair_token"],
        }
        resp = await client.post("/comparisons/", json=vote)
        assert resp.status == 200, await resp.text()
    for path in ("/ratings?by=score&limit=5", "/ratings?model=bt&limit=5", "/ratings", "/comparisons/next"):
        resp = await client.get(path)
        assert resp.status == 200, (path, await resp.text())
    resp = await client.get("/export/entities?format=jsonl")
    assert resp.status == 200
    assert len((await resp.text()).splitlines()) == 30
    resp = await client.get("/export/comparisons?format=csv")
    assert len((await resp.text()).splitlines()) == 21


async def test_two_instances_through_pgbouncer_lose_no_vote(aiohttp_server, database: str) -> None:
    servers = [
        await aiohttp_server(await create_app(pooled(database, DB_POOL_MAX="10"), configure_logs=False))
        for _ in range(2)
    ]
    urls = [str(s.make_url("")).rstrip("/") for s in servers]
    ids = await seed(urls[0])
    acknowledged = await fire_votes(urls, ids, seed=19)
    await check_invariants(urls[1], acknowledged)


def test_rebuilding_ratings_through_pgbouncer_locks_in_its_transaction(database: str) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(REPO),
        "DATABASE_URL": database,
        "DB_POOLER": "pgbouncer",
    }
    for command in (["migrate"], ["rebuild-ratings"]):
        done = subprocess.run(
            [sys.executable, "-m", "compere", *command], env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
