"""Typed keys for state kept on the application and on each request."""

from __future__ import annotations

import redis.asyncio
from aiohttp import web

from compere.infra.signing import PairTokens
from compere.ranking_cache import RankingCache
from compere.settings import Settings
from compere.storage.database import Database

SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
DATABASE: web.AppKey[Database] = web.AppKey("database")
REDIS: web.AppKey[redis.asyncio.Redis | None] = web.AppKey("redis")
PAIR_TOKENS: web.AppKey[PairTokens] = web.AppKey("pair_tokens")
RANKING_CACHE: web.AppKey[RankingCache] = web.AppKey("ranking_cache")

REQUEST_ID = web.RequestKey("request_id", str)
