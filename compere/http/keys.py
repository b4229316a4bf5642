"""Typed keys for state kept on the application and on each request."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from aiohttp import web

from compere.domain.projects import Project
from compere.http.client_address import Client
from compere.infra.auth_state import LoginThrottle
from compere.infra.idempotency import IdempotencyStore
from compere.infra.passwords import PasswordHasher
from compere.infra.ratelimit import SlidingWindowLimiter
from compere.infra.redis import RedisClient
from compere.infra.signing import PairTokens
from compere.infra.tokens import TokenIssuer
from compere.infra.voters import VoterIds
from compere.services.boards import RankingCache
from compere.services.projects import ProjectCache
from compere.services.webhooks import WebhookDispatcher
from compere.settings import Settings
from compere.storage.database import Database
from compere.storage.idempotency import Receipt
from compere.storage.vote_queue import VoteQueue

if TYPE_CHECKING:
    from compere.http.auth import AuthenticatedUser, KeyCache, PendingIdentity
    from compere.http.views.health import ReadinessCache

SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
DATABASE: web.AppKey[Database] = web.AppKey("database")
REDIS: web.AppKey[RedisClient | None] = web.AppKey("redis")
TOKENS: web.AppKey[TokenIssuer] = web.AppKey("tokens")
PASSWORDS: web.AppKey[PasswordHasher] = web.AppKey("passwords")
LOGIN_THROTTLE: web.AppKey[LoginThrottle] = web.AppKey("login_throttle")
PAIR_TOKENS: web.AppKey[PairTokens] = web.AppKey("pair_tokens")
VOTER_IDS: web.AppKey[VoterIds] = web.AppKey("voter_ids")
RANKING_CACHE: web.AppKey[RankingCache] = web.AppKey("ranking_cache")
RATE_LIMITER: web.AppKey[SlidingWindowLimiter] = web.AppKey("rate_limiter")
IDEMPOTENCY: web.AppKey[IdempotencyStore] = web.AppKey("idempotency")
READINESS: web.AppKey[ReadinessCache] = web.AppKey("readiness")
WEBHOOKS: web.AppKey[WebhookDispatcher] = web.AppKey("webhooks")
KEY_CACHE: web.AppKey[KeyCache] = web.AppKey("key_cache")
# This process's group commit of votes (compere/storage/vote_queue.py).
VOTES: web.AppKey[VoteQueue] = web.AppKey("votes")
PROJECTS: web.AppKey[ProjectCache] = web.AppKey("projects")
# The wall clock (Unix seconds) of login throttles and account lockouts; tests move it on.
CLOCK: web.AppKey[Callable[[], float]] = web.AppKey("clock")

REQUEST_ID = web.RequestKey("request_id", str)
# Who sent the request (address and group through TRUSTED_PROXIES): resolved once by the
# outermost middleware, request logging; every later step reads it from here.
CLIENT: web.RequestKey[Client] = web.RequestKey("client")
# Who made the request: set by the identity middleware on every request (None when
# anonymous or when the credentials were not valid). The rate limiter keys by it.
USER: web.RequestKey[AuthenticatedUser | None] = web.RequestKey("user")
# The identity look-up in flight between the identity middleware and the rate limiter.
PENDING_IDENTITY: web.RequestKey[PendingIdentity] = web.RequestKey("pending_identity")
# Why presented credentials were refused (for the 401 message and the log).
AUTH_FAILURE = web.RequestKey("auth_failure", str)
# The Idempotency-Key of this request, for handlers that record its answer in their own
# write transaction (votes); they then set ANSWER_RECORDED so it is not written again.
IDEMPOTENCY_RECEIPT: web.RequestKey[Receipt] = web.RequestKey("idempotency_receipt")
ANSWER_RECORDED = web.RequestKey("answer_recorded", bool)
# The project a board request acts on, with its settings in force: resolved once by the
# router (``compere.http.routes``) from /projects/{slug}/..., or ``default`` for the
# top-level routes. Handlers and services take it from here.
PROJECT: web.RequestKey[Project] = web.RequestKey("project")
# The action the project guard granted on a /projects/{slug}/ route; views whose
# top-level route has its own rule (require_bulk_access) defer to it.
PROJECT_GRANTED = web.RequestKey("project_granted", str)
