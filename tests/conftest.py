"""Shared fixtures (only fixtures: plain helpers and constants are in ``tests/helpers.py``,
processes the tests start in ``tests/servers.py``). Every HTTP test runs against SQLite
and a real PostgreSQL.

PostgreSQL comes from ``COMPERE_TEST_POSTGRES_URL`` (default: the local server as
user postgres). Each test session creates its own database and drops it at the end;
tests never skip because the server is missing, they fail and say why.
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from compere.http.app import create_app
from compere.http.keys import CLOCK
from compere.settings import Settings, load_settings
from tests.helpers import (
    ADMIN,
    ADMIN_URL,
    ALICE,
    AUTH_ENV,
    DB_PREFIX,
    FULL_STACK,
    NO_DOTENV,
    FakeClock,
    RedisRole,
    admin_connection,
    delete_redis_keys,
    empty_postgres,
    log_in,
    redis_roles,
    sign_up,
    with_database,
)
from tests.servers import (
    CompereProcess,
    FullStack,
    PostgresInstance,
    RedisClusterSet,
    RedisInstance,
    RedisSentinelSet,
    free_port,
)
from tests.webhook_helpers import Receiver


@pytest.fixture(scope="session")
def full_stack() -> Iterator[FullStack | None]:
    """With ``COMPERE_TEST_FULL_STACK=1``: PgBouncer (transaction mode) in front of a
    PostgreSQL primary with a synchronous streaming replica, all the session's own
    (tests/servers.py); the PostgreSQL tests then run through it. Otherwise None."""
    if not FULL_STACK:
        yield None
        return
    stack = FullStack().start()
    # Commands and servers the tests start from the environment go through PgBouncer too.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DB_POOLER", "pgbouncer")
        yield stack
    stack.destroy()


@pytest.fixture(scope="session")
def postgres_factory(full_stack: FullStack | None) -> Iterator[Callable[[], str]]:
    """Creates throw-away PostgreSQL databases; drops them all when the session ends."""
    created: list[str] = []

    def connect_admin() -> psycopg2.extensions.connection:
        if full_stack is None:
            return admin_connection()
        conn = psycopg2.connect(full_stack.admin_url(), connect_timeout=5)
        conn.autocommit = True
        return conn

    def create() -> str:
        name = f"{DB_PREFIX}_{os.getpid()}_{secrets.token_hex(4)}"
        conn = connect_admin()
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        conn.close()
        created.append(name)
        return with_database(ADMIN_URL, name) if full_stack is None else full_stack.url(name)

    yield create
    if full_stack is not None:
        return  # the whole stack goes away with its folders
    conn = admin_connection()
    with conn.cursor() as cur:
        for name in created:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()


@pytest.fixture(scope="session")
def shared_postgres_url(postgres_factory: Callable[[], str]) -> str:
    return postgres_factory()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        if FULL_STACK:
            pytest.skip("the full-stack run repeats the PostgreSQL variants only")
        return f"sqlite:///{tmp_path / 'compere.db'}"
    url: str = request.getfixturevalue("shared_postgres_url")
    empty_postgres(url)
    return url


@pytest.fixture
def empty_database(
    database_url: str, tmp_path: Path, postgres_factory: Callable[[], str]
) -> Callable[[], str]:
    """Makes more databases on the test's backend, each new and empty (the app and the
    CLI apply the schema when they start): another deployment, an import's target."""
    made = 0

    def make() -> str:
        nonlocal made
        made += 1
        if database_url.startswith("sqlite"):
            return f"sqlite:///{tmp_path / f'other-{made}.db'}"
        return postgres_factory()

    return make


@pytest.fixture
def make_settings(database_url: str, full_stack: FullStack | None) -> Callable[..., Settings]:
    """Settings for the current backend, from environment-style overrides (through
    PgBouncer and the replica in a full-stack run)."""

    def make(**env: str) -> Settings:
        url = env.get("DATABASE_URL", database_url)
        stack_env = full_stack.app_env(url) if full_stack is not None else {}
        return load_settings({"DATABASE_URL": url, **stack_env, **env}, dotenv=NO_DOTENV)

    return make


@pytest.fixture
def make_client(aiohttp_client: Callable[..., object], make_settings: Callable[..., Settings]):
    """Start an app with the given settings overrides and return a test client for it;
    ``clock`` (e.g. the ``clock`` fixture) replaces the app's wall clock."""

    async def make(
        app: web.Application | None = None, clock: Callable[[], float] | None = None, **env: str
    ) -> TestClient:
        app = app or await create_app(make_settings(**env), configure_logs=False)
        if clock is not None:
            app[CLOCK] = clock
        return await aiohttp_client(app)  # type: ignore[operator, no-any-return]

    return make


@pytest.fixture
def clock() -> FakeClock:
    """A wall clock that moves only when the test advances it (pass it to ``make_client``)."""
    return FakeClock()


@pytest.fixture
async def client(make_client: Callable[..., object]) -> AsyncIterator[TestClient]:
    yield await make_client()  # type: ignore[operator]


@pytest.fixture
def create_entities(client: TestClient) -> Callable[..., object]:
    async def create(count: int, prefix: str = "item") -> list[dict[str, object]]:
        made = []
        for i in range(count):
            resp = await client.post(
                "/entities/", json={"name": f"{prefix} {i}", "description": f"about {i}"}
            )
            assert resp.status == 200, await resp.text()
            made.append(await resp.json())
        return made

    return create


# --- authentication ------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_by_role(full_stack: FullStack | None) -> dict[str, RedisRole]:
    """Where each kind of test keeps its Redis keys (tests/helpers.py, ``redis_roles``):
    in a full-stack run all in the session's own Redis Cluster, one key prefix each."""
    return redis_roles(full_stack.redis_url() if full_stack is not None else None)


@pytest.fixture
def auth_redis(redis_by_role: dict[str, RedisRole]) -> Iterator[RedisRole]:
    """The auth tests' Redis, with Compere's auth keys cleared around each test."""
    import redis

    role = redis_by_role["auth"]
    auth_keys = f"{role.key_prefix}auth:"
    try:
        delete_redis_keys(role.url, auth_keys)
    except (redis.exceptions.ConnectionError, redis.exceptions.RedisClusterException) as exc:
        pytest.fail(f"Redis is required for the auth tests at {role.url}: {exc}", pytrace=False)
    yield role
    delete_redis_keys(role.url, auth_keys)


@pytest.fixture
def make_auth_client(make_client: Callable[..., object], auth_redis: RedisRole) -> Callable[..., object]:
    """A test client with authentication on (the auth tests' Redis, low bcrypt cost)."""

    async def make(clock: Callable[[], float] | None = None, **env: str) -> TestClient:
        settings = {**AUTH_ENV, **auth_redis.env(), **env}
        return await make_client(clock=clock, **settings)  # type: ignore[operator, no-any-return]

    return make


@pytest.fixture
async def admin_and_alice(make_auth_client: Callable[..., object]):
    """An auth-enabled client, its first user (a superuser) and a regular user, with tokens."""
    client = await make_auth_client()  # type: ignore[operator]
    assert (await sign_up(client, *ADMIN)).status == 200
    admin_token = await log_in(client, *ADMIN)
    resp = await sign_up(client, *ALICE, token=admin_token)
    assert resp.status == 200, await resp.text()
    alice_token = await log_in(client, *ALICE)
    return client, admin_token, alice_token


# ---------------------------------------------------------------- Redis (rate limiting)


@pytest.fixture
def ratelimit_redis(redis_by_role: dict[str, RedisRole]) -> RedisRole:
    """The rate-limit tests' Redis (each test keeps to ``ratelimit_redis_prefix`` in it)."""
    return redis_by_role["ratelimit"]


@pytest.fixture
def ratelimit_redis_prefix(ratelimit_redis: RedisRole) -> Iterator[str]:
    """A key prefix unique to this test; its keys are deleted afterwards."""
    prefix = f"{ratelimit_redis.key_prefix}test:rl:{uuid.uuid4().hex[:12]}:"
    yield prefix
    delete_redis_keys(ratelimit_redis.url, prefix)


@pytest.fixture
def idempotency_redis(redis_by_role: dict[str, RedisRole]) -> Iterator[RedisRole]:
    """The idempotency tests' Redis; the stored answers are deleted afterwards."""
    role = redis_by_role["idempotency"]
    yield role
    delete_redis_keys(role.url, f"{role.key_prefix}idem:")


@pytest.fixture
def own_redis_server() -> Iterator[RedisInstance]:
    """A redis-server of the test's own without persistence (tests/servers.py): stopping
    and starting it again on the same port empties it."""
    server = RedisInstance(persistent=False)
    server.start()
    try:
        yield server
    finally:
        server.destroy()


def _started(servers: RedisClusterSet | RedisSentinelSet) -> Iterator[Any]:
    try:
        servers.start()
        yield servers
    finally:
        servers.destroy()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterSet]:
    """A Redis Cluster (3 masters, 1 replica each) shared by the tests that do not harm it."""
    yield from _started(RedisClusterSet())


@pytest.fixture
def own_redis_cluster() -> Iterator[RedisClusterSet]:
    """A Redis Cluster of the test's own, which it may kill nodes of."""
    yield from _started(RedisClusterSet())


@pytest.fixture
def own_redis_sentinels() -> Iterator[RedisSentinelSet]:
    """A master, a replica and three Sentinels of the test's own."""
    yield from _started(RedisSentinelSet())


@pytest.fixture
def dead_redis_url() -> str:
    """A Redis URL where nothing listens."""
    return f"redis://127.0.0.1:{free_port()}/0"


@pytest.fixture
def own_postgres() -> Iterator[PostgresInstance]:
    """A PostgreSQL server of the test's own (tests/servers.py), safe to stop and start."""
    server = PostgresInstance()
    server.start()
    yield server
    server.destroy()


# ---------------------------------------------------------------- real server processes


@pytest.fixture
def start_server(
    database_url: str, tmp_path: Path, full_stack: FullStack | None, redis_by_role: dict[str, RedisRole]
) -> Iterator[Callable[..., CompereProcess]]:
    """Starts ``python -m compere serve`` processes on this test's database (SQLite or
    PostgreSQL) and the client tests' Redis, with a rate-limit key prefix of their own;
    stops them by PID afterwards and deletes the prefix's keys and the login throttles."""
    started: list[CompereProcess] = []
    redis_role = redis_by_role["client"]
    prefix = f"{redis_role.key_prefix}test:client:{uuid.uuid4().hex[:12]}:"

    def start(**env: str) -> CompereProcess:
        server = CompereProcess(
            {
                "DATABASE_URL": database_url,
                **redis_role.env(),
                "RATE_LIMIT_KEY_PREFIX": prefix,
                "IDEMPOTENCY_TTL": "600",
                **(full_stack.app_env(database_url) if full_stack is not None else {}),
                **env,
            },
            tmp_path / f"server-{len(started)}.log",
        )
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.stop()
    # Rate-limit windows, login throttles.
    delete_redis_keys(redis_role.url, prefix, f"{redis_role.key_prefix}auth:")


# ---------------------------------------------------------------- webhooks


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A webhook receiver on 127.0.0.1 (tests/webhook_helpers.py), stopped afterwards."""
    server = Receiver()
    await server.start()
    yield server
    await server.stop()
