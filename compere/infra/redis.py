"""The shared Redis client, with short timeouts so Redis trouble never hangs a request.

``REDIS_URL`` names one of three kinds of Redis (docs/deployment.md, "Redis"):

- ``redis://``, ``rediss://``, ``unix://``: one server (redis-py's own URL forms);
- ``redis+cluster://HOST:PORT,HOST:PORT,...``: a Redis Cluster; any reachable nodes
  serve as seeds, the client learns the rest and follows failovers and MOVED slots;
- ``redis+sentinel://HOST:PORT,.../SERVICE/DB``: the master Sentinel names for
  ``SERVICE``, found again after a failover.

User and password in the URL (``redis+cluster://:secret@h1:7000,h2:7001``) are used for
the data nodes; Sentinels are asked without them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff

__all__ = [
    "REDIS_ERRORS",
    "RedisClient",
    "RedisTarget",
    "create_redis",
    "parse_redis_url",
    "retry_in_background",
    "warm_up",
]

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 0.2
COMMAND_TIMEOUT = 0.5
MAX_CONNECTIONS = 64
# A burst of more commands than connections waits this long for a free one (then the
# caller sees a ConnectionError like any other Redis trouble), instead of failing at once.
POOL_WAIT = 0.5

# What a Redis call may raise when Redis is down, slow, failing over or out of
# connections. A cluster client also raises RedisClusterException (not a RedisError)
# when it cannot learn the slot map, e.g. while a failed master's slots are uncovered.
# And redis-py's asyncio connections let AttributeError or TypeError out when a
# connection closed by the peer (a killed node) is written to, or the slot map is
# being replaced (redis/redis-py#4287, #3835); seen here during a cluster failover as
# "'NoneType' object has no attribute 'writelines'". They mean the same: Redis is away.
REDIS_ERRORS: tuple[type[BaseException], ...] = (
    redis.exceptions.RedisError,
    redis.exceptions.RedisClusterException,
    OSError,
    TimeoutError,
    AttributeError,
    TypeError,
)

RedisClient = aioredis.Redis | RedisCluster
Kind = Literal["server", "cluster", "sentinel"]

CLUSTER_SCHEME = "redis+cluster"
SENTINEL_SCHEME = "redis+sentinel"
SERVER_SCHEMES = ("redis", "rediss", "unix")


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """What a Redis URL names: one server, a cluster's seed nodes, or a Sentinel set."""

    kind: Kind
    url: str
    nodes: tuple[tuple[str, int], ...] = ()  # cluster seeds or Sentinels
    service: str = ""  # Sentinel's name of the master
    db: int = 0
    username: str | None = None
    password: str | None = None


def _nodes(netloc: str, url: str) -> tuple[tuple[str, int], ...]:
    hosts = netloc.rpartition("@")[2]
    nodes = []
    for item in hosts.split(","):
        host, sep, port = item.strip().rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{url}: every node must be HOST:PORT")
        nodes.append((host.strip("[]"), int(port)))
    return tuple(nodes)


def _credentials(netloc: str) -> tuple[str | None, str | None]:
    userinfo, at, _ = netloc.rpartition("@")
    if not at:
        return None, None
    user, colon, password = userinfo.partition(":")
    return (unquote(user) or None), (unquote(password) if colon else None)


def parse_redis_url(url: str) -> RedisTarget:
    """Read a ``REDIS_URL``; ValueError names what is wrong with it."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in SERVER_SCHEMES:
        return RedisTarget("server", url)
    if scheme not in (CLUSTER_SCHEME, SENTINEL_SCHEME):
        raise ValueError(
            f"{url}: the scheme must be redis, rediss, unix, {CLUSTER_SCHEME} or {SENTINEL_SCHEME}"
        )
    if parts.query or parts.fragment:
        raise ValueError(f"{url}: no query or fragment is read here")
    nodes = _nodes(parts.netloc, url)
    username, password = _credentials(parts.netloc)
    path = [p for p in parts.path.split("/") if p]
    if scheme == CLUSTER_SCHEME:
        # A cluster has database 0 only.
        if path not in ([], ["0"]):
            raise ValueError(f"{url}: a cluster has no databases (leave the path empty)")
        return RedisTarget("cluster", url, nodes, username=username, password=password)
    if not path or len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
        raise ValueError(f"{url}: a Sentinel URL ends in /SERVICE or /SERVICE/DB")
    db = int(path[1]) if len(path) == 2 else 0
    return RedisTarget("sentinel", url, nodes, unquote(path[0]), db, username, password)


class _Cluster(RedisCluster):
    """redis-py's cluster client, retrying a command only when it cannot have run.

    redis-py also retries after a timeout, when the command may well have run (a
    counted attempt, a claimed idempotency key): run twice, it would count twice or
    find its own lock. A timeout still makes the next command reload the slot map.
    """

    ERRORS_ALLOW_RETRY = (  # type: ignore[assignment]  # a narrower tuple than redis-py's
        redis.exceptions.ConnectionError,
        redis.exceptions.ClusterDownError,
        redis.exceptions.SlotNotCoveredError,
    )

    def __init__(self, *, max_in_flight: int, pool_wait: float, **kwargs: Any) -> None:
        super().__init__(max_connections=max_in_flight, **kwargs)
        # redis-py fails a command at once when its node has no free connection
        # (MaxConnectionsError); like the single-server pool, wait a moment instead,
        # with as many commands in flight at most as one node has connections.
        self._in_flight = asyncio.Semaphore(max_in_flight)
        self._pool_wait = pool_wait

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        try:
            async with asyncio.timeout(self._pool_wait):
                await self._in_flight.acquire()
        except TimeoutError:
            raise redis.exceptions.ConnectionError("every Redis connection is in use") from None
        try:
            return await super().execute_command(*args, **kwargs)
        except RuntimeError as exc:
            # uvloop refuses to write to a connection whose socket has closed with this
            # RuntimeError, which redis-py does not translate: a lost connection, as
            # callers know it (fail open or 503), never a 500.
            if "the handler is closed" not in str(exc):
                raise
            raise redis.exceptions.ConnectionError(str(exc)) from exc
        finally:
            self._in_flight.release()


class _BlockingSentinelPool(SentinelConnectionPool, aioredis.BlockingConnectionPool):
    """Sentinel's pool (asks for the current master per new connection), bounded and
    blocking like the single-server pool: past ``max_connections`` a command waits up to
    ``timeout`` for a free connection."""


class _SentinelRedis(aioredis.Redis):
    """The master's client; closing it also closes the connections to the Sentinels."""

    sentinels: Sentinel | None = None

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        if self.sentinels is not None:
            await self.sentinels.aclose()


def create_redis(
    url: str,
    *,
    connect_timeout: float = CONNECT_TIMEOUT,
    command_timeout: float = COMMAND_TIMEOUT,
    max_connections: int = MAX_CONNECTIONS,
    pool_wait: float = POOL_WAIT,
    health_check_interval: int = 30,
) -> RedisClient:
    """A client that fails within a fraction of a second when Redis is down.

    redis-py's defaults retry with backoff for several seconds; here every command
    gets one try and a short deadline, and callers decide what failure means. The pool
    is bounded and blocking: past ``max_connections`` commands in flight, a command
    waits up to ``pool_wait`` for a connection. A cluster client has that many
    connections per node and at most that many commands in flight, the others waiting up
    to ``pool_wait`` too; a command that fails on a node is tried once more after reloading the slot map, so a
    promoted replica is found without a restart. Callers bound the whole call with a
    deadline of their own.
    """
    target = parse_redis_url(url)
    timeouts = {
        "socket_connect_timeout": connect_timeout,
        "socket_timeout": command_timeout,
        "health_check_interval": health_check_interval,
    }
    if target.kind == "cluster":
        return _Cluster(
            startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
            username=target.username,
            password=target.password,
            max_in_flight=max_connections,
            pool_wait=pool_wait,
            # One retry, on a fresh slot map: the first command after a failover finds
            # the promoted replica instead of failing once more on the dead master.
            retry=Retry(NoBackoff(), 1),
            **timeouts,
        )
    if target.kind == "sentinel":
        sentinel = Sentinel(
            list(target.nodes),
            # No retries: redis-py's default (3, with backoff) would spend seconds on a
            # Sentinel that is down before asking the next one.
            sentinel_kwargs={
                "socket_connect_timeout": connect_timeout,
                "socket_timeout": command_timeout,
                "retry": Retry(NoBackoff(), 0),
            },
        )
        client = sentinel.master_for(
            target.service,
            redis_class=_SentinelRedis,
            connection_pool_class=_BlockingSentinelPool,
            db=target.db,
            username=target.username,
            password=target.password,
            retry=Retry(NoBackoff(), 0),
            max_connections=max_connections,
            timeout=pool_wait,
            **timeouts,
        )
        client.sentinels = sentinel
        return client
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        retry=Retry(NoBackoff(), 0),
        max_connections=max_connections,
        timeout=pool_wait,
        **timeouts,
    )
    return aioredis.Redis.from_pool(pool)


async def warm_up(client: RedisClient, *, within: float = 5.0) -> None:
    """Load a cluster client's slot map and command table now, at start-up.

    Done lazily, that is a dozen round trips (CLUSTER SLOTS, COMMAND, a connection per
    node) inside the first requests' short deadlines. Redis being away at start-up is
    not fatal here, as with one server: the first command tries again.
    """
    if not isinstance(client, RedisCluster):
        return
    try:
        async with asyncio.timeout(within):
            await client.initialize()
    except REDIS_ERRORS as exc:
        log.warning("Redis Cluster not reachable at start-up (%s: %s); will retry", type(exc).__name__, exc)


def retry_in_background(
    pending: set[asyncio.Task[None]],
    attempt: Callable[[], Awaitable[object]],
    *,
    unavailable: type[Exception],
    within: float,
    what: str,
    interval: float = 0.25,
) -> None:
    """Keep calling ``attempt`` every ``interval`` seconds while it raises ``unavailable``,
    for at most ``within`` seconds: for a change that must reach Redis once it is back.
    The task is kept in ``pending`` until it ends (cancel them at shutdown)."""

    async def retry() -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while loop.time() < deadline:
            await asyncio.sleep(interval)
            try:
                await attempt()
                return
            except unavailable:
                continue
        log.warning("Redis still unavailable; gave up trying to %s", what)

    task = asyncio.get_running_loop().create_task(retry())
    pending.add(task)
    task.add_done_callback(pending.discard)
