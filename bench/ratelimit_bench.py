"""Rate limiter benchmark: algorithm accuracy and memory, and the latency it adds.

    python -m bench.ratelimit_bench [--redis-url redis://127.0.0.1:6379/3]

1. Accuracy (simulated time, no I/O): a sliding log against a sliding-window counter on
   the same arrival traces. Counts admissions an exact limiter would have refused, refusals
   it would have admitted, and the most requests admitted in any window-long interval.
2. Memory (Redis ``MEMORY USAGE``): one client key per algorithm at several limits, and
   the average over many active clients under the default policy.
3. Latency: p50/p99 of one limiter call, Redis sliding log vs counter vs in-process;
   and per HTTP request over loopback, limiting off against on, in the same run.

Everything is bounded (a few thousand requests) and only talks to loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import multiprocessing
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import redis.asyncio as aioredis

from compere.infra.ratelimit import (
    InProcessSlidingWindowLimiter,
    RateLimitPolicy,
    RedisSlidingWindowLimiter,
)

# --------------------------------------------------------------------------- accuracy


class SlidingLogModel:
    def __init__(self, limit: int, window: float) -> None:
        self.limit, self.window, self.log = limit, window, []  # type: ignore[var-annotated]
        self.start = 0

    def hit(self, now: float) -> bool:
        while self.start < len(self.log) and self.log[self.start] <= now - self.window:
            self.start += 1
        if len(self.log) - self.start < self.limit:
            self.log.append(now)
            return True
        return False


class SlidingCounterModel:
    """Two fixed-window counts, the previous one weighted by its remaining overlap."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit, self.window = limit, window
        self.counts: dict[int, int] = {}

    def hit(self, now: float) -> bool:
        index = math.floor(now / self.window)
        elapsed = now - index * self.window
        previous = self.counts.get(index - 1, 0)
        current = self.counts.get(index, 0)
        estimate = previous * (self.window - elapsed) / self.window + current
        if estimate + 1 <= self.limit:
            self.counts[index] = current + 1
            return True
        return False


@dataclass
class Accuracy:
    wrongly_admitted: int
    wrongly_refused: int
    max_in_window: int
    admitted: int


def judge(times: list[float], decisions: list[bool], limit: int, window: float) -> Accuracy:
    """Compare decisions with the exact rule: admit iff fewer than ``limit`` admitted in the window."""
    admitted: list[float] = []
    start = 0
    wrong_in = wrong_out = 0
    for now, allowed in zip(times, decisions, strict=True):
        while start < len(admitted) and admitted[start] <= now - window:
            start += 1
        room = len(admitted) - start < limit
        if allowed and not room:
            wrong_in += 1
        if not allowed and room:
            wrong_out += 1
        if allowed:
            admitted.append(now)
    best = 0
    left = 0
    for right, t in enumerate(admitted):
        while t - admitted[left] >= window:
            left += 1
        best = max(best, right - left + 1)
    return Accuracy(wrong_in, wrong_out, best, len(admitted))


def traces(limit: int, window: float, rng: random.Random) -> dict[str, list[float]]:
    windows = 20
    steady = []
    t = 0.0
    while t < windows * window:
        t += rng.expovariate(1.5 * limit / window)
        steady.append(t)
    # Greedy client: ten times the allowed rate, evenly spaced.
    greedy = [i * window / (10 * limit) for i in range(10 * limit * windows)]
    # Bursts of 1.5 x limit within 1% of a window, at random moments.
    bursty: list[float] = []
    for _ in range(3 * windows):
        at = rng.uniform(0, windows * window)
        bursty.extend(at + rng.uniform(0, window / 100) for _ in range(int(1.5 * limit)))
    # Knows the fixed-window grid: a full quota just before each boundary, then again after.
    boundary: list[float] = []
    for k in range(1, windows):
        edge = k * window
        boundary.extend(edge - window / 100 + i * window / (100 * limit) for i in range(limit))
        boundary.extend(edge + window / 2 + i * window / (100 * limit) for i in range(2 * limit))
    return {
        "poisson 1.5x": steady,
        "greedy 10x": greedy,
        "bursts": sorted(bursty),
        "boundary": sorted(boundary),
    }


def accuracy_section(limit: int, window: float) -> None:
    print(f"\n## Accuracy: limit {limit} per {window:g} s, simulated time, 20 windows per trace")
    print(
        "| trace | algorithm | requests | admitted | wrongly admitted | wrongly refused | max in any window |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    rng = random.Random(20261129)
    for name, times in traces(limit, window, rng).items():
        for label, model_type in (
            ("sliding log", SlidingLogModel),
            ("window counter", SlidingCounterModel),
        ):
            model = model_type(limit, window)
            decisions = [model.hit(t) for t in times]
            acc = judge(times, decisions, limit, window)
            print(
                f"| {name} | {label} | {len(times)} | {acc.admitted} | {acc.wrongly_admitted} "
                f"| {acc.wrongly_refused} | {acc.max_in_window} ({acc.max_in_window / limit:.2f} x limit) |"
            )


# --------------------------------------------------------------------------- Redis


# The alternative we measured against, kept here only: two counters per client.
SLIDING_COUNTER_LUA = """
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local index = math.floor(now / window)
local current_key = KEYS[1] .. ':' .. index
local previous = tonumber(redis.call('GET', KEYS[1] .. ':' .. (index - 1)) or '0')
local current = tonumber(redis.call('GET', current_key) or '0')
local estimate = previous * (window - (now - index * window)) / window + current
if estimate + 1 <= limit then
  redis.call('INCR', current_key)
  redis.call('PEXPIRE', current_key, math.ceil(2 * window / 1000))
  return 1
end
return 0
"""


async def memory_section(url: str, prefix: str) -> None:
    client = aioredis.Redis.from_url(url)
    limiter = RedisSlidingWindowLimiter(client, key_prefix=prefix + "log:")
    counter = client.register_script(SLIDING_COUNTER_LUA)
    print("\n## Redis memory per client key (MEMORY USAGE ... SAMPLES 0, bytes)")
    print("| limit (requests in window) | sliding log, key full | sliding log, half full | window counter |")
    print("|---:|---:|---:|---:|")
    for limit in (10, 100, 128, 129, 1000):
        policy = RateLimitPolicy("m", limit, 600)
        sizes = []
        for fill in (limit, max(1, limit // 2)):
            client_key = f"l{limit}f{fill}"
            for _ in range(fill):
                await limiter.hit(client_key, policy)
            sizes.append(await client.memory_usage(f"{prefix}log:m:{client_key}", samples=0))
        counter_key = f"{prefix}cnt:{limit}"
        for _ in range(limit):
            await counter(keys=[counter_key], args=[600_000_000, limit])
        counter_bytes = 0
        async for key in client.scan_iter(match=f"{counter_key}:*"):
            counter_bytes += await client.memory_usage(key, samples=0) or 0
        print(f"| {limit} | {sizes[0]} | {sizes[1]} | {counter_bytes} |")

    clients, per_client = 2000, 20
    policy = RateLimitPolicy("active", 100, 600)
    info_before = (await client.info("memory"))["used_memory"]
    sem = asyncio.Semaphore(32)

    async def one(i: int) -> None:
        async with sem:
            for _ in range(per_client):
                await limiter.hit(f"198.51.{i // 256}.{i % 256}", policy)

    await asyncio.gather(*(one(i) for i in range(clients)))
    info_after = (await client.info("memory"))["used_memory"]
    sample = [await client.memory_usage(f"{prefix}log:active:198.51.0.{i}", samples=0) for i in range(50)]
    print(
        f"\n{clients} active clients x {per_client} requests (default-like policy 100 per window): "
        f"MEMORY USAGE {statistics.mean(sample):.0f} B per key, "
        f"used_memory grew {(info_after - info_before) / clients:.0f} B per client"
    )
    await _delete_prefix(client, prefix)
    await client.aclose()


async def _delete_prefix(client: aioredis.Redis, prefix: str) -> None:
    keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
    for i in range(0, len(keys), 500):
        await client.delete(*keys[i : i + 500])


def percentiles(samples: Iterable[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p50 = ordered[len(ordered) // 2]
    p99 = ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]
    return p50 * 1000, p99 * 1000  # milliseconds


async def timed(calls: int, call: Callable[[int], Awaitable[object]]) -> list[float]:
    samples = []
    for i in range(calls):
        started = time.perf_counter()
        await call(i)
        samples.append(time.perf_counter() - started)
    return samples


async def limiter_latency_section(url: str, prefix: str, calls: int) -> None:
    client = aioredis.Redis.from_url(url)
    log_limiter = RedisSlidingWindowLimiter(client, key_prefix=prefix + "lat:")
    counter = client.register_script(SLIDING_COUNTER_LUA)
    local = InProcessSlidingWindowLimiter()
    policy = RateLimitPolicy("lat", 100, 60)
    keys = [f"c{i}" for i in range(200)]
    variants: dict[str, Callable[[int], Awaitable[object]]] = {
        "Redis sliding log": lambda i: log_limiter.hit(keys[i % len(keys)], policy),
        "Redis window counter": lambda i: counter(
            keys=[f"{prefix}latc:{keys[i % len(keys)]}"], args=[60_000_000, 100]
        ),
        "in-process sliding log": lambda i: local.hit(keys[i % len(keys)], policy),
        "Redis PING (floor)": lambda i: client.ping(),
    }
    results: dict[str, list[float]] = {name: [] for name in variants}
    for call in variants.values():
        await timed(50, call)  # warm up: connection, script cache
    names = list(variants)
    for i in range(calls):  # interleaved call by call (rotating), so background load hits all alike
        for name in names[i % len(names) :] + names[: i % len(names)]:
            call = variants[name]
            started = time.perf_counter()
            await call(i)
            results[name].append(time.perf_counter() - started)
    print(f"\n## One limiter call, sequential, {calls} calls each (ms)")
    print("| variant | p50 | p99 |")
    print("|---|---:|---:|")
    for name, samples in results.items():
        p50, p99 = percentiles(samples)
        print(f"| {name} | {p50:.3f} | {p99:.3f} |")
    await _delete_prefix(client, prefix)
    await client.aclose()


# --------------------------------------------------------------------------- main


async def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/3")
    parser.add_argument("--calls", type=int, default=2000, help="limiter calls per variant (bounded)")
    parser.add_argument("--requests", type=int, default=2000, help="HTTP requests per variant (bounded)")
    args = parser.parse_args(argv)
    calls = min(args.calls, 20_000)
    requests = min(args.requests, 20_000)
    prefix = f"bench:rl:{uuid.uuid4().hex[:8]}:"
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"# Rate limiter benchmark ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {load})"
    )
    accuracy_section(limit=100, window=60)
    await memory_section(args.redis_url, prefix)
    await limiter_latency_section(args.redis_url, prefix, calls)
    await http_latency_section(args.redis_url, prefix, requests)


def _serve_variants(url: str, prefix: str, ports: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    """Child process: serve the same handler three ways on loopback until terminated."""
    from aiohttp import web

    from compere.http.client_address import parse_trusted_proxies
    from compere.http.ratelimit_middleware import (
        RateLimitPolicies,
        rate_limit_cleanup_ctx,
        rate_limit_middleware,
    )
    from compere.settings import Settings

    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    policies = RateLimitPolicies(RateLimitPolicy("default", 100, 60))
    trusted = parse_trusted_proxies("127.0.0.1")

    def app(limited: bool, redis_url: str | None) -> web.Application:
        middlewares = [rate_limit_middleware(policies, trusted_proxies=trusted)] if limited else []
        application = web.Application(middlewares=middlewares)
        if limited:
            settings = Settings(redis_url=redis_url, rate_limit_key_prefix=prefix + "http:")
            application.cleanup_ctx.append(rate_limit_cleanup_ctx(settings))
        application.router.add_get("/entities/", handler)
        return application

    async def serve() -> None:
        found = {}
        for name, application in (
            ("limiting off", app(False, None)),
            ("in-process limiter", app(True, None)),
            ("Redis limiter", app(True, url)),
        ):
            runner = web.AppRunner(application, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            found[name] = runner.addresses[0][1]
        ports.put(found)
        await asyncio.Event().wait()

    logging.disable(logging.WARNING)
    asyncio.run(serve())


async def http_latency_section(url: str, prefix: str, requests: int) -> None:
    """Per-request latency over loopback HTTP (server in a child process): off vs on, same run."""
    from aiohttp import ClientSession

    ports: multiprocessing.Queue = multiprocessing.get_context("spawn").Queue()  # type: ignore[type-arg]
    server = multiprocessing.get_context("spawn").Process(target=_serve_variants, args=(url, prefix, ports))
    server.start()
    try:
        bases = {name: f"http://127.0.0.1:{port}/entities/" for name, port in ports.get(timeout=30).items()}
        results: dict[str, list[float]] = {name: [] for name in bases}
        # 500 simulated clients behind the (trusted) loopback proxy, each well under its quota.
        addresses = [f"198.18.{i // 250}.{i % 250 + 1}" for i in range(500)]
        async with ClientSession() as session:

            async def get(name: str, i: int) -> None:
                headers = {"X-Forwarded-For": addresses[i % len(addresses)]}
                async with session.get(bases[name], headers=headers) as response:
                    assert response.status == 200, response.status
                    await response.read()

            for name in bases:
                await timed(50, lambda i, name=name: get(name, i))
            # Interleave request by request, so background load hits every variant alike.
            names = list(bases)
            for i in range(requests):
                # Rotate the order too, so no variant always follows the same one.
                for name in names[i % len(names) :] + names[: i % len(names)]:
                    started = time.perf_counter()
                    await get(name, i)
                    results[name].append(time.perf_counter() - started)
    finally:
        server.terminate()
        server.join(timeout=10)
    off50, off99 = percentiles(results["limiting off"])
    print(f"\n## Per HTTP request over loopback, server in its own process, {requests} requests each (ms)")
    print("| variant | p50 | p99 | added p50 | added p99 |")
    print("|---|---:|---:|---:|---:|")
    for name, samples in results.items():
        p50, p99 = percentiles(samples)
        print(f"| {name} | {p50:.3f} | {p99:.3f} | {p50 - off50:+.3f} | {p99 - off99:+.3f} |")
    client = aioredis.Redis.from_url(url)
    await _delete_prefix(client, prefix)
    await client.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
