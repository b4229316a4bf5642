"""``/health`` (liveness) and ``/health/ready`` (readiness of every dependency)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from compere import __version__
from compere.http.errors import json_response
from compere.http.keys import DATABASE, RATE_LIMITER, READINESS, REDIS, SETTINGS
from compere.infra import metrics
from compere.storage.database import DatabaseError
from compere.storage.replica import ReplicatedDatabase

_CHECK_TIMEOUT = 2.0


async def health(request: web.Request) -> web.Response:
    return json_response({"status": "healthy", "timestamp": datetime.now(UTC), "version": __version__})


class ReadinessCache:
    """The last readiness answer of this worker, reused while younger than ``ttl`` seconds.

    Probes, load balancers and anyone else may call ``/health/ready`` as often as they
    like (it is exempt from rate limits): the database and Redis are pinged at most once
    per ``ttl`` per worker, and concurrent callers wait for the one check in progress.
    A dependency that goes down is therefore reported within ``ttl`` seconds.
    """

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.clock = clock
        self._lock = asyncio.Lock()
        self._answer: tuple[int, dict[str, Any]] | None = None
        self._checked_at = 0.0

    async def answer(self, request: web.Request) -> tuple[int, dict[str, Any]]:
        async with self._lock:
            started = self.clock()
            if self._answer is None or started - self._checked_at >= self.ttl:
                self._answer = await _check(request)
                self._checked_at = started
            return self._answer


async def ready(request: web.Request) -> web.Response:
    status, body = await request.app[READINESS].answer(request)
    return json_response(body, status=status)


async def _check(request: web.Request) -> tuple[int, dict[str, Any]]:
    """Ping every dependency: the original's fields, and Compere's ``checks`` beside them."""
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
    db = request.app[DATABASE]
    replica: dict[str, Any] | None = None
    if isinstance(db, ReplicatedDatabase):
        # Reads fall back to the primary, so a lagging or missing replica only degrades.
        state = db.state
        checks["replica"] = "ok" if state.usable else "degraded"
        lag = None if state.lag_seconds is None else round(state.lag_seconds, 3)
        replica = {"status": state.status, "lag_seconds": lag, "max_lag_seconds": db.max_lag}
    limiter = request.app.get(RATE_LIMITER)
    if limiter is not None:
        checks["rate_limiter"] = "ok" if await limiter.ping() else redis_down
    ok = all(state in ("ok", "degraded", "not configured") for state in checks.values())
    original = {
        "status": "ready" if ok else "not ready",
        "database": "connected" if checks["database"] == "ok" else "disconnected",
    }
    body: dict[str, Any] = {**original, "timestamp": datetime.now(UTC), "checks": checks}
    if replica is not None:
        body["replica"] = replica
    if not ok:
        # The original answered 503 as {"detail": {"status": ..., "database": ...}}.
        body["detail"] = original
    return (200 if ok else 503), body
