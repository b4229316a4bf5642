"""Typed keys for state kept on the application and on each request."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from compere.infra.ratelimit import SlidingWindowLimiter

if TYPE_CHECKING:
    pass

SETTINGS = web.AppKey("settings", "Settings")
DATABASE = web.AppKey("database", "Database")
REDIS = web.AppKey("redis", "redis.asyncio.Redis | None")
RATE_LIMITER = web.AppKey("rate_limiter", SlidingWindowLimiter)

REQUEST_ID = web.RequestKey("request_id", str)

# The authenticated user, set by the auth identity middleware when valid credentials came
# with the request; absent (or None) for anonymous requests. The rate limiter reads it to
# key requests by user, so it lives here rather than in the auth module.
USER_KEY: web.RequestKey[Any] = web.RequestKey("user", object)
