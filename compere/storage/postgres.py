"""PostgreSQL backend: an aiopg pool running SQL compiled for the psycopg2 dialect."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
import weakref
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import aiopg
import psycopg2
import psycopg2.errors
import sqlalchemy as sa
from sqlalchemy import bindparam as param
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql.psycopg2 import PGDialect_psycopg2

from compere.infra import metrics
from compere.storage.database import (
    ConflictError,
    Connection,
    Database,
    DatabaseMisconfigured,
    DatabaseUnavailable,
    Params,
    Query,
    Row,
    explicit_transaction,
    rows_to_dicts,
)

log = logging.getLogger(__name__)

# Held by the one process that migrates; an arbitrary constant shared by every Compere
# process ("compere" in ASCII).
_MIGRATION_LOCK_KEY = 0x636F6D70657265
_COLUMNS = Query(
    sa.select(sa.column("column_name"))
    .select_from(sa.table("columns", schema="information_schema"))
    .where(
        sa.column("table_schema") == sa.func.current_schema(),
        sa.column("table_name") == param("table"),
    )
    .order_by(sa.column("ordinal_position"))
)

_DIALECT = PGDialect_psycopg2()

# Sent as a start-up option beside statement_timeout on direct connections and read back
# once: a pooler that drops start-up options (PgBouncer does, in every pool_mode) also
# hands out server sessions that do not keep prepared statements or session settings,
# so its absence means DB_POOLER=pgbouncer is needed.
_DIRECT_PROBE = "compere.direct_session"
_POOLER_NEEDED = (
    "DATABASE_URL leads to PostgreSQL through a connection pooler (PgBouncer?) that {what}; "
    "set DB_POOLER=pgbouncer, which keeps no state in server sessions, or connect directly"
)

# Errors that mean "the server or the connection is gone", as opposed to a bad query
# (OperationalError also covers a deadlock and a replica cancelling a read that
# conflicts with replay: retryable, so 503 as well).
_UNAVAILABLE = (psycopg2.OperationalError, psycopg2.InterfaceError)


def _socket_handle_closed(exc: RuntimeError) -> bool:
    """True for uvloop's refusal to watch a connection's socket after a socket error.

    When a server connection breaks (the server stops or crashes), uvloop closes its
    watcher for that socket and refuses every later operation on it, or on a new
    connection that gets the same descriptor number, with this RuntimeError. It is a
    lost connection, not a bug in the caller; any other RuntimeError still is one.
    """
    return "the handler is closed" in str(exc)


_PLACEHOLDER = re.compile(r"%\((\w+)\)s")


class _Prepared:
    """A ``prepare=True`` query as SQL-level PREPARE / EXECUTE text.

    psycopg2 speaks the simple query protocol only, so prepared statements are the SQL
    commands: ``PREPARE name AS <query with $1, $2, ...>`` once per connection, then
    ``EXECUTE name(%(a)s, %(b)s, ...)``, whose arguments psycopg2 interpolates as
    literals and the server casts to the types it inferred at PREPARE.
    """

    __slots__ = ("execute", "name", "prepare")

    def __init__(self, sql: str) -> None:
        self.name = "compere_" + hashlib.sha256(sql.encode()).hexdigest()[:20]
        order: dict[str, int] = {}

        def number(match: re.Match[str]) -> str:
            return f"${order.setdefault(match.group(1), len(order) + 1)}"

        body = _PLACEHOLDER.sub(number, sql).replace("%%", "%")
        self.prepare = f"PREPARE {self.name} AS {body}"
        arguments = ", ".join(f"%({name})s" for name in order)
        self.execute = f"EXECUTE {self.name}({arguments})" if order else f"EXECUTE {self.name}"


_PREPARED_FORMS: dict[str, _Prepared] = {}
# The statements prepared on each open connection. A prepared statement lives as long as
# its session and survives a ROLLBACK; a new connection starts with none.
_PREPARED_ON: weakref.WeakKeyDictionary[aiopg.Connection, set[str]] = weakref.WeakKeyDictionary()


@contextmanager
def _driver_errors() -> Iterator[None]:
    """Turn driver errors into the storage errors the HTTP layer answers."""
    try:
        yield
    except psycopg2.errors.QueryCanceled as exc:
        raise DatabaseUnavailable("the database did not answer in time") from exc
    except _UNAVAILABLE as exc:
        raise DatabaseUnavailable("the database is unavailable") from exc
    except psycopg2.IntegrityError as exc:
        raise ConflictError(exc.diag.constraint_name or "integrity") from exc
    except TimeoutError as exc:
        # aiopg's own client-side timeout (the pool's ``timeout=``) fired first, e.g. a
        # large result still arriving on a busy machine. aiopg has closed the connection.
        raise DatabaseUnavailable("the database did not answer in time") from exc
    except OSError as exc:
        # The socket itself failed (the event loop could not watch or use it).
        raise DatabaseUnavailable("the database is unavailable") from exc
    except RuntimeError as exc:
        if not _socket_handle_closed(exc):
            raise
        raise DatabaseUnavailable("the database is unavailable") from exc
    except asyncio.CancelledError:
        # aiopg reports a server-side statement_timeout as CancelledError. Only a task
        # that nobody cancelled can see it that way; a real cancellation propagates.
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        raise DatabaseUnavailable("the database did not answer in time") from None


class _CursorConnection(Connection):
    def __init__(
        self,
        cursor: aiopg.Cursor,
        *,
        in_transaction: bool = False,
        prepared_statements: bool = False,
        local_settings: str = "",
    ) -> None:
        self._cursor = cursor
        # "SET LOCAL ...;" sent at the start of every transaction, explicit or implicit,
        # where session settings do not last (behind a transaction pooler).
        self._local_settings = local_settings
        self._prepared: set[str] | None = None
        if prepared_statements:
            self._prepared = _PREPARED_ON.setdefault(cursor.connection, set())
        # In a transaction, BEGIN rides along with the first statement ("BEGIN; ...")
        # instead of costing a round trip of its own.
        self._begin_pending = in_transaction
        self.begun = False
        # Set by finish(): the COMMIT went out with the transaction's last statement.
        self.finished = False

    async def _run(self, sql: str, values: Any) -> None:
        if self.finished:
            raise RuntimeError("the transaction has already been committed by finish()")
        if self._begin_pending:
            sql = "BEGIN;" + sql
            self._begin_pending = False
            self.begun = True
        if self._local_settings:
            sql = self._with_local_settings(sql)
        await self._cursor.execute(sql, values)

    def _with_local_settings(self, sql: str) -> str:
        """``sql`` preceded by the SET LOCALs unless a transaction is already open.

        Outside an explicit transaction the statements of one message form an implicit
        one, so "SET LOCAL ...; SELECT ..." applies to the SELECT alone and travels in
        the same round trip (and, through PgBouncer, to the same server session).
        """
        status = self._cursor.connection.raw.info.transaction_status
        if status != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
            return sql
        if sql == "BEGIN" or sql.startswith("BEGIN;"):
            return "BEGIN;" + self._local_settings + sql[len("BEGIN;") :]
        return self._local_settings + sql

    async def _sql(self, query: Query, params: Params | None) -> tuple[str, Any]:
        """The text to send for ``query``: an EXECUTE when it is kept prepared."""
        sql, values = query.compile(_DIALECT, params)
        if not query.prepare or self._prepared is None:
            return sql, values
        form = _PREPARED_FORMS.get(sql)
        if form is None:
            form = _PREPARED_FORMS[sql] = _Prepared(sql)
        if form.name not in self._prepared:
            # Its own round trip, once per connection: an error in a message that also
            # carried the PREPARE would leave unknown whether the PREPARE took effect.
            # Outside a transaction unless one is already open (then a failure aborts
            # it, as any failed statement would).
            with _driver_errors():
                await self._cursor.execute(form.prepare)
            self._prepared.add(form.name)
        return form.execute, values

    async def fetch_all(self, query: Query, params: Params | None = None) -> list[Row]:
        sql, values = await self._sql(query, params)
        cur = self._cursor
        with _driver_errors():
            await self._run(sql, values)
            if cur.description is None:
                return []
            names = [d.name for d in cur.description]
            return rows_to_dicts(names, await cur.fetchall())

    async def execute(self, query: Query, params: Params | None = None) -> int:
        sql, values = await self._sql(query, params)
        with _driver_errors():
            await self._run(sql, values)
        return int(self._cursor.rowcount)

    async def execute_script(self, sql: str) -> None:
        with _driver_errors():
            await self._run(sql, None)

    async def raw(self, sql: str, values: tuple[Any, ...] = ()) -> None:
        with _driver_errors():
            await self._run(sql, values or None)

    async def lock_tables(self, *tables: str) -> None:
        if not all(table.isidentifier() for table in tables):
            raise ValueError(tables)
        # EXCLUSIVE: plain reads go on, but not SELECT ... FOR UPDATE. A vote that locked its
        # entity rows and then waited for the table would deadlock with a holder that writes
        # those rows (a replay), or overwrite them with what it read before.
        await self.raw(f"LOCK TABLE {', '.join(tables)} IN EXCLUSIVE MODE")

    async def finish(self, query: Query, params: Params | None = None) -> None:
        # "statement; COMMIT" is one simple-protocol message (psycopg2 interpolates the
        # parameters client-side). The server stops at the first error, so a failed
        # statement never reaches the COMMIT and the transaction block rolls back as after
        # any other failed statement. The COMMIT is the last thing the message asks for:
        # once it has run, nothing but its own acknowledgement is left to fail.
        if not (self.begun or self._begin_pending):
            raise RuntimeError("finish() ends a transaction; there is none here")
        sql, values = await self._sql(query, params)
        with _driver_errors():
            await self._run(sql + "; COMMIT", values)
        self.finished = True


class PostgresDatabase(Database):
    name = "postgresql"
    dialect = _DIALECT
    writes_vote_in_one_statement = True
    reads_on_event_loop = True
    insert_or_skip = staticmethod(postgresql.insert)

    def __init__(
        self,
        pool: aiopg.Pool,
        acquire_timeout: float,
        prepared_statements: bool = True,
        local_settings: str = "",
    ) -> None:
        self._pool = pool
        self._acquire_timeout = acquire_timeout
        # Off behind a pooler that hands each transaction a different server session
        # (PgBouncer in transaction mode): SQL-level prepared statements belong to one.
        self._prepared_statements = prepared_statements
        self._local_settings = local_settings

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        minsize: int,
        maxsize: int,
        acquire_timeout: float,
        statement_timeout_ms: int,
        prepared_statements: bool = True,
        transaction_pooler: bool = False,
    ) -> PostgresDatabase:
        """Open a pool on ``url``.

        ``transaction_pooler``: the URL leads to PgBouncer (or a pooler like it), which
        may give every transaction another server session and drops start-up options.
        Nothing is then kept in a session: no prepared statements, and the statement
        timeout is sent with ``SET LOCAL`` in front of each transaction. Without it, a
        pooler is detected and refused (:class:`DatabaseMisconfigured`).
        """
        dsn = url.replace("postgres://", "postgresql://", 1)
        options: dict[str, Any] = {}
        if not transaction_pooler:
            options["options"] = f"-c statement_timeout={statement_timeout_ms} -c {_DIRECT_PROBE}=on"
        try:
            pool = await aiopg.create_pool(
                dsn,
                minsize=minsize,
                maxsize=maxsize,
                timeout=max(acquire_timeout, 1.0) + statement_timeout_ms / 1000,
                enable_hstore=False,  # else dict parameters may be sent as hstore
                pool_recycle=300,
                **options,
            )
        except (psycopg2.Error, OSError) as exc:
            if "unsupported startup parameter" in str(exc):
                raise DatabaseMisconfigured(_POOLER_NEEDED.format(what="refuses start-up options")) from exc
            raise DatabaseUnavailable("the database is unavailable") from exc
        if transaction_pooler:
            if prepared_statements:
                pool.close()
                await pool.wait_closed()
                raise DatabaseMisconfigured("DB_PREPARED_STATEMENTS cannot work with DB_POOLER=pgbouncer")
            return cls(pool, acquire_timeout, False, f"SET LOCAL statement_timeout = {statement_timeout_ms};")
        db = cls(pool, acquire_timeout, prepared_statements)
        try:
            await db._check_direct()
        except BaseException:
            await db.close()
            raise
        return db

    async def _check_direct(self) -> None:
        """Refuse a pooler that Compere was not told about (its server sessions would lose
        the prepared statements and the statement timeout)."""
        async with self._cursor() as cur:
            with _driver_errors():
                await cur.execute("SELECT current_setting(%s, true)", (_DIRECT_PROBE,))
                row = await cur.fetchone()
        if row is None or row[0] != "on":
            raise DatabaseMisconfigured(_POOLER_NEEDED.format(what="drops start-up options"))

    @asynccontextmanager
    async def _cursor(self) -> AsyncIterator[aiopg.Cursor]:
        pool = self._pool
        must_wait = pool.freesize == 0 and pool.maxsize is not None and pool.size >= pool.maxsize
        if must_wait:
            metrics.DB_POOL_WAITS.inc()
            waiting_since = time.perf_counter()
        try:
            async with asyncio.timeout(self._acquire_timeout):
                with _driver_errors():  # opening a new connection can fail like any query
                    conn = await pool.acquire()
        except TimeoutError:
            metrics.DB_POOL_TIMEOUTS.inc()
            raise DatabaseUnavailable("no database connection became free in time") from None
        if must_wait:
            metrics.DB_POOL_WAIT_SECONDS.observe(time.perf_counter() - waiting_since)
        metrics.DB_POOL_IN_USE.inc()
        try:
            with _driver_errors():
                cursor = await conn.cursor()
            try:
                yield cursor
            finally:
                cursor.close()
        except (DatabaseUnavailable, *_UNAVAILABLE):
            conn.close()  # a broken or stuck connection must not go back to the pool
            raise
        finally:
            metrics.DB_POOL_IN_USE.dec()
            await self._pool.release(conn)

    async def fetch_all(self, query: Query, params: Params | None = None) -> list[Row]:
        async with self._cursor() as cur:
            return await self._connection(cur).fetch_all(query, params)

    async def execute(self, query: Query, params: Params | None = None) -> int:
        async with self._cursor() as cur:
            return await self._connection(cur).execute(query, params)

    async def execute_script(self, sql: str) -> None:
        async with self._cursor() as cur:
            await self._connection(cur).execute_script(sql)

    async def raw(self, sql: str, values: tuple[Any, ...] = ()) -> None:
        async with self._cursor() as cur:
            await self._connection(cur).raw(sql, values)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        async with self._cursor() as cur:
            conn = self._connection(cur, in_transaction=True)
            try:
                yield conn
            except BaseException:
                if conn.begun and not conn.finished and not cur.closed and not cur.connection.closed:
                    try:
                        with _driver_errors():
                            await cur.execute("ROLLBACK")
                    except (DatabaseUnavailable, psycopg2.Error):
                        cur.connection.close()
                raise
            if conn.begun and not conn.finished:
                with _driver_errors():
                    await cur.execute("COMMIT")

    def _connection(self, cur: aiopg.Cursor, *, in_transaction: bool = False) -> _CursorConnection:
        return _CursorConnection(
            cur,
            in_transaction=in_transaction,
            prepared_statements=self._prepared_statements,
            local_settings=self._local_settings,
        )

    @asynccontextmanager
    async def session(self) -> AsyncIterator[_CursorConnection]:
        async with self._cursor() as cur:
            yield self._connection(cur)

    @asynccontextmanager
    async def migration_lock(self) -> AsyncIterator[Connection]:
        async with self.session() as conn:
            yield conn

    @asynccontextmanager
    async def migration_step(self, conn: Connection) -> AsyncIterator[None]:
        # Transaction-scoped, so it ends with the transaction on whichever server session
        # a pooler lent; the next step takes it again.
        async with explicit_transaction(conn):
            await conn.raw("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK_KEY,))
            yield

    async def column_names(self, table: str) -> list[str]:
        return [row["column_name"] for row in await self.fetch_all(_COLUMNS, {"table": table})]

    async def ping(self) -> None:
        async with self._cursor() as cur:
            with _driver_errors():
                await cur.execute("SELECT 1")
                await cur.fetchone()

    async def close(self) -> None:
        self._pool.close()
        await self._pool.wait_closed()
