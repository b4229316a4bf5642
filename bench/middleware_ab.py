"""The middleware chain's added latency, this checkout against another one, in one run.

Runs ``bench.middleware_overhead`` alternately from two source trees (this checkout and
``--baseline-src``, e.g. ``git archive main | tar -x -C ../baseline``), each time in a
fresh process with that tree first on ``PYTHONPATH`` and an empty database, so machine
noise hits both alike. Reports each run's added p50 and the medians, as a ratio.

Example::

    python -m bench.middleware_ab --baseline-src ../baseline --pairs 3 \\
        --redis-url redis://127.0.0.1:6379/6
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import statistics
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from bench.net import require_loopback_host

HERE = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def scratch_database(pg_url: str | None) -> Iterator[str | None]:
    """An empty PostgreSQL database for one run (dropped afterwards), or None for SQLite."""
    if pg_url is None:
        yield None
        return
    import psycopg2

    name = f"compere_bench_mw_{secrets.token_hex(4)}"
    admin = psycopg2.connect(pg_url)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(urlsplit(pg_url)._replace(path=f"/{name}"))
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def one_run(tree: Path, args: argparse.Namespace) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    argv = [
        sys.executable, "-m", "bench.middleware_overhead",
        "--requests", str(args.requests), "--redis-url", args.redis_url,
    ]  # fmt: skip
    if args.anonymous:
        argv.append("--anonymous")
    with scratch_database(args.pg_url) as database_url:
        if database_url:
            argv += ["--database-url", database_url]
        done = subprocess.run(
            argv, cwd=tree, env=env, capture_output=True, text=True, timeout=600, check=False
        )
    if done.returncode != 0:
        raise SystemExit(f"run from {tree} failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.splitlines()[0]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline-src", type=Path, required=True, help="the other source tree")
    parser.add_argument("--pairs", type=int, default=3, help="runs of each tree, alternating")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/6")
    parser.add_argument("--anonymous", action="store_true")
    parser.add_argument(
        "--pg-url",
        help="a loopback PostgreSQL server URL: each run gets a fresh compere_bench_mw_* database "
        "there (default: a temporary SQLite file)",
    )
    args = parser.parse_args(argv)
    require_loopback_host(urlsplit(args.redis_url).hostname)
    if args.pg_url:
        require_loopback_host(urlsplit(args.pg_url).hostname)
    if not 1 <= args.pairs <= 10:
        parser.error("--pairs must be in [1, 10]")
    baseline = args.baseline_src.resolve()
    added: dict[str, list[float]] = {"baseline": [], "this": []}
    for number in range(args.pairs):
        order = [("baseline", baseline), ("this", HERE)]
        if number % 2:
            order.reverse()
        for name, tree in order:
            record = one_run(tree, args)
            added[name].append(float(record["added_p50_ms"]))  # type: ignore[arg-type]
            print(json.dumps({"tree": name, **record}, sort_keys=True), flush=True)
    base, this = statistics.median(added["baseline"]), statistics.median(added["this"])
    print(
        f"\n| chain | added p50 (median of {args.pairs}) | runs |\n|---|---|---|\n"
        f"| baseline | {base:.3f} ms | {added['baseline']} |\n"
        f"| this checkout | {this:.3f} ms | {added['this']} |\n"
        f"\nthis / baseline: {this / base:.2f}"
        if base
        else ""
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
