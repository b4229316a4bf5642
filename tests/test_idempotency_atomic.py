"""A keyed create and the record of its answer commit in one transaction, on both
backends: ``POST /entities/`` and ``POST /auth/users/`` as the votes do.

No mocks: Redis is really emptied, the record's insert is really refused by a trigger
in the test database (a failure after the write and before the commit), and two
servers without a shared Redis really race with one key.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator

import psycopg2
import sqlalchemy as sa

from compere.http.keys import DATABASE
from compere.storage.database import Query
from compere.storage.tables import entities, idempotency_records, users
from tests.helpers import ADMIN, RedisRole, bearer, delete_redis_keys, log_in, sign_up
from tests.test_idempotency import writes_blocked

REFUSE_ANSWERS = {
    "sqlite": """
        CREATE TRIGGER refuse_answers BEFORE INSERT ON idempotency_records
        BEGIN SELECT RAISE(ABORT, 'answers refused by the test'); END;
    """,
    "postgresql": """
        CREATE FUNCTION refuse_answers() RETURNS trigger LANGUAGE plpgsql AS
            $$ BEGIN RAISE EXCEPTION 'answers refused by the test'; END $$;
        CREATE TRIGGER refuse_answers BEFORE INSERT ON idempotency_records
            FOR EACH ROW EXECUTE FUNCTION refuse_answers();
    """,
}
ALLOW_ANSWERS = {
    "sqlite": "DROP TRIGGER refuse_answers;",
    "postgresql": "DROP TRIGGER refuse_answers ON idempotency_records; DROP FUNCTION refuse_answers();",
}


def _empty_redis(role: RedisRole) -> None:
    """Forget every idempotency answer Redis holds (the database keeps its records)."""
    delete_redis_keys(role.url, f"{role.key_prefix}idem:")


async def _count(client, table) -> int:
    return int(await client.app[DATABASE].fetch_value(Query(sa.select(sa.func.count()).select_from(table))))


async def test_a_keyed_entity_is_replayed_from_the_database_after_redis_lost_it(
    make_client, idempotency_redis
):
    client = await make_client(**idempotency_redis.env())
    headers = {"Idempotency-Key": str(uuid.uuid4())}
    first = await client.post("/entities/", json={"name": "once"}, headers=headers)
    assert first.status == 200, await first.text()
    assert await _count(client, idempotency_records) == 1
    _empty_redis(idempotency_redis)
    again = await client.post("/entities/", json={"name": "once"}, headers=headers)
    assert again.status == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await again.read() == await first.read()
    assert await _count(client, entities) == 1


async def test_a_keyed_user_is_replayed_from_the_database_after_redis_lost_it(make_auth_client, auth_redis):
    client = await make_auth_client()
    assert (await sign_up(client, *ADMIN)).status == 200
    admin = await log_in(client, *ADMIN)
    headers = {**bearer(admin), "Idempotency-Key": str(uuid.uuid4())}
    body = {"username": "bob", "password": "amber-falcon-ledger-58"}
    try:
        first = await client.post("/auth/users/", json=body, headers=headers)
        assert first.status == 200, await first.text()
        _empty_redis(auth_redis)
        again = await client.post("/auth/users/", json=body, headers=headers)
        assert again.status == 200, await again.text()
        assert again.headers["Idempotent-Replayed"] == "true"
        assert await again.read() == await first.read()
        assert await _count(client, users) == 2
    finally:
        _empty_redis(auth_redis)


async def test_a_failure_after_the_entity_write_stores_neither_entity_nor_record(
    make_client, idempotency_redis
):
    client = await make_client(**idempotency_redis.env())
    db = client.app[DATABASE]
    headers = {"Idempotency-Key": str(uuid.uuid4())}
    await db.execute_script(REFUSE_ANSWERS[db.name])
    refused = await client.post("/entities/", json={"name": "half"}, headers=headers)
    assert refused.status >= 400
    assert await _count(client, entities) == 0  # the entity went with its record
    assert await _count(client, idempotency_records) == 0
    # The retry runs the write again, once, and is then answered from the record.
    await db.execute_script(ALLOW_ANSWERS[db.name])
    retried = await client.post("/entities/", json={"name": "half"}, headers=headers)
    assert retried.status == 200, await retried.text()
    assert "Idempotent-Replayed" not in retried.headers
    assert await _count(client, entities) == 1
    assert await _count(client, idempotency_records) == 1


async def test_a_failure_after_the_user_write_stores_neither_user_nor_record(make_auth_client, auth_redis):
    client = await make_auth_client()
    db = client.app[DATABASE]
    assert (await sign_up(client, *ADMIN)).status == 200
    admin = await log_in(client, *ADMIN)
    headers = {**bearer(admin), "Idempotency-Key": str(uuid.uuid4())}
    body = {"username": "carol", "password": "amber-falcon-ledger-58"}
    try:
        await db.execute_script(REFUSE_ANSWERS[db.name])
        refused = await client.post("/auth/users/", json=body, headers=headers)
        assert refused.status >= 400
        assert await _count(client, users) == 1
        await db.execute_script(ALLOW_ANSWERS[db.name])
        retried = await client.post("/auth/users/", json=body, headers=headers)
        assert retried.status == 200, await retried.text()
        assert await _count(client, users) == 2
        assert await _count(client, idempotency_records) == 1
    finally:
        _empty_redis(auth_redis)


@contextlib.contextmanager
def answers_held(database_url: str) -> Iterator[None]:
    """Make every keyed write wait at the record of its answer: the database's one write
    lock (SQLite, so both requests wait before writing) or a lock on the answers' table
    (PostgreSQL, so both write their entity and wait at the record; closing the
    connection ends its transaction)."""
    if database_url.startswith("sqlite"):
        with writes_blocked(database_url):
            yield
        return
    with contextlib.closing(psycopg2.connect(database_url)) as pg:
        pg.cursor().execute("LOCK TABLE idempotency_records IN SHARE MODE")
        yield


async def test_two_servers_racing_with_one_key_create_one_entity(make_client, database_url):
    """Each server has its own in-process store (no shared Redis), so only the database
    can tell that the second request is a retry of the first."""
    first_server, second_server = await make_client(), await make_client()
    headers = {"Idempotency-Key": str(uuid.uuid4())}
    with answers_held(database_url):
        racing = [
            asyncio.ensure_future(server.post("/entities/", json={"name": "raced"}, headers=headers))
            for server in (first_server, second_server)
        ]
        await asyncio.sleep(0.5)  # both past their checks, waiting on the database
        assert not any(task.done() for task in racing)
    answers = await asyncio.gather(*racing)
    assert [a.status for a in answers] == [200, 200], [await a.text() for a in answers]
    bodies = [await a.read() for a in answers]
    assert bodies[0] == bodies[1]
    assert sum(a.headers.get("Idempotent-Replayed") == "true" for a in answers) == 1
    assert await _count(first_server, entities) == 1
