"""0007 moves an existing board into the project ``default`` unchanged.

A database is built at schema 0006 (the files after it set aside), filled with users,
entities (one deleted, gaps in the ids) and votes (a tie, a user's vote, served pairs),
then migrated to the latest schema. Every row must read back exactly as before (plus
project 1), ``/ratings`` must answer what those rows say, and new ids must continue
after the old ones (a deleted newest vote's id is not reused). Both backends.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import orjson
import pytest
import sqlalchemy as sa

from compere.http.app import create_app
from compere.http.views.shapes import entity_out
from compere.settings import load_settings
from compere.storage.connect import connect
from compere.storage.database import Database, Query
from compere.storage.migrations import migrate, sql_root
from compere.storage.rows import entity_row
from tests.helpers import NO_DOTENV, empty_postgres

TABLES = ("users", "entities", "comparisons")


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path, postgres_factory) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'before.db'}"
    return postgres_factory()


@pytest.fixture
def schema_at_0006(tmp_path: Path) -> Path:
    root = tmp_path / "sql"
    shutil.copytree(sql_root(), root)
    for path in root.glob("*/*.sql"):
        if int(path.name[:4]) > 6:
            path.unlink()
    return root


async def _run(db: Database, sql: str, **params: object) -> None:
    await db.execute(Query(sa.text(sql)), params)


async def _fill(db: Database) -> None:
    await _run(
        db,
        "INSERT INTO users (username, hashed_password, created_at, username_canonical) "
        "VALUES ('alice', 'x', '2026-01-02T03:04:05.123456+00:00', 'alice')",
    )
    ratings = [1532.25, 1467.75, 1500.0, 1516.0, 1484.0, 1500.0]
    for k, rating in enumerate(ratings):
        await _run(
            db,
            "INSERT INTO entities (name, description, image_urls, rating, comparisons, wins, losses, ties,"
            " created_at, updated_at, mu, sigma, random_key, external_id, prompt) VALUES (:name, :d,"
            " :urls, :rating, :n, :w, :l, :t, :created, :updated, :mu, :sigma, :rk, :ext, :prompt)",
            name=f"entity {k}",
            d=f"about {k}",
            urls=orjson.dumps([f"https://img.example/{k}.png"]).decode(),
            rating=rating,
            n=k,
            w=k // 2,
            l=k - k // 2,
            t=0,
            created=f"2026-01-0{k + 1}T10:00:00.{k:06d}+00:00",
            updated=f"2026-02-0{k + 1}T10:00:00.{k:06d}+00:00",
            mu=(rating - 1500) / 100,
            sigma=1.5 - k / 10,
            rk=k / 7,
            ext=f"ext-{k}" if k % 2 else None,
            prompt="which?" if k < 3 else None,
        )
    await _run(db, "UPDATE entities SET deleted_at = '2026-03-01T00:00:00+00:00' WHERE id = 3")
    await _run(db, "DELETE FROM entities WHERE id = 5")  # a gap in the ids
    votes = [
        (1, 2, 1, 1, "active", 0.25, "tok-1"),
        (1, 4, None, None, None, None, None),
        (2, 6, 6, 1, None, None, None),
    ]
    for k, (a, b, winner, user, strategy, probability, token) in enumerate(votes):
        await _run(
            db,
            "INSERT INTO comparisons (entity1_id, entity2_id, selected_entity_id, created_at, user_id,"
            " strategy, selection_probability, pair_token_id) VALUES (:a, :b, :w, :at, :u, :s, :p, :tok)",
            a=a,
            b=b,
            w=winner,
            at=f"2026-04-0{k + 1}T12:00:00.{k:06d}+00:00",
            u=user,
            s=strategy,
            p=probability,
            tok=token,
        )
    await _run(db, "DELETE FROM comparisons WHERE id = 3")  # the newest vote: its id stays used


async def _rows(db: Database) -> dict[str, list[dict]]:
    return {
        table: await db.fetch_all(Query(sa.text(f"SELECT * FROM {table} ORDER BY id"))) for table in TABLES
    }


async def test_0007_moves_every_row_into_default_unchanged(url, schema_at_0006, aiohttp_client):
    if url.startswith("postgresql"):
        empty_postgres(url)
    db = await connect(url)
    try:
        await migrate(db, schema_at_0006)
        await _fill(db)
        before = await _rows(db)
        applied = await migrate(db)
        assert applied[0] == "0007_projects.sql"
        after = await _rows(db)
    finally:
        await db.close()

    for table in ("entities", "comparisons"):
        assert {row.pop("project_id") for row in after[table]} == {1}, table
    for row in after["entities"]:  # 0011: what its votes counted for, all 1 before it
        assert row.pop("vote_weight") == row["comparisons"]
    # Columns later files add (a vote's voter, say) start empty on the old rows.
    for table in TABLES:
        for old, new in zip(before[table], after[table], strict=True):
            added = set(new) - set(old)
            assert all(new.pop(column) in (None, 0, False) for column in added), (table, added)
    assert after == before

    app = await create_app(load_settings({"DATABASE_URL": url}, dotenv=NO_DOTENV), configure_logs=False)
    client = await aiohttp_client(app)
    live = sorted(
        (row for row in before["entities"] if row["deleted_at"] is None),
        key=lambda r: (-r["rating"], r["id"]),
    )
    expected = [{**entity_out(entity_row(row)), "rank": k + 1, "tied": False} for k, row in enumerate(live)]
    assert orjson.loads(await (await client.get("/ratings")).read()) == orjson.loads(orjson.dumps(expected))
    page = await client.get("/ratings", params={"skip": "1", "limit": "2"})
    assert await page.json() == orjson.loads(orjson.dumps(expected[1:3]))
    assert page.headers["X-Total-Count"] == str(len(live))
    by_score = await (await client.get("/ratings", params={"by": "score"})).json()
    assert [e["id"] for e in by_score] == [r["id"] for r in sorted(live, key=lambda r: (-r["mu"], r["id"]))]
    # Votes still read as they were, and new ids continue after the old ones.
    logged = await (await client.get("/comparisons/")).json()
    assert [c["id"] for c in logged] == [2, 1]
    made = await (await client.post("/entities/", json={"name": "new"})).json()
    assert made["id"] == 7
    vote = await client.post(
        "/comparisons/", json={"entity1_id": 1, "entity2_id": 7, "selected_entity_id": 7}
    )
    assert (await vote.json())["id"] == 4
