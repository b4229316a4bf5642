"""Which PostgreSQL backend failures count as "the database is unavailable" (503).

A lost connection is one, whatever shape the driver or the event loop gives it; a
mistake in the calling code is not, and must keep its own exception (a logged 500).
The outage itself, under the shipped gunicorn worker, is in tests/deploy/.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from compere.storage.database import Query
from compere.storage.postgres import PostgresDatabase

pytestmark = pytest.mark.postgres

_SELECT_ONE = Query(sa.select(sa.literal(1).label("one")))


async def open_database(url: str) -> PostgresDatabase:
    return await PostgresDatabase.open(
        url, minsize=0, maxsize=2, acquire_timeout=1, statement_timeout_ms=2000
    )


async def test_a_statement_after_finish_is_a_programming_error_not_an_outage(shared_postgres_url):
    db = await open_database(shared_postgres_url)
    try:
        with pytest.raises(RuntimeError, match="already been committed"):
            async with db.transaction() as tx:
                await tx.finish(_SELECT_ONE)
                await tx.fetch_all(_SELECT_ONE)
        assert await db.fetch_all(_SELECT_ONE) == [{"one": 1}]
    finally:
        await db.close()
