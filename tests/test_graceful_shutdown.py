"""SIGTERM under load: requests in flight finish whole, new connections are refused.

The server runs as a real process (gunicorn with the aiohttp worker, as in production,
and ``python -m compere``). Votes are held in flight by a row lock taken from another
connection, the server gets SIGTERM, and only then is the lock released.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from typing import IO

import aiohttp
import psycopg2
import pytest

from tests.servers import free_port

IN_FLIGHT = 8


def launch(kind: str, port: int, env: dict[str, str], log: IO[bytes]) -> subprocess.Popen[bytes]:
    if kind == "gunicorn":
        argv = [
            sys.executable, "-m", "gunicorn", "compere.http.app:create_app",
            "--worker-class", "aiohttp.GunicornWebWorker",
            "--bind", f"127.0.0.1:{port}", "--workers", "1",
            "--graceful-timeout", "20", "--no-control-socket",
        ]  # fmt: skip
    else:
        argv = [sys.executable, "-m", "compere", "serve", "--port", str(port)]
    return subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)


def accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


async def wait_until(predicate, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} within {within} s")
        await asyncio.sleep(0.05)


def votes_waiting(port: int) -> float:
    """Votes the server has taken and not yet answered (its ``compere_votes_waiting``)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return sum(
        float(line.split()[-1]) for line in text.splitlines() if line.startswith("compere_votes_waiting")
    )


def waiting_on_locks(url: str) -> int:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
        )
        (count,) = cur.fetchone()
    conn.close()
    return int(count)


@pytest.mark.parametrize("kind", ["gunicorn", "python -m compere"])
async def test_sigterm_finishes_in_flight_requests_and_refuses_new_ones(kind, postgres_factory, tmp_path):
    url = postgres_factory()
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.getcwd(),
        "DATABASE_URL": url,
        "LOG_REQUESTS": "false",
        "DB_STATEMENT_TIMEOUT_MS": "30000",
        "METRICS_ENABLED": "true",
    }
    env.pop("REDIS_URL", None)
    log_path = tmp_path / "server.log"
    log = log_path.open("wb")
    server = launch(kind, port, env, log)
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_until(lambda: accepts_connections(port) or server.poll() is not None, 30, "listening")
        assert server.poll() is None, log_path.read_text()
        async with aiohttp.ClientSession() as session:
            ids = []
            for name in ("a", "b"):
                async with session.post(f"{base}/entities/", json={"name": name}) as resp:
                    assert resp.status == 200
                    ids.append((await resp.json())["id"])

            async def vote(n: int) -> tuple[int, bytes, str | None]:
                body = {"entity1_id": ids[0], "entity2_id": ids[1], "selected_entity_id": ids[n % 2]}
                async with session.post(f"{base}/comparisons/", json=body) as resp:
                    return resp.status, await resp.read(), resp.headers.get("Content-Length")

            blocker = psycopg2.connect(url)
            try:
                with blocker.cursor() as cur:
                    cur.execute("SELECT id FROM entities FOR UPDATE")
                votes = [asyncio.create_task(vote(n)) for n in range(IN_FLIGHT)]
                # One group commit waits on the lock; the other votes wait for the next one.
                await wait_until(lambda: waiting_on_locks(url) == 1, 10, "a vote transaction waiting")
                await wait_until(lambda: votes_waiting(port) == IN_FLIGHT, 10, "all votes in flight")

                server.send_signal(signal.SIGTERM)
                await wait_until(lambda: not accepts_connections(port), 5, "refusing new connections")
                with pytest.raises(aiohttp.ClientConnectionError):
                    async with session.get(f"{base}/health", headers={"Connection": "close"}) as resp:
                        await resp.read()
                assert not any(v.done() for v in votes)  # still waiting: nothing was cut short
            finally:
                blocker.rollback()
                blocker.close()
            answers = await asyncio.gather(*votes)

        for status, body, length in answers:
            assert status == 200
            assert length is not None and int(length) == len(body)  # whole body, not cut
            assert body.startswith(b"{") and body.endswith(b"}")
        assert server.wait(timeout=30) == 0, log_path.read_text()
        with psycopg2.connect(url) as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*), (SELECT sum(rating) FROM entities) FROM comparisons")
            stored, rating_sum = cur.fetchone()
        conn.close()
        assert stored == IN_FLIGHT
        assert float(rating_sum) == pytest.approx(3000.0)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=10)
        log.close()
