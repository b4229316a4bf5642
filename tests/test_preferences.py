"""Preference datasets: ``compere export preferences`` and ``GET /comparisons/export/preferences``.

``dpo`` pairs the responses to one prompt (an entity's ``prompt`` field) as
``prompt``/``chosen``/``rejected``; ``arena`` writes every vote in the public battle
schema with hashed voter ids. Both backends, over HTTP and through the real command.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from aiohttp.test_utils import TestClient

from tests.helpers import ADMIN, ALICE, TEST_SECRET_KEY, bearer, log_in, run_compere, sign_up

WRITE_HAIKU = "Write a haiku about autumn."
EXPLAIN_TCP = "Explain TCP slow start in one sentence."


async def _entity(client: TestClient, headers: dict[str, str], **fields: Any) -> int:
    resp = await client.post("/entities/", json=fields, headers=headers)
    assert resp.status == 200, await resp.text()
    return int((await resp.json())["id"])


async def _vote(client: TestClient, headers: dict[str, str], one: int, two: int, winner: int | None) -> None:
    body = {"entity1_id": one, "entity2_id": two, "selected_entity_id": winner}
    resp = await client.post("/comparisons/", json=body, headers=headers)
    assert resp.status == 200, await resp.text()


async def seed(client: TestClient, voters: list[dict[str, str]]) -> dict[str, int]:
    """Responses to two prompts, one entity without a prompt, and votes between them."""
    first, second = voters[0], voters[-1]
    ids = {
        "leaves": await _entity(
            client, first, name="model-a", description="Red leaves fall", prompt=WRITE_HAIKU
        ),
        "wind": await _entity(client, first, name="model-b", description="Cold wind", prompt=WRITE_HAIKU),
        "slow": await _entity(client, first, name="model-a", description="It ramps up", prompt=EXPLAIN_TCP),
        # An empty description: the name is the response text.
        "cwnd": await _entity(client, first, name="cwnd doubles per RTT", prompt=EXPLAIN_TCP),
        "plain": await _entity(client, first, name="no prompt here"),
    }
    await _vote(client, first, ids["leaves"], ids["wind"], ids["leaves"])  # dpo 1
    await _vote(client, second, ids["wind"], ids["leaves"], None)  # a tie
    await _vote(client, second, ids["slow"], ids["cwnd"], ids["cwnd"])  # dpo 2: second wins
    await _vote(client, first, ids["leaves"], ids["slow"], ids["slow"])  # different prompts
    await _vote(client, first, ids["plain"], ids["wind"], ids["plain"])  # no prompt
    return ids


DPO = [
    {"prompt": WRITE_HAIKU, "chosen": "Red leaves fall", "rejected": "Cold wind"},
    {"prompt": EXPLAIN_TCP, "chosen": "cwnd doubles per RTT", "rejected": "It ramps up"},
]
DPO_WITH_TIE = [
    DPO[0],
    {"prompt": WRITE_HAIKU, "chosen": "Cold wind", "rejected": "Red leaves fall", "tie": True},
    DPO[1],
]


def lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


async def export(
    client: TestClient, headers: dict[str, str] | None = None, **query: str
) -> list[dict[str, Any]]:
    resp = await client.get("/comparisons/export/preferences", params=query, headers=headers or {})
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"].startswith("application/x-ndjson")
    return lines(await resp.text())


async def test_dpo_pairs_responses_to_the_same_prompt(client):
    await seed(client, [{}])
    assert await export(client, format="dpo") == DPO
    assert await export(client, format="dpo", ties="skip") == DPO
    assert await export(client, format="dpo", ties="keep") == DPO_WITH_TIE


async def test_arena_writes_every_vote_as_a_battle(client):
    await seed(client, [{}])
    battles = await export(client, format="arena")
    assert [(b["model_a"], b["model_b"], b["winner"]) for b in battles] == [
        ("model-a", "model-b", "model_a"),
        ("model-b", "model-a", "tie"),
        ("model-a", "cwnd doubles per RTT", "model_b"),
        ("model-a", "model-a", "model_b"),
        ("no prompt here", "model-b", "model_a"),
    ]
    assert all(set(b) == {"model_a", "model_b", "winner", "judge", "tstamp"} for b in battles)
    (first,) = await (await client.get("/comparisons/", params={"limit": 1, "skip": 4})).json()
    assert battles[0]["tstamp"] == datetime.fromisoformat(first["created_at"]).timestamp()
    assert {b["judge"] for b in battles} == {"anonymous"}  # the open API records no voter


async def test_voters_are_hashed_with_a_key(make_auth_client):
    client = await make_auth_client()
    assert (await sign_up(client, *ADMIN)).status == 200
    admin = await log_in(client, *ADMIN)
    assert (await sign_up(client, *ALICE, token=admin)).status == 200
    alice = await log_in(client, *ALICE)
    await seed(client, [bearer(admin), bearer(alice)])

    battles = await export(client, bearer(admin), format="arena")
    judges = [b["judge"] for b in battles]
    admin_judge, alice_judge = judges[0], judges[1]
    assert judges == [admin_judge, alice_judge, alice_judge, admin_judge, admin_judge]
    assert admin_judge != alice_judge
    assert all(len(j) == 32 and int(j, 16) >= 0 for j in judges)  # hex, no ids or names
    me = await (await client.get("/auth/users/me", headers=bearer(admin))).json()
    assert str(me["id"]) not in judges and "admin" not in judges
    # Keyed by SECRET_KEY: the same voter keeps the same id from one export to the next.
    assert [b["judge"] for b in await export(client, bearer(admin), format="arena")] == judges

    resp = await client.get("/comparisons/export/preferences?format=dpo", headers=bearer(alice))
    assert resp.status == 403
    resp = await client.get("/comparisons/export/preferences?format=dpo")
    assert resp.status == 401


async def test_bad_export_queries_are_refused(client):
    for query in ("", "?format=csv", "?format=dpo&ties=maybe"):
        resp = await client.get("/comparisons/export/preferences" + query)
        assert resp.status == 422, query
        assert "detail" in await resp.json()


async def test_entities_carry_a_prompt(client):
    resp = await client.post("/entities/", json={"name": "r1", "prompt": WRITE_HAIKU})
    entity = await resp.json()
    assert entity["prompt"] == WRITE_HAIKU
    resp = await client.put(f"/entities/{entity['id']}", json={"prompt": EXPLAIN_TCP})
    assert (await resp.json())["prompt"] == EXPLAIN_TCP
    resp = await client.put(f"/entities/{entity['id']}", json={"prompt": None})
    assert (await resp.json())["prompt"] is None
    resp = await client.post("/entities/", json={"name": "r2"})
    assert (await resp.json())["prompt"] is None
    resp = await client.post("/entities/", json={"name": "r3", "prompt": "x" * 20001})
    assert resp.status == 422
    body = b'{"external_id": "e1", "name": "imported", "prompt": "Say hi."}\n'
    assert (await client.post("/entities/import", data=body)).status == 200
    listed = await (await client.get("/entities/", params={"search": "imported"})).json()
    assert listed[0]["prompt"] == "Say hi."


async def test_the_command_writes_the_same_datasets(client, database_url, tmp_path):
    await seed(client, [{}])
    env_args = ("export", "preferences", "--batch-size", "2")  # several keyset batches
    status, out, err = await run_compere(database_url, tmp_path, *env_args, "--format", "dpo")
    assert status == 0, err
    assert lines(out) == DPO
    assert "exported 2 dpo records" in err
    status, out, err = await run_compere(
        database_url, tmp_path, *env_args, "--format", "dpo", "--ties", "keep"
    )
    assert status == 0, err
    assert lines(out) == DPO_WITH_TIE
    target = tmp_path / "battles.jsonl"
    status, _, err = await run_compere(
        database_url, tmp_path, *env_args, "--format", "arena", "-o", str(target)
    )
    assert status == 0, err
    assert [b["winner"] for b in lines(target.read_text())] == [
        "model_a",
        "tie",
        "model_b",
        "model_b",
        "model_a",
    ]
    assert lines(target.read_text()) == await export(client, format="arena")
    status, _, err = await run_compere(database_url, tmp_path, "export", "preferences")
    assert status == 2 and "needs --format dpo or arena" in err
    status, _, err = await run_compere(database_url, tmp_path, "export", "comparisons", "--format", "dpo")
    assert status == 2 and "needs --format jsonl or csv" in err


def test_secret_key_is_not_a_judge_key():
    # The voter-hash key is derived from SECRET_KEY, never SECRET_KEY itself.
    from compere.services.transfer import judge_id, judge_key

    key = judge_key(TEST_SECRET_KEY)
    assert key != TEST_SECRET_KEY.encode()
    assert judge_id(key, 1) == judge_id(judge_key(TEST_SECRET_KEY), 1) != judge_id(key, 2)
    assert judge_id(judge_key(None), 1) != judge_id(judge_key(None), 1)  # per export without a key
