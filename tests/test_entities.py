"""Entities through HTTP: create, list, read, update, delete, and their validation."""

from __future__ import annotations

import pytest


async def test_create_returns_the_entity_with_the_initial_rating(client):
    resp = await client.post(
        "/entities/",
        json={"name": "  Espresso  ", "description": "strong", "image_urls": ["https://x/e.png"]},
    )
    assert resp.status == 200
    body = await resp.json()
    assert body["name"] == "Espresso"  # trimmed
    assert body["description"] == "strong"
    assert body["image_urls"] == ["https://x/e.png"]
    assert body["rating"] == 1500.0
    assert body["comparisons"] == body["wins"] == body["losses"] == body["ties"] == 0
    assert isinstance(body["id"], int)


async def test_initial_rating_comes_from_settings(make_client):
    client = await make_client(ELO_INITIAL_RATING="1000")
    body = await (await client.post("/entities/", json={"name": "a"})).json()
    assert body["rating"] == 1000.0


async def test_read_update_and_delete(client):
    created = await (await client.post("/entities/", json={"name": "Tea", "description": "green"})).json()
    url = f"/entities/{created['id']}"
    assert (await (await client.get(url)).json())["name"] == "Tea"

    resp = await client.put(url, json={"description": "black"})
    assert resp.status == 200
    updated = await resp.json()
    assert updated["name"] == "Tea"  # untouched
    assert updated["description"] == "black"

    resp = await client.put(url, json={"image_urls": ["a", "b"], "name": "Chai"})
    updated = await resp.json()
    assert (updated["name"], updated["image_urls"], updated["description"]) == ("Chai", ["a", "b"], "black")

    resp = await client.delete(url)
    assert resp.status == 200
    assert "message" in await resp.json()
    assert (await client.get(url)).status == 404
    assert (await client.delete(url)).status == 404
    assert (await client.put(url, json={"name": "x"})).status == 404


async def test_list_searches_paginates_and_counts(client, create_entities):
    await create_entities(5, prefix="Apple")
    await create_entities(3, prefix="Pear")
    resp = await client.get("/entities/", params={"search": "apple", "limit": 2})
    assert resp.status == 200
    assert resp.headers["X-Total-Count"] == "5"
    page = await resp.json()
    assert len(page) == 2 and all("Apple" in e["name"] for e in page)
    rest = await (await client.get("/entities/", params={"search": "APPLE", "skip": 2, "limit": 100})).json()
    assert len(rest) == 3
    assert {e["id"] for e in page}.isdisjoint({e["id"] for e in rest})
    # descriptions are searched too, and LIKE wildcards are literal
    assert len(await (await client.get("/entities/", params={"search": "about 1"})).json()) == 2
    assert await (await client.get("/entities/", params={"search": "%"})).json() == []
    everything = await (await client.get("/entities/")).json()
    assert len(everything) == 8


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": ""},
        {"name": "   "},
        {"name": "x" * 201},
        {"name": None},
        {"name": 5},
        {"name": ["a"]},
        {"name": "a", "description": "d" * 1001},
        {"name": "a", "image_urls": ["u"] * 11},
        {"name": "a", "image_urls": [""]},
        {"name": "a", "image_urls": ["  "]},
        {"name": "a", "image_urls": [1]},
        {"name": "a", "image_urls": "not a list"},
        {"name": "\ud800"},
        {"name": "nul\x00byte"},
    ],
)
async def test_invalid_entities_get_422_with_field_messages(client, body):
    resp = await client.post("/entities/", json=body)
    assert resp.status == 422, await resp.text()
    detail = (await resp.json())["detail"]
    assert isinstance(detail, list) and detail
    assert all({"loc", "msg", "type"} <= set(issue) for issue in detail)
    assert all(issue["loc"][0] == "body" for issue in detail)


async def test_update_validates_and_refuses_clearing_the_name(client):
    created = await (await client.post("/entities/", json={"name": "Tea"})).json()
    url = f"/entities/{created['id']}"
    assert (await client.put(url, json={"name": None})).status == 422
    assert (await client.put(url, json={"name": ""})).status == 422
    resp = await client.put(url, json={"description": None, "image_urls": None})
    assert resp.status == 200
    body = await resp.json()
    assert (body["description"], body["image_urls"]) == ("", [])


async def test_deleted_ids_are_never_reused(client):
    first = await (await client.post("/entities/", json={"name": "a"})).json()
    second = await (await client.post("/entities/", json={"name": "b"})).json()
    await client.delete(f"/entities/{second['id']}")
    third = await (await client.post("/entities/", json={"name": "c"})).json()
    assert third["id"] > second["id"] > first["id"]
    assert third["comparisons"] == 0


async def test_deleting_an_entity_keeps_its_votes_and_its_opponents_ratings(client, create_entities):
    a, b = await create_entities(2)
    vote = await (
        await client.post(
            "/comparisons/",
            json={"entity1_id": a["id"], "entity2_id": b["id"], "selected_entity_id": a["id"]},
        )
    ).json()
    assert (await client.delete(f"/entities/{a['id']}")).status == 200
    # The vote stays in the log, the opponent keeps the rating it earned.
    assert (await client.get(f"/comparisons/{vote['id']}")).status == 200
    survivor = await (await client.get(f"/entities/{b['id']}")).json()
    assert survivor["rating"] < 1500 and survivor["losses"] == 1
    # The deleted entity leaves listings, the leaderboard and new comparisons.
    assert [e["id"] for e in await (await client.get("/ratings")).json()] == [b["id"]]
    resp = await client.post(
        "/comparisons/", json={"entity1_id": a["id"], "entity2_id": b["id"], "selected_entity_id": None}
    )
    assert resp.status == 404
