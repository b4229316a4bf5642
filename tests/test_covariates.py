"""Entity attributes and the style-controlled board, through HTTP on both backends:
attributes round trip (create, edit, read, export and import), a board whose votes
favour long answers is corrected by ``control=length``, and bad input is a 422."""

from __future__ import annotations

import json

import pytest

from tests.helpers import ANSWER_LENGTHS, length_biased_votes, run_compere


async def _create(client, prefix: str = "", **body) -> dict:
    resp = await client.post(f"{prefix}/entities/", json=body)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def _vote(client, a: int, b: int, winner: int, prefix: str = "", **extra) -> None:
    body = {"entity1_id": a, "entity2_id": b, "selected_entity_id": winner, **extra}
    resp = await client.post(f"{prefix}/comparisons/", json=body)
    assert resp.status == 200, await resp.text()


async def _length_biased_board(client, prefix: str = "", **extra) -> list[int]:
    """The eight answers of ``tests.helpers.length_biased_votes`` and their votes."""
    ids = [
        (await _create(client, prefix, name=f"answer {k}", attributes={"length": length, "headers": k % 3}))[
            "id"
        ]
        for k, length in enumerate(ANSWER_LENGTHS)
    ]
    for i, j, winner in length_biased_votes():
        await _vote(client, ids[i], ids[j], ids[winner], prefix, **extra)
    return ids


# --- attributes ------------------------------------------------------------------------


async def test_attributes_round_trip_through_create_edit_read_and_list(client):
    created = await _create(client, name="A", attributes={"length": 512, "markdown_headers": 3})
    assert created["attributes"] == {"length": 512.0, "markdown_headers": 3.0}
    plain = await _create(client, name="B")
    assert plain["attributes"] == {}
    entity_id = created["id"]
    got = await (await client.get(f"/entities/{entity_id}")).json()
    assert got["attributes"] == {"length": 512.0, "markdown_headers": 3.0}

    # An edit replaces the whole set; other edits leave it alone; null clears it.
    resp = await client.put(f"/entities/{entity_id}", json={"attributes": {"length": 40.5}})
    assert resp.status == 200 and (await resp.json())["attributes"] == {"length": 40.5}
    resp = await client.put(f"/entities/{entity_id}", json={"name": "A2"})
    assert (await resp.json())["attributes"] == {"length": 40.5}
    listed = await (await client.get("/entities/")).json()
    assert {e["name"]: e["attributes"] for e in listed} == {"A2": {"length": 40.5}, "B": {}}
    resp = await client.put(f"/entities/{entity_id}", json={"attributes": None})
    assert (await resp.json())["attributes"] == {}


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
async def test_attributes_travel_with_an_entity_export_into_another_project(client, fmt):
    await _create(client, name="A", external_id="a", attributes={"length": 512, "ratio": -0.25})
    await _create(client, name="B", external_id="b")
    exported = await client.get("/export/entities", params={"format": fmt})
    assert exported.status == 200
    data = await exported.read()
    assert (await client.post("/projects/", json={"slug": "copy", "name": "Copy"})).status == 200
    resp = await client.post("/projects/copy/entities/import", params={"format": fmt}, data=data)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["created"] == 2
    copied = await (await client.get("/projects/copy/entities/")).json()
    assert {e["external_id"]: e["attributes"] for e in copied} == {
        "a": {"length": 512.0, "ratio": -0.25},
        "b": {},
    }


@pytest.mark.parametrize(
    ("attributes", "words"),
    [
        ({"Length": 1}, "attribute name"),
        ({"1st": 1}, "attribute name"),
        ({"x" * 33: 1}, "attribute name"),
        ({"length": "512"}, "must be a number"),
        ({"length": True}, "must be a number"),
        ({"length": None}, "must be a number"),
        ({"length": [1]}, "must be a number"),
        ({f"a{k}": k for k in range(17)}, "at most 16"),
        ([1, 2], "object of attribute names"),
    ],
)
async def test_bad_attributes_are_a_422_naming_the_problem(client, attributes, words):
    resp = await client.post("/entities/", json={"name": "A", "attributes": attributes})
    assert resp.status == 422
    detail = (await resp.json())["detail"]
    assert words in detail[0]["msg"], detail
    entity = await _create(client, name="B")
    resp = await client.put(f"/entities/{entity['id']}", json={"attributes": attributes})
    assert resp.status == 422
    assert words in (await resp.json())["detail"][0]["msg"]


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999"])
async def test_attributes_must_be_finite(client, number):
    body = '{"name": "A", "attributes": {"length": ' + number + "}}"
    resp = await client.post("/entities/", data=body, headers={"Content-Type": "application/json"})
    assert resp.status in (400, 422)
    detail = (await resp.json())["detail"]
    if resp.status == 422:
        assert "finite" in detail[0]["msg"]
    assert (await (await client.get("/entities/")).json()) == []


async def test_an_import_line_with_bad_attributes_is_rejected_alone(client):
    lines = [
        json.dumps({"external_id": "a", "name": "A", "attributes": {"length": 3}}),
        json.dumps({"external_id": "b", "name": "B", "attributes": {"Bad Name": 3}}),
    ]
    resp = await client.post("/entities/import", params={"format": "jsonl"}, data="\n".join(lines).encode())
    assert resp.status == 200, await resp.text()
    summary = await resp.json()
    assert summary["created"] == 1 and summary["rejected"][0]["line"] == 2
    assert "attribute name" in summary["rejected"][0]["reason"]


# --- the controlled board ----------------------------------------------------------------


async def test_control_for_length_corrects_a_length_biased_board(client):
    ids = await _length_biased_board(client)
    best, long_bad = ids[0], ids[-1]
    plain = await (await client.get("/ratings", params={"model": "bt"})).json()
    plain_score = {e["id"]: e["score"] for e in plain}
    assert plain_score[long_bad] > plain_score[best]  # the judges' taste for length wins

    resp = await client.get("/ratings", params={"control": "length"})
    assert resp.status == 200, await resp.text()
    assert resp.headers["X-Total-Count"] == "8"
    body = await resp.json()
    assert body["control"] == ["length"] and body["category"] is None
    (coefficient,) = body["coefficients"]
    assert coefficient["attribute"] == "length"
    assert coefficient["coefficient"] > 0  # votes favour length
    assert coefficient["standard_error"] > 0
    low, high = coefficient["interval_95"]
    assert low < coefficient["coefficient"] < high
    assert coefficient["mean"] == pytest.approx(450.0)
    assert coefficient["standard_deviation"] == pytest.approx(229.128784747792)

    entries = {e["id"]: e for e in body["entries"]}
    order = [e["id"] for e in body["entries"]]
    plain_order = [e["id"] for e in plain]
    assert plain_order.index(long_bad) < plain_order.index(best)
    assert order[0] in (best, ids[6])  # the two best answers lead
    assert order.index(best) < order.index(long_bad)
    # Ranks are shared where the board cannot tell entries apart (6 votes a pair).
    assert entries[best]["rank"] <= entries[long_bad]["rank"]
    assert entries[long_bad]["unadjusted_rank"] <= entries[best]["unadjusted_rank"]
    assert entries[long_bad]["unadjusted_rank"] == next(e["rank"] for e in plain if e["id"] == long_bad)
    for entity_id, entry in entries.items():
        assert entry["unadjusted_score"] == pytest.approx(plain_score[entity_id])
        assert entry["imputed"] == []
        assert entry["attributes"]["length"] == ANSWER_LENGTHS[ids.index(entity_id)]
        assert {"uncertainty", "interval_95", "tied"} <= set(entry)
    scores = [e["score"] for e in body["entries"]]
    assert scores == sorted(scores, reverse=True)

    # Two attributes at once, paged, and with the adjusted board's rank intervals.
    resp = await client.get(
        "/ratings",
        params={"control": "length,headers", "detail": "full", "provisional": "inline", "limit": 3},
    )
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert [c["attribute"] for c in body["coefficients"]] == ["length", "headers"]
    assert len(body["entries"]) == 3
    assert all(len(e["rank_interval_95"]) == 2 and "provisional" in e for e in body["entries"])


async def test_the_controlled_board_of_a_category_and_of_a_project(client):
    ids = await _length_biased_board(client, "", category="helpfulness")
    await _vote(client, ids[0], ids[7], ids[0], category="style")
    resp = await client.get("/ratings", params={"control": "length", "category": "helpfulness"})
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["category"] == "helpfulness"
    entries = {e["id"]: e for e in body["entries"]}
    assert entries[ids[0]]["score"] > entries[ids[7]]["score"]
    # The unadjusted side is the category's own board: the style vote is on neither.
    plain = await (await client.get("/ratings", params={"category": "helpfulness"})).json()
    for entry in plain:
        assert entries[entry["id"]]["unadjusted_score"] == pytest.approx(entry["score"])
    assert entries[ids[0]]["unadjusted_score"] < entries[ids[7]]["unadjusted_score"]


async def test_another_projects_attributes_are_not_used(client):
    assert (await client.post("/projects/", json={"slug": "other", "name": "Other"})).status == 200
    a = (await _create(client, "/projects/other", name="A", attributes={"words": 10}))["id"]
    b = (await _create(client, "/projects/other", name="B", attributes={"words": 90}))["id"]
    await _vote(client, a, b, b, "/projects/other")
    x = (await _create(client, name="X", attributes={"length": 1}))["id"]
    y = (await _create(client, name="Y", attributes={"length": 2}))["id"]
    await _vote(client, x, y, y)

    listed = await (await client.get("/ratings/attributes")).json()
    assert listed == [{"attribute": "length", "entities": 2}]
    listed = await (await client.get("/projects/other/ratings/attributes")).json()
    assert listed == [{"attribute": "words", "entities": 2}]
    resp = await client.get("/ratings", params={"control": "words"})
    assert resp.status == 422
    assert "words" in (await resp.json())["detail"][0]["msg"]
    scoped = await client.get("/projects/other/ratings", params={"control": "words"})
    assert scoped.status == 200, await scoped.text()
    body = await scoped.json()
    assert {e["id"] for e in body["entries"]} == {a, b}
    assert body["coefficients"][0]["mean"] == pytest.approx(50.0)
    assert (await client.get("/projects/other/ratings", params={"control": "length"})).status == 422


async def test_an_entity_without_a_controlled_attribute_is_imputed_and_flagged(client):
    a = (await _create(client, name="A", attributes={"length": 100}))["id"]
    b = (await _create(client, name="B", attributes={"length": 300}))["id"]
    c = (await _create(client, name="C"))["id"]
    await _vote(client, a, b, b)
    await _vote(client, b, c, c)
    body = await (await client.get("/ratings", params={"control": "length"})).json()
    flags = {e["id"]: e["imputed"] for e in body["entries"]}
    assert flags == {a: [], b: [], c: ["length"]}


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"control": "nothing_has_this"}, "no entity on this board has the attribute 'nothing_has_this'"),
        ({"control": "constant"}, "same value on every entity"),
        ({"control": "Length"}, "not an attribute name"),
        ({"control": ""}, "not an attribute name"),
        ({"control": "length,"}, "not an attribute name"),
        ({"control": ",".join(f"a{k}" for k in range(17))}, "at most 16"),
        ({"control": "length", "by": "rating"}, "by=score"),
    ],
)
async def test_a_board_that_cannot_be_controlled_is_a_422(client, params, words):
    a = (await _create(client, name="A", attributes={"length": 100, "constant": 1}))["id"]
    b = (await _create(client, name="B", attributes={"length": 300, "constant": 1}))["id"]
    await _vote(client, a, b, b)
    resp = await client.get("/ratings", params=params)
    assert resp.status == 422
    detail = (await resp.json())["detail"]
    assert words in detail[0]["msg"], detail


async def test_the_board_controls_for_the_attributes_as_edited(client):
    a = (await _create(client, name="A", attributes={"length": 100}))["id"]
    b = (await _create(client, name="B", attributes={"length": 300}))["id"]
    c = (await _create(client, name="C", attributes={"length": 200}))["id"]
    for winner, loser in ((b, a), (b, c), (c, a)):
        await _vote(client, winner, loser, winner)
    # The winner was the longest; edited to the shortest, length now seems to lose votes.
    assert (await client.put(f"/entities/{b}", json={"attributes": {"length": 50}})).status == 200
    after = await (await client.get("/ratings", params={"control": "length"})).json()
    assert after["coefficients"][0]["mean"] == pytest.approx(350 / 3)
    assert after["coefficients"][0]["coefficient"] < 0


async def test_the_controlled_board_keeps_the_voter_weights_of_the_plain_one(make_client):
    client = await make_client(TRUST_MODE="default")
    ids = await _length_biased_board(client)
    body = await (await client.get("/ratings", params={"control": "length"})).json()
    plain = await (await client.get("/ratings", params={"model": "bt"})).json()
    unadjusted = {e["id"]: e["unadjusted_score"] for e in body["entries"]}
    assert unadjusted == pytest.approx({e["id"]: e["score"] for e in plain})
    assert body["coefficients"][0]["coefficient"] > 0
    order = [e["id"] for e in body["entries"]]
    assert order.index(ids[0]) < order.index(ids[-1])


async def test_the_cli_exports_and_imports_attributes(client, database_url, tmp_path):
    await _create(client, name="A", external_id="a", attributes={"length": 7})
    await _create(client, name="B", external_id="b")
    path = tmp_path / "entities.jsonl"
    status, _, err = await run_compere(database_url, tmp_path, "export", "entities", "-o", str(path))
    assert status == 0, err
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert {r["external_id"]: r["attributes"] for r in records} == {"a": {"length": 7.0}, "b": {}}
    # The same file under new external ids, imported by the CLI beside the originals.
    copy = tmp_path / "copy.jsonl"
    copy.write_text("".join(json.dumps({**r, "external_id": r["external_id"] + "2"}) + "\n" for r in records))
    status, out, err = await run_compere(database_url, tmp_path, "import", str(copy))
    assert (status, out.strip()) == (0, "created 2, already present 0, rejected 0"), err
    listed = await (await client.get("/entities/")).json()
    assert {e["external_id"]: e["attributes"] for e in listed} == {
        "a": {"length": 7.0},
        "b": {},
        "a2": {"length": 7.0},
        "b2": {},
    }
