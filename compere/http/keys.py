"""Typed keys for state kept on the application and on each request."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    pass

SETTINGS = web.AppKey("settings", "Settings")
DATABASE = web.AppKey("database", "Database")
REDIS = web.AppKey("redis", "redis.asyncio.Redis | None")

REQUEST_ID = web.RequestKey("request_id", str)
