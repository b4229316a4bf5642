"""Typed keys for state kept on the application and on each request."""

from __future__ import annotations

from typing import Any

import redis.asyncio
from aiohttp import web

from compere.infra.idempotency import IdempotencyStore
from compere.settings import Settings
from compere.storage.database import Database

SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
DATABASE: web.AppKey[Database] = web.AppKey("database")
REDIS: web.AppKey[redis.asyncio.Redis | None] = web.AppKey("redis")
IDEMPOTENCY: web.AppKey[IdempotencyStore] = web.AppKey("idempotency")

REQUEST_ID = web.RequestKey("request_id", str)

# The authenticated caller, set by the auth middleware for requests with valid
# credentials (absent for anonymous ones). Idempotency keys and rate limits are
# scoped by it, so it lives here rather than in the auth module.
USER: web.RequestKey[Any] = web.RequestKey("user", object)
