"""Signed webhooks, end to end: a receiver the test runs on loopback, both backends.

Back-off and poll intervals are shortened through settings, and the tests wait for
conditions (bounded) instead of sleeping; nothing asserts on durations.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

import pytest
from aiohttp import web

from tests.helpers import ADMIN, ALICE, bearer, log_in, sign_up
from tests.webhook_helpers import (
    FAST,
    all_delivered,
    deliveries,
    eventually,
    make_entities,
    newest_delivery_when,
    subscribe,
    vote,
)


def verify(secret: str, header: str, body: bytes, tolerance: int = 300) -> bool:
    # The five lines of docs/webhooks.md, verbatim.
    fields = dict(part.split("=", 1) for part in header.split(","))
    expected = hmac.new(secret.encode(), fields["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
    fresh = abs(time.time() - int(fields["t"])) <= tolerance
    return fresh and hmac.compare_digest(expected, fields["v1"])


async def test_deliveries_are_signed_and_verify_with_the_documented_recipe(make_client, receiver):
    client = await make_client(**FAST)
    hook = await subscribe(client, receiver.url(), ["entity.created", "comparison.created"])
    secret = hook["secret"]
    assert secret.startswith("whsec_")
    a, b = await make_entities(client, 2)
    comparison_id = await vote(client, a, b, a)

    await eventually(lambda: len(receiver.of_type("comparison.created")) == 1, "the vote's delivery")
    for request in receiver.requests:
        header = request["headers"]["Compere-Signature"]
        assert verify(secret, header, request["body"])
        assert not verify(secret, header, request["body"] + b" ")  # a changed body fails
        assert not verify("whsec_wrong", header, request["body"])
        assert request["headers"]["Compere-Event"] == request["json"]["type"]
    created = [r["json"]["data"]["id"] for r in receiver.of_type("entity.created")]
    assert created == [a, b]
    votes = receiver.of_type("comparison.created")[0]["json"]["data"]["comparisons"]
    assert [(v["id"], v["selected_entity_id"]) for v in votes] == [(comparison_id, a)]

    # The receiver has answered; the sender marks each delivery done just after.
    await eventually(lambda: all_delivered(client, hook["id"]), "every delivery marked delivered")
    log = await deliveries(client, hook["id"])
    assert all(d["response_code"] == 200 and d["attempts"] == 1 for d in log)
    # The secret is shown once: never again in reads.
    listed = await (await client.get(f"/webhooks/{hook['id']}")).json()
    assert "secret" not in listed and listed["events"] == ["comparison.created", "entity.created"]


async def test_votes_are_batched_and_each_arrives_once_in_order(make_client, receiver):
    # A long poll: only subscription changes and finished attempts wake the dispatcher,
    # so votes accumulate between fan-outs.
    client = await make_client(**{**FAST, "WEBHOOK_POLL_INTERVAL": "60"})
    ids = await make_entities(client, 4)
    hook = await subscribe(client, receiver.url(), ["comparison.created"])
    cast = [await vote(client, ids[i % 4], ids[(i + 1) % 4], ids[i % 4]) for i in range(20)]
    resp = await client.patch(f"/webhooks/{hook['id']}", json={"description": "wake up"})
    assert resp.status == 200

    def received() -> list[int]:
        return [v["id"] for r in receiver.requests for v in r["json"]["data"]["comparisons"]]

    await eventually(lambda: len(received()) >= 20, "all 20 votes")
    assert received() == cast  # each once, in the order they were cast
    assert len(receiver.requests) < 20
    assert max(len(r["json"]["data"]["comparisons"]) for r in receiver.requests) > 1


async def test_a_receiver_outage_is_retried_until_it_is_back(make_client, receiver):
    client = await make_client(**FAST)
    await receiver.stop()  # down: connections are refused
    hook = await subscribe(client, receiver.url(), ["entity.created"])
    (entity_id,) = await make_entities(client, 1)

    pending = await newest_delivery_when(client, hook["id"], lambda d: d["attempts"] >= 2, "two attempts")
    assert pending["status"] == "pending"
    assert pending["response_code"] is None and "connection failed" in pending["last_error"]

    await receiver.start()  # back up on the same port

    await newest_delivery_when(client, hook["id"], lambda d: d["status"] == "delivered", "the delivery")
    assert [r["json"]["data"]["id"] for r in receiver.requests] == [entity_id]
    (done,) = await deliveries(client, hook["id"])
    assert done["attempts"] >= 3 and done["response_code"] == 200 and done["last_error"] is None


async def test_the_schedule_survives_a_restart(make_client, receiver):
    await receiver.stop()
    first = await make_client(**FAST)
    hook = await subscribe(first, receiver.url(), ["entity.created"])
    await make_entities(first, 1)

    await newest_delivery_when(first, hook["id"], lambda d: d["attempts"] >= 1, "a failed attempt")
    await first.close()  # the worker stops; the delivery stays pending in the database

    await receiver.start()
    second = await make_client(**FAST)

    await newest_delivery_when(second, hook["id"], lambda d: d["status"] == "delivered", "the delivery")
    assert len(receiver.requests) == 1


async def test_a_subscription_receives_in_order_while_another_is_failing(make_client, receiver):
    failures = {"left": 3}

    async def respond(request: dict[str, Any]) -> web.StreamResponse:
        if request["path"] == "/broken":
            return web.Response(status=500)
        if failures["left"] > 0:  # the first three requests of /flaky fail
            failures["left"] -= 1
            return web.Response(status=503)
        return web.Response(text="ok")

    receiver.respond = respond
    client = await make_client(**FAST)
    flaky = await subscribe(client, receiver.url("/flaky"), ["entity.created"])
    broken = await subscribe(client, receiver.url("/broken"), ["entity.created"])
    created = await make_entities(client, 5)

    await eventually(lambda: len(receiver.of_type("entity.created", "/flaky")) >= 8, "five deliveries")
    sent = [
        (int(r["headers"]["Compere-Delivery"]), r["json"]["data"]["id"])
        for r in receiver.of_type("entity.created", "/flaky")
    ]
    # A delivery is only sent once every earlier one of its subscription succeeded: the
    # first is retried three times before the second is tried at all.
    delivery_ids = [d for d, _ in sent]
    assert delivery_ids == sorted(delivery_ids)
    assert len(set(delivery_ids[:4])) == 1
    assert list(dict.fromkeys(entity for _, entity in sent)) == created
    await eventually(lambda: all_delivered(client, flaky["id"]), "every delivery marked delivered")
    log = await deliveries(client, flaky["id"])
    assert [d["status"] for d in log] == ["delivered"] * 5
    assert log[-1]["attempts"] == 4 and log[-1]["response_code"] == 200
    # The broken subscription is stuck on its first delivery, retrying; it did not hold
    # up the other one.
    stuck = await deliveries(client, broken["id"])
    assert {d["status"] for d in stuck} == {"pending"}
    assert {r["json"]["data"]["id"] for r in receiver.of_type("entity.created", "/broken")} == {created[0]}


async def test_replay_sends_the_logged_body_again(make_client, receiver):
    client = await make_client(**FAST)
    hook = await subscribe(client, receiver.url(), ["entity.created"])
    await make_entities(client, 1)
    await eventually(lambda: len(receiver.requests) == 1, "the first delivery")

    original = await newest_delivery_when(client, hook["id"], lambda d: d["status"] == "delivered", "the log")
    resp = await client.post(f"/webhooks/{hook['id']}/deliveries/{original['id']}/replay")
    assert resp.status == 200, await resp.text()
    replay = await resp.json()
    assert replay["replay_of"] == original["id"] and replay["status"] == "pending"

    await eventually(lambda: len(receiver.requests) == 2, "the replay")
    first, again = receiver.requests
    assert again["body"] == first["body"]  # same event id: receivers can de-duplicate
    assert again["headers"]["Compere-Delivery"] == str(replay["id"])
    assert verify(hook["secret"], again["headers"]["Compere-Signature"], again["body"])

    assert (await client.post(f"/webhooks/{hook['id']}/deliveries/999999/replay")).status == 404
    other = await subscribe(client, receiver.url("/other"), ["import.finished"])
    assert (await client.post(f"/webhooks/{other['id']}/deliveries/{original['id']}/replay")).status == 404


async def test_leaderboard_changes_and_imports_are_announced(make_client, receiver):
    client = await make_client(**FAST)
    await subscribe(client, receiver.url(), ["leaderboard.changed", "import.finished"])
    a, b, c = await make_entities(client, 3)
    for _ in range(6):
        await vote(client, a, b, a)
        await vote(client, b, c, b)

    def top_ids() -> list[int] | None:
        changes = receiver.of_type("leaderboard.changed")
        return [e["id"] for e in changes[-1]["json"]["data"]["top"]] if changes else None

    await eventually(lambda: top_ids() == [a, b, c], "the board a > b > c")
    entry = receiver.of_type("leaderboard.changed")[-1]["json"]["data"]["top"][0]
    assert set(entry) >= {"id", "name", "rank", "tied", "score"}

    resp = await client.post("/entities/import", data=b'{"external_id": "x1", "name": "imported"}\n')
    assert resp.status == 200, await resp.text()
    await eventually(lambda: receiver.of_type("import.finished"), "import.finished")
    data = receiver.of_type("import.finished")[0]["json"]["data"]
    assert data == {"created": 1, "existing": 0, "rejected_count": 0, "source": "http"}


async def test_paused_and_deleted_subscriptions(make_client, receiver):
    client = await make_client(**FAST)
    hook = await subscribe(client, receiver.url(), ["entity.created"], active=False)
    await make_entities(client, 1)
    assert await deliveries(client, hook["id"]) == []  # paused: no events written
    resp = await client.patch(f"/webhooks/{hook['id']}", json={"active": True})
    assert resp.status == 200 and (await resp.json())["active"] is True
    await make_entities(client, 1)
    await eventually(lambda: len(receiver.requests) == 1, "a delivery once active")
    assert (await client.delete(f"/webhooks/{hook['id']}")).status == 200
    assert (await client.get(f"/webhooks/{hook['id']}")).status == 404
    assert (await client.get(f"/webhooks/{hook['id']}/deliveries")).status == 404
    assert (await client.get("/webhooks/")).status == 200


@pytest.mark.parametrize(
    "body",
    [
        {"url": "ftp://example.com/", "events": ["entity.created"]},
        {"url": "https://user:pw@example.com/", "events": ["entity.created"]},
        {"url": "https://example.com/", "events": []},
        {"url": "https://example.com/", "events": ["no.such.event"]},
        {"url": "https://example.com/", "events": ["entity.created"], "active": None},
    ],
)
async def test_bad_subscriptions_are_refused(make_client, body):
    client = await make_client(**FAST)
    resp = await client.post("/webhooks/", json=body)
    assert resp.status == 422, await resp.text()
    assert "detail" in await resp.json()


async def test_webhooks_are_for_superusers(make_auth_client, receiver):
    client = await make_auth_client(**FAST)
    assert (await sign_up(client, *ADMIN)).status == 200
    admin = await log_in(client, *ADMIN)
    assert (await sign_up(client, *ALICE, token=admin)).status == 200
    alice = await log_in(client, *ALICE)
    body = {"url": receiver.url(), "events": ["entity.created"]}
    assert (await client.post("/webhooks/", json=body)).status == 401
    assert (await client.post("/webhooks/", json=body, headers=bearer(alice))).status == 403
    assert (await client.get("/webhooks/", headers=bearer(alice))).status == 403
    resp = await client.post("/webhooks/", json=body, headers=bearer(admin))
    assert resp.status == 200
    assert (await client.get("/webhooks/", headers=bearer(admin))).status == 200


async def test_a_delivery_gives_up_after_the_retry_window_and_the_next_one_goes(make_client, receiver):
    async def respond(request: dict[str, Any]) -> web.StreamResponse:
        first = request["json"]["data"]["name"] == "item 0"
        return web.Response(status=500) if first else web.Response(text="ok")

    receiver.respond = respond
    client = await make_client(**{**FAST, "WEBHOOK_RETRY_WINDOW": "1"})
    hook = await subscribe(client, receiver.url(), ["entity.created"])
    await make_entities(client, 2)
    await newest_delivery_when(client, hook["id"], lambda d: d["status"] == "delivered", "the second one")
    second, first = await deliveries(client, hook["id"])
    assert first["status"] == "failed" and first["response_code"] == 500
    assert second["attempts"] == 1
    assert [r["json"]["data"]["name"] for r in receiver.requests][-1] == "item 1"


async def test_a_project_has_webhooks_of_its_own_that_hear_only_its_events(make_client, receiver):
    client = await make_client(**FAST)
    assert (await client.post("/projects/", json={"slug": "tea", "name": "Tea"})).status == 200
    events = ["entity.created", "comparison.created", "leaderboard.changed"]
    # The top-level routes keep the default project's webhooks; a project's are its own.
    home = await subscribe(client, receiver.url("/default"), events)
    tea = await subscribe(client, receiver.url("/tea"), events, prefix="/projects/tea")
    assert [h["id"] for h in await (await client.get("/webhooks/")).json()] == [home["id"]]
    assert [h["id"] for h in await (await client.get("/projects/tea/webhooks/")).json()] == [tea["id"]]
    assert (await client.get(f"/webhooks/{tea['id']}")).status == 404
    assert (await client.get(f"/projects/tea/webhooks/{home['id']}/deliveries")).status == 404
    assert (await client.delete(f"/projects/tea/webhooks/{home['id']}")).status == 404

    a, b = await make_entities(client, 2)
    x, y, z = await make_entities(client, 3, prefix="/projects/tea")
    for _ in range(4):
        await vote(client, b, a, b)
        await vote(client, z, y, z, prefix="/projects/tea")
        await vote(client, y, x, y, prefix="/projects/tea")

    def top(path: str) -> list[int] | None:
        changes = receiver.of_type("leaderboard.changed", path)
        return [e["id"] for e in changes[-1]["json"]["data"]["top"]] if changes else None

    def voted(path: str) -> list[int]:
        return [
            v["id"]
            for r in receiver.of_type("comparison.created", path)
            for v in r["json"]["data"]["comparisons"]
        ]

    await eventually(lambda: top("/tea") == [z, y, x] and top("/default") == [b, a], "each board")
    await eventually(lambda: len(voted("/tea")) == 8 and len(voted("/default")) == 4, "each project's votes")
    # Every delivery names its project, and carries that project's entities only.
    for path, project, ids in (("/default", "default", {a, b}), ("/tea", "tea", {x, y, z})):
        requests = [r for r in receiver.requests if r["path"] == path]
        assert {r["json"]["project"] for r in requests} == {project}
        assert {r["json"]["data"]["id"] for r in receiver.of_type("entity.created", path)} == ids
        for request in receiver.of_type("comparison.created", path):
            for v in request["json"]["data"]["comparisons"]:
                assert {v["entity1_id"], v["entity2_id"]} <= ids
    assert len(await deliveries(client, home["id"])) == len(
        [r for r in receiver.requests if r["path"] == "/default"]
    )


async def test_a_projects_owners_manage_its_webhooks_and_its_voters_may_not(make_auth_client, receiver):
    client = await make_auth_client(**FAST)
    assert (await sign_up(client, *ADMIN)).status == 200
    admin = await log_in(client, *ADMIN)
    assert (await sign_up(client, *ALICE, token=admin)).status == 200
    alice = await log_in(client, *ALICE)
    resp = await client.post("/projects/", json={"slug": "mine", "name": "Mine"}, headers=bearer(alice))
    assert resp.status == 200, await resp.text()
    body = {"url": receiver.url(), "events": ["entity.created"]}
    owned = await client.post("/projects/mine/webhooks/", json=body, headers=bearer(alice))
    assert owned.status == 200, await owned.text()
    # Not the deployment's: the top level stays superusers', and names the default project.
    assert (await client.post("/webhooks/", json=body, headers=bearer(alice))).status == 403
    assert (await client.get("/webhooks/", headers=bearer(admin))).status == 200
    assert await (await client.get("/webhooks/", headers=bearer(admin))).json() == []
    assert (await sign_up(client, "victor", "quiet-raven-pillar-12", token=admin)).status == 200
    victor = await log_in(client, "victor", "quiet-raven-pillar-12")
    resp = await client.put("/projects/mine/members/victor", json={"role": "voter"}, headers=bearer(alice))
    assert resp.status == 200, await resp.text()
    assert (await client.post("/projects/mine/webhooks/", json=body, headers=bearer(victor))).status == 403
    assert (await client.get("/projects/mine/webhooks/", headers=bearer(victor))).status == 403
    assert (await client.post("/projects/mine/webhooks/", json=body)).status == 401
