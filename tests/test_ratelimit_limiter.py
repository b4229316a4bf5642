"""The sliding-window limiters on their own: Redis (real server) and the in-process stand-in."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import pytest

from compere.infra.ratelimit import (
    InProcessSlidingWindowLimiter,
    RateLimiterUnavailable,
    RateLimitPolicy,
    RedisSlidingWindowLimiter,
    SlidingWindowLimiter,
)
from tests.helpers import RedisRole, redis_connection
from tests.servers import RedisInstance

# For tests of behaviour with a working Redis on a busy test machine. The failure tests
# use the short defaults against servers that refuse or never answer.
GENEROUS_TIMEOUTS = {"connect_timeout": 2.0, "command_timeout": 2.0}


@pytest.fixture(params=["redis", "in-process"])
async def limiter(
    request: pytest.FixtureRequest, ratelimit_redis: RedisRole, ratelimit_redis_prefix: str
) -> AsyncIterator[SlidingWindowLimiter]:
    if request.param == "redis":
        instance: SlidingWindowLimiter = RedisSlidingWindowLimiter.from_url(
            ratelimit_redis.url, key_prefix=ratelimit_redis_prefix, **GENEROUS_TIMEOUTS
        )
    else:
        instance = InProcessSlidingWindowLimiter()
    yield instance
    await instance.close()


async def test_exactly_limit_requests_are_allowed_then_refused(
    limiter: SlidingWindowLimiter,
) -> None:
    policy = RateLimitPolicy("default", limit=5, window=30)
    decisions = [await limiter.hit("client-a", policy) for _ in range(7)]

    assert [d.allowed for d in decisions] == [True] * 5 + [False] * 2
    assert [d.remaining for d in decisions] == [4, 3, 2, 1, 0, 0, 0]
    assert all(d.limit == 5 for d in decisions)
    # The first request leaves the window 30 s after it was made.
    assert 29 < decisions[-1].reset_after <= 30
    assert abs(decisions[-1].reset_at - (time.time() + decisions[-1].reset_after)) < 2


async def test_clients_and_policies_are_counted_separately(
    limiter: SlidingWindowLimiter,
) -> None:
    strict = RateLimitPolicy("auth", limit=1, window=30)
    loose = RateLimitPolicy("default", limit=2, window=30)
    assert (await limiter.hit("a", strict)).allowed
    assert not (await limiter.hit("a", strict)).allowed
    assert (await limiter.hit("b", strict)).allowed
    assert (await limiter.hit("a", loose)).allowed


async def test_window_slides_and_refusals_use_no_quota(
    limiter: SlidingWindowLimiter,
) -> None:
    policy = RateLimitPolicy("default", limit=2, window=0.6)
    start = time.monotonic()
    assert (await limiter.hit("c", policy)).allowed
    await asyncio.sleep(0.3)
    assert (await limiter.hit("c", policy)).allowed  # made at about 0.3 s
    refused = [await limiter.hit("c", policy) for _ in range(10)]
    assert not any(d.allowed for d in refused)
    assert 0.1 < refused[-1].reset_after <= 0.35  # the first request leaves at about 0.6 s

    await asyncio.sleep(max(0.0, start + 0.65 - time.monotonic()))
    # Only the first request has aged out: one slot, not two (a fixed window would give
    # two), and the refused requests above did not take any.
    assert (await limiter.hit("c", policy)).allowed
    assert not (await limiter.hit("c", policy)).allowed


async def test_redis_limit_is_atomic_across_concurrent_callers_and_instances(
    ratelimit_redis: RedisRole, ratelimit_redis_prefix: str
) -> None:
    limiters = [
        RedisSlidingWindowLimiter.from_url(
            ratelimit_redis.url, key_prefix=ratelimit_redis_prefix, **GENEROUS_TIMEOUTS
        )
        for _ in range(2)
    ]
    policy = RateLimitPolicy("default", limit=10, window=30)
    try:
        decisions = await asyncio.gather(*(limiters[i % 2].hit("shared", policy) for i in range(60)))
    finally:
        for instance in limiters:
            await instance.close()
    assert sum(d.allowed for d in decisions) == 10


async def test_redis_keys_expire_with_the_window(
    ratelimit_redis: RedisRole, ratelimit_redis_prefix: str
) -> None:
    limiter = RedisSlidingWindowLimiter.from_url(
        ratelimit_redis.url, key_prefix=ratelimit_redis_prefix, **GENEROUS_TIMEOUTS
    )
    client = redis_connection(ratelimit_redis.url)
    try:
        await limiter.hit("e", RateLimitPolicy("default", limit=3, window=0.2))
        key = f"{ratelimit_redis_prefix}default:e"
        ttl = client.pttl(key)
        assert 0 < ttl <= 201
        await asyncio.sleep(0.25)
        assert client.exists(key) == 0
    finally:
        await limiter.close()
        client.close()


async def test_dead_redis_fails_fast_and_is_reported_degraded(
    dead_redis_url: str,
) -> None:
    limiter = RedisSlidingWindowLimiter.from_url(dead_redis_url, cooldown=0)
    policy = RateLimitPolicy("default", limit=3, window=1)
    try:
        assert not limiter.degraded
        started = time.monotonic()
        with pytest.raises(RateLimiterUnavailable):
            await limiter.hit("d", policy)
        assert time.monotonic() - started < 1.0
        assert limiter.degraded
        assert not await limiter.ping()
    finally:
        await limiter.close()


async def test_redis_that_never_answers_times_out() -> None:
    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accept, read, never reply
        writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    limiter = RedisSlidingWindowLimiter.from_url(
        f"redis://127.0.0.1:{port}/0", connect_timeout=0.2, command_timeout=0.2
    )
    try:
        started = time.monotonic()
        with pytest.raises(RateLimiterUnavailable):
            await limiter.hit("h", RateLimitPolicy("default", limit=3, window=1))
        assert time.monotonic() - started < 1.0
    finally:
        await limiter.close()
        server.close()
        await server.wait_closed()


async def test_failures_are_logged_once_per_interval(
    dead_redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    limiter = RedisSlidingWindowLimiter.from_url(dead_redis_url, cooldown=0, error_log_interval=60)
    policy = RateLimitPolicy("default", limit=3, window=1)
    caplog.set_level(logging.ERROR, logger="compere.infra.ratelimit")
    try:
        for _ in range(5):
            with pytest.raises(RateLimiterUnavailable):
                await limiter.hit("d", policy)
    finally:
        await limiter.close()
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1


async def test_limiting_resumes_when_redis_comes_back(
    own_redis_server: RedisInstance,
) -> None:
    limiter = RedisSlidingWindowLimiter.from_url(own_redis_server.url(), cooldown=0.1, **GENEROUS_TIMEOUTS)
    policy = RateLimitPolicy("default", limit=2, window=30)
    try:
        assert (await limiter.hit("r", policy)).allowed

        own_redis_server.stop()
        for _ in range(3):  # trip_after
            with pytest.raises(RateLimiterUnavailable, match="onnect"):
                await limiter.hit("r", policy)
        assert limiter.degraded
        # Within the cooldown the limiter does not even try: no timeout per request.
        with pytest.raises(RateLimiterUnavailable, match="recently failed"):
            await limiter.hit("r", policy)

        own_redis_server.start()  # same port, empty data, no cached scripts
        deadline = time.monotonic() + 5
        while True:
            try:
                decision = await limiter.hit("r", policy)
                break
            except RateLimiterUnavailable:
                assert time.monotonic() < deadline, "limiting did not resume"
                await asyncio.sleep(0.05)
        assert decision.allowed and decision.remaining == 1
        assert not limiter.degraded
        assert (await limiter.hit("r", policy)).allowed
        assert not (await limiter.hit("r", policy)).allowed
    finally:
        await limiter.close()


@pytest.mark.parametrize(
    ("name", "limit", "window"),
    [
        ("Default", 1, 1),
        ("a b", 1, 1),
        ("ok", 0, 1),
        ("ok", True, 1),
        ("ok", 1, 0),
        ("ok", 1, float("inf")),
    ],
)
def test_bad_policies_are_refused_at_construction(name: str, limit: int, window: float) -> None:
    with pytest.raises(ValueError):
        RateLimitPolicy(name, limit, window)


async def test_in_process_limiter_forgets_idle_clients() -> None:
    now = [1000.0]
    limiter = InProcessSlidingWindowLimiter(clock=lambda: now[0], sweep_every=4)
    policy = RateLimitPolicy("default", limit=5, window=10)
    for client in ("a", "b", "c"):
        await limiter.hit(client, policy)
    now[0] += 11
    await limiter.hit("d", policy)  # fourth call sweeps: a, b and c have aged out
    assert len(limiter._logs) == 1
