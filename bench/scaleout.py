"""Capacity figures for scaling out: the vote path through PgBouncer against direct
connections in one run, and what each part (app worker, PostgreSQL, PgBouncer, Redis)
spends per vote, pair and leaderboard read.

Everything runs on loopback, started and stopped here by PID (``tests/servers.py``): a
PostgreSQL instance of its own, PgBouncer in ``pool_mode = transaction`` in front of it,
a Redis (the rate limiter's, on for every request with a limit nothing reaches), and
one gunicorn master with ONE worker per setup, so a worker's figures are one worker's.

Besides throughput and latency it reads the CPU time each process used during each
scenario from ``/proc`` (PostgreSQL: the postmaster and all its backends). CPU
milliseconds per request are what sizing needs: on a machine shared with the load
generator, requests per second only say how fast this box went, while ``1000 / (CPU ms
per request)`` is what one core of that part sustains when it is the bottleneck.

Example (about two minutes)::

    python -m bench.scaleout --duration 8 --seed 1000 --json-out scaleout.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.loadgen import LoadOptions, measure, run_loop, seed
from tests.servers import CompereProcess, pooled_backends

SCENARIOS = ("compare", "next", "leaderboard")
_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int, *, with_children: bool = True) -> float:
    """CPU time (user + system) of ``pid`` and, recursively, its live children (plus
    what its reaped children used)."""
    total = 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # fields[0] is the state (field 3): utime is field 14, stime 15, cutime 16, cstime 17.
    total += (int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])) / _TICK
    if with_children:
        for child in _children(pid):
            total += cpu_seconds(child)
    return total


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def run_setup(
    name: str,
    database_url: str,
    extra: dict[str, str],
    processes: dict[str, int],
    args: argparse.Namespace,
    logs: Path,
    redis_url: str,
) -> list[dict[str, object]]:
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "RATE_LIMIT_ENABLED": "true",
        "RATE_LIMIT_REQUESTS": "10000000",
        "LOG_REQUESTS": "false",
        "DB_POOL_MAX": "20",
        "ENVIRONMENT": "staging",
        **extra,
    }
    app = CompereProcess(env, logs / f"{name}.log", kind="gunicorn")
    app.start()
    try:
        options = LoadOptions(concurrency=args.concurrency, duration=args.duration)
        ids = run_loop(seed(app.url, args.seed, options))
        records = []
        for scenario in SCENARIOS:
            assert app.process is not None
            watched = {**processes, "app": app.process.pid}
            before = {part: cpu_seconds(pid) for part, pid in watched.items()}
            record = run_loop(measure(app.url, [scenario], options, entity_ids=ids, labels={"setup": name}))[
                0
            ]
            used = {part: cpu_seconds(pid) - before[part] for part, pid in watched.items()}
            ok = max(int(record["ok"]), 1)  # type: ignore[call-overload]
            for part, seconds in used.items():
                record[f"{part}_cpu_ms"] = round(1000 * seconds / ok, 3)
            records.append(record)
            print(json.dumps(record), file=sys.stderr, flush=True)
        return records
    finally:
        app.stop()


def table(records: Sequence[dict[str, object]], parts: Sequence[str]) -> str:
    head = ["setup", "scenario", "req/s", "p50 ms", "p99 ms", *(f"{p} CPU ms/req" for p in parts)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in records:
        cells = [r["setup"], r["scenario"], r["throughput_rps"], r["p50_ms"], r["p99_ms"]]
        cells += [r.get(f"{p}_cpu_ms", "") for p in parts]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def capacity(records: Sequence[dict[str, object]], parts: Sequence[str]) -> str:
    """Requests per second one core of each part sustains (1000 / CPU ms per request)."""
    lines = ["| setup | scenario | " + " | ".join(f"per {p} core" for p in parts) + " |"]
    lines.append("|" + "---|" * (2 + len(parts)))
    for r in records:
        cells = []
        for p in parts:
            ms = float(r.get(f"{p}_cpu_ms", 0) or 0)  # type: ignore[arg-type]
            cells.append(f"{1000 / ms:,.0f}" if ms > 0 else "-")
        lines.append(f"| {r['setup']} | {r['scenario']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per scenario (at most 60)")
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1000, help="entities on the board")
    parser.add_argument("--json-out", help="append the records as JSON lines to this file")
    args = parser.parse_args(argv)
    args.duration = min(args.duration, 60.0)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    records: list[dict[str, object]] = []
    with pooled_backends() as (server, bouncer, redis_server), tempfile.TemporaryDirectory() as logs:
        server_pid = server.pid()
        assert server_pid is not None and redis_server.process is not None and bouncer.process is not None
        setups = [
            ("direct", "direct", {}),
            ("pgbouncer", "pooled", {"DB_POOLER": "pgbouncer"}),
            ("direct-unprepared", "unprepared", {"DB_PREPARED_STATEMENTS": "false"}),
        ]
        for name, database, extra in setups:
            server.sql(f'CREATE DATABASE "{database}"')
            url = bouncer.url(database) if name == "pgbouncer" else server.url(database)
            processes = {"postgres": server_pid, "redis": redis_server.process.pid}
            if name == "pgbouncer":
                processes["pgbouncer"] = bouncer.process.pid
            records += run_setup(name, url, extra, processes, args, Path(logs), redis_server.url(0))
    parts = ["app", "postgres", "pgbouncer", "redis"]
    print(f"\n### {started}: {args.duration:g} s per scenario, {args.concurrency} clients, N = {args.seed}\n")
    print(table(records, parts))
    print("\nOne core of each part, when it is the bottleneck (requests per second):\n")
    print(capacity(records, parts))
    by = {(r["setup"], r["scenario"]): r for r in records}
    direct, pooled = by.get(("direct", "compare")), by.get(("pgbouncer", "compare"))
    if direct and pooled:
        ratio = float(pooled["throughput_rps"]) / float(direct["throughput_rps"])  # type: ignore[arg-type]
        print(f"\nVotes through PgBouncer / direct (prepared): {ratio:.2f}")
    if args.json_out:
        with open(args.json_out, "a", encoding="utf-8") as out:
            for record in records:
                out.write(json.dumps(record) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
