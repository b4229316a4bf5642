"""The schema runner: applies files once, records checksums, refuses edits, locks."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from compere.storage.database import connect
from compere.storage.migrations import MigrationError, migrate, sql_root


@pytest.fixture
def schema_copy(tmp_path: Path) -> Path:
    root = tmp_path / "sql"
    shutil.copytree(sql_root(), root)
    return root


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_url(request, tmp_path, postgres_factory) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'm.db'}"
    return postgres_factory()


async def test_applies_each_file_once_and_records_it(fresh_url, schema_copy):
    db = await connect(fresh_url)
    try:
        first = await migrate(db, schema_copy)
        assert first and first == sorted(first)
        assert await migrate(db, schema_copy) == []
        (schema_copy / db.name / "9999_extra.sql").write_text("CREATE TABLE extra_table (id INTEGER);\n")
        assert await migrate(db, schema_copy) == ["9999_extra.sql"]
    finally:
        await db.close()


async def test_refuses_to_run_when_an_applied_file_was_edited(fresh_url, schema_copy):
    db = await connect(fresh_url)
    try:
        applied = await migrate(db, schema_copy)
        edited = schema_copy / db.name / applied[0]
        edited.write_text(edited.read_text() + "\n-- a harmless looking edit\n")
        with pytest.raises(MigrationError, match="edited after it was applied"):
            await migrate(db, schema_copy)
    finally:
        await db.close()


async def test_a_failing_file_leaves_nothing_behind(fresh_url, schema_copy):
    db = await connect(fresh_url)
    try:
        await migrate(db, schema_copy)
        (schema_copy / db.name / "9999_broken.sql").write_text(
            "CREATE TABLE half_done (id INTEGER);\nTHIS IS NOT SQL;\n"
        )
        with pytest.raises(Exception):  # noqa: B017 - the driver's syntax error, whatever its class
            await migrate(db, schema_copy)
        (schema_copy / db.name / "9999_broken.sql").write_text("CREATE TABLE half_done (id INTEGER);\n")
        # the table from the failed attempt was rolled back, so the fixed file applies cleanly
        assert await migrate(db, schema_copy) == ["9999_broken.sql"]
    finally:
        await db.close()


async def test_concurrent_starts_migrate_exactly_once(fresh_url, schema_copy):
    databases = [await connect(fresh_url) for _ in range(4)]
    try:
        results = await asyncio.gather(*(migrate(db, schema_copy) for db in databases))
        applied = [r for r in results if r]
        assert len(applied) == 1, results
    finally:
        for db in databases:
            await db.close()
