"""Seed entities straight into a target's PostgreSQL database with ``COPY``.

Used for large N, where seeding through POST /entities/ would take longer than the
measurement itself. Only the tables each server reads are filled; everything else (for
example the original's bandit rows, which it creates lazily on the first pair request)
is left to the server, exactly as after seeding through the API.
"""

from __future__ import annotations

import io
import json
from urllib.parse import urlsplit

import psycopg2

from bench.net import require_loopback_host

INITIAL_RATING = 1500.0

# Column list per server: ours and the original share the entity columns that matter.
PROFILES = {
    "compere": "entities (name, description, image_urls, rating)",
    "original": "entities (name, description, image_urls, rating)",
}


def _rows(count: int) -> io.StringIO:
    buffer = io.StringIO()
    for n in range(1, count + 1):
        urls = json.dumps([f"https://img.example/{n}.png"])
        buffer.write(f"seeded entity {n}\tseeded for the benchmark, item {n}\t{urls}\t{INITIAL_RATING}\n")
    buffer.seek(0)
    return buffer


def seed_entities(database_url: str, count: int, profile: str) -> list[int]:
    """Insert ``count`` entities and return all entity ids in the table."""
    require_loopback_host(urlsplit(database_url).hostname)
    connection = psycopg2.connect(database_url)
    try:
        with connection, connection.cursor() as cursor:
            cursor.copy_expert(f"COPY {PROFILES[profile]} FROM STDIN", _rows(count))
            cursor.execute("ANALYZE entities")
        with connection.cursor() as cursor:
            cursor.execute("SELECT id FROM entities ORDER BY id")
            return [row[0] for row in cursor.fetchall()]
    finally:
        connection.close()
