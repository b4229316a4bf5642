"""Several app hosts: two gunicorn masters on their own ports behind the shipped nginx
config (one upstream, two servers), sharing PostgreSQL through PgBouncer in transaction
mode and a Redis Cluster. Votes from both lose nothing, the rate limit is one limit across
hosts, and a logout is seen by both at once."""

from __future__ import annotations

import asyncio
import random
import signal
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.servers import (
    Gunicorn,
    PgBouncer,
    RedisClusterSet,
    copy_nginx_config,
    free_port,
    pooled_backends,
    start_gunicorn,
    start_nginx,
    stop_process,
)

pytestmark = pytest.mark.slow

ENTITIES = 20
VOTES = 2000
IN_FLIGHT = 50
SOURCES = 50  # client addresses: the shipped nginx allows each a burst of 40 requests
LIMIT = 60  # RATE_LIMIT_REQUESTS of the hosts, per client and minute
SECRET = "multi-host-test-secret-key-0123456789abcdef"


class Hosts:
    def __init__(self, apps: list[Gunicorn], https_port: int, cafile: Path, nginx_log: Path) -> None:
        self.apps = apps
        self.https_port = https_port
        self.cafile = cafile
        self.nginx_log = nginx_log

    @property
    def edge(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    def direct(self, i: int) -> str:
        return f"http://127.0.0.1:{self.apps[i].port}"

    def session(self, source: str = "127.0.0.1") -> aiohttp.ClientSession:
        context = ssl.create_default_context(cafile=str(self.cafile))
        connector = aiohttp.TCPConnector(ssl=context, local_addr=(source, 0), limit=IN_FLIGHT)
        return aiohttp.ClientSession(connector=connector)


@pytest.fixture(scope="module")
def shared_backends() -> Iterator[tuple[PgBouncer, str]]:
    """PgBouncer in front of PostgreSQL, and a Redis Cluster of three masters."""
    cluster = RedisClusterSet(masters=3, replicas=0)
    with pooled_backends() as (_, bouncer, _):
        try:
            cluster.start()
            yield bouncer, cluster.url()
        finally:
            cluster.destroy()


def _hosts(
    nginx_bin, tls_files, tmp: Path, backends, database: str, workers: int, **env: str
) -> Iterator[Hosts]:
    bouncer, redis_url = backends
    bouncer.server.sql(f'CREATE DATABASE "{database}"')
    common = {
        "DATABASE_URL": bouncer.url(database),
        "DB_POOLER": "pgbouncer",
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": f"{database}:",
        "LOG_FORMAT": "json",
        **env,
    }
    apps: list[Gunicorn] = []
    try:
        for i in range(2):
            (tmp / f"host{i}").mkdir()
            # The first host migrates (through PgBouncer), as a deploy step would.
            apps.append(start_gunicorn(tmp / f"host{i}", workers=workers, premigrate=i == 0, **common))
        prefix = tmp / "nginx"
        https_port = free_port()
        upstream = "".join(f"server 127.0.0.1:{app.port};\n    " for app in apps)
        conf = copy_nginx_config(
            prefix,
            tls_files,
            {
                "    listen 80 default_server;\n": f"    listen 127.0.0.1:{free_port()} default_server;\n",
                "    listen [::]:80 default_server;\n": "",
                "    listen 443 ssl default_server;\n": f"    listen 127.0.0.1:{https_port} ssl default_server;\n",
                "    listen [::]:443 ssl default_server;\n": "",
                "server 127.0.0.1:8000;\n    ": upstream,
                "/var/log/nginx/compere.access.log": str(prefix / "compere.access.log"),
                "/var/log/nginx/compere.error.log": str(prefix / "compere.error.log"),
            },
        )
        proc = start_nginx(nginx_bin, prefix, conf, https_port)
        try:
            yield Hosts(apps, https_port, tls_files[0], prefix / "compere.access.log")
        finally:
            stop_process(proc, signal.SIGQUIT)
    finally:
        for app in apps:
            stop_process(app.proc)


@pytest.fixture(scope="module")
def open_hosts(nginx_bin, tls_files, tmp_path_factory, shared_backends) -> Iterator[Hosts]:
    """Ranking API open (AUTH off), rate limited per client address across hosts."""
    yield from _hosts(
        nginx_bin,
        tls_files,
        tmp_path_factory.mktemp("open"),
        shared_backends,
        "ct_scaleout_open",
        2,
        RATE_LIMIT_ENABLED="true",
        RATE_LIMIT_REQUESTS=str(LIMIT),
        RATE_LIMIT_WINDOW="60",
    )


@pytest.fixture(scope="module")
def auth_hosts(nginx_bin, tls_files, tmp_path_factory, shared_backends) -> Iterator[Hosts]:
    yield from _hosts(
        nginx_bin,
        tls_files,
        tmp_path_factory.mktemp("auth"),
        shared_backends,
        "ct_scaleout_auth",
        1,
        AUTH_ENABLED="true",
        SECRET_KEY=SECRET,
        BCRYPT_ROUNDS="10",
    )


def _served(app: Gunicorn, path: str) -> int:
    return sum(1 for line in app.log_lines() if f'"path": "{path}"' in line)


async def test_two_hosts_behind_nginx_lose_no_vote(open_hosts: Hosts) -> None:
    hosts = open_hosts
    async with hosts.session("127.0.0.200") as session:
        ids = []
        for i in range(ENTITIES):
            async with session.post(f"{hosts.edge}/entities/", json={"name": f"e{i}"}) as resp:
                assert resp.status == 200, await resp.text()
                ids.append((await resp.json())["id"])
    rng = random.Random(23)
    gate = asyncio.Semaphore(IN_FLIGHT)
    acknowledged: list[dict] = []
    sessions = [hosts.session(f"127.0.1.{k + 1}") for k in range(SOURCES)]

    async def vote(i: int) -> None:
        a, b = rng.sample(ids, 2)
        body = {"entity1_id": a, "entity2_id": b, "selected_entity_id": rng.choice([a, b, None])}
        async with gate, sessions[i % SOURCES].post(f"{hosts.edge}/comparisons/", json=body) as resp:
            assert resp.status == 200, await resp.text()
            acknowledged.append(await resp.json())

    try:
        await asyncio.gather(*(vote(i) for i in range(VOTES)))
    finally:
        for session in sessions:
            await session.close()
    assert len(acknowledged) == VOTES
    # Both hosts took votes.
    assert all(_served(app, "/comparisons/") > VOTES // 10 for app in hosts.apps)

    async with hosts.session("127.0.0.201") as session:
        async with session.get(f"{hosts.edge}/ratings") as resp:
            board = await resp.json()
        stored: list[dict] = []
        while True:
            params = {"skip": len(stored), "limit": 1000}
            async with session.get(f"{hosts.edge}/comparisons/", params=params) as resp:
                page = await resp.json()
            stored += page
            if len(page) < 1000:
                break
    assert sorted(c["id"] for c in stored) == sorted(c["id"] for c in acknowledged)
    assert sum(e["rating"] for e in board) == pytest.approx(ENTITIES * 1500.0, abs=1e-6)
    assert sum(e["comparisons"] for e in board) == 2 * VOTES
    assert sum(e["wins"] for e in board) == sum(1 for c in stored if c["selected_entity_id"] is not None)


async def test_the_rate_limit_is_one_limit_across_hosts(open_hosts: Hosts) -> None:
    # One client (as nginx forwards it) alternating between the two hosts directly.
    headers = {"X-Forwarded-For": "203.0.113.77"}
    statuses = []
    async with aiohttp.ClientSession() as session:
        for i in range(2 * LIMIT):
            async with session.get(f"{open_hosts.direct(i % 2)}/entities/?limit=1", headers=headers) as resp:
                statuses.append(resp.status)
    assert statuses.count(200) == LIMIT, statuses
    assert statuses[LIMIT:] == [429] * LIMIT


async def test_a_logout_on_one_host_is_seen_by_both_within_a_second(auth_hosts: Hosts) -> None:
    one, two = auth_hosts.direct(0), auth_hosts.direct(1)
    account = {"username": "admin", "password": "grey-heron-lantern-91"}
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{one}/auth/users/", json=account) as resp:
            assert resp.status == 200, await resp.text()
        async with session.post(f"{two}/auth/token", data=account) as resp:
            token = (await resp.json())["access_token"]
        bearer = {"Authorization": f"Bearer {token}"}
        for base in (one, two):
            async with session.get(f"{base}/auth/users/me", headers=bearer) as resp:
                assert resp.status == 200
        async with session.post(f"{one}/auth/logout", headers=bearer) as resp:
            assert resp.status in (200, 204)
        logged_out = time.monotonic()
        seen = set()
        while len(seen) < 2:
            for base in (one, two):
                async with session.get(f"{base}/auth/users/me", headers=bearer) as resp:
                    if resp.status == 401:
                        seen.add(base)
            assert time.monotonic() - logged_out < 1.0, f"only {seen} refused the token within 1 s"
