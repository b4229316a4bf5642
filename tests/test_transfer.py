"""Bulk import and export: the ``compere import/export`` commands and ``GET /export/comparisons``.

The commands run as real subprocesses (what a user types) against the same database
the test's app uses, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import random
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from compere.http.keys import DATABASE
from compere.storage.database import Query

REPO = Path(__file__).resolve().parents[1]

ENTITIES = [
    {"external_id": "sku-1", "name": "Espresso", "description": "strong", "image_urls": ["https://x/e.png"]},
    {"external_id": "sku-2", "name": "Café au lait", "description": 'milky, "soft"', "image_urls": []},
    {"external_id": "sku-3", "name": "Matcha", "description": "", "image_urls": ["a.png", "b.png"]},
    {"external_id": "sku-4", "name": "Chai, spiced", "description": "line\nbreak", "image_urls": []},
    {"external_id": "sku-5", "name": "Rooibos", "description": "red", "image_urls": []},
]


async def compere(
    database_url: str, cwd: Path, *args: str, stdin: bytes | None = None
) -> tuple[int, str, str]:
    """Run ``python -m compere ARGS`` and return (exit status, stdout, stderr)."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "PYTHONPATH": str(REPO),
        "LOG_LEVEL": "WARNING",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "compere",
        *args,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate(stdin)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


async def all_pages(client, url: str) -> list[dict]:
    rows: list[dict] = []
    while True:
        page = await (await client.get(url, params={"skip": len(rows), "limit": 1000})).json()
        rows += page
        if len(page) < 1000:
            return rows


async def test_import_then_export_round_trips_every_entity_and_vote(client, database_url, tmp_path):
    source = write_jsonl(tmp_path / "entities.jsonl", ENTITIES)
    status, out, err = await compere(database_url, tmp_path, "import", str(source), "--batch-size", "2")
    assert status == 0, err
    assert out.strip() == "created 5, already present 0, rejected 0"

    entities = await all_pages(client, "/entities/")
    by_external = {e["external_id"]: e for e in entities}
    assert set(by_external) == {e["external_id"] for e in ENTITIES}
    for record in ENTITIES:
        stored = by_external[record["external_id"]]
        assert (stored["name"], stored["description"], stored["image_urls"]) == (
            record["name"],
            record["description"],
            record["image_urls"],
        )

    # Votes, ties included, then every one of them must come back out.
    rng = random.Random(7)
    ids = [e["id"] for e in entities]
    for _ in range(23):
        a, b = rng.sample(ids, 2)
        winner = rng.choice([a, b, None])
        resp = await client.post(
            "/comparisons/", json={"entity1_id": a, "entity2_id": b, "selected_entity_id": winner}
        )
        assert resp.status == 200
    logged = {c["id"]: c for c in await all_pages(client, "/comparisons/")}
    assert len(logged) == 23

    status, out, err = await compere(database_url, tmp_path, "export", "comparisons", "--batch-size", "5")
    assert status == 0, err
    exported = [json.loads(line) for line in out.splitlines()]
    assert [c["id"] for c in exported] == sorted(logged)  # oldest first, each once
    assert {c["id"]: c for c in exported} == logged

    csv_path = tmp_path / "comparisons.csv"
    status, _, err = await compere(
        database_url,
        tmp_path,
        "export",
        "comparisons",
        "--format",
        "csv",
        "-o",
        str(csv_path),
        "--batch-size",
        "4",
    )
    assert status == 0, err
    rows = list(csv.DictReader(io.StringIO(csv_path.read_text(encoding="utf-8"))))
    assert len(rows) == 23
    for row in rows:
        expected = logged[int(row["id"])]
        assert int(row["entity1_id"]) == expected["entity1_id"]
        assert int(row["entity2_id"]) == expected["entity2_id"]
        assert (int(row["selected_entity_id"]) if row["selected_entity_id"] else None) == expected[
            "selected_entity_id"
        ]
        assert row["created_at"] == expected["created_at"]

    status, out, err = await compere(database_url, tmp_path, "export", "entities")
    assert status == 0, err
    exported_entities = {e["id"]: e for e in map(json.loads, out.splitlines())}
    current = {e["id"]: e for e in await all_pages(client, "/entities/")}
    for entity_id, entity in current.items():  # same fields, same ratings after the votes
        exported = exported_entities[entity_id]
        low, high = entity.pop("interval_95")
        assert (exported.pop("interval_low"), exported.pop("interval_high")) == pytest.approx((low, high))
        assert exported == entity

    # The entity export is itself an import file: importing it again changes nothing.
    status, out, err = await compere(database_url, tmp_path, "import", "-", stdin=out.encode())
    assert status == 0, err
    assert out.strip() == "created 0, already present 5, rejected 0"


async def test_reimport_creates_no_duplicates_and_adds_only_new_rows(client, database_url, tmp_path):
    source = write_jsonl(tmp_path / "a.jsonl", ENTITIES[:3])
    assert (await compere(database_url, tmp_path, "import", str(source)))[0] == 0
    status, out, _ = await compere(database_url, tmp_path, "import", str(source))
    assert (status, out.strip()) == (0, "created 0, already present 3, rejected 0")

    # The same items again as CSV, plus two new ones: only those two are added.
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["external_id", "name", "description", "image_urls"])
    for record in ENTITIES:
        writer.writerow(
            [record["external_id"], record["name"], record["description"], " ".join(record["image_urls"])]
        )
    (tmp_path / "b.csv").write_text(buffer.getvalue(), encoding="utf-8")
    status, out, err = await compere(database_url, tmp_path, "import", str(tmp_path / "b.csv"))
    assert (status, out.strip()) == (0, "created 2, already present 3, rejected 0"), err

    entities = await all_pages(client, "/entities/")
    assert sorted(e["external_id"] for e in entities) == [f"sku-{i}" for i in range(1, 6)]
    matcha = next(e for e in entities if e["external_id"] == "sku-3")
    assert matcha["image_urls"] == ["a.png", "b.png"]


async def test_bad_lines_are_reported_by_number_and_the_rest_imported(client, database_url, tmp_path):
    lines = [
        json.dumps({"external_id": "ok-1", "name": "fine"}),
        "{not json",
        json.dumps({"name": "no id"}),
        json.dumps({"external_id": "ok-2", "name": ""}),
        json.dumps({"external_id": "ok-3", "name": "x" * 201}),
        json.dumps(["a list"]),
        json.dumps({"external_id": 42, "name": "numeric id is fine"}),
    ]
    (tmp_path / "mixed.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    status, out, err = await compere(database_url, tmp_path, "import", str(tmp_path / "mixed.jsonl"))
    assert status == 1
    assert out.strip() == "created 2, already present 0, rejected 5"
    for number in (2, 3, 4, 5, 6):
        assert f"line {number} skipped" in err
    names = sorted(e["name"] for e in await all_pages(client, "/entities/"))
    assert names == ["fine", "numeric id is fine"]

    status, _, err = await compere(database_url, tmp_path, "import", str(tmp_path / "missing.csv"))
    assert status == 1 and "cannot read" in err
    (tmp_path / "headerless.csv").write_text("", encoding="utf-8")
    status, _, err = await compere(database_url, tmp_path, "import", str(tmp_path / "headerless.csv"))
    assert status == 1 and "header row" in err


async def test_external_id_through_the_api_is_unique(client):
    resp = await client.post("/entities/", json={"name": "A", "external_id": " ext-1 "})
    assert resp.status == 200
    assert (await resp.json())["external_id"] == "ext-1"
    duplicate = await client.post("/entities/", json={"name": "B", "external_id": "ext-1"})
    assert duplicate.status == 409
    assert "detail" in await duplicate.json()
    plain = await (await client.post("/entities/", json={"name": "C"})).json()
    assert plain["external_id"] is None
    assert (await client.post("/entities/", json={"name": "D"})).status == 200  # NULLs never collide
    too_long = await client.post("/entities/", json={"name": "E", "external_id": "x" * 201})
    assert too_long.status == 422


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
async def test_http_export_streams_every_comparison(client, create_entities, fmt):
    ids = [e["id"] for e in await create_entities(4)]
    made = []
    for i in range(21):
        a, b = ids[i % 4], ids[(i + 1) % 4]
        body = {"entity1_id": a, "entity2_id": b, "selected_entity_id": a if i % 3 else None}
        made.append(await (await client.post("/comparisons/", json=body)).json())
    resp = await client.get("/export/comparisons", params={"format": fmt})
    assert resp.status == 200
    assert resp.headers["Content-Disposition"] == f'attachment; filename="comparisons.{fmt}"'
    text = await resp.text()
    if fmt == "jsonl":
        assert resp.content_type == "application/x-ndjson"
        got = [json.loads(line) for line in text.splitlines()]
    else:
        assert resp.content_type == "text/csv"
        got = [
            {
                **row,
                "id": int(row["id"]),
                "entity1_id": int(row["entity1_id"]),
                "entity2_id": int(row["entity2_id"]),
                "selected_entity_id": int(row["selected_entity_id"]) if row["selected_entity_id"] else None,
                "user_id": int(row["user_id"]) if row["user_id"] else None,
                # CSV has no null: votes sent without a pair token have empty provenance
                "strategy": row["strategy"] or None,
                "selection_probability": float(row["selection_probability"])
                if row["selection_probability"]
                else None,
            }
            for row in csv.DictReader(io.StringIO(text))
        ]
    assert got == made


async def test_http_export_validates_format_and_is_for_superusers_under_auth(client, admin_and_alice):
    resp = await client.get("/export/comparisons", params={"format": "xml"})
    assert resp.status == 422
    guarded, admin_token, alice_token = admin_and_alice
    assert (await guarded.get("/export/comparisons")).status == 401
    resp = await guarded.get("/export/comparisons", headers={"Authorization": f"Bearer {alice_token}"})
    assert resp.status == 403
    assert (await resp.json())["detail"] == "Not enough permissions"
    resp = await guarded.get("/export/comparisons", headers={"Authorization": f"Bearer {admin_token}"})
    assert resp.status == 200


async def _planner_rows(client) -> float:
    """What the database's planner believes the entities table holds (-1: no statistics)."""
    db = client.app[DATABASE]
    if db.name == "postgresql":
        return float(
            await db.fetch_value(Query(sa.text("SELECT reltuples FROM pg_class WHERE relname = 'entities'")))
        )
    # SQLite keeps statistics in sqlite_stat1, a table its first ANALYZE creates.
    if not await db.fetch_value(
        Query(sa.text("SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_stat1'"))
    ):
        return -1.0
    stat = await db.fetch_value(
        Query(sa.text("SELECT stat FROM sqlite_stat1 WHERE tbl = 'entities' LIMIT 1"))
    )
    return -1.0 if stat is None else float(str(stat).split()[0])


async def test_a_large_import_refreshes_the_planner_statistics(client, database_url, tmp_path):
    # A freshly filled table looks empty to the planner until statistics are gathered,
    # and pair requests get poor plans meanwhile; a large import gathers them itself.
    assert await _planner_rows(client) < 1000
    records = [{"external_id": f"bulk-{k}", "name": f"Item {k}"} for k in range(1200)]
    source = write_jsonl(tmp_path / "bulk.jsonl", records)
    status, out, err = await compere(database_url, tmp_path, "import", str(source))
    assert status == 0, err
    assert out.strip() == "created 1200, already present 0, rejected 0"
    assert await _planner_rows(client) >= 1000


async def test_an_import_file_the_reader_cannot_get_past_is_a_422_naming_the_line(client):
    # The csv module refuses fields over 131,072 characters; nothing of the file is stored.
    csv_text = "external_id,name,description\nok-1,fine,\nbig-1,big," + "x" * 131_073 + "\nok-2,also fine,\n"
    resp = await client.post("/entities/import?format=csv", data=csv_text.encode())
    assert resp.status == 422
    assert (await resp.json())["detail"].startswith("line 3: ")
    # Python refuses to convert integers of more than 4,300 digits.
    lines = [
        json.dumps({"external_id": "ok-1", "name": "fine"}),
        '{"external_id": "big-2", "name": "big", "image_urls": [' + "9" * 4301 + "]}",
    ]
    resp = await client.post("/entities/import?format=jsonl", data="\n".join(lines).encode())
    assert resp.status == 422
    assert (await resp.json())["detail"] == "line 2: a number in this line has too many digits"
    assert await (await client.get("/entities/")).json() == []


async def test_a_huge_number_in_a_csv_url_list_rejects_only_its_line(client):
    csv_text = 'external_id,name,image_urls\nok-1,fine,a.png\nbig-1,big,"[' + "9" * 4301 + ']"\n'
    resp = await client.post("/entities/import?format=csv", data=csv_text.encode())
    assert resp.status == 200
    body = await resp.json()
    assert body["created"] == 1 and [r["line"] for r in body["rejected"]] == [3]
