"""What clients read back: one number type for each field on every route, plain messages."""

from __future__ import annotations

import pytest


def _numbers_are_floats(entity: dict) -> None:
    for field in ("score", "uncertainty", "rating"):
        assert isinstance(entity[field], float), (field, entity[field])
    assert all(isinstance(bound, float) for bound in entity["interval_95"])


async def test_every_entity_route_returns_score_as_a_float(client):
    created = [await (await client.post("/entities/", json={"name": name})).json() for name in "ABC"]
    for entity in created:
        _numbers_are_floats(entity)
    entity_id = created[0]["id"]
    got = await (await client.get(f"/entities/{entity_id}")).json()
    assert got == created[0]  # the same body from POST and GET, down to 0.0
    _numbers_are_floats(await (await client.put(f"/entities/{entity_id}", json={"name": "A2"})).json())
    for entity in await (await client.get("/entities/")).json():
        _numbers_are_floats(entity)
    for entity in await (await client.get("/ratings")).json():
        _numbers_are_floats(entity)
    for entity in await (await client.get("/ratings", params={"by": "score"})).json():
        _numbers_are_floats(entity)
    for strategy in ("active", "ucb", "random"):
        pair = await (await client.get("/mab/next_comparison", params={"strategy": strategy})).json()
        _numbers_are_floats(pair["entity1"])
        _numbers_are_floats(pair["entity2"])
    pair = await (await client.get("/comparisons/next")).json()
    _numbers_are_floats(pair["entity1"])
    for entity in await (await client.get("/dissimilar_entities")).json():
        _numbers_are_floats(entity)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"name": "A", "description": "x" * 1001}, "String should have at most 1000 characters"),
        ({"name": "   "}, "must not be empty or only spaces"),
        ({"name": "A", "image_urls": [" "]}, "must not be empty or only spaces"),
        ({"name": "A", "description": "nul\x00"}, "must not contain NUL characters"),
    ],
)
async def test_validation_messages_read_as_plain_sentences(client, body, message):
    resp = await client.post("/entities/", json=body)
    assert resp.status == 422
    (issue,) = (await resp.json())["detail"]
    assert issue["msg"] == message
    assert set(issue) == {"loc", "msg", "type"}


async def test_long_texts_elsewhere_are_counted_in_characters(client):
    resp = await client.get("/entities/", params={"search": "x" * 201})
    assert resp.status == 422
    assert (await resp.json())["detail"][0]["msg"] == "String should have at most 200 characters"
