"""Plain helpers and constants shared by tests (fixtures live in ``conftest.py``, processes
the tests start in ``servers.py``): where the test databases and Redis are, accounts and
logging in, a clock the test moves, running the command line, voters under an outage, a judge with a hidden truth, rank agreement, the votes a
database holds, the Redis keys a test made."""

from __future__ import annotations

import asyncio
import collections
import itertools
import math
import os
import random
import sqlite3
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import psycopg2
import pytest
import redis
from aiohttp.test_utils import TestClient
from redis.cluster import ClusterNode

from compere.http.schemas import Entity
from compere.infra.redis import parse_redis_url
from tests.servers import REPO

# --- databases -----------------------------------------------------------------------

ADMIN_URL = os.environ.get("COMPERE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
# Prefix of the throw-away databases, so that test runs sharing one server stay apart.
DB_PREFIX = os.environ.get("COMPERE_TEST_DB_PREFIX", "compere_test")
NO_DOTENV = Path("/nonexistent/.env")
# COMPERE_TEST_FULL_STACK=1: the PostgreSQL tests run through PgBouncer and a replica.
FULL_STACK = os.environ.get("COMPERE_TEST_FULL_STACK", "") == "1"


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def admin_connection() -> psycopg2.extensions.connection:
    """An autocommit connection to the PostgreSQL server's ``postgres`` database."""
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


def empty_postgres(url: str) -> None:
    """Remove every row (keeping the applied schema) so each test starts clean."""
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'schema_migrations'"
        )
        tables = [row[0] for row in cur.fetchall()]
        if tables:
            cur.execute("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE")
        if "projects" in tables:  # the project the top-level API acts on, as the schema made it
            cur.execute(
                "INSERT INTO projects (slug, name, description, visibility) "
                "VALUES ('default', 'Default', 'The board of the top-level API.', 'public')"
            )
    conn.close()


def command_env(database_url: str) -> dict[str, str]:
    """The environment of a ``python -m compere`` command on ``database_url`` (through
    PgBouncer in a full-stack run, see ``full_stack`` in conftest.py)."""
    env = {**os.environ, "DATABASE_URL": database_url, "PYTHONPATH": str(REPO), "LOG_LEVEL": "WARNING"}
    if FULL_STACK and database_url.startswith("postgresql://"):
        env["DB_POOLER"] = "pgbouncer"
    return env


async def start_compere(
    database_url: str, cwd: Path, *args: str, stderr: int = asyncio.subprocess.PIPE
) -> asyncio.subprocess.Process:
    """Start ``python -m compere ARGS`` with pipes for stdin and stdout."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "compere",
        *args,
        cwd=cwd,
        env=command_env(database_url),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=stderr,
    )


async def run_compere(
    database_url: str, cwd: Path, *args: str, stdin: bytes | None = None
) -> tuple[int, str, str]:
    """Run ``python -m compere ARGS`` and return (exit status, stdout, stderr)."""
    proc = await start_compere(database_url, cwd, *args)
    out, err = await proc.communicate(stdin)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


# --- Redis: each kind of test ("role") keeps its keys apart --------------------------------
# Normally in a database of its own on the shared server, under the app's default key
# prefix; in a full-stack run all in the session's own Redis Cluster (which has database 0
# only), under a key prefix of its own.

REDIS_ROLES = {  # role: (environment variable, default URL)
    "auth": ("COMPERE_TEST_AUTH_REDIS_URL", "redis://127.0.0.1:6379/4"),
    "ratelimit": ("COMPERE_TEST_RATELIMIT_REDIS_URL", "redis://127.0.0.1:6379/3"),
    "idempotency": ("COMPERE_TEST_IDEMPOTENCY_REDIS_URL", "redis://127.0.0.1:6379/5"),
    "webapp": ("COMPERE_TEST_WEBAPP_REDIS_URL", "redis://127.0.0.1:6379/8"),
    # The real-server tests (client, examples): idempotency keys and rate-limit windows must
    # outlive a server restart, so they cannot be in process.
    "client": ("COMPERE_TEST_CLIENT_REDIS_URL", "redis://127.0.0.1:6379/9"),
}
APP_KEY_PREFIX = "compere:"  # REDIS_KEY_PREFIX's default


@dataclass(frozen=True)
class RedisRole:
    """Where one kind of test keeps its Redis keys: the URL its apps get, and the
    ``REDIS_KEY_PREFIX`` that every key they write starts with."""

    url: str
    key_prefix: str = APP_KEY_PREFIX

    def env(self) -> dict[str, str]:
        """The settings that put an app's Redis keys here."""
        return {"REDIS_URL": self.url, "REDIS_KEY_PREFIX": self.key_prefix}


def redis_roles(cluster_url: str | None = None) -> dict[str, RedisRole]:
    """Every role's place: from the environment, or all in the cluster at ``cluster_url``."""
    if cluster_url is None:
        return {role: RedisRole(os.environ.get(var, default)) for role, (var, default) in REDIS_ROLES.items()}
    return {role: RedisRole(cluster_url, f"{APP_KEY_PREFIX}{role}:") for role in REDIS_ROLES}


def redis_connection(url: str) -> redis.Redis | redis.RedisCluster:
    """A redis-py client for a test that looks at (or changes) keys itself: a cluster
    client for a ``redis+cluster://`` URL, else one for the server and database named."""
    target = parse_redis_url(url)
    if target.kind == "cluster":
        nodes = [ClusterNode(host, port) for host, port in target.nodes]
        return redis.RedisCluster(startup_nodes=nodes, socket_connect_timeout=2, socket_timeout=5)
    return redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)


def redis_keys(url: str, prefix: str) -> list[bytes]:
    """The keys that start with ``prefix`` (on every master of a cluster)."""
    with redis_connection(url) as conn:
        if isinstance(conn, redis.RedisCluster):
            found = conn.scan_iter(match=f"{prefix}*", count=1000, target_nodes=redis.RedisCluster.PRIMARIES)
        else:
            found = conn.scan_iter(match=f"{prefix}*", count=1000)
        return list(found)


def delete_redis_keys(url: str, *prefixes: str) -> None:
    """Delete every key that starts with one of ``prefixes`` (on every master of a cluster)."""
    keys = [key for prefix in prefixes for key in redis_keys(url, prefix)]
    if keys:
        with redis_connection(url) as conn, conn.pipeline(transaction=False) as pipe:
            for key in keys:  # one DEL each: in a cluster the keys live in many slots
                pipe.delete(key)
            pipe.execute()


# --- authentication ------------------------------------------------------------------

TEST_SECRET_KEY = "test-secret-key-that-is-long-enough-0123456789"
# Low but allowed bcrypt cost (the floor is 10), so the suite hashes quickly. Redis comes
# from the auth role (the ``auth_redis`` fixture).
AUTH_ENV = {
    "AUTH_ENABLED": "true",
    "SECRET_KEY": TEST_SECRET_KEY,
    "BCRYPT_ROUNDS": "10",
}
ADMIN = ("admin", "grey-heron-lantern-91")
ALICE = ("alice", "violet-otter-compass-27")


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


class FakeClock:
    """A clock that stands still until the test moves it on (``advance`` or ``now +=``);
    it starts at the real Unix time unless given ``start``."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# --- votes under an outage (the outage tests, in process and under gunicorn) -----------

OUTAGE_ENTITIES = 8
OUTAGE_VOTERS = 8


async def seed(session: aiohttp.ClientSession, base: str) -> list[int]:
    ids = []
    for i in range(OUTAGE_ENTITIES):
        async with session.post(f"{base}/entities/", json={"name": f"e{i}"}) as resp:
            assert resp.status == 200
            ids.append((await resp.json())["id"])
    return ids


async def wait_ready(session: aiohttp.ClientSession, base: str, within: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < within:
        async with session.get(f"{base}/health/ready") as resp:
            if resp.status == 200:
                return time.monotonic() - started
        await asyncio.sleep(0.1)
    raise AssertionError(f"/health/ready not 200 within {within} s")


class VoteLoad:
    """Voters posting random votes until stopped; records every status and 2xx body."""

    def __init__(self, session: aiohttp.ClientSession, base: str, ids: list[int], *, keyed: bool) -> None:
        self.session, self.base, self.ids, self.keyed = session, base, ids, keyed
        self.statuses: collections.Counter[int] = collections.Counter()
        self.acknowledged: list[dict] = []
        self.slowest_refusal = 0.0
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._voter(n)) for n in range(OUTAGE_VOTERS)]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def _voter(self, n: int) -> None:
        step = 0
        while not self._stop.is_set():
            step += 1
            a, b = self.ids[(n + step) % len(self.ids)], self.ids[(n + 3 * step + 1) % len(self.ids)]
            if a == b:
                continue
            body = {"entity1_id": a, "entity2_id": b, "selected_entity_id": (a, b, None)[step % 3]}
            key = str(uuid.uuid4()) if self.keyed else None
            while True:  # with a key, retry the same request until it is answered
                started = time.monotonic()
                headers = {"Idempotency-Key": key} if key else {}
                async with self.session.post(f"{self.base}/comparisons/", json=body, headers=headers) as resp:
                    self.statuses[resp.status] += 1
                    payload = await resp.json()
                    if resp.status == 200:
                        if resp.headers.get("Idempotent-Replayed") != "true":
                            self.acknowledged.append(payload)
                        break
                    self.slowest_refusal = max(self.slowest_refusal, time.monotonic() - started)
                if key is None or self._stop.is_set():
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.01)


def stored_state(url: str) -> tuple[list[int], float, int, int]:
    """Comparison ids, rating sum, sum of per-entity comparison counters, entity count."""
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT id FROM comparisons ORDER BY id")
        ids = [row[0] for row in cur.fetchall()]
        cur.execute("SELECT sum(rating), sum(comparisons), count(*) FROM entities")
        rating_sum, counters, entities = cur.fetchone()
    conn.close()
    return ids, float(rating_sum), int(counters), int(entities)


def assert_exactly_once(url: str, acknowledged: list[dict], *, in_doubt: int = 0) -> None:
    """Every acknowledged vote is stored once, every stored vote is whole, and no vote
    is stored that was not acknowledged, except at most ``in_doubt`` votes whose COMMIT
    the database carried out as it was being stopped: the server's answer to those was
    a 503 (no database client can tell such a commit from a failed one; a client that
    must not count one twice sends an Idempotency-Key, whose record is in the same
    transaction)."""
    ids, rating_sum, counters, entities = stored_state(url)
    acked = sorted(c["id"] for c in acknowledged)
    assert len(acked) == len(set(acked))
    assert len(ids) == len(set(ids))
    assert set(acked) <= set(ids), sorted(set(acked) - set(ids))  # nothing acknowledged is lost
    unacknowledged = sorted(set(ids) - set(acked))
    assert len(unacknowledged) <= in_doubt, unacknowledged
    assert rating_sum == pytest.approx(entities * 1500.0, abs=1e-6)  # no half-applied vote
    assert counters == 2 * len(ids)


# --- ranking quality -----------------------------------------------------------------

ITEMS = 20
# The order a perfect ranking recovers: item names to hidden scores (a fixed shuffle).
HIDDEN_SCORE = {
    f"item {i:02d}": score for i, score in enumerate(random.Random(20).sample(range(ITEMS), ITEMS))
}


def prefer_larger_hidden_score(a: Entity, b: Entity) -> Entity:
    """A deterministic judge: the item with the larger hidden score wins."""
    return a if HIDDEN_SCORE[a.name] > HIDDEN_SCORE[b.name] else b


def kendall_tau(names_best_first: list[str]) -> float:
    """Agreement of a ranking with the hidden order: 1 identical, -1 reversed."""
    concordant = discordant = 0
    for better, worse in itertools.combinations(names_best_first, 2):
        if HIDDEN_SCORE[better] > HIDDEN_SCORE[worse]:
            concordant += 1
        else:
            discordant += 1
    return (concordant - discordant) / (concordant + discordant)


def stored_votes(database_url: str) -> tuple[Counter[tuple[int, int, int | None]], float]:
    """Every stored vote as (entity1, entity2, winner), counted, and the sum of all ratings."""
    votes = "SELECT entity1_id, entity2_id, selected_entity_id FROM comparisons"
    ratings = "SELECT SUM(rating) FROM entities"
    if database_url.startswith("sqlite"):
        conn = sqlite3.connect(database_url.removeprefix("sqlite:///"))
        try:
            rows = conn.execute(votes).fetchall()
            (total,) = conn.execute(ratings).fetchone()
        finally:
            conn.close()
    else:
        with psycopg2.connect(database_url) as pg, pg.cursor() as cur:
            cur.execute(votes)
            rows = cur.fetchall()
            cur.execute(ratings)
            (total,) = cur.fetchone()
        pg.close()
    return Counter((a, b, c) for a, b, c in rows), float(total)


class Rigging:
    """The rigging scenario of the voter-weight tests: entities e0 (strongest) .. e11,
    honest voters who pick the stronger side, attackers who vote e7 over stronger ones."""

    ENTITIES = 12
    TARGET = 7  # e7: eighth strongest
    HONEST = 4
    HONEST_VOTES_EACH = 36
    ATTACKERS = 3
    RIGGED_EACH = 8


# --- style control: a board whose votes favour long answers --------------------------------

# Eight answers: lengths 100..800, true quality unrelated to length. Answer 0 is short and
# the best; answer 7 is the longest and the worst.
ANSWER_LENGTHS = [100, 200, 300, 400, 500, 600, 700, 800]
ANSWER_QUALITY = [1.0, 0.0, -0.5, 0.5, 0.0, -0.5, 0.5, -1.0]
LENGTH_BIAS = 1.2  # logits per standard deviation of length: what the judges add for length


def length_biased_votes(votes_per_pair: int = 6) -> list[tuple[int, int, int]]:
    """``(first, second, winner)`` answer indices: each pair's wins follow quality plus the
    length bias (rounded expected counts, so the board is the same on every run)."""
    from compere.domain.covariates import design

    z = design([{"length": float(x)} for x in ANSWER_LENGTHS], ["length"]).z[:, 0]
    votes = []
    for i, j in itertools.combinations(range(len(ANSWER_LENGTHS)), 2):
        logit = ANSWER_QUALITY[i] - ANSWER_QUALITY[j] + LENGTH_BIAS * (z[i] - z[j])
        wins = round(votes_per_pair / (1.0 + math.exp(-logit)))
        votes += [(i, j, i if k < wins else j) for k in range(votes_per_pair)]
    return votes
