"""The write path under load: group commit on small boards, single votes and the batch
endpoint against the PostgreSQL ceiling, all from one run.

For each board size (10 and 1,000 entities by default) it creates a scratch database,
starts Compere under gunicorn (2 workers), and runs ``POST /comparisons/`` on random
pairs from 64 closed-loop clients (bench/loadgen.py's ``compare``). On the largest board
it then runs ``POST /comparisons/batch`` (a few clients, each sending batches of random
votes) and counts stored votes per second. The pgbench single-vote ceiling
(bench/pg_ceiling) is measured in the same run. It prints one JSON line per
measurement and a summary with the three ratios of issue "write path":

* small-board votes/s over large-board votes/s (target >= 0.9) and the small board's p99
  (target < 100 ms);
* large-board votes/s over the ceiling (target >= 0.6);
* batch stored votes/s over the ceiling (target >= 5).

Example::

    python -m bench.write_path --duration 10 --ceiling-duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import time
import urllib.request
from pathlib import Path

import aiohttp
import psycopg2

from bench import loadgen
from bench.pg_ceiling.run_ceiling import measure_ceiling
from bench.run_matrix import CompereServer, admin_execute, with_database
from bench.seed_sql import seed_entities

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
MAX_BATCH_CLIENTS = 16


def cpu_by_pid() -> dict[int, tuple[int, float]]:
    """Every process's parent and CPU seconds (user + system) used so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        found[int(stat.parent.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / ticks)
    return found


def backend_pids(database_url: str) -> set[int]:
    """The PostgreSQL backends connected to the benchmark's database."""
    conn = psycopg2.connect(database_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
            return {row[0] for row in cur.fetchall()} - {conn.get_backend_pid()}
    finally:
        conn.close()


class CpuMeter:
    """CPU used during a block by the server's processes (master and workers), by the
    PostgreSQL backends serving its database, and by this load generator."""

    def __init__(self, server_pid: int, database_url: str) -> None:
        self.server_pid = server_pid
        self.database_url = database_url

    def _sample(self) -> tuple[float, dict[int, float]]:
        procs = cpu_by_pid()
        server = sum(cpu for pid, (ppid, cpu) in procs.items() if self.server_pid in (pid, ppid))
        backends = backend_pids(self.database_url)
        return server, {pid: procs[pid][1] for pid in backends if pid in procs}

    def __enter__(self) -> CpuMeter:
        self.server, self.backends = self._sample()
        own = resource.getrusage(resource.RUSAGE_SELF)
        self.client = own.ru_utime + own.ru_stime
        self.wall = time.perf_counter()
        self.load = os.getloadavg()[0]
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall
        server, backends = self._sample()
        self.server = server - self.server
        self.database = sum(cpu - self.backends.get(pid, 0.0) for pid, cpu in backends.items())
        own = resource.getrusage(resource.RUSAGE_SELF)
        self.client = own.ru_utime + own.ru_stime - self.client

    def record(self, votes: float) -> dict[str, object]:
        """CPU per stored vote (ms) of server, database and client; the cores each got
        on average; the load average at the start."""

        def per_vote(seconds: float) -> float | None:
            return round(1000 * seconds / votes, 3) if votes else None

        return {
            "server_cpu_ms_per_vote": per_vote(self.server),
            "db_cpu_ms_per_vote": per_vote(self.database),
            "client_cpu_ms_per_vote": per_vote(self.client),
            "server_cores": round(self.server / self.wall, 2),
            "db_cores": round(self.database / self.wall, 2),
            "load_average": round(self.load, 1),
        }


def emit(record: dict[str, object]) -> dict[str, object]:
    print(json.dumps(record), flush=True)
    return record


async def run_batches(
    base_url: str, entity_ids: list[int], *, clients: int, batch_size: int, duration: float
) -> dict[str, object]:
    """``clients`` closed loops of ``POST /comparisons/batch``; stored votes per second."""
    stored = 0
    requests = 0
    errors = 0
    latencies: list[float] = []
    deadline = time.perf_counter() + duration

    def batch() -> dict[str, object]:
        votes = []
        for _ in range(batch_size):
            a, b = random.sample(entity_ids, 2)
            votes.append(
                {"entity1_id": a, "entity2_id": b, "selected_entity_id": random.choice([a, b, None])}
            )
        return {"votes": votes}

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal stored, requests, errors
        while time.perf_counter() < deadline:
            body = batch()
            started = time.perf_counter()
            async with session.post(f"{base_url}/comparisons/batch", json=body) as resp:
                answer = await resp.json()
            requests += 1
            if resp.status != 200:
                errors += 1
                continue
            latencies.append(time.perf_counter() - started)
            stored += int(answer["stored"])

    started = time.perf_counter()
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(*(client(session) for _ in range(clients)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "scenario": "batch",
        "clients": clients,
        "batch_size": batch_size,
        "requests": requests,
        "errors": errors,
        "stored_votes": stored,
        "stored_votes_per_s": round(stored / elapsed, 1),
        "p50_ms": loadgen._ms(loadgen.percentile(latencies, 50)),
        "p99_ms": loadgen._ms(loadgen.percentile(latencies, 99)),
    }


def board(args: argparse.Namespace, n: int, log_dir: Path) -> list[dict[str, object]]:
    name = f"{args.db_prefix}_write_{n}"
    url = with_database(args.admin_url, name)
    admin_execute(args.admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin_execute(args.admin_url, f'CREATE DATABASE "{name}"')
    server = CompereServer("compere", args.workers, url, log_dir, extra_env={"LOG_REQUESTS": "false"})
    records = []
    try:
        server.prepare_schema()
        ids = seed_entities(url, n, "compere")
        server.start()
        labels: dict[str, object] = {"n": n, "workers": args.workers}
        options = loadgen.LoadOptions(concurrency=args.concurrency, duration=args.duration)
        assert server.process is not None
        with CpuMeter(server.process.pid, url) as cpu:
            record = loadgen.run_loop(
                loadgen.measure(server.url, ["compare"], options, entity_ids=ids, labels=labels)
            )[0]
        records.append(emit({**record, **cpu.record(float(record["ok"])), "kind": "single"}))  # type: ignore[arg-type]
        if n == max(args.n):
            with CpuMeter(server.process.pid, url) as cpu:
                batch = loadgen.run_loop(
                    run_batches(
                        server.url,
                        ids,
                        clients=args.batch_clients,
                        batch_size=args.batch_size,
                        duration=args.duration,
                    )
                )
            votes = float(batch["stored_votes"])  # type: ignore[arg-type]
            records.append(emit({**labels, **batch, **cpu.record(votes), "kind": "batch"}))
        with urllib.request.urlopen(server.url + "/health", timeout=5):
            pass
    finally:
        server.stop()
        admin_execute(args.admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, action="append", help="board sizes (default 10 and 1000)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--ceiling-duration", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--batch-clients", type=int, default=4)
    parser.add_argument("--admin-url", default=ADMIN_URL)
    parser.add_argument("--db-prefix", default="compere_bench")
    parser.add_argument("--log-dir", type=Path, default=Path("bench-logs"))
    args = parser.parse_args()
    args.n = args.n or [10, 1000]
    if not 0 < args.duration <= loadgen.MAX_DURATION_S or not 0 < args.batch_clients <= MAX_BATCH_CLIENTS:
        raise SystemExit("duration or batch clients out of range")
    args.log_dir.mkdir(parents=True, exist_ok=True)

    ceiling = emit(
        {
            "kind": "ceiling",
            **measure_ceiling(
                args.admin_url, max(args.n), duration=args.ceiling_duration, db_prefix=args.db_prefix
            ),
        }
    )
    records = [r for n in sorted(args.n) for r in board(args, n, args.log_dir)]
    single = {r["n"]: r for r in records if r["kind"] == "single"}
    small, large = single[min(args.n)], single[max(args.n)]
    batch = next(r for r in records if r["kind"] == "batch")
    tps = float(ceiling["tps"])  # type: ignore[arg-type]
    emit(
        {
            "kind": "summary",
            "ceiling_tps": tps,
            "small_over_large": round(float(small["throughput_rps"]) / float(large["throughput_rps"]), 2),  # type: ignore[arg-type]
            "small_p99_ms": small["p99_ms"],
            "large_over_ceiling": round(float(large["throughput_rps"]) / tps, 2),  # type: ignore[arg-type]
            "batch_over_ceiling": round(float(batch["stored_votes_per_s"]) / tps, 2),  # type: ignore[arg-type]
        }
    )


if __name__ == "__main__":
    main()
