"""The application factory: settings, storage, routes and middlewares wired once."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

from aiohttp import web

from compere.http.auth import auth_context
from compere.http.cors import setup_cors
from compere.http.keys import (
    CLOCK,
    DATABASE,
    IDEMPOTENCY,
    PAIR_TOKENS,
    PROJECTS,
    RANKING_CACHE,
    READINESS,
    REDIS,
    SETTINGS,
    VOTER_IDS,
    VOTES,
    WEBHOOKS,
)
from compere.http.middlewares import build_middlewares, record_file_status
from compere.http.openapi import setup_openapi
from compere.http.ratelimit_middleware import rate_limit_cleanup_ctx
from compere.http.routes import ROUTE_TABLE, ROUTES, add_other_spellings, setup_routes
from compere.http.security_headers import setup_security_headers
from compere.http.views.comparisons import vote_answer
from compere.http.views.health import ReadinessCache
from compere.http.webapp import setup_webapp
from compere.infra.idempotency import InMemoryIdempotencyStore, RedisIdempotencyStore
from compere.infra.logging import configure_logging, redact_access_logs, redact_parser_errors
from compere.infra.redis import create_redis, warm_up
from compere.infra.signing import PairTokens
from compere.infra.voters import VoterIds
from compere.services.boards import RankingCache
from compere.services.projects import ProjectCache
from compere.services.webhooks import WebhookDispatcher
from compere.settings import Settings, load_settings, redact_url
from compere.storage.comparisons import VOTE_EVENT
from compere.storage.connect import open_database
from compere.storage.database import DatabaseError
from compere.storage.idempotency import purge_answers
from compere.storage.migrations import migrate
from compere.storage.vote_queue import VoteQueue

log = logging.getLogger(__name__)


async def create_app(settings: Settings | None = None, *, configure_logs: bool = True) -> web.Application:
    """Build the app. Usable as gunicorn's ``compere.http.app:create_app``.

    Without ``settings`` they are read from the environment (and ``.env``).
    """
    settings = settings or load_settings()
    if configure_logs:
        configure_logging(settings.log_level, settings.log_format)
    redact_access_logs()  # whoever set up logging, request lines lose their query strings
    redact_parser_errors()  # and aiohttp's parser errors lose the raw lines they quote
    app = web.Application(middlewares=build_middlewares(settings), client_max_size=settings.max_body_size)
    app[SETTINGS] = settings
    app[PAIR_TOKENS] = PairTokens(settings.secret_key, settings.pair_token_ttl)
    app[VOTER_IDS] = VoterIds(settings.secret_key)
    app[RANKING_CACHE] = RankingCache()
    app[PROJECTS] = ProjectCache(settings)
    app[READINESS] = ReadinessCache(settings.ready_cache_seconds)
    app[CLOCK] = time.time
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_webhooks)  # after the database; stopped before it closes
    app.cleanup_ctx.append(_votes)  # announces votes when the dispatcher wants them
    app.cleanup_ctx.append(_redis)
    app.cleanup_ctx.append(auth_context)  # needs Redis for revocations and login counters
    if settings.rate_limit_enabled:
        app.cleanup_ctx.append(rate_limit_cleanup_ctx(settings))
    setup_routes(app, ROUTE_TABLE)
    setup_openapi(app, ROUTES)
    setup_webapp(app)
    add_other_spellings(app)  # after every route: /entities -> 307 /entities/ and the like
    setup_cors(app, settings)  # last: it wraps every route registered above
    setup_security_headers(app, settings)
    app.on_response_prepare.append(record_file_status)  # request log and metrics of files
    return app


async def _database(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    db = await open_database(settings)
    try:
        if settings.migrate_on_start:
            applied = await migrate(db)
            if applied:
                log.info("schema updated: %s", ", ".join(applied))
        log.info("database ready: %s", redact_url(settings.database_url))
        app[DATABASE] = db
        yield
    finally:
        await db.close()


async def _webhooks(app: web.Application) -> AsyncIterator[None]:
    """The per-worker webhook dispatcher (compere/services/webhooks.py), stopped cleanly."""
    dispatcher = WebhookDispatcher(app[DATABASE], app[SETTINGS], ranking_cache=app[RANKING_CACHE])
    app[WEBHOOKS] = dispatcher
    await dispatcher.start()
    try:
        yield
    finally:
        await dispatcher.stop()


async def _votes(app: web.Application) -> AsyncIterator[None]:
    """The group commit of this process's votes, and the periodic purge of old answers
    recorded for Idempotency-Keys."""
    dispatcher = app[WEBHOOKS]
    app[VOTES] = VoteQueue(app[DATABASE], announce=lambda: dispatcher.wants(VOTE_EVENT), answer=vote_answer)
    purge = asyncio.get_running_loop().create_task(_purge_answers(app))
    try:
        yield
    finally:
        await app[VOTES].wait_idle()
        purge.cancel()
        await asyncio.gather(purge, return_exceptions=True)


async def _purge_answers(app: web.Application) -> None:
    settings = app[SETTINGS]
    # Often enough that the table holds about one retention's worth of answers.
    interval = min(600.0, settings.idempotency_ttl / 4)
    while True:
        await asyncio.sleep(interval)
        try:
            await purge_answers(app[DATABASE], settings.idempotency_ttl)
        except DatabaseError as exc:
            log.warning("could not purge old idempotency answers: %s", exc)


async def _redis(app: web.Application) -> AsyncIterator[None]:
    url = app[SETTINGS].redis_url
    client = create_redis(url) if url else None
    if client is not None:
        await warm_up(client)
    app[REDIS] = client
    # Without Redis (development only: production requires REDIS_URL) idempotency keys
    # are remembered per process.
    prefix = f"{app[SETTINGS].redis_key_prefix}idem:"
    store = (
        RedisIdempotencyStore(client, key_prefix=prefix) if client is not None else InMemoryIdempotencyStore()
    )
    app[IDEMPOTENCY] = store
    try:
        yield
    finally:
        await store.aclose()
        if client is not None:
            await client.aclose()
