"""Projects at scale: ``next`` latency and vote throughput in one project among ten,
against a single-project board, in the same run.

Two throw-away PostgreSQL databases, one server (gunicorn, as ``run_matrix``) on each:

* ``single``: today's layout, every entity in ``default``; requests on the top-level
  routes (``/mab/next_comparison``, ``/comparisons/``).
* ``ten``: ten projects of N entities each (ids interleaved across projects, the worst
  case for the per-project id-range probes); requests on ``/projects/p3/...``.
* ``single-large`` (``--same-size``): every entity in ``default`` again, but as many as
  ``ten`` holds in all (10 N): it tells the cost of a ten times larger table apart from
  the cost of projects themselves.

Both are seeded with ``generate_series`` in the server and analysed. Then, alternating
between the two servers (so a noisy machine treats both alike), ``rounds`` times: ``next``
with one client (its p99 is the latency a user sees) and ``compare`` (a vote between a
random pair of the project's entities) with ``--concurrency`` clients (throughput).
The report gives the medians over the rounds and the ratio ten / single.

    python -m bench.projects_bench                       # N = 100,000 per project
    python -m bench.projects_bench --entities 20000 --duration 5 --rounds 2

Needs PostgreSQL (``COMPERE_BENCH_POSTGRES_URL``, default the local server as postgres);
loopback only; the databases are dropped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psycopg2

from bench import loadgen
from bench.run_matrix import CompereServer, admin_execute, with_database

ADMIN_URL = os.environ.get("COMPERE_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
PROJECTS = 10
MEASURED = "p3"

_SEED_SINGLE = """
INSERT INTO entities (project_id, name, description, image_urls, rating, random_key, created_at, updated_at)
SELECT 1, 'entity ' || g, 'seeded for the benchmark', '[]', 1500, random(), now(), now()
FROM generate_series(1, %(n)s) AS g;
"""
_SEED_TEN = """
INSERT INTO projects (slug, name, visibility)
SELECT 'p' || g, 'Project ' || g, 'public' FROM generate_series(0, %(projects)s - 1) AS g;
INSERT INTO entities (project_id, name, description, image_urls, rating, random_key, created_at, updated_at)
SELECT p.id, 'entity ' || g, 'seeded for the benchmark', '[]', 1500, random(), now(), now()
FROM generate_series(1, %(n)s) AS g CROSS JOIN (SELECT id FROM projects WHERE slug LIKE 'p%%') AS p
ORDER BY g, p.id;
"""


def _seed(url: str, sql: str, n: int, project: str | None) -> list[int]:
    conn = psycopg2.connect(url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql, {"n": n, "projects": PROJECTS})
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("VACUUM ANALYZE entities")
            cur.execute(
                "SELECT e.id FROM entities e JOIN projects p ON p.id = e.project_id WHERE p.slug = %s",
                (project or "default",),
            )
            return [row[0] for row in cur.fetchall()]
    finally:
        conn.close()


def _median(records: list[dict[str, object]], key: str) -> float:
    return statistics.median(float(r[key]) for r in records if r.get(key) is not None)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entities", type=int, default=100_000, help="entities per project (100,000)")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per measurement (8)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (3)")
    parser.add_argument("--concurrency", type=int, default=16, help="clients for the vote throughput (16)")
    parser.add_argument("--workers", type=int, default=1, help="gunicorn workers per server (1)")
    parser.add_argument(
        "--same-size", action="store_true", help="also measure single-large (10 N in default)"
    )
    parser.add_argument("--json-out", help="append the records as JSON lines to this file")
    args = parser.parse_args(argv)
    if not 2 <= args.entities <= 1_000_000 or not 0 < args.duration <= 60 or not 0 < args.rounds <= 10:
        raise SystemExit("--entities in [2, 1e6], --duration in (0, 60], --rounds in (0, 10]")

    tag = secrets.token_hex(4)
    layouts = ["single", "ten", *(["single-large"] if args.same_size else [])]
    names = {layout: f"compere_bench_projects_{layout.replace('-', '_')}_{tag}" for layout in layouts}
    servers: dict[str, CompereServer] = {}
    ids: dict[str, list[int]] = {}
    log_dir = Path(tempfile.mkdtemp(prefix="compere-projects-bench-"))
    try:
        for layout, name in names.items():
            admin_execute(ADMIN_URL, f'CREATE DATABASE "{name}"')
            server = CompereServer("compere", args.workers, with_database(ADMIN_URL, name), log_dir)
            server.prepare_schema()
            started = time.perf_counter()
            total = args.entities * (1 if layout == "single" else PROJECTS)
            if layout == "ten":
                ids[layout] = _seed(server.database_url, _SEED_TEN, args.entities, MEASURED)
            else:
                ids[layout] = _seed(server.database_url, _SEED_SINGLE, total, None)
            print(
                f"# {layout}: seeded {total} entities in {time.perf_counter() - started:.1f} s",
                file=sys.stderr,
            )
            server.start()
            servers[layout] = server
        bases = {layout: server.url for layout, server in servers.items()}
        bases["ten"] += f"/projects/{MEASURED}"
        records: dict[str, list[dict[str, object]]] = {layout: [] for layout in layouts}
        latency = loadgen.LoadOptions(concurrency=1, duration=args.duration, max_requests=100_000)
        votes = loadgen.LoadOptions(
            concurrency=args.concurrency, duration=args.duration, max_requests=200_000
        )
        for round_number in range(args.rounds):
            for layout in layouts if round_number % 2 == 0 else reversed(layouts):
                labels = {"layout": layout, "round": round_number, "entities_per_project": args.entities}
                got = loadgen.run_loop(loadgen.measure(bases[layout], ["next"], latency, labels=labels))
                got += loadgen.run_loop(
                    loadgen.measure(bases[layout], ["compare"], votes, entity_ids=ids[layout], labels=labels)
                )
                for record in got:
                    print(json.dumps(record), file=sys.stderr)
                    if args.json_out:
                        with open(args.json_out, "a", encoding="utf-8") as out:
                            out.write(json.dumps(record) + "\n")
                records[layout] += got
        summary = {}
        for layout, got in records.items():
            nexts = [r for r in got if r["scenario"] == "next"]
            compares = [r for r in got if r["scenario"] == "compare"]
            summary[layout] = {
                "next_p50_ms": _median(nexts, "p50_ms"),
                "next_p99_ms": _median(nexts, "p99_ms"),
                "vote_rps": _median(compares, "throughput_rps"),
                "vote_p99_ms": _median(compares, "p99_ms"),
                "errors": sum(int(r["errors"]) for r in got),  # type: ignore[call-overload]
            }
        ratio = summary["ten"]["vote_rps"] / summary["single"]["vote_rps"]
        p99_ratio = summary["ten"]["next_p99_ms"] / summary["single"]["next_p99_ms"]
        print("| layout | next p50 ms | next p99 ms | votes/s | vote p99 ms | errors |")
        print("|---|---|---|---|---|---|")
        for layout, s in summary.items():
            print(
                f"| {layout} | {s['next_p50_ms']:.2f} | {s['next_p99_ms']:.2f} | {s['vote_rps']:.0f} "
                f"| {s['vote_p99_ms']:.2f} | {s['errors']:.0f} |"
            )
        print(f"\nten/single: vote throughput {ratio:.3f}, next p99 {p99_ratio:.3f}")
        if "single-large" in summary:
            same = summary["ten"]["vote_rps"] / summary["single-large"]["vote_rps"]
            print(f"ten/single-large (same table size): vote throughput {same:.3f}")
        return 0
    finally:
        for server in servers.values():
            server.stop()
        for name in names.values():
            admin_execute(ADMIN_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    sys.exit(main())
