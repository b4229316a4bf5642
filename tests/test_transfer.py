"""Bulk import and export: the ``compere import/export`` commands and ``GET /export/comparisons``.

The commands run as real subprocesses (what a user types) against the same database
the test's app uses, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import csv
import fcntl
import io
import json
import os
import pty
import random
import re
import struct
import termios
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from compere.http.keys import DATABASE
from compere.storage.database import Query
from tests.helpers import run_compere, start_compere

ENTITIES = [
    {"external_id": "sku-1", "name": "Espresso", "description": "strong", "image_urls": ["https://x/e.png"]},
    {"external_id": "sku-2", "name": "Café au lait", "description": 'milky, "soft"', "image_urls": []},
    {"external_id": "sku-3", "name": "Matcha", "description": "", "image_urls": ["a.png", "b.png"]},
    {"external_id": "sku-4", "name": "Chai, spiced", "description": "line\nbreak", "image_urls": []},
    {"external_id": "sku-5", "name": "Rooibos", "description": "red", "image_urls": []},
]


async def compere_on_a_terminal(
    database_url: str, cwd: Path, *args: str, stdin: bytes = b""
) -> tuple[int, str, str]:
    """Like :func:`tests.helpers.run_compere`, with standard error on a pseudo-terminal 100 columns wide,
    where the progress bar shows: (exit status, stdout, what the terminal received)."""
    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))

    def read_terminal() -> bytes:
        received = b""
        while True:
            try:
                chunk = os.read(primary, 4096)
            except OSError:  # EIO: every writer has closed its end
                return received
            if not chunk:
                return received
            received += chunk

    try:
        proc = await start_compere(database_url, cwd, *args, stderr=secondary)
    finally:
        os.close(secondary)
    reader = asyncio.create_task(asyncio.to_thread(read_terminal))
    out, _ = await proc.communicate(stdin)
    terminal = await reader
    os.close(primary)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), terminal.decode()


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def without_entity_keys(record: dict) -> dict:
    """A comparison export record in the API's shape: without the entities' external ids,
    the voter and whether the pair was served (columns only the export shows)."""
    export_only = ("entity1_external_id", "entity2_external_id", "voter", "served")
    return {k: v for k, v in record.items() if k not in export_only}


async def all_pages(client, url: str) -> list[dict]:
    rows: list[dict] = []
    while True:
        page = await (await client.get(url, params={"skip": len(rows), "limit": 1000})).json()
        rows += page
        if len(page) < 1000:
            return rows


async def test_import_then_export_round_trips_every_entity_and_vote(client, database_url, tmp_path):
    source = write_jsonl(tmp_path / "entities.jsonl", ENTITIES)
    status, out, err = await run_compere(database_url, tmp_path, "import", str(source), "--batch-size", "2")
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

    status, out, err = await run_compere(database_url, tmp_path, "export", "comparisons", "--batch-size", "5")
    assert status == 0, err
    exported = [json.loads(line) for line in out.splitlines()]
    assert [c["id"] for c in exported] == sorted(logged)  # oldest first, each once
    assert {c["id"]: without_entity_keys(c) for c in exported} == logged
    # Each entity is also named by its external id: what `import comparisons` matches on.
    external_ids = {e["id"]: e["external_id"] for e in entities}
    for c in exported:
        assert (c["entity1_external_id"], c["entity2_external_id"]) == (
            external_ids[c["entity1_id"]],
            external_ids[c["entity2_id"]],
        )

    csv_path = tmp_path / "comparisons.csv"
    status, _, err = await run_compere(
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

    status, out, err = await run_compere(database_url, tmp_path, "export", "entities")
    assert status == 0, err
    exported_entities = {e["id"]: e for e in map(json.loads, out.splitlines())}
    current = {e["id"]: e for e in await all_pages(client, "/entities/")}
    for entity_id, entity in current.items():  # same fields, same ratings after the votes
        exported = exported_entities[entity_id]
        low, high = entity.pop("interval_95")
        assert (exported.pop("interval_low"), exported.pop("interval_high")) == pytest.approx((low, high))
        assert exported == entity

    # The entity export is itself an import file: importing it again changes nothing.
    status, out, err = await run_compere(database_url, tmp_path, "import", "-", stdin=out.encode())
    assert status == 0, err
    assert out.strip() == "created 0, already present 5, rejected 0"


async def test_reimport_creates_no_duplicates_and_adds_only_new_rows(client, database_url, tmp_path):
    source = write_jsonl(tmp_path / "a.jsonl", ENTITIES[:3])
    assert (await run_compere(database_url, tmp_path, "import", str(source)))[0] == 0
    status, out, _ = await run_compere(database_url, tmp_path, "import", str(source))
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
    status, out, err = await run_compere(database_url, tmp_path, "import", str(tmp_path / "b.csv"))
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
    status, out, err = await run_compere(database_url, tmp_path, "import", str(tmp_path / "mixed.jsonl"))
    assert status == 1
    assert out.strip() == "created 2, already present 0, rejected 5"
    for number in (2, 3, 4, 5, 6):
        assert f"line {number} skipped" in err
    names = sorted(e["name"] for e in await all_pages(client, "/entities/"))
    assert names == ["fine", "numeric id is fine"]

    status, _, err = await run_compere(database_url, tmp_path, "import", str(tmp_path / "missing.csv"))
    assert status == 1 and "cannot read" in err
    (tmp_path / "headerless.csv").write_text("", encoding="utf-8")
    status, _, err = await run_compere(database_url, tmp_path, "import", str(tmp_path / "headerless.csv"))
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
                "category": row["category"] or None,
                "selection_probability": float(row["selection_probability"])
                if row["selection_probability"]
                else None,
            }
            for row in csv.DictReader(io.StringIO(text))
        ]
    assert [without_entity_keys(c) for c in got] == made
    # An entity made without an external id is named by the one the entity export gives it.
    created = {e["id"]: e["created_at"].replace("+00:00", "Z") for e in await all_pages(client, "/entities/")}
    assert {c["entity1_external_id"] for c in got} <= {f"compere:{i}@{t}" for i, t in created.items()}


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
    status, out, err = await run_compere(database_url, tmp_path, "import", str(source))
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


# --- round trips, stops and file-level problems ---------------------------------------


def by_external_id(lines: str) -> dict[str, tuple]:
    records = [json.loads(line) for line in lines.splitlines()]
    return {r["external_id"]: (r["name"], r["description"], r["image_urls"]) for r in records}


def generated_id(entity: dict) -> str:
    created = datetime.fromisoformat(entity["created_at"]).astimezone(UTC)
    return f"compere:{entity['id']}@{created:%Y-%m-%dT%H:%M:%S.%f}Z"


async def test_every_entity_round_trips_through_each_export_into_an_empty_database(
    client, make_client, database_url, tmp_path, empty_database
):
    # Made through the API, with and without an external id, and by an import.
    for body in (
        {"name": "Plain", "description": 'says "hi", twice\nand more', "image_urls": ["https://x/p.png"]},
        {"name": "Ünïcode, with comma", "image_urls": ["a.png", "b c.png"]},
        {"name": "Gone"},
        {"name": "Own id", "description": "d", "external_id": "ext-7"},
    ):
        assert (await client.post("/entities/", json=body)).status == 200
    source = write_jsonl(tmp_path / "seed.jsonl", ENTITIES[:2])
    assert (await run_compere(database_url, tmp_path, "import", str(source)))[0] == 0
    gone = next(e for e in await all_pages(client, "/entities/") if e["name"] == "Gone")
    assert (await client.delete(f"/entities/{gone['id']}")).status == 200
    live = await all_pages(client, "/entities/")
    expected = {
        e["external_id"] or generated_id(e): (e["name"], e["description"], e["image_urls"]) for e in live
    }
    assert len(expected) == 5

    async def assert_round_trip(name: str, data: bytes) -> None:
        path = tmp_path / name
        path.write_bytes(data)
        target = empty_database()
        status, out, err = await run_compere(target, tmp_path, "import", str(path))
        assert (status, out.strip()) == (0, "created 5, already present 0, rejected 0"), (name, err)
        status, out, err = await run_compere(target, tmp_path, "import", str(path))  # a re-run adds nothing
        assert (status, out.strip()) == (0, "created 0, already present 5, rejected 0"), (name, err)
        status, out, err = await run_compere(target, tmp_path, "export", "entities")
        assert status == 0, err
        assert by_external_id(out) == expected, name

    exports: dict[str, bytes] = {}
    for fmt in ("jsonl", "csv"):
        path = tmp_path / f"cli.{fmt}"
        status, _, err = await run_compere(
            database_url, tmp_path, "export", "entities", "--format", fmt, "-o", str(path)
        )
        assert status == 0, err
        exports[f"cli.{fmt}"] = path.read_bytes()
        await assert_round_trip(f"cli.{fmt}", exports[f"cli.{fmt}"])
    # CSV has every field JSON Lines has, intervals included.
    first_record = json.loads(exports["cli.jsonl"].decode().splitlines()[0])
    assert next(csv.reader(io.StringIO(exports["cli.csv"].decode()))) == list(first_record)

    for fmt in ("jsonl", "csv"):
        resp = await client.get("/export/entities", params={"format": fmt})
        assert resp.status == 200
        assert resp.headers["Content-Disposition"] == f'attachment; filename="entities.{fmt}"'
        exports[f"http.{fmt}"] = await resp.read()
        assert exports[f"http.{fmt}"] == exports[f"cli.{fmt}"]
        await assert_round_trip(f"http.{fmt}", exports[f"http.{fmt}"])

    # The same file over HTTP, into another empty database.
    target_client = await make_client(DATABASE_URL=empty_database())
    resp = await target_client.post("/entities/import", params={"format": "csv"}, data=exports["http.csv"])
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["created"] == 5
    got = await all_pages(target_client, "/entities/")
    assert {e["external_id"]: (e["name"], e["description"], e["image_urls"]) for e in got} == expected


async def test_exports_of_two_databases_merge_without_losing_an_entity(
    client, make_client, database_url, tmp_path, empty_database
):
    # Entity 1 of each database has no external id; neither may pass for the other.
    other = await make_client(DATABASE_URL=empty_database())
    for app, name in ((client, "From the first"), (other, "From the second")):
        assert (await (await app.post("/entities/", json={"name": name})).json())["id"] == 1
    target = empty_database()
    for number, app in enumerate((client, other)):
        path = tmp_path / f"export-{number}.jsonl"
        path.write_bytes(await (await app.get("/export/entities")).read())
        status, out, err = await run_compere(target, tmp_path, "import", str(path))
        assert (status, out.strip()) == (0, "created 1, already present 0, rejected 0"), err
    status, out, _ = await run_compere(target, tmp_path, "export", "entities")
    assert sorted(json.loads(line)["name"] for line in out.splitlines()) == [
        "From the first",
        "From the second",
    ]


async def test_the_generated_id_prefix_is_reserved_for_exports(client):
    resp = await client.post("/entities/", json={"name": "A", "external_id": "compere:1"})
    assert resp.status == 422
    assert "compere:" in (await resp.json())["detail"][0]["msg"]


def _bad_byte_file(fmt: str, lines: int, bad_line: int) -> bytes:
    rows = [b"external_id,name,description"] if fmt == "csv" else []
    while len(rows) < lines:
        n = len(rows) + 1
        name = f"Item {n}".encode()
        if n == bad_line:
            name = b"Caf\xff " + name  # Latin-1, not UTF-8
        if fmt == "csv":
            rows.append(b"id-%d,%s,line %d" % (n, name, n))
        else:
            rows.append(b'{"external_id": "id-%d", "name": "%s"}' % (n, name))
    return b"\n".join(rows) + b"\n"


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
async def test_a_bad_byte_stops_the_import_at_its_line_and_says_what_was_written(
    client, database_url, tmp_path, fmt
):
    path = tmp_path / f"big.{fmt}"
    path.write_bytes(_bad_byte_file(fmt, 3000, 1502))
    status, out, err = await run_compere(database_url, tmp_path, "import", str(path))
    assert status == 1
    column = path.read_bytes().splitlines()[1501].index(b"\xff") + 1
    assert f"import stopped at line 1502: not valid UTF-8 (byte 0xff at character {column})" in err
    assert "nothing from line 1502 on was imported" in err
    written = 1500 if fmt == "csv" else 1501  # every line before it (the CSV header is line 1)
    assert out.strip() == f"created {written}, already present 0, rejected 0"
    assert len(await all_pages(client, "/entities/")) == written

    # Fixed, the same file imports the rest and nothing twice.
    path.write_bytes(path.read_bytes().replace(b"\xff", b"\xc3\xa9"))
    status, out, err = await run_compere(database_url, tmp_path, "import", str(path))
    assert (status, out.strip()) == (0, f"created 1499, already present {written}, rejected 0"), err


async def test_unreadable_csv_stops_with_a_sentence_not_a_traceback(client, database_url, tmp_path):
    path = tmp_path / "huge-field.csv"
    path.write_text(f"external_id,name,description\na,A,fine\nb,B,{'x' * 200_000}\nc,C,never read\n")
    status, out, err = await run_compere(database_url, tmp_path, "import", str(path))
    assert status == 1
    assert "Traceback" not in err
    assert "import stopped at line 3: not valid CSV (field larger than field limit" in err
    assert out.strip() == "created 1, already present 0, rejected 0"
    resp = await client.post("/entities/import", params={"format": "csv"}, data=path.read_bytes())
    assert resp.status == 422
    assert (await resp.json())["detail"].startswith("line 3: not valid CSV")
    assert [e["name"] for e in await all_pages(client, "/entities/")] == ["A"]


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
async def test_the_http_import_checks_the_whole_file_before_writing(client, fmt):
    resp = await client.post("/entities/import", params={"format": fmt}, data=_bad_byte_file(fmt, 3000, 1502))
    assert resp.status == 422
    assert (await resp.json())["detail"].startswith("line 1502: not valid UTF-8 (byte 0xff at character ")
    assert await all_pages(client, "/entities/") == []


async def test_csv_header_problems_are_file_level_errors(client, database_url, tmp_path):
    path = tmp_path / "no-id.csv"
    path.write_text("name,description\nA,first\nB,second\n", encoding="utf-8")
    status, out, err = await run_compere(database_url, tmp_path, "import", str(path))
    assert status == 1
    assert "the CSV header row has no external_id column" in err
    assert "skipped" not in err  # one message for the file, not one per row
    assert out.strip() == "created 0, already present 0, rejected 0"
    resp = await client.post("/entities/import", params={"format": "csv"}, data=path.read_bytes())
    assert resp.status == 400
    assert "has no external_id column" in (await resp.json())["detail"]
    path.write_text("title\nA\n", encoding="utf-8")
    status, _, err = await run_compere(database_url, tmp_path, "import", str(path))
    assert status == 1 and "has no external_id and no name column" in err
    assert await all_pages(client, "/entities/") == []


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
async def test_a_duplicate_external_id_within_a_file_is_reported_with_both_lines(
    client, database_url, tmp_path, fmt
):
    records = [
        {"external_id": "a", "name": "First A"},
        {"external_id": "b", "name": "B"},
        {"external_id": "a", "name": "Second A"},
    ]
    if fmt == "csv":
        text = "external_id,name\n" + "".join(f"{r['external_id']},{r['name']}\n" for r in records)
        path = tmp_path / "dup.csv"
        path.write_text(text, encoding="utf-8")
        duplicate_line, first_line = 4, 2
    else:
        path = write_jsonl(tmp_path / "dup.jsonl", records)
        duplicate_line, first_line = 3, 1
    status, out, err = await run_compere(database_url, tmp_path, "import", str(path))
    assert status == 1
    assert out.strip() == "created 2, already present 0, rejected 1"
    assert f"line {duplicate_line} skipped: external_id 'a' is a duplicate of line {first_line}" in err
    names = sorted(e["name"] for e in await all_pages(client, "/entities/"))
    assert names == ["B", "First A"]
    resp = await client.post("/entities/import", params={"format": fmt}, data=path.read_bytes())
    assert (await resp.json())["rejected"] == [
        {"line": duplicate_line, "reason": f"external_id 'a' is a duplicate of line {first_line}"}
    ]


async def test_progress_bars_show_plain_counts_against_a_total(client, database_url, tmp_path):
    records = [{"external_id": f"p-{k}", "name": f"Item {k}"} for k in range(3000)]
    path = write_jsonl(tmp_path / "many.jsonl", records)

    # A file has a known size: bytes read of bytes in the file.
    status, out, terminal = await compere_on_a_terminal(database_url, tmp_path, "import", str(path))
    assert (status, out.strip()) == (0, "created 3000, already present 0, rejected 0"), terminal
    done = re.findall(r"\b(\d+(?:\.\d+)?[kM]?)B/(\d+(?:\.\d+)?[kM]?)B\b", terminal)
    assert done and done[-1][0] == done[-1][1], terminal  # ends at the total
    assert "100%" in terminal

    # A pipe has no size: plain row counts, no "k" abbreviations.
    status, out, terminal = await compere_on_a_terminal(
        database_url, tmp_path, "import", "-", stdin=path.read_bytes()
    )
    assert (status, out.strip()) == (0, "created 0, already present 3000, rejected 0"), terminal
    assert "3000 rows" in terminal and "krows" not in terminal

    status, _, terminal = await compere_on_a_terminal(database_url, tmp_path, "export", "entities")
    assert status == 0, terminal
    assert "3000/3000" in terminal and "krows" not in terminal
    assert "exported 3000 entities" in terminal


async def test_every_import_and_export_command_takes_a_project(client, database_url, tmp_path):
    for slug in ("alpha", "shelved"):
        resp = await client.post("/projects/", json={"slug": slug, "name": slug.title()})
        assert resp.status == 200, await resp.text()
    assert (await client.delete("/projects/shelved")).status == 200  # archived: read-only
    source = write_jsonl(tmp_path / "entities.jsonl", ENTITIES)

    status, out, err = await run_compere(
        database_url, tmp_path, "import", "entities", str(source), "--project", "alpha"
    )
    assert (status, out.strip()) == (0, "created 5, already present 0, rejected 0"), err
    alpha = await (await client.get("/projects/alpha/entities/")).json()
    assert sorted(e["external_id"] for e in alpha) == [e["external_id"] for e in ENTITIES]
    assert await (await client.get("/entities/")).json() == []  # default has none of them
    first, second = alpha[0]["id"], alpha[1]["id"]
    vote = {"entity1_id": first, "entity2_id": second, "selected_entity_id": second}
    assert (await client.post("/projects/alpha/comparisons/", json=vote)).status == 200

    status, out, err = await run_compere(database_url, tmp_path, "export", "entities", "--project", "alpha")
    assert status == 0, err
    assert sorted(json.loads(line)["external_id"] for line in out.splitlines()) == [
        e["external_id"] for e in ENTITIES
    ]
    status, out, err = await run_compere(
        database_url, tmp_path, "export", "comparisons", "--project", "alpha"
    )
    assert status == 0 and [json.loads(line)["selected_entity_id"] for line in out.splitlines()] == [second]
    status, out, err = await run_compere(
        database_url, tmp_path, "export", "preferences", "--format", "arena", "--project", "alpha"
    )
    assert status == 0 and [json.loads(line)["winner"] for line in out.splitlines()] == ["model_b"], err
    status, out, _ = await run_compere(database_url, tmp_path, "export", "comparisons")
    assert (status, out) == (0, "")  # default, as before

    # An unknown or archived project is a usage error: exit status 2, one line, nothing done.
    votes = tmp_path / "votes.jsonl"
    votes.write_text(json.dumps({"model_a": "a", "model_b": "b", "winner": "tie"}) + "\n")
    commands = (
        ("import", "entities", str(source)),
        ("import", "comparisons", str(votes)),
        ("export", "entities", "-o", str(tmp_path / "out.jsonl")),
        ("export", "comparisons"),
        ("export", "preferences", "--format", "dpo"),
    )
    for slug, reason in (
        ("nope", "there is no project 'nope'"),
        ("shelved", "project 'shelved' is archived"),
    ):
        for command in commands:
            status, out, err = await run_compere(database_url, tmp_path, *command, "--project", slug)
            assert status == 2 and reason in err and "Traceback" not in err, (command, err)
    assert not (tmp_path / "out.jsonl").exists()
    counts = await client.app[DATABASE].fetch_one(
        Query(
            sa.text("SELECT (SELECT count(*) FROM entities) AS e, (SELECT count(*) FROM comparisons) AS c")
        ),
        {},
    )
    assert counts is not None and (counts["e"], counts["c"]) == (5, 1)
