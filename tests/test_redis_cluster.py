"""Compere on a Redis Cluster and on a Sentinel set (docs/deployment.md, "Redis").

Each test starts the Redis it needs on free loopback ports (tests/servers.py:
``RedisClusterSet``, ``RedisSentinelSet``) and stops it by PID. Through HTTP they show
that the rate limit is one limit for every app instance, that the login throttle's
script (two keys) runs on a cluster, that scripts are loaded again on a node that lost
them, and that a master killed under load gives only 200, 429 or 503 answers, loses no
acknowledged write, and is got over without restarting Compere.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import sqlite3
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis
from aiohttp.test_utils import TestClient

from compere.infra.redis import parse_redis_url
from compere.settings import SettingsError, load_settings
from tests.helpers import ADMIN, AUTH_ENV, NO_DOTENV, bearer, log_in, sign_up
from tests.servers import RedisClusterSet, RedisInstance, RedisSentinelSet, free_port


@pytest.fixture(autouse=True)
def collect_sockets_to_killed_nodes() -> Iterator[None]:
    """After each test here (and after its app has closed), collect what redis-py left.

    When a node is killed, redis-py's cluster and Sentinel clients drop their connections
    to it and close them in background tasks that may never run; the socket is then
    closed by the garbage collector, whenever it next runs, with a ResourceWarning (an
    unclosed socket, or a stream writer whose loop is closed) that
    the suite turns into a failure of whichever later test is running. Collecting here
    keeps that library behaviour inside the tests that kill nodes.
    """
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # "unclosed ...", "loop is closed"
        gc.collect()


# One database is enough here: these tests are about Redis.
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

# Limits high enough never to refuse the load below: these tests are about Redis failing.
# And a limiter timeout that a busy test machine does not exceed (a dead node refuses
# connections at once, so failures are still seen at once).
UNLIMITED = {
    "RATE_LIMIT_REQUESTS": "1000000",
    "RATE_LIMIT_AUTH_REQUESTS": "1000000",
    "RATE_LIMIT_REDIS_TIMEOUT": "1",
}


def prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}:"


# --- the URL forms ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "redis+cluster://10.0.0.1:7000",
        "redis+cluster://:secret@10.0.0.1:7000,10.0.0.2:7001,redis-3:7002",
        "redis+cluster://10.0.0.1:7000/0",
        "redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/mymaster/2",
        "redis+sentinel://sentinel:26379/mymaster",
    ],
)
def test_redis_url_forms_are_accepted(url: str) -> None:
    assert load_settings({"REDIS_URL": url}, dotenv=NO_DOTENV).redis_url == url


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:6379",
        "redis+cluster://",
        "redis+cluster://10.0.0.1",  # no port
        "redis+cluster://10.0.0.1:7000/3",  # a cluster has database 0 only
        "redis+cluster://10.0.0.1:7000,:7001",
        "redis+cluster://10.0.0.1:99999",
        "redis+sentinel://10.0.0.1:26379",  # no service name
        "redis+sentinel://10.0.0.1:26379/mymaster/x",
        "redis+sentinel://10.0.0.1:26379/mymaster/1/2",
        "redis+sentinel://10.0.0.1:26379/mymaster?db=1",
    ],
)
def test_malformed_redis_urls_are_refused_naming_the_setting(url: str) -> None:
    with pytest.raises(SettingsError, match="REDIS_URL"):
        load_settings({"REDIS_URL": url}, dotenv=NO_DOTENV)


def test_a_sentinel_url_names_its_sentinels_service_and_database() -> None:
    target = parse_redis_url("redis+sentinel://u:p%40ss@s1:26379,[::1]:26380/my%20master/4")
    assert target.kind == "sentinel"
    assert target.nodes == (("s1", 26379), ("::1", 26380))
    assert (target.service, target.db, target.username, target.password) == ("my master", 4, "u", "p@ss")


# --- a healthy cluster -------------------------------------------------------------------


@sqlite_only
async def test_the_rate_limit_is_one_limit_across_app_instances_seeded_with_different_nodes(
    make_client: Callable[..., Any], redis_cluster: RedisClusterSet
) -> None:
    rl_prefix = prefix()
    env = {
        "RATE_LIMIT_ENABLED": "true",
        "RATE_LIMIT_REQUESTS": "10",
        "RATE_LIMIT_KEY_PREFIX": rl_prefix,
        # Closed, with a generous timeout: on a busy machine an answer slower than the
        # default 0.25 s would otherwise be served unlimited (fail open) and uncounted.
        "RATE_LIMIT_FAIL_MODE": "closed",
        "RATE_LIMIT_REDIS_TIMEOUT": "2",
    }
    seeds = [f"redis+cluster://127.0.0.1:{node.port}" for node in redis_cluster.nodes]
    one = await make_client(REDIS_URL=seeds[0], **env)
    two = await make_client(REDIS_URL=seeds[-1], **env)
    statuses = [(await client.get("/entities/")).status for client in [one, two] * 15]
    assert statuses.count(200) == 10 and statuses.count(429) == 20, statuses
    with redis_cluster.client() as conn:
        keys = list(conn.scan_iter(match=f"{rl_prefix}*", target_nodes=redis.RedisCluster.PRIMARIES))
    assert len(keys) == 1  # one window, on the one node that serves its slot


@sqlite_only
async def test_two_server_processes_share_one_limit_through_the_cluster(
    start_server: Callable[..., Any], redis_cluster: RedisClusterSet
) -> None:
    # Two real processes (as on two hosts), each seeded with a different node.
    env = {
        "RATE_LIMIT_ENABLED": "true",
        "RATE_LIMIT_REQUESTS": "10",
        "RATE_LIMIT_KEY_PREFIX": prefix(),
        "RATE_LIMIT_FAIL_MODE": "closed",
        "RATE_LIMIT_REDIS_TIMEOUT": "2",
    }
    one = start_server(**env, REDIS_URL=f"redis+cluster://127.0.0.1:{redis_cluster.nodes[1].port}")
    two = start_server(**env, REDIS_URL=f"redis+cluster://127.0.0.1:{redis_cluster.nodes[-2].port}")
    async with aiohttp.ClientSession() as session:
        statuses = []
        for server in [one, two] * 15:
            async with session.get(f"{server.url}/entities/") as resp:
                statuses.append(resp.status)
    # Alternating: five admitted by each process, then both refuse.
    assert statuses == [200] * 10 + [429] * 20, statuses


async def test_the_limiter_spreads_clients_over_the_masters(redis_cluster: RedisClusterSet) -> None:
    from compere.infra.ratelimit import RateLimitPolicy, RedisSlidingWindowLimiter

    rl_prefix = prefix()
    limiter = RedisSlidingWindowLimiter.from_url(
        redis_cluster.url(), key_prefix=rl_prefix, connect_timeout=2, command_timeout=2
    )
    policy = RateLimitPolicy("default", 3, 60)
    try:
        for client in range(30):
            assert [(await limiter.hit(f"10.0.0.{client}", policy)).allowed for _ in range(4)] == [
                True,
                True,
                True,
                False,
            ]
    finally:
        await limiter.close()
    owners = {redis_cluster.master_for(f"{rl_prefix}default:10.0.0.{c}").port for c in range(30)}
    assert len(owners) == 3


@sqlite_only
async def test_the_login_throttle_runs_on_a_cluster_with_both_keys_in_one_slot(
    make_client: Callable[..., Any], redis_cluster: RedisClusterSet
) -> None:
    key_prefix = prefix()
    client = await make_client(
        **{
            **AUTH_ENV,
            "REDIS_URL": redis_cluster.url(),
            "REDIS_KEY_PREFIX": key_prefix,
            "LOGIN_MAX_FAILURES": "3",
        }
    )
    assert (await sign_up(client, *ADMIN)).status == 200
    wrong = {"username": ADMIN[0], "password": "not-the-password-at-all"}
    statuses = [(await client.post("/auth/token", data=wrong)).status for _ in range(4)]
    assert statuses == [401, 401, 401, 429]
    with redis_cluster.client() as conn:
        keys = list(conn.scan_iter(match=f"{key_prefix}*", target_nodes=redis.RedisCluster.PRIMARIES))
        slots = {conn.keyslot(key) for key in keys}
    user, client_key = sorted(keys, reverse=True)
    assert user == f"{key_prefix}auth:{{login}}:fail:user:admin"
    assert client_key.startswith(f"{key_prefix}auth:{{login}}:fail:client:")
    assert len(slots) == 1


@sqlite_only
async def test_scripts_are_loaded_again_on_nodes_that_lost_them(
    make_client: Callable[..., Any], redis_cluster: RedisClusterSet
) -> None:
    # As after a failover to a replica that never saw SCRIPT LOAD, or a node restart.
    client = await make_client(
        **{
            **AUTH_ENV,
            **UNLIMITED,
            "REDIS_URL": redis_cluster.url(),
            "REDIS_KEY_PREFIX": prefix(),
            "RATE_LIMIT_ENABLED": "true",
        }
    )
    assert (await sign_up(client, *ADMIN)).status == 200
    token = await log_in(client, *ADMIN)
    with redis_cluster.client() as conn:
        conn.script_flush()  # on every master
    assert (await client.get("/entities/", headers=bearer(token))).status == 200  # the limiter's script
    token = await log_in(client, *ADMIN)  # the login throttle's two scripts
    key = {"Idempotency-Key": uuid.uuid4().hex}
    first = await client.post("/entities/", json={"name": "flushed"}, headers={**bearer(token), **key})
    with redis_cluster.client() as conn:
        conn.script_flush()
    again = await client.post("/entities/", json={"name": "flushed"}, headers={**bearer(token), **key})
    assert (first.status, again.status) == (200, 200)
    assert await first.json() == await again.json() and again.headers["Idempotent-Replayed"] == "true"


@sqlite_only
async def test_any_reachable_seed_will_do(
    make_client: Callable[..., Any], redis_cluster: RedisClusterSet
) -> None:
    # The first seed named is not there; readiness asks the cluster through the other.
    url = f"redis+cluster://127.0.0.1:{free_port()},127.0.0.1:{redis_cluster.nodes[2].port}"
    client = await make_client(REDIS_URL=url, RATE_LIMIT_ENABLED="true")
    body = await (await client.get("/health/ready")).json()
    assert body["checks"]["redis"] == "ok" and body["checks"]["rate_limiter"] == "ok"


# --- failover under load -------------------------------------------------------------


async def _load(
    client: TestClient, token: str, stop: asyncio.Event, log: list[tuple[float, str, int]]
) -> None:
    """One client: a read (rate limited), a keyed write, a login, in turn, until stopped.
    Each answer is logged with the time its request was sent."""
    for kind in itertools.cycle(["read", "write", "login"]):
        if stop.is_set():
            return
        sent = time.monotonic()
        if kind == "read":
            resp = await client.get("/entities/", headers=bearer(token))
        elif kind == "write":
            name = f"load {uuid.uuid4().hex}"
            headers = {**bearer(token), "Idempotency-Key": name.split()[1]}
            resp = await client.post("/entities/", json={"name": name}, headers=headers)
            if resp.status == 200:
                log.append((sent, name, 0))
        else:
            resp = await client.post("/auth/token", data={"username": ADMIN[0], "password": ADMIN[1]})
        await resp.read()
        log.append((sent, kind, resp.status))


async def _failover_under_load(
    client: TestClient, kill: Callable[[], None], healed: Callable[[], None], database_url: str
) -> dict[str, Any]:
    """Load with 4 clients; ``kill`` a master after 1.5 s; wait for ``healed`` (a thread);
    load 3 s more. Every answer, and what the database holds, is checked by the caller."""
    assert (await sign_up(client, *ADMIN)).status == 200
    token = await log_in(client, *ADMIN)
    stop = asyncio.Event()
    log: list[tuple[float, str, int]] = []
    clients = [asyncio.create_task(_load(client, token, stop, log)) for _ in range(4)]
    try:
        async with asyncio.timeout(40):  # bounded, whatever happens
            await asyncio.sleep(1.5)
            killed_at = time.monotonic()
            kill()
            await asyncio.to_thread(healed)
            healed_at = time.monotonic()
            await asyncio.sleep(3)
    finally:
        stop.set()
        await asyncio.gather(*clients)
    answers = [(at, kind, status) for at, kind, status in log if not kind.startswith("load ")]
    acknowledged = {kind for _, kind, _ in log if kind.startswith("load ")}
    with sqlite3.connect(Path(database_url.removeprefix("sqlite:///"))) as db:
        stored = {name for (name,) in db.execute("SELECT name FROM entities WHERE name LIKE 'load %'")}
    # After the failover every kind of request works again, in this same process.
    after = [
        (await client.get("/entities/", headers=bearer(token))).status,
        (await client.post("/entities/", json={"name": "after"}, headers={**bearer(token), "Idempotency-Key": "a1"})).status,
        (await client.post("/auth/token", data={"username": ADMIN[0], "password": ADMIN[1]})).status,
    ]  # fmt: skip
    # Shown with pytest -s: what the failover cost.
    during = [status for at, _, status in answers if killed_at <= at <= healed_at]
    print(
        f"\n{len(answers)} answers; failover {healed_at - killed_at:.1f} s with {len(during)} answers, "
        f"{during.count(503)} of them 503; {len(acknowledged)} writes acknowledged, {len(stored)} stored"
    )
    return {
        "statuses": {status for _, _, status in answers},
        "during": [(kind, status) for at, kind, status in answers if killed_at <= at <= healed_at + 0.5],
        # Sent a second after the cluster (or the Sentinels) said the failover was done.
        "settled": [(kind, status) for at, kind, status in answers if at > healed_at + 1.0],
        "acknowledged": acknowledged,
        "stored": stored,
        "after": after,
        "count": len(answers),
        "failover_seconds": healed_at - killed_at,
    }


@sqlite_only
@pytest.mark.parametrize("fail_mode", ["closed", "open"])
async def test_a_cluster_master_killed_under_load_gives_only_200_or_503_and_heals(
    make_client: Callable[..., Any], own_redis_cluster: RedisClusterSet, database_url: str, fail_mode: str
) -> None:
    key_prefix = prefix()
    client = await make_client(
        **{
            **AUTH_ENV,
            **UNLIMITED,
            "REDIS_URL": own_redis_cluster.url(),
            "REDIS_KEY_PREFIX": key_prefix,
            "RATE_LIMIT_ENABLED": "true",
            "RATE_LIMIT_FAIL_MODE": fail_mode,
        }
    )

    def kill_the_limiters_master() -> None:
        # The master holding this client's rate-limit window: every read needs it.
        with own_redis_cluster.client() as conn:
            (key,) = conn.scan_iter(
                match=f"{key_prefix}rl:default:*", target_nodes=redis.RedisCluster.PRIMARIES
            )
        own_redis_cluster.master_for(key).kill()

    result = await _failover_under_load(
        client, kill_the_limiters_master, own_redis_cluster.wait_healthy, database_url
    )
    assert result["statuses"] <= {200, 503}, result["statuses"]
    reads_during = {status for kind, status in result["during"] if kind == "read"}
    if fail_mode == "open":
        assert reads_during == {200}, result["during"]  # unlimited while the limiter's node is away
    else:
        assert 503 in reads_during, result["during"]
    assert result["settled"] and {status for _, status in result["settled"]} == {200}, result["settled"]
    assert result["acknowledged"] == result["stored"]  # no acknowledged write lost, no 503 one stored
    assert result["after"] == [200, 200, 200]


@sqlite_only
async def test_a_sentinel_failover_under_load_gives_only_200_or_503_and_heals(
    make_client: Callable[..., Any], own_redis_sentinels: RedisSentinelSet, database_url: str
) -> None:
    client = await make_client(
        **{
            **AUTH_ENV,
            **UNLIMITED,
            # The first Sentinel named is not there: the others are asked.
            "REDIS_URL": own_redis_sentinels.url(2).replace("//", f"//127.0.0.1:{free_port()},", 1),
            "REDIS_KEY_PREFIX": prefix(),
            "RATE_LIMIT_ENABLED": "true",
            "RATE_LIMIT_FAIL_MODE": "closed",
        }
    )
    old = own_redis_sentinels.master()
    result = await _failover_under_load(
        client, old.kill, lambda: own_redis_sentinels.wait_promoted(old.port), database_url
    )
    assert result["statuses"] <= {200, 503}, result["statuses"]
    assert 503 in {status for _, status in result["during"]}
    assert result["settled"] and {status for _, status in result["settled"]} == {200}, result["settled"]
    assert result["acknowledged"] == result["stored"]
    assert result["after"] == [200, 200, 200]


async def test_a_right_password_whose_success_redis_missed_is_taken_back_once_redis_returns() -> None:
    # Redis fails between counting the attempt and taking it back (as in a failover):
    # the login answers 503, and without the background refund the user's count would
    # stay up and lock them out after Redis is back.
    from compere.infra.auth_state import AuthStateUnavailable, RedisLoginThrottle
    from compere.infra.redis import create_redis

    server = RedisInstance(persistent=True)
    server.start()
    client = create_redis(server.url())
    throttle = RedisLoginThrottle(client, per_user=2, per_client=100, window=600)
    try:
        now = time.time()
        assert [await throttle.attempt("alice", "10.0.0.1", now) for _ in range(2)] == [0, 0]
        server.stop()
        with pytest.raises(AuthStateUnavailable):
            await throttle.succeeded("alice", "10.0.0.1")
        throttle.succeeded_later("alice", "10.0.0.1", within=30)
        server.start()  # with its data: both attempts still counted
        for _ in range(100):
            await asyncio.sleep(0.1)
            if not throttle._pending:
                break
        assert await throttle.attempt("alice", "10.0.0.1", now) == 0  # would be a lockout
    finally:
        await throttle.aclose()
        await client.aclose()
        server.destroy()


async def test_a_burst_past_the_cluster_pool_waits_for_a_connection(redis_cluster: RedisClusterSet) -> None:
    # As with one server: more commands than connections wait briefly instead of
    # failing at once (redis-py's cluster client raises MaxConnectionsError).
    from compere.infra.redis import create_redis

    client = create_redis(redis_cluster.url(), max_connections=2, pool_wait=10, command_timeout=5)
    key = f"{prefix()}burst"
    try:
        results = await asyncio.gather(*(client.incr(key) for _ in range(50)), return_exceptions=True)
        assert sorted(results) == list(range(1, 51)), {type(r).__name__ for r in results}
    finally:
        await client.delete(key)
        await client.aclose()
