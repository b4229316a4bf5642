"""Opening the backend a database URL names."""

from __future__ import annotations

from compere.storage.database import Database


async def connect(
    url: str,
    *,
    pool_min: int = 1,
    pool_max: int = 10,
    pool_timeout: float = 5.0,
    statement_timeout_ms: int = 10_000,
    prepared_statements: bool = True,
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
    )
