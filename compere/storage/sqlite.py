"""SQLite backend for local development: aiosqlite, WAL mode, one serialised writer.

Readers get their own connections (WAL lets them run beside the writer). Every write
goes through one connection guarded by an asyncio lock and starts with
``BEGIN IMMEDIATE``, which takes SQLite's write lock up front: a read-then-write
transaction can then never fail half-way with "database is locked", and several
processes on one file queue on ``busy_timeout`` instead of losing updates.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import aiosqlite
import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite

from compere.storage.database import (
    ConflictError,
    Connection,
    Database,
    DatabaseUnavailable,
    Params,
    Query,
    Row,
    explicit_transaction,
    rows_to_dicts,
)

_DIALECT = SQLiteDialect_pysqlite()


@contextmanager
def _driver_errors() -> Iterator[None]:
    try:
        yield
    except sqlite3.IntegrityError as exc:
        raise ConflictError(str(exc)) from exc
    except sqlite3.OperationalError as exc:
        # "database is locked" past busy_timeout, disk full, file gone: all transient
        # from the client's point of view.
        raise DatabaseUnavailable("the database is busy or unavailable") from exc


class _SQLiteConnection(Connection):
    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def fetch_all(self, query: Query, params: Params | None = None) -> list[Row]:
        sql, values = query.compile(_DIALECT, params)
        with _driver_errors():
            async with self._conn.execute(sql, values) as cur:
                rows = await cur.fetchall()
                if cur.description is None:
                    return []
                return rows_to_dicts([d[0] for d in cur.description], rows)

    async def execute(self, query: Query, params: Params | None = None) -> int:
        sql, values = query.compile(_DIALECT, params)
        with _driver_errors():
            async with self._conn.execute(sql, values) as cur:
                return cur.rowcount

    async def execute_script(self, sql: str) -> None:
        # executescript() would COMMIT first; run the statements one by one instead so
        # the caller's transaction stays in charge.
        with _driver_errors():
            for statement in split_statements(sql):
                async with self._conn.execute(statement) as cur:
                    await cur.fetchall()

    async def raw(self, sql: str, values: tuple[Any, ...] = ()) -> None:
        with _driver_errors():
            async with self._conn.execute(sql, values) as cur:
                await cur.fetchall()

    async def lock_tables(self, *tables: str) -> None:
        pass  # BEGIN IMMEDIATE already holds the database's one write lock


def split_statements(script: str) -> list[str]:
    """Split a schema script into complete statements (triggers included)."""
    statements: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                statements.append(buffer.strip())
            buffer = ""
    if buffer.strip() and not all(
        part.strip().startswith("--") or not part.strip() for part in buffer.splitlines()
    ):
        raise ValueError("schema script ends with an incomplete statement")
    return statements


async def _open_connection(path: str, busy_timeout_ms: int, *pragmas: str) -> aiosqlite.Connection:
    conn = await aiosqlite.connect(path, isolation_level=None)  # we issue BEGIN ourselves
    for pragma in (
        f"busy_timeout = {int(busy_timeout_ms)}",
        "foreign_keys = ON",
        *pragmas,
    ):
        # Fetch every result: an unfinished PRAGMA statement keeps holding its lock.
        async with conn.execute(f"PRAGMA {pragma}") as cur:
            await cur.fetchall()
    return conn


class SQLiteDatabase(Database):
    name = "sqlite"
    # No data-modifying CTEs: a vote's three writes are three statements.
    writes_vote_in_one_statement = False
    reads_on_event_loop = False
    insert_or_skip = staticmethod(sqlite.insert)
    dialect = _DIALECT

    def __init__(self, writer: aiosqlite.Connection, readers: list[aiosqlite.Connection]) -> None:
        self._writer = writer
        self._write_lock = asyncio.Lock()
        self._readers: asyncio.Queue[aiosqlite.Connection] = asyncio.Queue()
        self._all = [writer, *readers]
        for reader in readers:
            self._readers.put_nowait(reader)

    @classmethod
    async def open(cls, path: str, *, readers: int, busy_timeout_ms: int) -> SQLiteDatabase:
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        try:
            writer = await _open_connection(
                path, busy_timeout_ms, "journal_mode = WAL", "synchronous = NORMAL"
            )
            reader_conns = [await _open_connection(path, busy_timeout_ms) for _ in range(readers)]
        except sqlite3.Error as exc:
            raise DatabaseUnavailable("the database file cannot be opened") from exc
        return cls(writer, reader_conns)

    @asynccontextmanager
    async def _reader(self) -> AsyncIterator[_SQLiteConnection]:
        conn = await self._readers.get()
        try:
            yield _SQLiteConnection(conn)
        finally:
            self._readers.put_nowait(conn)

    async def fetch_all(self, query: Query, params: Params | None = None) -> list[Row]:
        async with self._reader() as conn:
            return await conn.fetch_all(query, params)

    async def execute(self, query: Query, params: Params | None = None) -> int:
        async with self.transaction() as conn:
            return await conn.execute(query, params)

    async def execute_script(self, sql: str) -> None:
        async with self.transaction() as conn:
            await conn.execute_script(sql)

    async def raw(self, sql: str, values: tuple[Any, ...] = ()) -> None:
        async with self.session() as conn:
            await conn.raw(sql, values)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        async with self._write_lock:
            conn = _SQLiteConnection(self._writer)
            await conn.raw("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                if self._writer.in_transaction:
                    await self._writer.execute("ROLLBACK")
                raise
            await conn.raw("COMMIT")

    @asynccontextmanager
    async def session(self) -> AsyncIterator[_SQLiteConnection]:
        async with self._write_lock:
            yield _SQLiteConnection(self._writer)

    @asynccontextmanager
    async def migration_lock(self) -> AsyncIterator[Connection]:
        # SQLite's DDL is transactional: the whole run is one atomic transaction, and
        # the write lock BEGIN IMMEDIATE takes is the migration lock.
        async with self.session() as conn, explicit_transaction(conn, "BEGIN IMMEDIATE"):
            yield conn

    @asynccontextmanager
    async def migration_step(self, conn: Connection) -> AsyncIterator[None]:
        yield  # inside the one transaction migration_lock() holds

    async def column_names(self, table: str) -> list[str]:
        if not table.isidentifier():
            raise ValueError(table)
        pragma = Query(sa.text(f"SELECT name FROM pragma_table_info('{table}') ORDER BY cid"))
        return [row["name"] for row in await self.fetch_all(pragma)]

    async def ping(self) -> None:
        async with self._reader() as conn:
            await conn.raw("SELECT 1")

    async def close(self) -> None:
        for conn in self._all:
            await conn.close()
