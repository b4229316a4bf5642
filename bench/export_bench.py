"""Export benchmark: ``compere export comparisons`` over a million votes in bounded memory.

Creates a throw-away PostgreSQL database, applies the schema with ``compere migrate``,
seeds entities and comparisons in the server with ``generate_series`` (seconds, not
minutes), then runs the real command as a child process for several row counts and
reports wall time, rows per second and the child's peak resident memory. Memory that
stays flat from 100,000 to 1,000,000 rows is the claim under test: the export holds
one batch at a time. The database is dropped at the end.

    python -m bench.export_bench                    # 100k and 1M rows, JSON Lines and CSV
    python -m bench.export_bench --rows 200000      # one size only

Needs PostgreSQL (``COMPERE_BENCH_POSTGRES_URL``, default the local server as postgres).
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg2

REPO = Path(__file__).resolve().parents[1]
ADMIN_URL = os.environ.get("COMPERE_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
ENTITIES = 1000


def _url_for(name: str) -> str:
    return urlunsplit(urlsplit(ADMIN_URL)._replace(path=f"/{name}"))


def _admin(sql: str) -> None:
    conn = psycopg2.connect(ADMIN_URL)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(sql)
    conn.close()


def _env(url: str) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": url, "PYTHONPATH": str(REPO), "LOG_LEVEL": "WARNING"}


def seed(url: str, comparisons: int) -> float:
    """Top the log up to ``comparisons`` rows; return the seconds it took."""
    started = time.perf_counter()
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM entities")
        if cur.fetchone()[0] == 0:
            cur.execute(
                "INSERT INTO entities (name, description, rating, created_at, updated_at, external_id) "
                "SELECT 'item ' || g, 'description of item ' || g, 1500, now(), now(), 'ext-' || g "
                "FROM generate_series(1, %s) g",
                (ENTITIES,),
            )
        cur.execute("SELECT count(*) FROM comparisons")
        have = cur.fetchone()[0]
        # Two different entities per row (offset 1..ENTITIES-1); a third of them ties.
        cur.execute(
            """
            INSERT INTO comparisons (entity1_id, entity2_id, selected_entity_id, created_at)
            SELECT e1, e2, CASE g %% 3 WHEN 0 THEN e1 WHEN 1 THEN e2 END,
                   now() - make_interval(secs => %(n)s - g)
            FROM (
                SELECT g, 1 + g %% %(k)s AS e1,
                       1 + (g %% %(k)s + 1 + (g / %(k)s) %% (%(k)s - 1)) %% %(k)s AS e2
                FROM generate_series(%(start)s, %(n)s - 1) g
            ) s
            """,
            {"n": comparisons, "k": ENTITIES, "start": have},
        )
    conn.close()
    return time.perf_counter() - started


def _run_measured(
    argv: list[str], env: dict[str, str], stdout: Any = subprocess.DEVNULL
) -> tuple[float, str, int]:
    """Run a child; return (seconds, its stderr, its own peak RSS in KiB, from wait4)."""
    with tempfile.TemporaryFile(mode="w+") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, stdout=stdout, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        text = err.read()
    if proc.returncode != 0:
        raise SystemExit(f"{argv} failed: {text}")
    return elapsed, text, usage.ru_maxrss


def run_export(url: str, fmt: str) -> tuple[float, int, int]:
    """Run the export to /dev/null; return (seconds, rows, peak RSS of that child in KiB)."""
    argv = [sys.executable, "-m", "compere", "export", "comparisons", "--format", fmt, "-o", os.devnull]
    elapsed, text, peak = _run_measured(argv, _env(url))
    rows = int(text.strip().split()[-2])  # "exported N comparisons"
    return elapsed, rows, peak


def baseline_rss(url: str) -> int:
    """Peak RSS of the same interpreter importing what the export imports, then exiting."""
    code = "import compere.cli, compere.services.transfer, compere.storage.postgres, tqdm"
    return _run_measured([sys.executable, "-c", code], _env(url))[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows", type=int, action="append", help="comparison counts (default 100000, 1000000)"
    )
    args = parser.parse_args()
    sizes = sorted(args.rows or [100_000, 1_000_000])

    name = f"compere_bench_export_{secrets.token_hex(4)}"
    url = _url_for(name)
    _admin(f'CREATE DATABASE "{name}"')
    try:
        subprocess.run(
            [sys.executable, "-m", "compere", "migrate"], env=_env(url), check=True, capture_output=True
        )
        start_rss = baseline_rss(url)
        print(f"interpreter + imports, peak RSS: {start_rss / 1024:.1f} MiB")
        print(f"{'rows':>10} {'format':>6} {'seconds':>8} {'rows/s':>10} {'peak RSS MiB':>13}")
        for size in sizes:
            seeded = seed(url, size)
            print(f"(seeded up to {size:,} comparisons in {seeded:.1f} s)")
            for fmt in ("jsonl", "csv"):
                elapsed, rows, peak = run_export(url, fmt)
                assert rows == size, (rows, size)
                print(f"{rows:>10,} {fmt:>6} {elapsed:>8.1f} {rows / elapsed:>10,.0f} {peak / 1024:>13.1f}")
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
