"""Vote-log import: ``compere import comparisons FILE`` (run as a subprocess) and
``POST /comparisons/import``, on SQLite and PostgreSQL.

A Compere comparisons export imported into an empty database gives back every vote and
exactly the ratings, strengths and counters of the source; an arena battle file creates
its models by name and rates them as if each battle had been voted one by one; a re-run
stores nothing twice, bad lines are reported by number, and an interrupted import goes on
where it stopped.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import random
import signal
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from compere.domain.trust import Ledger
from compere.domain.vote import apply_vote
from compere.http.app import create_app
from compere.http.keys import DATABASE
from compere.services.transfer import generated_external_id
from compere.settings import load_settings
from compere.storage.connect import connect
from compere.storage.database import Query
from compere.storage.migrations import migrate
from compere.storage.timestamps import as_datetime
from tests.helpers import ADMIN, NO_DOTENV, bearer, log_in, run_compere, sign_up, start_compere

EDITOR = ("edna", "amber-falcon-meadow-64")
VOTER = ("victor", "quiet-raven-pillar-12")

STATE = (
    "SELECT id, external_id, created_at, name, rating, mu, sigma, comparisons, wins, losses, ties, vote_weight, "
    "deleted_at IS NOT NULL AS deleted FROM entities ORDER BY id"
)
LOG = (
    "SELECT one.id AS one, two.id AS two, c.selected_entity_id AS winner, c.created_at, c.strategy, "
    "c.selection_probability, c.verdict, c.category, c.voter, c.pair_token_id IS NOT NULL AS served "
    "FROM comparisons c JOIN entities one ON one.id = c.entity1_id "
    "JOIN entities two ON two.id = c.entity2_id ORDER BY c.id"
)


async def query(url: str, sql: str) -> list[dict[str, Any]]:
    db = await connect(url)
    try:
        return await db.fetch_all(Query(sa.text(sql)))
    finally:
        await db.close()


async def target_client(make_client, url: str):
    settings = load_settings({"DATABASE_URL": url}, dotenv=NO_DOTENV)
    return await make_client(app=await create_app(settings, configure_logs=False))


def arena_lines(count: int, models: list[str], seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    battles = []
    for i in range(count):
        a, b = rng.sample(models, 2)
        battle: dict[str, Any] = {
            "model_a": a,
            "model_b": b,
            "winner": rng.choice(["model_a", "model_b", "model_a", "tie", "tie (bothbad)"]),
        }
        if i % 3:
            battle["judge"] = f"judge-{rng.randrange(5)}"
        if i % 4:
            battle["tstamp"] = 1_700_000_000 + i * 7.25
        battles.append(battle)
    return battles


def jsonl(records: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


def expected_arena_state(battles: list[dict[str, Any]], settings: Any) -> dict[str, dict[str, Any]]:
    """What recording the battles one by one gives each model (pure replay), each judge's
    votes weighed by the judge's record (an ``a:`` voter, as a hashed judge is)."""
    scores = {"model_a": 1.0, "model_b": 0.0, "tie": 0.5, "tie (bothbad)": 0.5}
    state: dict[str, dict[str, Any]] = {}
    ledger = Ledger(settings.trust, settings.prior)
    for battle in battles:
        sides = []
        for name in (battle["model_a"], battle["model_b"]):
            sides.append(
                state.setdefault(
                    name,
                    {
                        "rating": settings.elo_initial_rating,
                        "mu": settings.prior.mu0,
                        "sigma": settings.prior.sigma0,
                        "comparisons": 0,
                        "wins": 0,
                        "losses": 0,
                        "ties": 0,
                        "vote_weight": 0.0,
                    },
                )
            )
        one, two = sides
        judge = f"a:{battle['judge']}" if "judge" in battle else None
        weight = ledger.vote(
            judge,
            battle["model_a"],
            battle["model_b"],
            (one["mu"], one["sigma"]),
            (two["mu"], two["sigma"]),
            scores[battle["winner"]],
            served=False,
        )
        apply_vote(one, two, scores[battle["winner"]], settings.elo_k_factor, weight)
    return state


def _key(row: dict[str, Any]) -> str:
    """What the exports call an entity: its external id, else the generated one."""
    return row["external_id"] or generated_external_id(row["id"], as_datetime(row["created_at"]))


def rejection(err: str, number: int) -> str:
    """The reason the command gave for rejecting line ``number`` ("" if it did not)."""
    prefix = f"compere: line {number} rejected: "
    return next((line[len(prefix) :] for line in err.splitlines() if line.startswith(prefix)), "")


def summary_of(out: str) -> str:
    return out.strip().splitlines()[-1]


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
async def test_export_then_import_restores_every_vote_and_rating(
    database_url, empty_database, make_client, tmp_path, fmt, monkeypatch
):
    # Voter trust on, in the source and for the import (the command reads the environment).
    monkeypatch.setenv("TRUST_MODE", "default")
    client = await make_client(TRUST_MODE="default")
    # A source board: entities with and without external ids, votes of several voters with
    # every verdict and some categories, votes on served pairs (strategy and probability),
    # and an entity deleted after its votes.
    ids = []
    for i in range(6):
        body: dict[str, Any] = {"name": f"item {i}", "description": f"about {i}"}
        if i % 2:
            body["external_id"] = f"sku-{i}"
        ids.append((await (await client.post("/entities/", json=body)).json())["id"])
    rng = random.Random(11)
    for n in range(40):
        if n % 8 == 0:
            client.session.cookie_jar.clear()  # the next anonymous voter
        a, b = rng.sample(ids, 2)
        vote: dict[str, Any] = {
            "entity1_id": a,
            "entity2_id": b,
            "selected_entity_id": rng.choice([a, b, None]),
        }
        if vote["selected_entity_id"] is None:
            vote["verdict"] = rng.choice(["tie", "both_bad"])
        if n % 3:
            vote["category"] = rng.choice(["taste", "style"])
        assert (await client.post("/comparisons/", json=vote)).status == 200
    for _ in range(10):
        pair = await (await client.get("/mab/next_comparison")).json()
        one, two = pair["entity1"]["id"], pair["entity2"]["id"]
        vote = {
            "entity1_id": one,
            "entity2_id": two,
            "selected_entity_id": two,
            "pair_token": pair["pair_token"],
        }
        assert (await client.post("/comparisons/", json=vote)).status == 200
    assert (await client.delete(f"/entities/{ids[4]}")).status == 200

    entity_file, vote_file = tmp_path / f"entities.{fmt}", tmp_path / f"comparisons.{fmt}"
    for what, path in (("entities", entity_file), ("comparisons", vote_file)):
        status, _, err = await run_compere(
            database_url, tmp_path, "export", what, "--format", fmt, "-o", str(path)
        )
        assert status == 0, err

    target_url = empty_database()
    # Into an empty database: the entities first (names, descriptions), then the votes.
    status, _, err = await run_compere(target_url, tmp_path, "import", str(entity_file))
    assert status == 0, err
    status, out, err = await run_compere(
        target_url, tmp_path, "import", "comparisons", str(vote_file), "--batch-size", "7"
    )
    assert status == 0, err
    # The deleted entity is not in the entity export: the votes bring it back by its key.
    assert summary_of(out) == "stored 50, already imported 0, rejected 0, entities created 1"

    # Entities match on the external id the export gives them (a generated one if none),
    # and every number the votes gave them is the source's, weighed by the same voters.
    source = {_key(row): row for row in await query(database_url, STATE)}
    target = {row["external_id"]: row for row in await query(target_url, STATE)}
    assert set(target) == set(source)
    numbers = ("rating", "mu", "sigma", "comparisons", "wins", "losses", "ties", "vote_weight")
    for key, row in source.items():
        assert {n: target[key][n] for n in numbers} == pytest.approx({n: row[n] for n in numbers}), key
        if not row["deleted"]:
            assert target[key]["name"] == row["name"]
    assert any(row["vote_weight"] != row["comparisons"] for row in source.values())  # trust weighed

    # Every comparison, in order, between the same entities, with its time, provenance,
    # verdict, category and voter.
    def keyed(url_rows: list[dict[str, Any]], keys: dict[int, str]) -> list[tuple[Any, ...]]:
        return [
            (
                keys[c["one"]],
                keys[c["two"]],
                None if c["winner"] is None else keys[c["winner"]],
                as_datetime(c["created_at"]),
                c["strategy"],
                c["selection_probability"],
                c["verdict"],
                c["category"],
                c["voter"],
                bool(c["served"]),
            )
            for c in url_rows
        ]

    source_log = keyed(await query(database_url, LOG), {row["id"]: key for key, row in source.items()})
    target_log = keyed(await query(target_url, LOG), {row["id"]: key for key, row in target.items()})
    assert source_log == target_log and len(source_log) == 50
    assert any(c[2] is None for c in source_log) and sum(1 for c in source_log if c[4]) == 10
    assert {c[6] for c in source_log} == {"win", "tie", "both_bad"} and {c[7] for c in source_log} > {None}
    assert len({c[8] for c in source_log}) == 5 and sum(c[9] for c in source_log) == 10

    # Each voter's record and shares are the source's.
    def records(url_rows: list[dict[str, Any]]) -> dict[tuple[str, str], float]:
        return {(r["voter"], n): r[n] for r in url_rows for n in ("votes", "evidence", "touched", "weight")}

    voters_sql = "SELECT voter, votes, evidence, touched, weight FROM voters"
    source_voters = records(await query(database_url, voters_sql))
    assert records(await query(target_url, voters_sql)) == pytest.approx(source_voters) and source_voters

    def shares(url_rows: list[dict[str, Any]], keys: dict[int, str]) -> dict[tuple[str, str, str], float]:
        return {(r["voter"], keys[r["entity_id"]], n): r[n] for r in url_rows for n in ("votes", "weight")}

    shares_sql = "SELECT voter, entity_id, votes, weight FROM voter_entities"
    source_shares = shares(await query(database_url, shares_sql), {r["id"]: k for k, r in source.items()})
    target_shares = shares(await query(target_url, shares_sql), {r["id"]: k for k, r in target.items()})
    assert target_shares == pytest.approx(source_shares) and source_shares
    # A rebuild of the target changes nothing: served votes stay served.
    status, _, err = await run_compere(target_url, tmp_path, "rebuild-ratings")
    assert status == 0, err
    rebuilt = {row["external_id"]: row for row in await query(target_url, STATE)}
    for key, row in rebuilt.items():
        assert {n: row[n] for n in numbers} == pytest.approx({n: target[key][n] for n in numbers}), key

    # A re-run stores nothing; so does the same file through HTTP.
    status, out, err = await run_compere(target_url, tmp_path, "import", "comparisons", str(vote_file))
    assert (status, summary_of(out)) == (0, "stored 0, already imported 50, rejected 0, entities created 0")
    target_client_ = await target_client(make_client, target_url)
    resp = await target_client_.post(
        "/comparisons/import", params={"format": fmt}, data=vote_file.read_bytes()
    )
    assert resp.status == 200, await resp.text()
    result = await resp.json()
    assert (result["stored"], result["already_imported"], result["complete"]) == (0, 50, True)
    assert len(await query(target_url, "SELECT id FROM comparisons")) == 50


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
async def test_arena_battles_through_http_create_models_and_rate_them_vote_by_vote(
    client, make_settings, database_url, fmt
):
    models = [f"model-{i}" for i in range(8)]
    # An existing entity of one name is matched, not duplicated.
    existing = await (await client.post("/entities/", json={"name": "model-0"})).json()
    battles = arena_lines(600, models, seed=3)
    if fmt == "jsonl":
        body = jsonl(battles)
    else:
        buffer = io.StringIO()
        writer = csv.DictWriter(
            buffer, ["model_a", "model_b", "winner", "judge", "tstamp"], lineterminator="\n"
        )
        writer.writeheader()
        writer.writerows(battles)
        body = buffer.getvalue().encode()
    resp = await client.post("/comparisons/import", params={"format": fmt}, data=body)
    assert resp.status == 200, await resp.text()
    result = await resp.json()
    assert result["kind"] == "arena" and result["complete"] is True
    assert (result["stored"], result["already_imported"], result["rejected_count"]) == (600, 0, 0)
    assert result["entities_created"] == 7

    expected = expected_arena_state(battles, make_settings())
    stored = {row["name"]: row for row in await query(database_url, STATE)}
    assert set(stored) == set(models)
    assert stored["model-0"]["id"] == existing["id"]
    # Each judge's votes count what the judge's record says; votes without one count 1.
    numbers = ("rating", "mu", "sigma", "comparisons", "wins", "losses", "ties", "vote_weight")
    for name, state in expected.items():
        assert {n: stored[name][n] for n in numbers} == pytest.approx(state), name
    assert sum(s["ties"] for s in expected.values()) > 0
    listed = await (await client.get("/entities/", params={"search": "model-0"})).json()
    assert [e["id"] for e in listed] == [existing["id"]]

    # tstamp becomes the vote's time; battles without one get the time of the import.
    log = await query(database_url, "SELECT created_at FROM comparisons ORDER BY id")
    first_stamped = next(i for i, b in enumerate(battles) if "tstamp" in b)
    moment = datetime.fromtimestamp(battles[first_stamped]["tstamp"], UTC)
    assert str(log[first_stamped]["created_at"]).startswith(moment.strftime("%Y-%m-%d"))
    assert moment.isoformat()[:19].replace("T", " ") in str(log[first_stamped]["created_at"]).replace(
        "T", " "
    )

    again = await (await client.post("/comparisons/import", params={"format": fmt}, data=body)).json()
    assert (again["stored"], again["already_imported"], again["entities_created"]) == (0, 600, 0)
    assert len(log) == 600 == len(await query(database_url, "SELECT id FROM comparisons"))


async def test_arena_verdicts_categories_and_judges_are_kept_and_judges_are_the_keys_voters(admin_and_alice):
    client, _, alice = admin_and_alice
    resp = await client.post("/projects/", json={"slug": "arena", "name": "Arena"}, headers=bearer(alice))
    assert resp.status == 200, await resp.text()
    project_id = (await resp.json())["id"]
    resp = await client.post(
        "/auth/api-keys", json={"scopes": ["vote", "write"], "project_id": project_id}, headers=bearer(alice)
    )
    assert resp.status == 200, await resp.text()
    key = {"X-API-Key": (await resp.json())["key"]}
    battles = [
        {"model_a": "x", "model_b": "y", "winner": "tie (bothbad)", "judge": "judge-1", "category": "taste"},
        {"model_a": "x", "model_b": "y", "winner": "tie", "judge": "judge-2", "category": "taste"},
        {"model_a": "y", "model_b": "z", "winner": "model_a", "judge": "judge-1", "category": "style"},
        {"model_a": "x", "model_b": "z", "winner": "model_b"},
        {"model_a": "x", "model_b": "z", "winner": "model_a", "judge": "anonymous", "category": ""},
    ]
    resp = await client.post("/projects/arena/comparisons/import", data=jsonl(battles), headers=key)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["stored"] == 5

    # The same judge voting live through the key's voter field is the same voter.
    ids = {
        e["name"]: e["id"] for e in await (await client.get("/projects/arena/entities/", headers=key)).json()
    }
    live = {
        "entity1_id": ids["x"],
        "entity2_id": ids["y"],
        "selected_entity_id": ids["x"],
        "voter": "judge-1",
    }
    assert (await client.post("/projects/arena/comparisons/", json=live, headers=key)).status == 200
    db = client.app[DATABASE]
    rows = await db.fetch_all(
        Query(sa.text("SELECT verdict, category, voter FROM comparisons ORDER BY id")), {}
    )
    verdicts = [(r["verdict"], r["category"]) for r in rows]
    assert verdicts == [
        ("both_bad", "taste"),
        ("tie", "taste"),
        ("win", "style"),
        ("win", None),
        ("win", None),
        ("win", None),
    ]
    judge_1, judge_2, again, none, anonymous, live_judge_1 = (r["voter"] for r in rows)
    assert judge_1 == again == live_judge_1 and judge_1.startswith("a:") and "judge" not in judge_1
    assert judge_2 not in (judge_1, None) and none is None and anonymous is None
    voters = await db.fetch_all(Query(sa.text("SELECT voter, votes FROM voters ORDER BY votes DESC")), {})
    assert [(r["voter"], r["votes"]) for r in voters] == [(judge_1, 3), (judge_2, 1)]

    # Each category's board reads the imported votes.
    listed = await (await client.get("/projects/arena/ratings/categories", headers=key)).json()
    assert listed == [{"category": "style", "votes": 1}, {"category": "taste", "votes": 2}]
    taste = await client.get("/projects/arena/ratings", params={"category": "taste"}, headers=key)
    assert taste.status == 200
    assert sorted(e["name"] for e in await taste.json()) == ["x", "y", "z"]

    # Sent by a user rather than a key, judges are hashed in the import namespace.
    more = [{"model_a": "x", "model_b": "y", "winner": "model_a", "judge": "judge-1"}]
    resp = await client.post("/projects/arena/comparisons/import", data=jsonl(more), headers=bearer(alice))
    assert resp.status == 200 and (await resp.json())["stored"] == 1
    last = await db.fetch_one(Query(sa.text("SELECT voter FROM comparisons ORDER BY id DESC LIMIT 1")), {})
    assert last is not None and last["voter"].startswith("a:") and last["voter"] != judge_1


async def test_bad_lines_are_reported_by_number_skipped_or_stopped_at(client, database_url, tmp_path):
    good = arena_lines(30, ["a", "b", "c"], seed=5)
    lines = [json.dumps(b).encode() for b in good]
    bad = {
        4: b"{not json",
        9: json.dumps({"model_a": "a", "model_b": "a", "winner": "tie"}).encode(),
        13: json.dumps({"model_a": "a", "model_b": "b", "winner": "both"}).encode(),
        17: json.dumps({"model_a": "a", "model_b": "b", "winner": "tie", "tstamp": "soon"}).encode(),
        22: b'{"model_a": "a\xff", "model_b": "b", "winner": "tie"}',
        25: json.dumps(["a", "b"]).encode(),
    }
    for number, text in bad.items():
        lines[number - 1] = text
    path = tmp_path / "battles.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")

    # Stop at the first bad line: the lines before it are stored, and the summary says so.
    status, out, err = await run_compere(
        database_url, tmp_path, "import", "comparisons", str(path), "--on-error", "stop"
    )
    assert status == 1
    assert summary_of(out) == "stored 3, already imported 0, rejected 0, entities created 3"
    assert "line 4" in err and "not valid JSON" in err and "up to 3" in err

    # Up to a limit: lines 4, 9, 13 rejected, stopped before the fourth bad line (17).
    status, out, err = await run_compere(
        database_url, tmp_path, "import", "comparisons", str(path), "--max-rejected", "3"
    )
    assert status == 1
    assert summary_of(out) == "stored 10, already imported 3, rejected 3, entities created 0"
    for number, reason in ((4, "not valid JSON"), (9, "the same model"), (13, "winner must be one of")):
        assert reason in rejection(err, number), err
    assert "line 17" in err and "tstamp" in err

    # The rest, reporting every remaining bad line by number.
    status, out, err = await run_compere(database_url, tmp_path, "import", "comparisons", str(path))
    assert status == 1
    assert summary_of(out) == "stored 11, already imported 16, rejected 3, entities created 0"
    for number, reason in ((17, "tstamp"), (22, "not valid UTF-8"), (25, "must be a JSON object")):
        assert reason in rejection(err, number), err
    assert len(await query(database_url, "SELECT id FROM comparisons")) == 24

    # Through HTTP: on_error=stop answers with the line, and what was stored before it.
    other = b"\n".join([json.dumps(good[0]).encode(), json.dumps(good[1]).encode(), b"[]", b""])
    resp = await client.post(
        "/comparisons/import", params={"on_error": "stop", "source": "other"}, data=other
    )
    result = await resp.json()
    assert (resp.status, result["stored"], result["complete"], result["stopped_line"]) == (200, 2, False, 3)
    assert "line 3" in result["stopped"]
    # Not a vote log at all: 422 and nothing stored.
    resp = await client.post("/comparisons/import", data=jsonl([{"name": "an entity"}]))
    assert resp.status == 422 and "model_a" in (await resp.json())["detail"]


async def test_a_fixed_line_resumes_and_a_different_file_is_refused(database_url, tmp_path):
    battles = arena_lines(20, ["a", "b", "c", "d"], seed=8)
    lines = [json.dumps(b) for b in battles]
    lines[11] = "oops"
    path = tmp_path / "battles.jsonl"
    path.write_text("\n".join(lines) + "\n")
    status, out, _ = await run_compere(
        database_url, tmp_path, "import", "comparisons", str(path), "--on-error", "stop"
    )
    assert summary_of(out) == "stored 11, already imported 0, rejected 0, entities created 4"

    lines[11] = json.dumps(battles[11])  # fixed: the import goes on from that line
    path.write_text("\n".join(lines) + "\n")
    status, out, err = await run_compere(database_url, tmp_path, "import", "comparisons", str(path))
    assert (status, summary_of(out)) == (
        0,
        "stored 9, already imported 11, rejected 0, entities created 0",
    ), err

    # Same first line, different body before where the run stopped: refused, nothing stored.
    lines[5] = (
        json.dumps({**battles[5], "winner": "tie"})
        if battles[5]["winner"] != "tie"
        else json.dumps({**battles[5], "winner": "model_a"})
    )
    changed = tmp_path / "changed.jsonl"
    changed.write_text("\n".join(lines) + "\n")
    status, out, err = await run_compere(database_url, tmp_path, "import", "comparisons", str(changed))
    assert status == 1 and "not the same file" in err
    # Under a name of its own it is a new file.
    status, out, _ = await run_compere(
        database_url, tmp_path, "import", "comparisons", str(changed), "--source", "changed copy"
    )
    assert summary_of(out) == "stored 20, already imported 0, rejected 0, entities created 0"
    assert len(await query(database_url, "SELECT id FROM comparisons")) == 40


async def test_an_interrupted_import_reports_what_it_stored_and_resumes(database_url, tmp_path):
    battles = arena_lines(100_000, [f"m{i}" for i in range(10)], seed=1)
    path = tmp_path / "big.jsonl"
    path.write_bytes(jsonl(battles))
    db = await connect(database_url)
    await migrate(db)
    proc = await start_compere(
        database_url, tmp_path, "import", "comparisons", str(path), "--batch-size", "10"
    )
    try:
        # Interrupt once some batches are stored (Ctrl-C is SIGINT to the process).
        for _ in range(600):
            await asyncio.sleep(0.05)
            done = await db.fetch_value(
                Query(sa.text("SELECT coalesce(max(lines_done), 0) FROM import_runs"))
            )
            if done >= 50:
                break
        proc.send_signal(signal.SIGINT)
        out, err = await proc.communicate()
    finally:
        await db.close()
    assert proc.returncode == 130, err.decode()
    assert "interrupted" in err.decode()
    stored = int(summary_of(out.decode()).split()[1].rstrip(","))
    assert 0 < stored < len(battles)
    assert len(await query(database_url, "SELECT id FROM comparisons")) == stored

    status, out, err = await run_compere(database_url, tmp_path, "import", "comparisons", str(path))
    assert status == 0, err
    assert (
        summary_of(out)
        == f"stored {len(battles) - stored}, already imported {stored}, rejected 0, entities created 0"
    )
    counts = await query(database_url, "SELECT count(*) AS n FROM comparisons")
    assert counts[0]["n"] == len(battles)
    totals = await query(database_url, "SELECT sum(comparisons) AS n, sum(rating) AS r FROM entities")
    assert totals[0]["n"] == 2 * len(battles)
    assert totals[0]["r"] == pytest.approx(10 * 1500)


async def test_the_http_import_streams_a_body_larger_than_max_body_size(client, database_url):
    # 300 battles with a 10 kB conversation each (a field the import passes over): a 3 MB
    # body against the default 1 MiB limit, read line by line as it arrives rather than held whole.
    battles = [{**b, "conversation_a": "j" * 10_000} for b in arena_lines(300, ["a", "b", "c"], seed=2)]
    body = jsonl(battles)
    assert len(body) > 3 * 1024 * 1024 - 200_000
    resp = await client.post(
        "/comparisons/import", data=io.BytesIO(body), headers={"Content-Type": "application/x-ndjson"}
    )
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["stored"] == 300
    # A line longer than 64 KiB stops the import there; the lines before it are stored.
    long_line = jsonl([{"model_a": "a", "model_b": "b", "winner": "tie", "conversation_a": "x" * 70_000}])
    resp = await client.post(
        "/comparisons/import", params={"source": "long"}, data=jsonl(battles[:2]) + long_line
    )
    result = await resp.json()
    assert (result["stored"], result["complete"], result["stopped_line"]) == (2, False, 3)
    assert "longer than" in result["stopped"]


async def test_a_project_export_imports_into_other_projects_with_their_settings(
    client, database_url, tmp_path
):
    for slug in ("alpha", "beta", "gamma"):
        resp = await client.post("/projects/", json={"slug": slug, "name": slug, "elo_k_factor": 24})
        assert resp.status == 200, await resp.text()
    ids = []
    for name in ("red", "green", "blue", "amber"):
        resp = await client.post("/projects/alpha/entities/", json={"name": name})
        ids.append((await resp.json())["id"])
    rng = random.Random(4)
    for _ in range(30):
        a, b = rng.sample(ids, 2)
        vote = {"entity1_id": a, "entity2_id": b, "selected_entity_id": rng.choice([a, b, None])}
        assert (await client.post("/projects/alpha/comparisons/", json=vote)).status == 200
    export = await (await client.get("/projects/alpha/export/comparisons")).read()

    # Through the project's route, and with the command's --project: the votes land in
    # that project only, on entities it creates, rated with its Elo K (24, not 32).
    resp = await client.post("/projects/beta/comparisons/import", data=export)
    result = await resp.json()
    assert (resp.status, result["stored"], result["entities_created"]) == (200, 30, 4), result
    (tmp_path / "alpha.jsonl").write_bytes(export)
    status, out, err = await run_compere(
        database_url, tmp_path, "import", "comparisons", str(tmp_path / "alpha.jsonl"), "--project", "gamma"
    )
    assert (status, summary_of(out)) == (
        0,
        "stored 30, already imported 0, rejected 0, entities created 4",
    ), err
    status, _, err = await run_compere(
        database_url, tmp_path, "import", "comparisons", str(tmp_path / "alpha.jsonl"), "--project", "nope"
    )
    assert status == 2 and "no project 'nope'" in err and "Traceback" not in err

    def board(rows: list[dict[str, Any]]) -> list[tuple[float, float, float, int, int]]:
        return sorted((r["rating"], r["score"], r["uncertainty"], r["wins"], r["ties"]) for r in rows)

    boards = {
        slug: board(await (await client.get(f"/projects/{slug}/entities/")).json())
        for slug in ("alpha", "beta", "gamma")
    }
    assert boards["alpha"] == boards["beta"] == boards["gamma"]
    assert sum(r[0] for r in boards["alpha"]) == pytest.approx(4 * 1500)
    assert await (await client.get("/entities/")).json() == []  # the default project is untouched
    assert len(await (await client.get("/projects/beta/comparisons/")).json()) == 30


async def test_project_editors_may_import_and_voters_may_not(make_auth_client):
    client = await make_auth_client()
    assert (await sign_up(client, *ADMIN)).status == 200
    admin = await log_in(client, *ADMIN)
    tokens = {}
    for role, (name, password) in {"editor": EDITOR, "voter": VOTER}.items():
        assert (await sign_up(client, name, password, token=admin)).status == 200
        tokens[role] = await log_in(client, name, password)
    resp = await client.post("/projects/", json={"slug": "lab", "name": "Lab"}, headers=bearer(admin))
    assert resp.status == 200
    for role in ("editor", "voter"):
        member = {"editor": EDITOR, "voter": VOTER}[role][0]
        resp = await client.put(f"/projects/lab/members/{member}", json={"role": role}, headers=bearer(admin))
        assert resp.status == 200
    body = jsonl(arena_lines(10, ["x", "y"], seed=1))
    editor = await client.post(
        "/projects/lab/comparisons/import", data=body, headers=bearer(tokens["editor"])
    )
    assert editor.status == 200 and (await editor.json())["stored"] == 10
    voter = await client.post("/projects/lab/comparisons/import", data=body, headers=bearer(tokens["voter"]))
    assert voter.status == 403
    # The top-level route imports into default: superusers only.
    top = await client.post("/comparisons/import", data=body, headers=bearer(tokens["editor"]))
    assert top.status == 403
    assert (await client.post("/comparisons/import", data=body)).status == 401
    assert (await client.post("/comparisons/import", data=body, headers=bearer(admin))).status == 200
