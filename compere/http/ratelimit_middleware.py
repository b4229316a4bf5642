"""Rate limiting for HTTP requests: which policy applies, whose quota, and what the client sees.

Every limited response, allowed or refused, carries ``X-RateLimit-Limit``,
``X-RateLimit-Remaining`` and ``X-RateLimit-Reset`` (UTC epoch seconds, as GitHub sends
them) and the IETF draft's ``RateLimit-Policy`` / ``RateLimit`` fields
(draft-ietf-httpapi-ratelimit-headers-10). A refusal is ``429`` with ``Retry-After`` and a
JSON ``detail``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import get_args

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from compere.http.auth import pending_identity, settle_identity
from compere.http.client_address import TrustedProxies, resolve_client
from compere.http.errors import ApiError
from compere.http.keys import CLIENT, RATE_LIMITER, USER
from compere.infra import metrics
from compere.infra.ratelimit import (
    InProcessSlidingWindowLimiter,
    RateLimitDecision,
    RateLimiterUnavailable,
    RateLimitPolicy,
    RedisSlidingWindowLimiter,
    SlidingWindowLimiter,
)
from compere.infra.ratelimit_policy import FailMode
from compere.infra.redis import warm_up
from compere.settings import Settings

__all__ = [
    "RATE_LIMIT_HEADER_NAMES",
    "FailMode",
    "RateLimitPolicies",
    "rate_limit_cleanup_ctx",
    "rate_limit_middleware",
    "rate_limit_subject",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RateLimitPolicies:
    """Which policy a request falls under: a stricter one for some routes, none for exempt paths.

    ``routes`` maps ``(METHOD, path)`` to a policy; paths match with or without a trailing
    slash. Paths equal to, or under, an ``exempt`` prefix are not limited at all.
    """

    default: RateLimitPolicy
    routes: Mapping[tuple[str, str], RateLimitPolicy] = field(default_factory=dict)
    exempt: tuple[str, ...] = ("/health",)

    def __post_init__(self) -> None:
        if not isinstance(self.default, RateLimitPolicy):
            raise TypeError("default must be a RateLimitPolicy")
        normalised: dict[tuple[str, str], RateLimitPolicy] = {}
        for (method, path), policy in self.routes.items():
            if not isinstance(policy, RateLimitPolicy):
                raise TypeError(f"policy for {method} {path} must be a RateLimitPolicy")
            if not path.startswith("/"):
                raise ValueError(f"route path {path!r} must start with '/'")
            normalised[(method.upper(), _strip_slash(path))] = policy
        object.__setattr__(self, "routes", normalised)
        for prefix in self.exempt:
            if not prefix.startswith("/"):
                raise ValueError(f"exempt path {prefix!r} must start with '/'")

    @classmethod
    def standard(cls, default: RateLimitPolicy, auth: RateLimitPolicy) -> RateLimitPolicies:
        """Compere's route groups: logging in and signing up share the small ``auth`` quota."""
        return cls(default, {("POST", "/auth/token"): auth, ("POST", "/auth/users/"): auth})

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimitPolicies:
        """The default and ``auth`` policies from RATE_LIMIT_* settings."""
        return cls.standard(settings.rate_limit, settings.auth_rate_limit)

    def for_request(self, method: str, path: str) -> RateLimitPolicy | None:
        for prefix in self.exempt:
            if path == prefix or path.startswith(prefix.rstrip("/") + "/"):
                return None
        return self.routes.get((method.upper(), _strip_slash(path)), self.default)


def _strip_slash(path: str) -> str:
    return path.rstrip("/") or "/"


def rate_limit_subject(request: web.Request, trusted_proxies: TrustedProxies) -> str:
    """Whose quota a request spends: the authenticated user, else the client's group
    (IPv6 per /64) as request logging resolved it; resolved here only in an app without
    request logging (tests, benchmarks)."""
    user = request.get(USER)
    if user is not None:
        api_key = getattr(user, "api_key", None)
        if api_key is not None:
            return f"key:{api_key.id}"  # each key has a quota of its own
        user_id = user.get("id") if isinstance(user, Mapping) else getattr(user, "id", user)
        return f"user:{user_id}"
    client = request.get(CLIENT)
    return (client or resolve_client(request, trusted_proxies)).group


RATE_LIMIT_HEADER_NAMES = (
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "RateLimit-Policy",
    "RateLimit",
)


def rate_limit_headers(policy: RateLimitPolicy, decision: RateLimitDecision) -> dict[str, str]:
    reset_after = math.ceil(decision.reset_after)
    return {
        "X-RateLimit-Limit": str(decision.limit),
        "X-RateLimit-Remaining": str(decision.remaining),
        "X-RateLimit-Reset": str(math.ceil(decision.reset_at)),
        "RateLimit-Policy": f'"{policy.name}";q={policy.limit};w={math.ceil(policy.window)}',
        "RateLimit": f'"{policy.name}";r={decision.remaining};t={reset_after}',
    }


def rate_limit_middleware(
    policies: RateLimitPolicies,
    *,
    trusted_proxies: TrustedProxies | None = None,
    fail_mode: FailMode = "open",
    limiter: SlidingWindowLimiter | None = None,
) -> Middleware:
    """A middleware enforcing ``policies``.

    The limiter is ``limiter`` if given, else the one the app stores under ``RATE_LIMITER``
    (created in ``rate_limit_cleanup_ctx``). When the limiter's store is unreachable,
    ``fail_mode="open"`` lets the request through unlimited and ``"closed"`` answers 503.
    Anonymous requests are counted by the client request logging resolved
    (``CLIENT``); ``trusted_proxies`` serves only an app without request logging.
    """
    if not isinstance(policies, RateLimitPolicies):
        raise TypeError("policies must be a RateLimitPolicies")
    if fail_mode not in get_args(FailMode):
        raise ValueError(f"fail_mode must be 'open' or 'closed', not {fail_mode!r}")
    if limiter is not None and not isinstance(limiter, SlidingWindowLimiter):
        raise TypeError("limiter must be a SlidingWindowLimiter")
    trusted = trusted_proxies if trusted_proxies is not None else TrustedProxies()
    if not isinstance(trusted, TrustedProxies):
        raise TypeError("trusted_proxies must be a TrustedProxies (see parse_trusted_proxies)")

    @web.middleware
    async def rate_limit(request: web.Request, handler: Handler) -> web.StreamResponse:
        policy = policies.for_request(request.method, request.path)
        if policy is None:
            await settle_identity(request)
            return await handler(request)
        store = limiter if limiter is not None else request.config_dict[RATE_LIMITER]
        try:
            decision = await _decide(request, store, policy)
        except RateLimiterUnavailable:
            # The limiter logs the failure itself, at most once per interval.
            if fail_mode == "closed":
                raise ApiError(
                    503,
                    "Rate limiting is temporarily unavailable. Please retry shortly.",
                    headers={"Retry-After": "1"},
                ) from None
            return await handler(request)

        headers = rate_limit_headers(policy, decision)
        if not decision.allowed:
            metrics.RATE_LIMIT_REFUSALS.labels(policy=policy.name).inc()
            retry_after = max(1, math.ceil(decision.reset_after))
            raise ApiError(
                429,
                # The original Compere's words; Retry-After says when to come back.
                f"Rate limit exceeded. Max {policy.limit} requests per {policy.window:g} seconds.",
                headers={**headers, "Retry-After": str(retry_after)},
            )
        try:
            response = await handler(request)
        except (web.HTTPException, ApiError) as exc:
            # A raised error is a response too: it carries the same headers (the error
            # middleware outside keeps them when it renders the error).
            exc.headers.update(headers)
            raise
        if not response.prepared:
            response.headers.update(headers)
        return response

    async def _decide(
        request: web.Request, store: SlidingWindowLimiter, policy: RateLimitPolicy
    ) -> RateLimitDecision:
        """Count the request against its subject's quota, the Redis call overlapping the
        identity look-up where the subject is known before the look-up answers (a signed
        token's user, a key this worker has seen). When the look-up then refuses the
        credentials, the request is also counted against its client, as an anonymous
        request is; a key's own quota applies on routes under the default policy."""
        pending = pending_identity(request)
        if pending is None or pending.subject is None:
            user = await settle_identity(request)
            return await store.hit(rate_limit_subject(request, trusted), _policy_for(user, policy))
        guess = pending.subject
        pending.start()  # the database answers while Redis does
        try:
            decision = await store.hit(guess, _policy_for_grant(pending.policy, policy))
        finally:
            await settle_identity(request)  # ran while Redis answered
        if rate_limit_subject(request, trusted) != guess:
            return await store.hit(rate_limit_subject(request, trusted), policy)
        return decision

    def _policy_for(user: object, policy: RateLimitPolicy) -> RateLimitPolicy:
        api_key = getattr(user, "api_key", None)
        return _policy_for_grant(api_key.rate_limit if api_key is not None else None, policy)

    def _policy_for_grant(own: RateLimitPolicy | None, policy: RateLimitPolicy) -> RateLimitPolicy:
        return own if own is not None and policy is policies.default else policy

    return rate_limit


def rate_limit_cleanup_ctx(settings: Settings) -> Callable[[web.Application], AsyncIterator[None]]:
    """An ``app.cleanup_ctx`` entry that opens the limiter and closes it on shutdown.

    With ``REDIS_URL`` the limiter has its own small pool (short timeouts, no retries), so
    other Redis users can neither starve it nor be starved by it. Without it the limiter
    is in-process: per worker, for local development (production refuses to start so).
    """

    async def rate_limiter_ctx(app: web.Application) -> AsyncIterator[None]:
        limiter: SlidingWindowLimiter
        if settings.redis_url:
            limiter = RedisSlidingWindowLimiter.from_url(
                settings.redis_url,
                connect_timeout=settings.rate_limit_redis_timeout,
                command_timeout=settings.rate_limit_redis_timeout,
                key_prefix=settings.rate_limit_key_prefix,
            )
            await warm_up(limiter.client)
        else:
            log.warning("rate limiting without REDIS_URL: counts are per process (development only)")
            limiter = InProcessSlidingWindowLimiter()
        app[RATE_LIMITER] = limiter
        try:
            yield
        finally:
            await limiter.close()

    return rate_limiter_ctx
