"""The added latency of Compere's whole middleware chain against a bare handler.

Two applications serve the same trivial handler on loopback, in one process and one
run: a bare ``web.Application()`` and the real application from
``compere.http.app.create_app`` (so every middleware ``build_middlewares(settings)``
returns, in its real order, with its real Redis client and database pool). A single
sequential client alternates blocks of requests between the two, so machine noise hits
both alike, and the difference of the p50 latencies is the chain's cost.

The settings switch on everything that runs per request in production: request logging
(formatted and written to /dev/null), error masking, authentication (the request carries
a valid bearer token) and rate limiting against Redis (with a limit so high that no
request is refused, so each one pays the Redis round trip and nothing else).

Example::

    python -m bench.middleware_overhead --requests 4000 --redis-url redis://127.0.0.1:6379/6
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from bench.loadgen import percentile, run_loop
from bench.net import require_loopback_host

PING_PATH = "/bench/ping"


async def ping(request: web.Request) -> web.Response:
    return web.Response(body=b'{"ok":true}', content_type="application/json")


def bench_environment(redis_url: str, database_url: str) -> dict[str, str]:
    """Settings with every per-request layer switched on."""
    return {
        "ENVIRONMENT": "staging",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "SECRET_KEY": secrets.token_urlsafe(48),
        "CORS_ORIGINS": "https://bench.invalid",
        "AUTH_ENABLED": "true",
        "RATE_LIMIT_ENABLED": "true",
        "RATE_LIMIT_REQUESTS": "10000000",
        "RATE_LIMIT_WINDOW": "60",
        "LOG_REQUESTS": "true",
        "LOG_LEVEL": "INFO",
    }


async def bearer_token(session: aiohttp.ClientSession, base_url: str) -> str:
    """Sign a user up and log in through the chain app's own API: a real access token.

    Every timed request then pays what an authenticated API client pays: the JWT
    check, the revocation lookup in Redis and the read of the user's row.
    """
    user = {"username": f"bench-{secrets.token_hex(4)}", "password": secrets.token_urlsafe(18)}
    async with session.post(f"{base_url}/auth/users/", json=user) as response:
        if response.status not in (200, 201):
            raise SystemExit(
                f"sign-up failed: {response.status} {await response.text()} "
                "(the first sign-up is open only on an empty database: give --database-url a fresh one)"
            )
    async with session.post(f"{base_url}/auth/token", data=user) as response:
        if response.status != 200:
            raise SystemExit(f"login failed: {response.status} {await response.text()}")
        return str((await response.json())["access_token"])


async def start(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


async def sample(
    session: aiohttp.ClientSession, url: str, count: int, headers: dict[str, str]
) -> tuple[list[float], dict[int, int]]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    for _ in range(count):
        started = time.perf_counter()
        async with session.get(url, headers=headers) as response:
            await response.read()
        latencies.append(time.perf_counter() - started)
        statuses[response.status] = statuses.get(response.status, 0) + 1
    return latencies, statuses


async def measure(args: argparse.Namespace, log_sink: TextIO) -> dict[str, object]:
    from compere.http.app import create_app
    from compere.http.middlewares import build_middlewares
    from compere.settings import load_settings

    require_loopback_host(urlsplit(args.redis_url).hostname)
    if args.database_url:
        require_loopback_host(urlsplit(args.database_url).hostname)
    with tempfile.TemporaryDirectory() as scratch:
        database_url = args.database_url or f"sqlite:///{scratch}/bench.db"
        environ = bench_environment(args.redis_url, database_url)
        settings = load_settings(environ, dotenv=Path(scratch) / "none.env")
        # Request logs are formatted as in production but written nowhere.
        handler = logging.StreamHandler(log_sink)
        logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)

        bare_app = web.Application()
        bare_app.router.add_get(PING_PATH, ping)
        chain_app = await create_app(settings, configure_logs=False)
        chain_app.router.add_get(PING_PATH, ping)
        chain = [getattr(m, "__qualname__", repr(m)) for m in build_middlewares(settings)]

        bare_runner, bare_base = await start(bare_app)
        chain_runner, chain_base = await start(chain_app)
        bare_url = bare_base + PING_PATH
        chain_url = chain_base + PING_PATH
        headers: dict[str, str] = {}
        bare: list[float] = []
        full: list[float] = []
        statuses: dict[str, dict[int, int]] = {"bare": {}, "chain": {}}
        try:
            connector = aiohttp.TCPConnector(limit=2)
            async with aiohttp.ClientSession(connector=connector) as session:
                if not args.anonymous:
                    headers["Authorization"] = f"Bearer {await bearer_token(session, chain_base)}"
                await sample(session, bare_url, 200, headers)  # warm up both
                await sample(session, chain_url, 200, headers)
                block = max(50, args.requests // args.rounds)
                for round_number in range(args.rounds):
                    order: list[tuple[str, str, list[float]]] = [
                        ("bare", bare_url, bare),
                        ("chain", chain_url, full),
                    ]
                    if round_number % 2:
                        order.reverse()
                    for name, url, into in order:
                        latencies, seen = await sample(session, url, block, headers)
                        into.extend(latencies)
                        for status, count in seen.items():
                            statuses[name][status] = statuses[name].get(status, 0) + count
        finally:
            await chain_runner.cleanup()
            await bare_runner.cleanup()

    bare.sort()
    full.sort()

    def ms(values: list[float], pct: float) -> float:
        value = percentile(values, pct)
        return round((value or 0.0) * 1000, 3)

    return {
        "kind": "middleware_overhead",
        "middlewares": chain,
        "authenticated": not args.anonymous,
        "database": urlsplit(database_url).scheme,
        "requests_each": len(bare),
        "bare_p50_ms": ms(bare, 50),
        "chain_p50_ms": ms(full, 50),
        "added_p50_ms": round(ms(full, 50) - ms(bare, 50), 3),
        "bare_p99_ms": ms(bare, 99),
        "chain_p99_ms": ms(full, 99),
        "statuses": {k: {str(s): c for s, c in v.items()} for k, v in statuses.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=4000, help="per app, in all")
    parser.add_argument("--rounds", type=int, default=8, help="alternating blocks per app")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/6")
    parser.add_argument(
        "--database-url",
        help="an empty loopback PostgreSQL database for the chain app (default: a temporary SQLite file)",
    )
    parser.add_argument("--anonymous", action="store_true", help="send no token (skips the identity lookups)")
    args = parser.parse_args(argv)
    if not 0 < args.requests <= 100_000:
        parser.error("--requests must be in (0, 100000]")
    with open(os.devnull, "w") as log_sink:
        record = run_loop(measure(args, log_sink))
    print(json.dumps(record, sort_keys=True))
    print(
        f"\n| middlewares | bare p50 | chain p50 | added p50 | bare p99 | chain p99 |\n"
        f"|---|---|---|---|---|---|\n"
        f"| {', '.join(record['middlewares'])} | {record['bare_p50_ms']} ms | "  # type: ignore[arg-type]
        f"{record['chain_p50_ms']} ms | {record['added_p50_ms']} ms | "
        f"{record['bare_p99_ms']} ms | {record['chain_p99_ms']} ms |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
