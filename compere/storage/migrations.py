"""Applies the numbered ``.sql`` files of ``sql/<dialect>/`` in order, once each.

Each applied file is recorded with its SHA-256 in ``schema_migrations``; a recorded
file whose content changed stops the run (write a new file instead of editing an
applied one). PostgreSQL applies each file in its own transaction, which holds an
advisory lock and checks again that no other process applied the file meanwhile, so two
workers starting together cannot both migrate (also through PgBouncer in transaction
mode); SQLite gets the same effect from its write lock (``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import bindparam as param

from compere.storage.database import Connection, Database, Query
from compere.storage.timestamps import utc_now

log = logging.getLogger(__name__)

_migrations = sa.table(
    "schema_migrations",
    sa.column("filename", sa.Text),
    sa.column("checksum", sa.Text),
    sa.column("applied_at", sa.Text),
)
_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    filename   TEXT PRIMARY KEY,
    checksum   TEXT NOT NULL,
    applied_at TEXT NOT NULL
);
"""
_APPLIED = Query(sa.select(_migrations.c.filename, _migrations.c.checksum))
_RECORD = Query(
    sa.insert(_migrations).values(
        filename=param("filename"), checksum=param("checksum"), applied_at=param("now")
    )
)


class MigrationError(RuntimeError):
    """The schema files and the database disagree; the message says how."""


@dataclass(frozen=True, slots=True)
class Migration:
    filename: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()


def sql_root() -> Path:
    """Where the schema files are: ``COMPERE_SQL_DIR``, else the installed package's
    ``compere/sql/`` (wheels and sdists carry it), else the checkout's top-level ``sql/``."""
    override = os.environ.get("COMPERE_SQL_DIR", "").strip()
    if override:
        if not Path(override).is_dir():
            raise MigrationError(f"COMPERE_SQL_DIR={override} is not a folder")
        return Path(override)
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "sql", package.parent / "sql"):
        if candidate.is_dir():
            return candidate
    raise MigrationError("cannot find the sql/ schema folder; set COMPERE_SQL_DIR")


def load_migrations(dialect: str, root: Path | None = None) -> list[Migration]:
    folder = (root or sql_root()) / dialect
    files = sorted(folder.glob("*.sql"))
    if not files:
        raise MigrationError(f"no schema files in sql/{dialect}/")
    return [Migration(f.name, f.read_text(encoding="utf-8")) for f in files]


async def migrate(db: Database, root: Path | None = None) -> list[str]:
    """Bring the schema up to date; return the files applied by this call."""
    migrations = load_migrations(db.name, root)
    async with db.migration_lock() as conn:
        async with db.migration_step(conn):
            await conn.execute_script(_CREATE_TABLE)
        pending = await _pending(db.name, conn, migrations)
        applied = []
        for migration in pending:  # one transaction per file where the backend can
            async with db.migration_step(conn):
                if await _is_applied(conn, migration):
                    continue  # by another process while this one waited for the lock
                await _apply(conn, migration)
                applied.append(migration.filename)
        return applied


async def _pending(dialect: str, conn: Connection, migrations: list[Migration]) -> list[Migration]:
    applied = {row["filename"]: row["checksum"] for row in await conn.fetch_all(_APPLIED)}
    for migration in migrations:
        recorded = applied.get(migration.filename)
        if recorded is not None and recorded != migration.checksum:
            raise MigrationError(
                f"sql/{dialect}/{migration.filename} was edited after it was applied; "
                "restore it and put the change in a new file"
            )
    return [m for m in migrations if m.filename not in applied]


async def _is_applied(conn: Connection, migration: Migration) -> bool:
    return any(row["filename"] == migration.filename for row in await conn.fetch_all(_APPLIED))


def _data_steps() -> dict[str, Callable[[Connection], Awaitable[None]]]:
    """Python run right after a schema file, in its transaction: the changes to existing
    rows that SQL cannot make alike on both dialects (Unicode normalisation, say)."""
    from compere.storage.users import fill_canonical_names

    return {"0005_auth_durable.sql": fill_canonical_names}


async def _apply(conn: Connection, migration: Migration) -> None:
    await conn.execute_script(migration.sql)
    step = _data_steps().get(migration.filename)
    if step is not None:
        await step(conn)
    await conn.execute(
        _RECORD, {"filename": migration.filename, "checksum": migration.checksum, "now": utc_now()}
    )
    log.info("applied schema file %s", migration.filename)
