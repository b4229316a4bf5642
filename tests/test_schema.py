"""``compere/storage/tables.py`` describes the schema the ``sql/`` files create.

Queries are built from tables.py, the schema from the ``.sql`` files: a column added to
one and not the other would only show up when a query touching it runs. Each test
migrates a fresh database and reads back what exists.
"""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from compere.storage import tables
from compere.storage.connect import connect
from compere.storage.migrations import migrate

# How a column's type may come back, by what tables.py declares. SQLite keeps booleans
# as integers; PostgreSQL keeps the moments tables.py reads as text (``*_at``) as
# TIMESTAMPTZ, which ``compere.storage.timestamps.as_datetime`` reads alike.
_FAMILIES = (
    (sa.Boolean, "boolean"),
    (sa.Integer, "integer"),
    (sa.Float, "float"),
    (sa.Numeric, "float"),
    (sa.DateTime, "timestamp"),
    (sa.String, "text"),
)


def _family(column_type: Any) -> str:
    for kind, family in _FAMILIES:
        if isinstance(column_type, kind):
            return family
    raise AssertionError(f"no family for {column_type!r}")


def _allowed(column: sa.Column[Any], dialect: str) -> set[str]:
    family = _family(column.type)
    if family == "boolean" and dialect == "sqlite":
        return {"boolean", "integer"}
    if family == "text" and column.name.endswith("_at") and dialect == "postgresql":
        return {"timestamp"}
    return {family}


def _reflect(url: str) -> dict[str, dict[str, dict[str, Any]]]:
    """Every table (but the migration log) as {column: {"nullable", "family"}}."""
    # The driver the service uses (SQLAlchemy 2.1 would pick psycopg 3 for postgresql://).
    engine = sa.create_engine(
        url.replace("postgresql://", "postgresql+psycopg2://", 1), poolclass=sa.pool.NullPool
    )
    try:
        inspector = sa.inspect(engine)
        return {
            table: {
                column["name"]: {"nullable": column["nullable"], "family": _family(column["type"])}
                for column in inspector.get_columns(table)
            }
            for table in inspector.get_table_names()
            if table != "schema_migrations"
        }
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
async def migrated(request, tmp_path, postgres_factory) -> tuple[str, dict[str, dict[str, dict[str, Any]]]]:
    url = f"sqlite:///{tmp_path / 'schema.db'}" if request.param == "sqlite" else postgres_factory()
    db = await connect(url)
    try:
        await migrate(db)
    finally:
        await db.close()
    return request.param, _reflect(url)


async def test_tables_py_names_exactly_the_tables_the_sql_files_create(migrated):
    _, schema = migrated
    assert set(schema) == set(tables.metadata.tables)


async def test_each_table_has_exactly_the_columns_tables_py_declares(migrated):
    _, schema = migrated
    for name, table in tables.metadata.tables.items():
        assert set(schema[name]) == {column.name for column in table.columns}, name


async def test_columns_agree_on_nullability_and_kind_of_type(migrated):
    dialect, schema = migrated
    for name, table in tables.metadata.tables.items():
        for column in table.columns:
            found = schema[name][column.name]
            where = f"{name}.{column.name} on {dialect}"
            # SQLite reports an INTEGER PRIMARY KEY as nullable; it is the rowid all the same.
            if not (column.primary_key and dialect == "sqlite"):
                assert found["nullable"] == column.nullable, where
            assert found["family"] in _allowed(column, dialect), (where, found["family"])
