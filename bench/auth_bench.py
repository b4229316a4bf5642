"""Logins per second, and what a login storm does to everyone else's latency.

One run starts the real application twice on loopback, each in its own process:
once as shipped (bcrypt in the event loop's default executor) and once with a
password hasher that runs bcrypt directly on the event loop, for contrast. Against
each it measures, in the same run:

1. ``GET /health`` latency with the server idle (sequential requests);
2. a login storm (``--concurrency`` clients logging in over and over for
   ``--seconds``) and, during it, ``GET /health`` latency from one more client.

It prints one JSON object: logins/s and /health p50/p99 idle and under the storm,
for both hashers, and the ratios that matter. bcrypt cost comes from
``--bcrypt-rounds`` (default 12, the production default).

Example::

    python -m bench.auth_bench --seconds 20 --concurrency 8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.net import free_port

ROOT = Path(__file__).resolve().parent.parent
USERNAME, PASSWORD = "benchadmin", "tangerine-glacier-meadow-93"


# --- the server side (run as a child process) ---------------------------------------


def serve(mode: str, port: int) -> None:
    """Serve the real app; with mode "inline", hash on the event loop instead."""
    import bcrypt
    from aiohttp import web

    from compere.http.app import create_app
    from compere.http.keys import PASSWORDS
    from compere.infra.passwords import MAX_PASSWORD_BYTES, PasswordHasher

    class InlineHasher(PasswordHasher):
        """What not to do: bcrypt on the event loop, blocking every other request."""

        async def hash(self, password: str) -> str:
            return self._hash(password.encode()).decode()

        async def verify(self, password: str, hashed: str | None) -> bool:
            encoded = password.encode()
            if hashed is None or len(encoded) > MAX_PASSWORD_BYTES:
                return False
            return bcrypt.checkpw(encoded, hashed.encode())

    async def build() -> web.Application:
        app = await create_app()
        if mode == "inline":

            async def swap(app: web.Application) -> None:  # runs after the cleanup contexts
                app[PASSWORDS] = InlineHasher(app[PASSWORDS].rounds)

            app.on_startup.append(swap)
        return app

    web.run_app(build(), host="127.0.0.1", port=port, access_log=None, print=None)


# --- the measuring side --------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(latencies: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in latencies]
    return {
        "n": len(ms),
        "p50_ms": round(statistics.median(ms), 2),
        "p99_ms": round(percentile(ms, 0.99), 2),
        "max_ms": round(max(ms), 2),
    }


async def wait_ready(session: aiohttp.ClientSession, base: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            async with session.get(f"{base}/health") as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError("the server did not start")


async def health_probe(
    session: aiohttp.ClientSession, base: str, stop: asyncio.Event, out: list[float]
) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        async with session.get(f"{base}/health") as resp:
            await resp.read()
            assert resp.status == 200
        out.append(time.perf_counter() - started)
        await asyncio.sleep(0.01)  # about 100 probes a second: a light, steady load


async def login_loop(
    session: aiohttp.ClientSession, base: str, username: str, stop: asyncio.Event, counts: list[int]
) -> None:
    form = {"username": username, "password": PASSWORD}
    while not stop.is_set():
        async with session.post(f"{base}/auth/token", data=form) as resp:
            await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"login answered {resp.status}")
        counts[0] += 1


async def measure(base: str, args: argparse.Namespace) -> dict[str, object]:
    connector = aiohttp.TCPConnector(limit=args.concurrency + 4)
    async with aiohttp.ClientSession(connector=connector) as session:
        await wait_ready(session, base)
        async with session.post(
            f"{base}/auth/users/", json={"username": USERNAME, "password": PASSWORD}
        ) as resp:
            assert resp.status == 200, await resp.text()
        async with session.post(
            f"{base}/auth/token", data={"username": USERNAME, "password": PASSWORD}
        ) as resp:
            admin = {"Authorization": f"Bearer {(await resp.json())['access_token']}"}
        # One account per storm client, as when many people log in at once.
        names = [f"benchuser{i:02d}" for i in range(args.concurrency)]
        for name in names:
            body = {"username": name, "password": PASSWORD}
            async with session.post(f"{base}/auth/users/", json=body, headers=admin) as resp:
                assert resp.status == 200, await resp.text()

        idle: list[float] = []
        for _ in range(args.idle_requests):
            started = time.perf_counter()
            async with session.get(f"{base}/health") as resp:
                await resp.read()
            idle.append(time.perf_counter() - started)

        stop = asyncio.Event()
        during: list[float] = []
        counts = [0]
        tasks = [asyncio.create_task(login_loop(session, base, name, stop, counts)) for name in names]
        probe = asyncio.create_task(health_probe(session, base, stop, during))
        started = time.perf_counter()
        await asyncio.sleep(args.seconds)
        stop.set()
        # Logins already under way are finished and counted, and the clock runs until
        # the last one ends: hashes in flight at the deadline are work done, too.
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
        logins = counts[0]
        await probe
    return {
        "logins_per_second": round(logins / elapsed, 2),
        "health_idle": summary(idle),
        "health_during_storm": summary(during),
    }


async def run_mode(mode: str, args: argparse.Namespace, workdir: Path) -> dict[str, object]:
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": args.database_url or f"sqlite:///{workdir / f'{mode}.db'}",
        "AUTH_ENABLED": "true",
        "SECRET_KEY": "bench-secret-key-bench-secret-key-0123",
        "BCRYPT_ROUNDS": str(args.bcrypt_rounds),
        "LOG_REQUESTS": "false",
        "LOG_LEVEL": "ERROR",
        # The storm comes from one address: keep the login throttle out of the way.
        "LOGIN_MAX_FAILURES_PER_CLIENT": "100000",
    }
    if args.redis_url:
        env["REDIS_URL"] = args.redis_url
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.auth_bench", "serve", mode, str(port), env=env, cwd=workdir
    )
    try:
        return await measure(f"http://127.0.0.1:{port}", args)
    finally:
        server.terminate()
        await asyncio.wait_for(server.wait(), timeout=30)


async def main(args: argparse.Namespace) -> None:
    results: dict[str, object] = {
        "bcrypt_rounds": args.bcrypt_rounds,
        "concurrency": args.concurrency,
        "seconds": args.seconds,
        "cpus": os.cpu_count(),
        "load_average_before": [round(x, 1) for x in os.getloadavg()],
    }
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("executor", "inline"):
            results[mode] = await run_mode(mode, args, Path(tmp))
    executor, inline = results["executor"], results["inline"]
    assert isinstance(executor, dict) and isinstance(inline, dict)
    results["load_average_after"] = [round(x, 1) for x in os.getloadavg()]
    results["ratios"] = {
        "executor_storm_p99_over_idle_p99": round(
            executor["health_during_storm"]["p99_ms"] / executor["health_idle"]["p99_ms"], 1
        ),
        "inline_storm_p99_over_executor_storm_p99": round(
            inline["health_during_storm"]["p99_ms"] / executor["health_during_storm"]["p99_ms"], 1
        ),
        "executor_logins_over_inline_logins": round(
            executor["logins_per_second"] / max(inline["logins_per_second"], 0.01), 2
        ),
    }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each login storm")
    parser.add_argument("--concurrency", type=int, default=8, help="clients logging in at once")
    parser.add_argument(
        "--idle-requests", type=int, default=300, help="sequential /health requests when idle"
    )
    parser.add_argument("--bcrypt-rounds", type=int, default=12)
    parser.add_argument("--database-url", help="default: a temporary SQLite file per server")
    parser.add_argument("--redis-url", help="default: none (in-process login counters)")
    cli = parser.parse_args()
    if not 1 <= cli.concurrency <= 64 or not 1 <= cli.seconds <= 60:
        parser.error("keep the storm small: concurrency 1-64, seconds 1-60")
    asyncio.run(main(cli))
