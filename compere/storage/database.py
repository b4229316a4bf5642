"""The one database interface the rest of Compere talks to.

Queries are SQLAlchemy Core statements wrapped in :class:`Query`, which compiles each
statement once per dialect and caches the SQL text; parameters are plain Python values
that both drivers understand (int, float, str, None). The two backends differ only in
how they connect, lock and run that text; every such difference is a method or an
attribute here, so query modules never ask which backend they talk to. This module
imports neither backend (``compere.storage.connect`` opens one).
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.sql import ClauseElement

Row = dict[str, Any]
Params = Mapping[str, Any]


class DatabaseError(Exception):
    """Base class of the storage errors the HTTP layer knows how to answer."""


class DatabaseUnavailable(DatabaseError):
    """The database could not be reached or did not answer in time (HTTP 503)."""


class DatabaseMisconfigured(DatabaseError):
    """The database is reachable but set up so Compere cannot work with it as configured;
    the message names the setting to change. Raised when the database is opened."""


class ConflictError(DatabaseError):
    """A uniqueness or integrity rule refused the write (HTTP 409)."""


@dataclass(frozen=True, slots=True)
class CompiledQuery:
    sql: str
    positional: tuple[str, ...] | None  # parameter order for qmark dialects

    def bind(self, compiled_params: dict[str, Any]) -> Any:
        if self.positional is None:
            return compiled_params
        return tuple(compiled_params[name] for name in self.positional)


class Query:
    """A statement compiled once per dialect; build module-level constants of these.

    ``prepare=True`` marks a hot-path statement: where the backend can, it keeps the
    statement prepared on each connection (PostgreSQL: ``PREPARE`` once, then
    ``EXECUTE``), so the server parses and plans it once per connection instead of on
    every call. Only for module-level constants: each one costs a prepared statement on
    every pooled connection.
    """

    __slots__ = ("_compiled", "prepare", "statement")

    def __init__(self, statement: ClauseElement, *, prepare: bool = False) -> None:
        self.statement = statement
        self.prepare = prepare
        self._compiled: dict[str, tuple[CompiledQuery, Any]] = {}

    def compile(self, dialect: Dialect, params: Params | None) -> tuple[str, Any]:
        entry = self._compiled.get(dialect.name)
        if entry is None:
            compiled: Any = self.statement.compile(
                dialect=dialect, compile_kwargs={"render_postcompile": True}
            )
            positional = tuple(compiled.positiontup) if compiled.positiontup is not None else None
            entry = (CompiledQuery(compiled.string, positional), compiled)
            self._compiled[dialect.name] = entry
        query, compiled = entry
        values = compiled.construct_params(dict(params) if params else None)
        return query.sql, query.bind(values)


class Connection(abc.ABC):
    """A connection inside a transaction (or an autocommit session)."""

    @abc.abstractmethod
    async def fetch_all(self, query: Query, params: Params | None = None) -> list[Row]: ...

    async def fetch_one(self, query: Query, params: Params | None = None) -> Row | None:
        rows = await self.fetch_all(query, params)
        return rows[0] if rows else None

    async def fetch_value(self, query: Query, params: Params | None = None) -> Any:
        row = await self.fetch_one(query, params)
        return None if row is None else next(iter(row.values()))

    @abc.abstractmethod
    async def execute(self, query: Query, params: Params | None = None) -> int:
        """Run a statement and return the number of rows it touched."""

    @abc.abstractmethod
    async def execute_script(self, sql: str) -> None:
        """Run a schema script (several statements)."""

    @abc.abstractmethod
    async def raw(self, sql: str, values: tuple[Any, ...] = ()) -> None:
        """Run one literal statement (transaction control, lock calls)."""

    @abc.abstractmethod
    async def lock_tables(self, *tables: str) -> None:
        """In a transaction: keep every other writer of ``tables`` out until it ends.

        PostgreSQL takes a table lock that conflicts with itself, with row writes and with
        row locks (``FOR UPDATE``), letting plain reads through;
        SQLite's ``BEGIN IMMEDIATE`` already holds the database's one write lock.
        """

    async def finish(self, query: Query, params: Params | None = None) -> None:
        """Run a transaction's last statement; nothing may run in the transaction after it.

        On PostgreSQL the statement and the COMMIT travel in one round trip (an error in
        the statement means the COMMIT never runs and the transaction rolls back); only
        the COMMIT's result comes back, so the statement cannot return rows. Elsewhere it
        runs like ``execute`` and the transaction commits when its block ends.
        """
        await self.execute(query, params)


class Database(Connection):
    """A pool of connections to one database; single statements run in autocommit."""

    name: str  # "postgresql" or "sqlite": also the folder of its files under sql/
    dialect: Dialect
    # Whether a vote can be written as one statement (both entity updates as
    # data-modifying CTEs of the comparison INSERT, the id drawn from the identity
    # sequence while the pair is locked) that goes out with the COMMIT.
    writes_vote_in_one_statement: bool
    # Whether a query waits on the event loop's own sockets (PostgreSQL), so overlapping it
    # with other I/O is free; SQLite runs each connection in a thread, and a thread that
    # wakes while the loop is busy waits for the GIL (slower than taking turns).
    reads_on_event_loop: bool
    # The dialect's ``insert()``, whose statements have ``on_conflict_do_nothing``.
    insert_or_skip: Callable[..., Any]

    async def finish(self, query: Query, params: Params | None = None) -> None:
        raise RuntimeError("finish() ends a transaction: call it on the one db.transaction() yields")

    async def lock_tables(self, *tables: str) -> None:
        raise RuntimeError("lock_tables() holds until a transaction ends: call it on db.transaction()'s")

    def reader(self) -> Connection:
        """Where to run reads that may be slightly stale: leaderboards, exports, entity
        lists, pair candidates. A streaming replica while it is up and fresh enough
        (``compere.storage.replica``), else this database. Anything that must see its
        own writes (votes, a just-created entity, the rows a transaction changes) reads
        from the database itself instead."""
        return self

    @abc.abstractmethod
    def transaction(self) -> AbstractAsyncContextManager[Connection]:
        """A write transaction: commits on success, rolls back on any error.

        PostgreSQL runs it at READ COMMITTED and callers lock rows with ``FOR UPDATE``;
        SQLite starts it with ``BEGIN IMMEDIATE`` so writers are serialised.
        """

    @abc.abstractmethod
    def session(self) -> AbstractAsyncContextManager[Connection]:
        """One connection held for several autocommit statements (used by migrations)."""

    @abc.abstractmethod
    def migration_lock(self) -> AbstractAsyncContextManager[Connection]:
        """One connection to change the schema on, alone.

        SQLite runs the whole block as one ``BEGIN IMMEDIATE`` transaction, as its DDL is
        transactional; PostgreSQL runs each schema file in a transaction of its own that
        holds a transaction-scoped advisory lock (:meth:`migration_step`), which works
        through a transaction pooler too (a session lock would stay behind on whichever
        server session the pooler lent).
        """

    @abc.abstractmethod
    def migration_step(self, conn: Connection) -> AbstractAsyncContextManager[None]:
        """Around one schema file inside :meth:`migration_lock`: its own transaction,
        holding the migration lock, where the lock is not one transaction already. The
        caller checks again inside it whether another process applied the file."""

    @abc.abstractmethod
    async def column_names(self, table: str) -> list[str]:
        """The columns ``table`` has in this database, in order."""

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise :class:`DatabaseUnavailable` unless the database answers."""

    @abc.abstractmethod
    async def close(self) -> None: ...


def rows_to_dicts(names: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[Row]:
    return [dict(zip(names, row, strict=True)) for row in rows]


@asynccontextmanager
async def explicit_transaction(conn: Connection, begin: str = "BEGIN") -> AsyncIterator[None]:
    """``begin`` ... COMMIT on a session connection; ROLLBACK on any error."""
    await conn.raw(begin)
    try:
        yield
    except BaseException:
        await conn.raw("ROLLBACK")
        raise
    await conn.raw("COMMIT")


async def keyset_batches(
    db: Connection, query: Query, batch_size: int, params: Params | None = None
) -> AsyncIterator[list[Row]]:
    """Run ``query`` (``... WHERE id > :after ORDER BY id LIMIT :limit``) batch after batch.

    Each batch is one short query on the primary key, so memory stays bounded by the
    batch and no cursor is held open between batches; rows added during the run after
    the last id are included, earlier ones are not repeated. ``params`` binds the
    query's other parameters (a project id, say).
    """
    after = 0
    while True:
        rows = await db.fetch_all(query, {**(params or {}), "after": after, "limit": batch_size})
        if not rows:
            return
        yield rows
        if len(rows) < batch_size:
            return
        after = rows[-1]["id"]
