"""A JSON body must say it is JSON: anything else gets 415 before it is read.

Browsers post ``text/plain``, form and multipart bodies to other sites without a CORS
preflight, so a route that parsed such a body as JSON could be driven by any web page a
visitor opens. ``application/json`` (with or without a charset) and ``+json`` types
are accepted; the login form keeps its form body (tests/test_auth_login.py).
"""

from __future__ import annotations

import orjson
import pytest

ENTITY = orjson.dumps({"name": "cross-site"})


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ],
)
async def test_a_json_body_sent_as_a_simple_request_type_is_415(client, content_type):
    resp = await client.post("/entities/", data=ENTITY, headers={"Content-Type": content_type})
    assert resp.status == 415
    assert (await resp.json())["detail"] == "Content-Type must be application/json"
    listed = await client.get("/entities/")
    assert await listed.json() == []


async def test_a_body_without_content_type_is_415(client):
    resp = await client.post("/entities/", data=ENTITY, skip_auto_headers=["Content-Type"])
    assert "Content-Type" not in resp.request_info.headers
    assert resp.status == 415
    assert (await resp.json())["detail"]


async def test_votes_and_updates_need_json_too(client, create_entities):
    a, b = await create_entities(2)
    vote = orjson.dumps({"entity1_id": a["id"], "entity2_id": b["id"], "selected_entity_id": a["id"]})
    resp = await client.post("/comparisons/", data=vote, headers={"Content-Type": "text/plain"})
    assert resp.status == 415
    resp = await client.put(
        f"/entities/{a['id']}", data=b'{"name": "renamed"}', headers={"Content-Type": "text/plain"}
    )
    assert resp.status == 415
    assert (await (await client.get(f"/entities/{a['id']}")).json())["name"] == a["name"]
    assert await (await client.get("/comparisons/")).json() == []


async def test_sign_up_needs_json(make_auth_client):
    client = await make_auth_client()
    body = orjson.dumps(
        {"username": "mallory", "email": "m@example.com", "password": "grey-heron-lantern-91"}
    )
    resp = await client.post("/auth/users/", data=body, headers={"Content-Type": "text/plain"})
    assert resp.status == 415


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON;charset=UTF-8",
        "application/vnd.api+json",
    ],
)
async def test_json_types_are_accepted_and_ids_as_strings_still_work(client, create_entities, content_type):
    a, b = await create_entities(2)
    # The original's clients may send ids as strings; that stays accepted inside JSON.
    vote = orjson.dumps(
        {"entity1_id": str(a["id"]), "entity2_id": b["id"], "selected_entity_id": str(a["id"])}
    )
    resp = await client.post("/comparisons/", data=vote, headers={"Content-Type": content_type})
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["selected_entity_id"] == a["id"]


async def test_a_request_without_a_body_needs_no_content_type(client, create_entities):
    a, _ = await create_entities(2)
    resp = await client.delete(f"/entities/{a['id']}")
    assert resp.status == 200


async def test_openapi_lists_415_for_every_route_with_a_body(client):
    doc = await (await client.get("/openapi.json")).json()
    with_body = [op for item in doc["paths"].values() for op in item.values() if "requestBody" in op]
    assert with_body
    assert all("415" in op["responses"] for op in with_body)
