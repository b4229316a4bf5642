"""Typed keys for state kept on the application and on each request."""

from __future__ import annotations

from typing import Any

import redis.asyncio
from aiohttp import web

from compere.infra.ratelimit import SlidingWindowLimiter
from compere.infra.signing import PairTokens
from compere.ranking_cache import RankingCache
from compere.settings import Settings
from compere.storage.database import Database

SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
DATABASE: web.AppKey[Database] = web.AppKey("database")
REDIS: web.AppKey[redis.asyncio.Redis | None] = web.AppKey("redis")
PAIR_TOKENS: web.AppKey[PairTokens] = web.AppKey("pair_tokens")
RANKING_CACHE: web.AppKey[RankingCache] = web.AppKey("ranking_cache")
RATE_LIMITER: web.AppKey[SlidingWindowLimiter] = web.AppKey("rate_limiter")

REQUEST_ID = web.RequestKey("request_id", str)

# The authenticated user, set by the auth identity middleware when valid credentials came
# with the request; absent (or None) for anonymous requests. The rate limiter reads it to
# key requests by user, so it lives here rather than in the auth module.
USER_KEY: web.RequestKey[Any] = web.RequestKey("user", object)
