"""The schema runner: applies files once, records checksums, refuses edits, locks."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from compere.storage.connect import connect
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
        # Each file once, in order, though not necessarily all by one start: on PostgreSQL
        # each file's transaction takes the lock (so it works through PgBouncer too).
        applied = [name for result in results for name in result]
        assert (
            sorted(applied)
            == sorted(set(applied))
            == [p.name for p in sorted((schema_copy / databases[0].name).glob("*.sql"))]
        ), results
        assert all(result == sorted(result) for result in results)
    finally:
        for db in databases:
            await db.close()


def _set_aside(root: Path, pattern: str) -> dict[Path, str]:
    held = {path: path.read_text() for path in root.glob(f"*/{pattern}")}
    for path in held:
        path.unlink()
    return held


def _put_back(held: dict[Path, str]) -> None:
    for path, text in held.items():
        path.write_text(text)


async def _users_before_0005(url: str, root: Path, names: list[tuple[str, str | None]]):
    """A database at the schema before 0005, holding users with the given names."""
    import sqlalchemy as sa

    from compere.storage.database import Query
    from compere.storage.tables import users

    db = await connect(url)
    held = _set_aside(root, "0005_*.sql")
    await migrate(db, root)
    _put_back(held)
    insert = Query(
        sa.insert(users).values(
            username=sa.bindparam("username"),
            email=sa.bindparam("email"),
            hashed_password="x",
            disabled=False,
            is_superuser=False,
            created_at="2026-01-01T00:00:00+00:00",
        )
    )
    for username, email in names:
        await db.execute(insert, {"username": username, "email": email})
    return db


async def test_0005_gives_existing_users_their_canonical_names(fresh_url, schema_copy):
    from compere.storage import users

    db = await _users_before_0005(fresh_url, schema_copy, [("Straße", "Ｂob@Example.com"), ("alice", None)])
    try:
        assert await migrate(db, schema_copy) == ["0005_auth_durable.sql"]
        assert (await users.credentials(db, "STRASSE"))["username"] == "Straße"
        assert (await users.credentials(db, "ALİCE"))["username"] == "alice"
        with pytest.raises(users.DuplicateUser):
            await users.create_user(
                db, username="strasse", email="bob@example.com", full_name=None, hashed_password="x",
                creator_is_superuser=True,
            )  # fmt: skip
    finally:
        await db.close()


async def test_0005_stops_when_two_existing_users_are_one_name(fresh_url, schema_copy):
    # lower() kept these apart; canonical names do not.
    db = await _users_before_0005(fresh_url, schema_copy, [("strasse", None), ("STRAßE", None)])
    try:
        with pytest.raises(MigrationError, match="users 1 and 2 have the same username"):
            await migrate(db, schema_copy)
        # Nothing of 0005 stayed behind: it applies once the duplicate is renamed.
        await db.execute_script("UPDATE users SET username = 'strasse2' WHERE id = 2;")
        assert await migrate(db, schema_copy) == ["0005_auth_durable.sql"]
    finally:
        await db.close()
