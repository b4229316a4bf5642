"""The bandit's pair selection, fed by every recorded comparison."""

from __future__ import annotations


async def test_needs_two_entities(client, create_entities):
    resp = await client.get("/mab/next_comparison")
    assert resp.status == 400 and "2 entities" in (await resp.json())["detail"]
    await create_entities(1)
    assert (await client.get("/mab/next_comparison")).status == 400


async def test_returns_two_distinct_live_entities(client, create_entities):
    made = await create_entities(4)
    await client.delete(f"/entities/{made[0]['id']}")
    live = {e["id"] for e in made[1:]}
    for _ in range(10):
        pair = await (await client.get("/mab/next_comparison")).json()
        ids = {pair["entity1"]["id"], pair["entity2"]["id"]}
        assert len(ids) == 2 and ids <= live
        assert {"name", "description", "image_urls", "rating"} <= set(pair["entity1"])


async def test_never_compared_entities_come_first(client, create_entities):
    made = await create_entities(5)
    # Compare everything except the last entity a few times.
    for _ in range(3):
        for i in range(3):
            await client.post(
                "/comparisons/",
                json={
                    "entity1_id": made[i]["id"],
                    "entity2_id": made[i + 1]["id"],
                    "selected_entity_id": made[i]["id"],
                },
            )
    fresh = made[4]["id"]
    shown = 0
    for _ in range(10):
        pair = await (await client.get("/mab/next_comparison", params={"strategy": "ucb"})).json()
        shown += fresh in (pair["entity1"]["id"], pair["entity2"]["id"])
    assert shown == 10  # the unexplored arm's weight dwarfs every explored one


async def test_bandit_state_is_updated_by_every_vote_and_update_does_not_double_count(
    client, create_entities
):
    a, b = await create_entities(2)
    made = await (
        await client.post(
            "/comparisons/",
            json={"entity1_id": a["id"], "entity2_id": b["id"], "selected_entity_id": a["id"]},
        )
    ).json()
    before = await (await client.get(f"/entities/{a['id']}")).json()
    assert (before["comparisons"], before["wins"]) == (1, 1)
    resp = await client.post("/mab/update", params={"comparison_id": made["id"]})
    assert resp.status == 200 and "message" in await resp.json()
    after = await (await client.get(f"/entities/{a['id']}")).json()
    assert after == before
    assert (await client.post("/mab/update", params={"comparison_id": 987654})).status == 404
    assert (await client.post("/mab/update")).status == 422
    assert (await client.post("/mab/update", params={"comparison_id": "x"})).status == 422
