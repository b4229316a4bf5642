"""Recording votes: Elo updates, ties, counters, validation, and the vote log."""

from __future__ import annotations

import pytest

from compere.domain.elo import elo_update


async def vote(client, a, b, winner):
    return await client.post(
        "/comparisons/", json={"entity1_id": a, "entity2_id": b, "selected_entity_id": winner}
    )


async def test_a_vote_moves_both_ratings_by_elo(client, create_entities):
    a, b = await create_entities(2)
    resp = await vote(client, a["id"], b["id"], b["id"])
    assert resp.status == 200
    comparison = await resp.json()
    assert comparison["selected_entity_id"] == b["id"]
    assert set(comparison) >= {"id", "entity1_id", "entity2_id", "selected_entity_id", "created_at"}

    expected = elo_update(1500.0, 1500.0, 0.0, 32.0)
    got_a = await (await client.get(f"/entities/{a['id']}")).json()
    got_b = await (await client.get(f"/entities/{b['id']}")).json()
    assert got_a["rating"] == pytest.approx(expected.rating1) == pytest.approx(1484.0)
    assert got_b["rating"] == pytest.approx(expected.rating2) == pytest.approx(1516.0)
    assert (got_a["losses"], got_b["wins"], got_a["comparisons"], got_b["comparisons"]) == (1, 1, 1, 1)


async def test_a_tie_is_recorded_with_null_and_scores_half(client, create_entities):
    a, b = await create_entities(2)
    await vote(client, a["id"], b["id"], a["id"])  # a leads, so a tie now moves b up
    resp = await vote(client, a["id"], b["id"], None)
    assert resp.status == 200
    assert (await resp.json())["selected_entity_id"] is None
    got_a = await (await client.get(f"/entities/{a['id']}")).json()
    got_b = await (await client.get(f"/entities/{b['id']}")).json()
    first = elo_update(1500, 1500, 1.0, 32)
    second = elo_update(first.rating1, first.rating2, 0.5, 32)
    assert got_a["rating"] == pytest.approx(second.rating1)
    assert got_b["rating"] == pytest.approx(second.rating2)
    assert got_a["ties"] == got_b["ties"] == 1
    assert got_a["rating"] + got_b["rating"] == pytest.approx(3000.0)


async def test_k_factor_comes_from_settings(make_client):
    client = await make_client(ELO_K_FACTOR="10")
    ids = [(await (await client.post("/entities/", json={"name": n})).json())["id"] for n in "ab"]
    await vote(client, ids[0], ids[1], ids[0])
    assert (await (await client.get(f"/entities/{ids[0]}")).json())["rating"] == pytest.approx(1505.0)


async def test_semantic_errors(client, create_entities):
    a, b, c = await create_entities(3)
    resp = await vote(client, a["id"], a["id"], a["id"])
    assert resp.status == 400 and "itself" in (await resp.json())["detail"]
    resp = await vote(client, a["id"], b["id"], c["id"])
    assert resp.status == 400 and "one of" in (await resp.json())["detail"]
    resp = await vote(client, a["id"], 999_999, a["id"])
    assert resp.status == 404 and "999999" in (await resp.json())["detail"]
    missing = await client.post("/comparisons/", json={"entity1_id": a["id"], "entity2_id": b["id"]})
    assert missing.status == 422  # a tie must be said explicitly with null
    # nothing was stored by any of these
    assert await (await client.get("/comparisons/")).json() == []
    ratings = [e["rating"] for e in await (await client.get("/ratings")).json()]
    assert ratings == [1500.0] * 3


async def test_log_is_newest_first_filterable_and_paginated(client, create_entities):
    a, b, c = await create_entities(3)
    ids = []
    for pair in [(a, b), (b, c), (a, c), (a, b)]:
        ids.append((await (await vote(client, pair[0]["id"], pair[1]["id"], pair[0]["id"])).json())["id"])
    log = await (await client.get("/comparisons/")).json()
    assert [c_["id"] for c_ in log] == ids[::-1]
    only_c = await (await client.get("/comparisons/", params={"entity_id": c["id"]})).json()
    assert [x["id"] for x in only_c] == [ids[2], ids[1]]
    page = await (await client.get("/comparisons/", params={"skip": 1, "limit": 2})).json()
    assert [x["id"] for x in page] == [ids[2], ids[1]]
    one = await (await client.get(f"/comparisons/{ids[0]}")).json()
    assert (one["entity1_id"], one["entity2_id"], one["selected_entity_id"]) == (a["id"], b["id"], a["id"])
    assert (await client.get("/comparisons/424242")).status == 404


async def test_leaderboard_is_sorted_by_rating(client, create_entities):
    a, b, c = await create_entities(3)
    await vote(client, a["id"], b["id"], b["id"])
    await vote(client, b["id"], c["id"], b["id"])
    board = await (await client.get("/ratings")).json()
    assert board[0]["id"] == b["id"]
    assert [e["rating"] for e in board] == sorted((e["rating"] for e in board), reverse=True)
