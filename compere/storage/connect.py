"""Opening the backend a database URL names, and the database the settings describe."""

from __future__ import annotations

from compere.settings import Settings
from compere.storage.database import Database


async def connect(
    url: str,
    *,
    pool_min: int = 1,
    pool_max: int = 10,
    pool_timeout: float = 5.0,
    statement_timeout_ms: int = 10_000,
    prepared_statements: bool = True,
    transaction_pooler: bool = False,
) -> Database:
    """Open the backend that ``url`` names: ``postgresql://...`` or ``sqlite:///path``."""
    # Imported here so that a SQLite deployment never loads the PostgreSQL driver.
    if url.startswith("sqlite:///"):
        from compere.storage.sqlite import SQLiteDatabase

        return await SQLiteDatabase.open(
            url[len("sqlite:///") :],
            readers=max(2, min(pool_max, 4)),
            busy_timeout_ms=int(pool_timeout * 1000),
        )
    from compere.storage.postgres import PostgresDatabase

    return await PostgresDatabase.open(
        url,
        minsize=pool_min,
        maxsize=pool_max,
        acquire_timeout=pool_timeout,
        statement_timeout_ms=statement_timeout_ms,
        prepared_statements=prepared_statements,
        transaction_pooler=transaction_pooler,
    )


async def open_database(settings: Settings, *, pool_max: int | None = None) -> Database:
    """The database of ``settings``: ``DATABASE_URL`` through ``DB_POOLER``, with
    ``DATABASE_REPLICA_URL`` (when set) for :meth:`Database.reader`; the app and the
    command line open it the same way. ``pool_max`` overrides ``DB_POOL_MAX``."""
    size = pool_max or settings.db_pool_max

    async def open_one(url: str) -> Database:
        return await connect(
            url,
            pool_min=min(settings.db_pool_min, size),
            pool_max=size,
            pool_timeout=settings.db_pool_timeout,
            statement_timeout_ms=settings.db_statement_timeout_ms,
            prepared_statements=settings.db_prepared_statements,
            transaction_pooler=settings.db_pooler == "pgbouncer",
        )

    primary = await open_one(settings.database_url)
    if not settings.database_replica_url:
        return primary
    from compere.storage.replica import ReplicatedDatabase

    replica_url = settings.database_replica_url
    db = ReplicatedDatabase(
        primary,
        lambda: open_one(replica_url),
        max_lag=settings.replica_max_lag_seconds,
        check_interval=settings.replica_check_interval,
    )
    try:
        await db.start()
    except BaseException:
        await db.close()
        raise
    return db
