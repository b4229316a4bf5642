"""The shared Redis client, with short timeouts so Redis trouble never hangs a request."""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

CONNECT_TIMEOUT = 0.2
COMMAND_TIMEOUT = 0.5
MAX_CONNECTIONS = 64
# A burst of more commands than connections waits this long for a free one (then the
# caller sees a ConnectionError like any other Redis trouble), instead of failing at once.
POOL_WAIT = 0.5


def create_redis(url: str) -> aioredis.Redis:
    """A client that fails within a fraction of a second when Redis is down.

    redis-py's defaults retry with backoff for several seconds; here every command
    gets one try and a short deadline, and callers decide what failure means. The pool
    is bounded and blocking: past ``MAX_CONNECTIONS`` commands in flight, a command waits
    up to ``POOL_WAIT`` for a connection.
    """
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_timeout=COMMAND_TIMEOUT,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=30,
        max_connections=MAX_CONNECTIONS,
        timeout=POOL_WAIT,
    )
    return aioredis.Redis.from_pool(pool)
