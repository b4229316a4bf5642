"""Vote throughput with a webhook receiver that never answers, against no webhooks.

One Compere server (gunicorn, PostgreSQL, a throw-away database) takes POST
/comparisons/ from the load generator's ``compare`` scenario. A subscription to
``comparison.created`` points at a receiver that accepts connections and never
answers; between runs it is switched on and off (PATCH ``active``), alternating which
mode goes first in each round so that drift on a busy machine falls on both. The
result is the ratio of the median throughputs (target: within 5%).

Loopback only, bounded by ``--rounds`` x 2 x ``--duration`` seconds of load::

    python -m bench.webhook_overhead --rounds 5 --duration 10 --concurrency 20 --workers 2
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from bench import loadgen
from bench.net import free_port
from bench.run_matrix import CompereServer, admin_execute, machine_description, with_database


class SilentReceiver:
    """Accepts connections on 127.0.0.1 and reads forever without ever answering."""

    def __init__(self) -> None:
        self.port = free_port()
        self.connections = 0
        self._server: asyncio.Server | None = None

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        with contextlib.suppress(ConnectionError):
            while await reader.read(65536):
                pass
        writer.close()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._hold, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None


async def _set_active(base: str, webhook_id: int, active: bool) -> None:
    async with aiohttp.ClientSession() as session:
        url = f"{base}/webhooks/{webhook_id}"
        async with session.patch(url, json={"active": active}) as resp:
            assert resp.status == 200, await resp.text()


async def _subscribe(base: str, receiver_url: str) -> int:
    async with aiohttp.ClientSession() as session:
        body = {"url": receiver_url, "events": ["comparison.created"], "active": False}
        async with session.post(f"{base}/webhooks/", json=body) as resp:
            assert resp.status == 200, await resp.text()
            return int((await resp.json())["id"])


async def _pending(base: str, webhook_id: int) -> int:
    async with aiohttp.ClientSession() as session:
        url = f"{base}/webhooks/{webhook_id}/deliveries"
        async with session.get(url, params={"status": "pending", "limit": "1000"}) as resp:
            return len(await resp.json())


async def bench(args: argparse.Namespace, server: CompereServer) -> dict[str, object]:
    receiver = SilentReceiver()
    await receiver.start()
    try:
        options = loadgen.LoadOptions(concurrency=args.concurrency, duration=args.duration)
        ids = await loadgen.seed(server.url, args.entities, options)
        webhook_id = await _subscribe(server.url, f"http://127.0.0.1:{receiver.port}/hook")
        runs: dict[str, list[dict[str, object]]] = {"off": [], "on": []}
        for round_number in range(args.rounds):
            order = ("off", "on") if round_number % 2 == 0 else ("on", "off")
            for mode in order:
                await _set_active(server.url, webhook_id, mode == "on")
                # Every worker reloads its subscriptions within one poll interval.
                await asyncio.sleep(args.settle)
                (record,) = await loadgen.measure(
                    server.url, ["compare"], options, entity_ids=ids, labels={"webhooks": mode}
                )
                runs[mode].append(record)
                print(json.dumps(record), file=sys.stderr)
        await _set_active(server.url, webhook_id, True)
        pending = await _pending(server.url, webhook_id)
    finally:
        await receiver.stop()

    def median(mode: str, key: str) -> float:
        return float(statistics.median(float(r[key]) for r in runs[mode]))  # type: ignore[arg-type]

    off, on = median("off", "throughput_rps"), median("on", "throughput_rps")
    # Each round's two runs are adjacent in time: their ratio cancels most of the drift.
    paired = [
        float(b["throughput_rps"]) / float(a["throughput_rps"])  # type: ignore[arg-type]
        for a, b in zip(runs["off"], runs["on"], strict=True)
    ]
    return {
        "workers": args.workers,
        "concurrency": args.concurrency,
        "rounds": args.rounds,
        "duration_s": args.duration,
        "off_rps": [r["throughput_rps"] for r in runs["off"]],
        "on_rps": [r["throughput_rps"] for r in runs["on"]],
        "off_median_rps": off,
        "on_median_rps": on,
        "ratio_of_medians": round(on / off, 4) if off else None,
        "paired_ratios": [round(r, 3) for r in paired],
        "median_paired_ratio": round(statistics.median(paired), 4),
        "off_p50_ms": median("off", "p50_ms"),
        "on_p50_ms": median("on", "p50_ms"),
        "off_errors": sum(int(r["errors"]) for r in runs["off"]),  # type: ignore[call-overload]
        "on_errors": sum(int(r["errors"]) for r in runs["on"]),  # type: ignore[call-overload]
        "receiver_connections": receiver.connections,
        "pending_deliveries_at_end": pending,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--entities", type=int, default=200)
    parser.add_argument("--settle", type=float, default=2.5, help="seconds after a switch (> poll interval)")
    parser.add_argument("--env", action="append", default=[], help="extra server setting KEY=VALUE")
    args = parser.parse_args()
    if not (1 <= args.rounds <= 20 and 1 <= args.duration <= 60 and 1 <= args.concurrency <= 200):
        parser.error("keep it bounded: rounds 1-20, duration 1-60 s, concurrency 1-200")

    name = f"compere_bench_hooks_{secrets.token_hex(4)}"
    admin_execute(args.admin_url, f'CREATE DATABASE "{name}"')
    logs = Path(tempfile.mkdtemp(prefix="compere-bench-hooks-"))
    server = CompereServer(
        name="compere",
        workers=args.workers,
        database_url=with_database(args.admin_url, name),
        log_dir=logs,
        extra_env={
            "WEBHOOK_ALLOW_PRIVATE": "true",
            "WEBHOOK_TIMEOUT": "10",
            **dict(item.split("=", 1) for item in args.env),
        },
    )
    started = time.monotonic()
    try:
        server.prepare_schema()
        server.start()
        result = loadgen.run_loop(bench(args, server))
    finally:
        server.stop()
        admin_execute(args.admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    result["settings"] = args.env
    result["machine"] = machine_description(args.admin_url)
    result["wall_s"] = round(time.monotonic() - started, 1)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
