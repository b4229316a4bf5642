"""The shared Redis client, with short timeouts so Redis trouble never hangs a request."""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

CONNECT_TIMEOUT = 0.2
COMMAND_TIMEOUT = 0.5


def create_redis(url: str) -> aioredis.Redis:
    """A client that fails within a fraction of a second when Redis is down.

    redis-py's defaults retry with backoff for several seconds; here every command
    gets one try and a short deadline, and callers decide what failure means.
    """
    return aioredis.Redis.from_url(
        url,
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_timeout=COMMAND_TIMEOUT,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=30,
        max_connections=64,
    )
