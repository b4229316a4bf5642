"""Shared fixtures: every HTTP test runs against SQLite and a real PostgreSQL.

PostgreSQL comes from ``COMPERE_TEST_POSTGRES_URL`` (default: the local server as
user postgres). Each test session creates its own database and drops it at the end;
tests never skip because the server is missing, they fail and say why.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg2
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestClient

from compere.http.app import create_app
from compere.settings import Settings, load_settings
from tests.servers import CompereProcess, PostgresInstance
from tests.webhook_helpers import Receiver

ADMIN_URL = os.environ.get("COMPERE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
# Prefix of the throw-away databases, so that test runs sharing one server stay apart.
DB_PREFIX = os.environ.get("COMPERE_TEST_DB_PREFIX", "compere_test")
NO_DOTENV = Path("/nonexistent/.env")


def _with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def _admin_connection() -> psycopg2.extensions.connection:
    try:
        conn = psycopg2.connect(ADMIN_URL, connect_timeout=5)
    except psycopg2.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL is required for the test suite and is not reachable at {ADMIN_URL}: {exc}. "
            "Start it (see README) or set COMPERE_TEST_POSTGRES_URL.",
            pytrace=False,
        )
    conn.autocommit = True
    return conn


@pytest.fixture(scope="session")
def postgres_factory() -> Iterator[Callable[[], str]]:
    """Creates throw-away PostgreSQL databases; drops them all when the session ends."""
    created: list[str] = []

    def create() -> str:
        name = f"{DB_PREFIX}_{os.getpid()}_{secrets.token_hex(4)}"
        conn = _admin_connection()
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        conn.close()
        created.append(name)
        return _with_database(ADMIN_URL, name)

    yield create
    conn = _admin_connection()
    with conn.cursor() as cur:
        for name in created:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()


@pytest.fixture(scope="session")
def shared_postgres_url(postgres_factory: Callable[[], str]) -> str:
    return postgres_factory()


def empty_postgres(url: str) -> None:
    """Remove every row (keeping the applied schema) so each test starts clean."""
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'schema_migrations'"
        )
        tables = [row[0] for row in cur.fetchall()]
        if tables:
            cur.execute("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE")
    conn.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'compere.db'}"
    url: str = request.getfixturevalue("shared_postgres_url")
    empty_postgres(url)
    return url


@pytest.fixture
def make_settings(database_url: str) -> Callable[..., Settings]:
    """Settings for the current backend, from environment-style overrides."""

    def make(**env: str) -> Settings:
        return load_settings({"DATABASE_URL": database_url, **env}, dotenv=NO_DOTENV)

    return make


@pytest.fixture
def make_client(aiohttp_client: Callable[..., object], make_settings: Callable[..., Settings]):
    """Start an app with the given settings overrides and return a test client for it."""

    async def make(app: web.Application | None = None, **env: str) -> TestClient:
        app = app or await create_app(make_settings(**env), configure_logs=False)
        return await aiohttp_client(app)  # type: ignore[operator, no-any-return]

    return make


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

AUTH_REDIS_URL = os.environ.get("COMPERE_TEST_AUTH_REDIS_URL", "redis://127.0.0.1:6379/4")
TEST_SECRET_KEY = "test-secret-key-that-is-long-enough-0123456789"
# Low but allowed bcrypt cost (the floor is 10), so the suite hashes quickly.
AUTH_ENV = {
    "AUTH_ENABLED": "true",
    "SECRET_KEY": TEST_SECRET_KEY,
    "BCRYPT_ROUNDS": "10",
    "REDIS_URL": AUTH_REDIS_URL,
}
ADMIN = ("admin", "grey-heron-lantern-91")
ALICE = ("alice", "violet-otter-compass-27")


@pytest.fixture
def auth_redis() -> Iterator[str]:
    """The Redis database the auth tests use, with Compere's auth keys cleared around each test."""
    import redis

    client = redis.Redis.from_url(AUTH_REDIS_URL, socket_connect_timeout=2)

    def clear() -> None:
        keys = list(client.scan_iter("compere:auth:*", count=1000))
        if keys:
            client.delete(*keys)

    try:
        clear()
    except redis.exceptions.ConnectionError as exc:
        pytest.fail(f"Redis is required for the auth tests at {AUTH_REDIS_URL}: {exc}", pytrace=False)
    yield AUTH_REDIS_URL
    clear()
    client.close()


@pytest.fixture
def make_auth_client(make_client: Callable[..., object], auth_redis: str) -> Callable[..., object]:
    """A test client with authentication on (shared Redis db, low bcrypt cost)."""

    async def make(**env: str) -> TestClient:
        return await make_client(**{**AUTH_ENV, **env})  # type: ignore[operator, no-any-return]

    return make


async def sign_up(
    client: TestClient, username: str, password: str, token: str | None = None, **extra: object
):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return await client.post(
        "/auth/users/", json={"username": username, "password": password, **extra}, headers=headers
    )


async def log_in(client: TestClient, username: str, password: str) -> str:
    resp = await client.post("/auth/token", data={"username": username, "password": password})
    assert resp.status == 200, await resp.text()
    return str((await resp.json())["access_token"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


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

# The shared Redis server; rate-limit tests keep to their own database number.
RATELIMIT_REDIS_URL = os.environ.get("COMPERE_TEST_RATELIMIT_REDIS_URL", "redis://127.0.0.1:6379/3")


@pytest.fixture
async def ratelimit_redis_prefix() -> AsyncIterator[str]:
    """A key prefix unique to this test; its keys are deleted afterwards."""
    prefix = f"test:rl:{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = aioredis.Redis.from_url(RATELIMIT_REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=500)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class OwnRedisServer:
    """A redis-server started by the test on its own port, stopped only by its own PID."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert self.process is None
        executable = shutil.which("redis-server")
        assert executable, "redis-server is needed for this test"
        self.process = subprocess.Popen(
            [
                executable,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 5
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=5)
            self.process = None


@pytest.fixture
def own_redis_server() -> Iterator[OwnRedisServer]:
    server = OwnRedisServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def dead_redis_url() -> str:
    """A Redis URL where nothing listens."""
    return f"redis://127.0.0.1:{_free_port()}/0"


@pytest.fixture
def own_postgres() -> Iterator[PostgresInstance]:
    """A PostgreSQL server of the test's own (tests/servers.py), safe to stop and start."""
    server = PostgresInstance()
    server.start()
    yield server
    server.destroy()


# ---------------------------------------------------------------- real server processes

# The Redis database of the real-server tests (client, examples): idempotency keys and
# rate-limit windows must outlive a server restart, so they cannot be in process.
CLIENT_REDIS_URL = os.environ.get("COMPERE_TEST_CLIENT_REDIS_URL", "redis://127.0.0.1:6379/9")


@pytest.fixture
def start_server(database_url: str, tmp_path: Path) -> Iterator[Callable[..., CompereProcess]]:
    """Starts ``python -m compere serve`` processes on this test's database (SQLite or
    PostgreSQL) and the client Redis database, with a rate-limit key prefix of their own;
    stops them by PID afterwards and deletes the prefix's keys and the login throttles."""
    started: list[CompereProcess] = []
    prefix = f"test:client:{uuid.uuid4().hex[:12]}:"

    def start(**env: str) -> CompereProcess:
        server = CompereProcess(
            {
                "DATABASE_URL": database_url,
                "REDIS_URL": CLIENT_REDIS_URL,
                "RATE_LIMIT_KEY_PREFIX": prefix,
                "IDEMPOTENCY_TTL": "600",
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
    import redis

    client = redis.Redis.from_url(CLIENT_REDIS_URL)
    for pattern in (f"{prefix}*", "compere:auth:*"):  # rate-limit windows, login throttles
        keys = list(client.scan_iter(match=pattern, count=1000))
        if keys:
            client.delete(*keys)
    client.close()


# ---------------------------------------------------------------- webhooks


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A webhook receiver on 127.0.0.1 (tests/webhook_helpers.py), stopped afterwards."""
    server = Receiver()
    await server.start()
    yield server
    await server.stop()
