"""Sliding-window rate limiting: one interface, a Redis backend and an in-process stand-in.

The Redis backend keeps an exact sliding log (one sorted-set entry per admitted request)
timed by the Redis server's clock; docs/rate-limiting.md ("Design") says why a log and
not a window counter, with the measurements and the memory it costs.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from compere.infra import metrics
from compere.infra.ratelimit_policy import RateLimitPolicy
from compere.infra.redis import REDIS_ERRORS, RedisClient, create_redis

__all__ = [
    "InProcessSlidingWindowLimiter",
    "RateLimitDecision",
    "RateLimitPolicy",
    "RateLimiterUnavailable",
    "RedisSlidingWindowLimiter",
    "SlidingWindowLimiter",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RateLimitDecision:
    """The outcome of one request against one policy.

    ``reset_after`` is the number of seconds until the oldest request counted in the
    window leaves it, i.e. until one more request would be admitted; ``now`` is the
    limiter's clock (UNIX epoch seconds) when it decided.
    """

    allowed: bool
    limit: int
    remaining: int
    reset_after: float
    now: float

    @property
    def reset_at(self) -> float:
        """UNIX epoch seconds at which one more request becomes possible."""
        return self.now + self.reset_after


class RateLimiterUnavailable(Exception):
    """The limiter's store could not be reached in time; the caller applies its fail mode."""


class SlidingWindowLimiter(abc.ABC):
    """Counts requests per key in a sliding window. A refused request is not counted."""

    @abc.abstractmethod
    async def hit(self, key: str, policy: RateLimitPolicy) -> RateLimitDecision:
        """Record one request for ``key`` under ``policy`` if it fits, and say whether it did.

        Raises ``RateLimiterUnavailable`` when the store cannot answer.
        """

    @property
    def degraded(self) -> bool:
        """True while the store has recently failed."""
        return False

    async def ping(self) -> bool:
        """Whether the store answers now (for readiness); never raises, never hangs."""
        return True

    async def close(self) -> None:  # noqa: B027 - nothing to release by default
        """Release connections."""


# KEYS[1]: the sorted set for one (policy, client).
# ARGV[1]: window in microseconds, ARGV[2]: limit, ARGV[3]: a random member suffix.
# Scores are Redis server times in microseconds (exact in a double until 2255).
# Returns {allowed (0/1), entries in window after this request, oldest score, now}.
_SLIDING_LOG_LUA = """
local key = KEYS[1]
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
local count = redis.call('ZCARD', key)
local allowed = 0
if count < limit then
  redis.call('ZADD', key, now, ARGV[3])
  redis.call('PEXPIRE', key, math.ceil(window / 1000) + 1)
  count = count + 1
  allowed = 1
end
local oldest = now
local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
if first[2] then
  oldest = tonumber(first[2])
end
return {allowed, count, oldest, now}
"""


class RedisSlidingWindowLimiter(SlidingWindowLimiter):
    """Sliding log in Redis: one EVALSHA per request, atomic across workers and hosts.

    Redis errors never retry and never wait past the client's timeouts. After
    ``trip_after`` failures in a row the limiter stops asking Redis for ``cooldown``
    seconds (every call raises ``RateLimiterUnavailable`` at once), then tries again, so
    a dead Redis does not add a timeout to every request and limiting resumes by itself
    when Redis is back. One slow answer on a busy host does not trip it.
    """

    def __init__(
        self,
        client: RedisClient,
        *,
        key_prefix: str = "compere:rl:",
        cooldown: float = 1.0,
        trip_after: int = 3,
        error_log_interval: float = 60.0,
        max_in_flight: int | None = None,
        wait_timeout: float = 0.25,
    ) -> None:
        if cooldown < 0 or error_log_interval < 0 or wait_timeout <= 0 or trip_after < 1:
            raise ValueError("cooldown, error_log_interval >= 0; wait_timeout > 0; trip_after >= 1")
        # Calls beyond the pool size wait here (bounded), not in the pool: running out of
        # connections under a burst is not Redis failing, and must not trip the cooldown.
        self._slots = asyncio.Semaphore(max_in_flight) if max_in_flight else None
        self._wait_timeout = wait_timeout
        # One call at most: a connect and a command timeout, as with one server.
        self._deadline = 2 * wait_timeout
        self._client = client
        self._key_prefix = key_prefix
        self._cooldown = cooldown
        self._trip_after = trip_after
        self._error_log_interval = error_log_interval
        self._script = client.register_script(_SLIDING_LOG_LUA)
        self._failures = 0  # in a row
        self._failed_at: float | None = None  # monotonic time of the last failure
        self._logged_at: float | None = None
        self._suppressed = 0

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        connect_timeout: float = 0.25,
        command_timeout: float = 0.25,
        max_connections: int = 16,
        **kwargs: float | str,
    ) -> RedisSlidingWindowLimiter:
        """A limiter with its own pool: short timeouts, no retries, bounded connections.

        ``url`` may name one server, a cluster or a Sentinel set (compere.infra.redis).
        """
        client = create_redis(
            url,
            connect_timeout=connect_timeout,
            command_timeout=command_timeout,
            max_connections=max_connections,
            pool_wait=command_timeout,
            health_check_interval=0,
        )
        return cls(
            client,
            max_in_flight=max_connections,
            wait_timeout=command_timeout,
            **kwargs,  # type: ignore[arg-type]
        )

    def key(self, policy: RateLimitPolicy, client_key: str) -> str:
        """The sorted set of one (policy, client): one key per script call, its own slot."""
        return f"{self._key_prefix}{policy.name}:{client_key}"

    @property
    def client(self) -> RedisClient:
        return self._client

    @property
    def degraded(self) -> bool:
        return self._failures > 0

    async def ping(self) -> bool:
        """Ask Redis directly (for readiness); a success ends the degraded state."""
        try:
            async with asyncio.timeout(self._deadline):
                await self._client.ping()
        except REDIS_ERRORS as exc:
            self._record_failure(exc)
            return False
        self._recovered()
        return True

    def _recovered(self) -> None:
        if self._failures:
            self._failures = 0
            self._failed_at = None
            log.warning("rate limiter: Redis reachable again, limiting resumed")

    async def hit(self, key: str, policy: RateLimitPolicy) -> RateLimitDecision:
        failed_at = self._failed_at
        if (
            self._failures >= self._trip_after
            and failed_at is not None
            and time.monotonic() - failed_at < self._cooldown
        ):
            raise RateLimiterUnavailable("rate limiter store recently failed")
        window_us = max(1, round(policy.window * 1_000_000))
        if self._slots is not None:
            try:
                async with asyncio.timeout(self._wait_timeout):
                    await self._slots.acquire()
            except TimeoutError:
                raise RateLimiterUnavailable("rate limiter busy: all Redis connections in use") from None
        try:
            # A cluster client may reload its slot map or wait out a failover inside
            # one call: the deadline bounds the whole call, not each socket operation.
            async with asyncio.timeout(self._deadline):
                allowed, count, oldest, now = await self._script(
                    keys=[self.key(policy, key)],
                    args=[window_us, policy.limit, secrets.token_hex(6)],
                )
        except REDIS_ERRORS as exc:
            self._record_failure(exc)
            raise RateLimiterUnavailable(str(exc) or type(exc).__name__) from exc
        finally:
            if self._slots is not None:
                self._slots.release()
        self._recovered()
        reset_after_us = max(0, int(oldest) + window_us - int(now))
        return RateLimitDecision(
            allowed=bool(allowed),
            limit=policy.limit,
            remaining=max(0, policy.limit - int(count)),
            reset_after=reset_after_us / 1_000_000,
            now=int(now) / 1_000_000,
        )

    def _record_failure(self, exc: BaseException) -> None:
        metrics.REDIS_ERRORS.labels("rate_limit").inc()
        now = time.monotonic()
        self._failures += 1
        self._failed_at = now
        if self._logged_at is not None and now - self._logged_at < self._error_log_interval:
            self._suppressed += 1
            return
        suppressed, self._suppressed = self._suppressed, 0
        self._logged_at = now
        log.error(
            "rate limiter: Redis unavailable (%s: %s)%s",
            type(exc).__name__,
            exc,
            f"; {suppressed} more failures since the last report" if suppressed else "",
        )

    async def close(self) -> None:
        await self._client.aclose()


class InProcessSlidingWindowLimiter(SlidingWindowLimiter):
    """The same sliding log in this process's memory: for local development only.

    Each worker process has its own counts, so several workers or hosts do not share a
    limit. Idle keys are swept every ``sweep_every`` calls so memory stays bounded by the
    number of clients active within one window.
    """

    def __init__(self, *, clock: Callable[[], float] = time.time, sweep_every: int = 1024) -> None:
        if sweep_every < 1:
            raise ValueError("sweep_every must be positive")
        self._clock = clock
        self._logs: dict[tuple[str, str], collections.deque[float]] = {}
        self._windows: dict[str, float] = {}
        self._sweep_every = sweep_every
        self._calls = 0

    async def hit(self, key: str, policy: RateLimitPolicy) -> RateLimitDecision:
        now = self._clock()
        self._windows[policy.name] = policy.window
        entries = self._logs.setdefault((policy.name, key), collections.deque())
        horizon = now - policy.window
        while entries and entries[0] <= horizon:
            entries.popleft()
        allowed = len(entries) < policy.limit
        if allowed:
            entries.append(now)
        self._calls += 1
        if self._calls % self._sweep_every == 0:
            self._sweep(now)
        oldest = entries[0] if entries else now
        return RateLimitDecision(
            allowed=allowed,
            limit=policy.limit,
            remaining=policy.limit - len(entries),
            reset_after=max(0.0, oldest + policy.window - now),
            now=now,
        )

    def _sweep(self, now: float) -> None:
        for name_key in [k for k, v in self._logs.items() if not v or v[-1] <= now - self._windows[k[0]]]:
            del self._logs[name_key]
