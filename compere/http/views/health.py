"""``/health`` (liveness) and ``/health/ready`` (readiness of every dependency)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from aiohttp import web

from compere import __version__
from compere.http.errors import json_response
from compere.http.keys import DATABASE, RATE_LIMITER, REDIS, SETTINGS
from compere.infra import metrics
from compere.storage.database import DatabaseError

_CHECK_TIMEOUT = 2.0


async def health(request: web.Request) -> web.Response:
    return json_response({"status": "healthy", "timestamp": datetime.now(UTC), "version": __version__})


async def ready(request: web.Request) -> web.Response:
    checks = {"database": "ok", "redis": "not configured"}
    try:
        async with asyncio.timeout(_CHECK_TIMEOUT):
            await request.app[DATABASE].ping()
    except (DatabaseError, TimeoutError):
        checks["database"] = "unavailable"
    settings = request.app[SETTINGS]
    # Rate limiting with RATE_LIMIT_FAIL_MODE=open keeps answering (unlimited) while Redis
    # is away: degraded but ready, so a Redis outage does not empty the load balancer.
    fail_open = settings.rate_limit_enabled and settings.rate_limit_fail_mode == "open"
    redis_down = "degraded" if fail_open else "unavailable"
    redis = request.app.get(REDIS)
    if redis is not None:
        try:
            async with asyncio.timeout(_CHECK_TIMEOUT):
                await redis.ping()
            checks["redis"] = "ok"
        except Exception:  # any Redis failure is reported, never a 500
            metrics.REDIS_ERRORS.labels("ping").inc()
            checks["redis"] = redis_down
    limiter = request.app.get(RATE_LIMITER)
    if limiter is not None:
        checks["rate_limiter"] = "ok" if await limiter.ping() else redis_down
    ok = all(state in ("ok", "degraded", "not configured") for state in checks.values())
    return json_response(
        {"status": "ready" if ok else "not ready", "checks": checks}, status=200 if ok else 503
    )
