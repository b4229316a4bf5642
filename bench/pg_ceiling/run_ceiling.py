"""Measure what PostgreSQL itself allows for the vote transaction (the ceiling).

Creates a scratch database ``compere_bench_ceiling_<n>`` on a loopback server, gives it
the service's own schema (the ``sql/postgresql`` migrations), inserts N entities, runs
``pgbench`` with ``vote.sql`` (lock two entity rows in id order, update both, insert the
comparison) and drops the database again.

Prints one JSON line: ``{"n": ..., "clients": ..., "tps": ...}``.

Example::

    python -m bench.pg_ceiling.run_ceiling --n 1000 --clients 20 --duration 10
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg2

from bench.net import require_loopback_host

HERE = Path(__file__).resolve().parent
MIGRATIONS = HERE.parent.parent / "sql" / "postgresql"

MAX_DURATION_S = 120


def database_url(admin_url: str, name: str) -> str:
    parts = urlsplit(admin_url)
    return urlunsplit(parts._replace(path="/" + name))


def create_database(admin_url: str, name: str) -> None:
    connection = psycopg2.connect(admin_url)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            cursor.execute(f'CREATE DATABASE "{name}"')
    finally:
        connection.close()


def drop_database(admin_url: str, name: str) -> None:
    connection = psycopg2.connect(admin_url)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        connection.close()


def prepare(url: str, n: int, migrations: Path) -> None:
    """Apply the schema and insert ``n`` entities with ids 1..n."""
    files = sorted(migrations.glob("*.sql"))
    if not files:
        raise SystemExit(f"no migrations (*.sql) in {migrations}")
    connection = psycopg2.connect(url)
    try:
        with connection, connection.cursor() as cursor:
            for path in files:
                cursor.execute(path.read_text(encoding="utf-8"))
            cursor.execute(
                "INSERT INTO entities (name, description, image_urls, rating)"
                " SELECT 'ceiling ' || g, 'scratch row', '[]', 1500"
                " FROM generate_series(1, %s) AS g",
                (n,),
            )
            cursor.execute("SELECT min(id), max(id) FROM entities")
            low, high = cursor.fetchone()
            if (low, high) != (1, n):
                raise RuntimeError(f"expected entity ids 1..{n}, got {low}..{high}")
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")
    finally:
        connection.close()


def run_pgbench(url: str, n: int, clients: int, threads: int, duration: int, mode: str) -> float:
    """Run the vote script and return transactions per second."""
    pgbench = shutil.which("pgbench")
    if pgbench is None:
        raise SystemExit("pgbench not found (Debian: postgresql-client / postgresql-contrib)")
    parts = urlsplit(url)
    command = [
        pgbench,
        "--no-vacuum",
        f"--client={clients}",
        f"--jobs={threads}",
        f"--time={duration}",
        f"--protocol={mode}",
        f"--define=n={n}",
        f"--file={HERE / 'vote.sql'}",
        f"--host={parts.hostname}",
        f"--port={parts.port or 5432}",
        f"--username={parts.username or 'postgres'}",
        parts.path.lstrip("/"),
    ]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"pgbench failed: {completed.stderr.strip()[-2000:]}")
    match = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", completed.stdout)
    if not match:
        raise RuntimeError(f"no tps in pgbench output: {completed.stdout[-2000:]}")
    return float(match.group(1))


def measure_ceiling(
    admin_url: str,
    n: int,
    *,
    clients: int = 20,
    threads: int = 2,
    duration: int = 10,
    mode: str = "prepared",
    migrations: Path = MIGRATIONS,
    db_prefix: str = "compere_bench",
) -> dict[str, object]:
    """Create, fill, measure and drop a scratch database; return the result record."""
    require_loopback_host(urlsplit(admin_url).hostname)
    if not 0 < duration <= MAX_DURATION_S:
        raise ValueError(f"duration must be in (0, {MAX_DURATION_S}]")
    name = f"{db_prefix}_ceiling_{n}"
    create_database(admin_url, name)
    try:
        url = database_url(admin_url, name)
        prepare(url, n, migrations)
        tps = run_pgbench(url, n, clients, threads, duration, mode)
    finally:
        drop_database(admin_url, name)
    return {
        "kind": "pg_ceiling",
        "n": n,
        "clients": clients,
        "duration_s": duration,
        "protocol": mode,
        "tps": tps,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--pg-url",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="loopback server to create the scratch database on",
    )
    parser.add_argument("--n", type=int, action="append", help="entities (repeatable)")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--protocol", choices=["simple", "extended", "prepared"], default="prepared")
    parser.add_argument(
        "--migrations",
        type=Path,
        default=MIGRATIONS,
        help="schema files to apply (default: the repository's sql/postgresql)",
    )
    parser.add_argument("--db-prefix", default="compere_bench", help="prefix of the scratch database")
    args = parser.parse_args(argv)
    for n in args.n or [1000]:
        record = measure_ceiling(
            args.pg_url,
            n,
            clients=args.clients,
            threads=args.threads,
            duration=args.duration,
            mode=args.protocol,
            migrations=args.migrations,
            db_prefix=args.db_prefix,
        )
        print(json.dumps(record), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
