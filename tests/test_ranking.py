"""Bayesian scores, pair strategies with signed pair tokens, and score leaderboards."""

from __future__ import annotations

import asyncio
import random

import pytest

from compere.domain.selection import CandidatePlan
from compere.http.app import create_app
from compere.http.keys import DATABASE
from compere.infra.signing import PairTokens
from compere.services.boards import prior_of
from compere.storage import pairing
from compere.storage.queries import rebuild_ratings

SECRET = "x" * 40


async def vote(client, a, b, winner, **extra):
    body = {"entity1_id": a, "entity2_id": b, "selected_entity_id": winner, **extra}
    return await client.post("/comparisons/", json=body)


async def test_entities_carry_a_score_with_an_interval(client, create_entities):
    a, b = await create_entities(2)
    assert a["score"] == 0.0 and a["uncertainty"] == pytest.approx(1.5)
    low, high = a["interval_95"]
    assert low < a["score"] < high
    await vote(client, a["id"], b["id"], a["id"])
    a2 = await (await client.get(f"/entities/{a['id']}")).json()
    b2 = await (await client.get(f"/entities/{b['id']}")).json()
    assert a2["score"] > 0 > b2["score"]
    assert a2["uncertainty"] < 1.5 and b2["uncertainty"] < 1.5


@pytest.mark.parametrize("strategy", ["active", "ucb", "random"])
async def test_every_strategy_serves_a_signed_pair(client, create_entities, strategy):
    made = await create_entities(5)
    resp = await client.get("/mab/next_comparison", params={"strategy": strategy})
    assert resp.status == 200
    pair = await resp.json()
    assert pair["strategy"] == strategy
    assert 0 < pair["selection_probability"] <= 1
    assert pair["entity1"]["id"] != pair["entity2"]["id"]
    assert {pair["entity1"]["id"], pair["entity2"]["id"]} <= {e["id"] for e in made}
    resp = await vote(
        client, pair["entity1"]["id"], pair["entity2"]["id"], None, pair_token=pair["pair_token"]
    )
    assert resp.status == 200
    stored = await resp.json()
    assert stored["strategy"] == strategy
    assert stored["selection_probability"] == pytest.approx(pair["selection_probability"])


async def test_unknown_strategy_is_a_422(client, create_entities):
    await create_entities(2)
    assert (await client.get("/mab/next_comparison", params={"strategy": "best"})).status == 422


async def test_pair_tokens_are_single_use_and_bound_to_their_pair(make_client):
    client = await make_client(SECRET_KEY=SECRET)
    ids = [(await (await client.post("/entities/", json={"name": f"e{i}"})).json())["id"] for i in range(3)]
    pair = await (await client.get("/mab/next_comparison")).json()
    a, b = pair["entity1"]["id"], pair["entity2"]["id"]
    other = next(i for i in ids if i not in (a, b))
    # swapped order is the same pair
    assert (await vote(client, b, a, a, pair_token=pair["pair_token"])).status == 200
    replay = await vote(client, a, b, a, pair_token=pair["pair_token"])
    assert replay.status == 409 and "already used" in (await replay.json())["detail"]

    pair = await (await client.get("/mab/next_comparison")).json()
    a, b = pair["entity1"]["id"], pair["entity2"]["id"]
    other = next(i for i in ids if i not in (a, b))
    wrong = await vote(client, a, other, a, pair_token=pair["pair_token"])
    assert wrong.status == 400 and "different pair" in (await wrong.json())["detail"]
    forged = pair["pair_token"][:-2] + ("AA" if not pair["pair_token"].endswith("AA") else "BB")
    assert (await vote(client, a, b, a, pair_token=forged)).status == 400
    assert (await vote(client, a, b, a, pair_token="garbage")).status == 400
    expired = PairTokens(SECRET, -1).issue(a, b, "active", 0.5)
    resp = await vote(client, a, b, a, pair_token=expired)
    assert resp.status == 400 and "expired" in (await resp.json())["detail"]
    # a vote without a token keeps working, as for the original's clients
    assert (await vote(client, a, b, b)).status == 200
    log = await (await client.get("/comparisons/")).json()
    assert len(log) == 2  # the refused votes left nothing behind


async def test_concurrent_replays_of_one_token_store_one_vote(make_client):
    client = await make_client(SECRET_KEY=SECRET)
    for i in range(2):
        await client.post("/entities/", json={"name": f"e{i}"})
    pair = await (await client.get("/mab/next_comparison")).json()
    a, b = pair["entity1"]["id"], pair["entity2"]["id"]
    results = await asyncio.gather(*(vote(client, a, b, a, pair_token=pair["pair_token"]) for _ in range(8)))
    assert sorted(r.status for r in results) == [200] + [409] * 7
    assert len(await (await client.get("/comparisons/")).json()) == 1


async def test_score_leaderboard_ranks_ties_pages_and_streams(client, create_entities):
    made = await create_entities(6)
    ids = [e["id"] for e in made]
    for _ in range(4):  # a clear order: 0 > 1 > ... > 5
        for i in range(5):
            await vote(client, ids[i], ids[i + 1], ids[i])
    board = await (await client.get("/ratings", params={"by": "score"})).json()
    scores = [e["score"] for e in board]
    assert scores == sorted(scores, reverse=True)
    assert board[0]["id"] == ids[0] and board[-1]["id"] == ids[5]
    ranks = [e["rank"] for e in board]
    assert ranks[0] == 1 and ranks == sorted(ranks)
    assert any(e["tied"] for e in board)  # six items, 20 votes: not all separable
    page = await client.get("/ratings", params={"by": "score", "skip": 2, "limit": 2})
    assert page.headers["X-Total-Count"] == "6"
    assert [e["id"] for e in await page.json()] == [e["id"] for e in board[2:4]]
    by_rating = await (await client.get("/ratings")).json()
    assert [e["rank"] for e in by_rating] == [1, 2, 3, 4, 5, 6]
    paged = []
    for skip in (0, 4):
        paged += await (await client.get("/ratings", params={"skip": skip, "limit": 4})).json()
    assert [e["id"] for e in paged] == [e["id"] for e in by_rating]


async def test_bradley_terry_fit_on_demand(client, create_entities):
    made = await create_entities(4)
    ids = [e["id"] for e in made]
    for _ in range(5):
        await vote(client, ids[0], ids[1], ids[0])
        await vote(client, ids[1], ids[2], ids[1])
        await vote(client, ids[2], ids[3], ids[2])
    resp = await client.get("/ratings", params={"model": "bt"})
    assert resp.status == 200
    board = await resp.json()
    assert [e["id"] for e in board] == ids
    for e in board:
        low, high = e["interval_95"]
        assert low < e["score"] < high
    # cached until the next vote, then refitted
    again = await (await client.get("/ratings", params={"model": "bt"})).json()
    assert again == board
    await vote(client, ids[3], ids[0], ids[3])
    after = await (await client.get("/ratings", params={"model": "bt"})).json()
    assert after != board


async def test_pairs_come_from_live_entities_at_larger_sizes(client, create_entities):
    made = await create_entities(70)
    deleted = {e["id"] for e in made[:10]}
    for entity_id in deleted:
        await client.delete(f"/entities/{entity_id}")
    seen = set()
    for strategy in ("active", "ucb", "random"):
        for _ in range(5):
            pair = await (await client.get("/mab/next_comparison", params={"strategy": strategy})).json()
            seen |= {pair["entity1"]["id"], pair["entity2"]["id"]}
    assert seen and not seen & deleted


async def test_rebuild_reproduces_the_online_state(make_settings, aiohttp_client):
    settings = make_settings()
    app = await create_app(settings, configure_logs=False)
    client = await aiohttp_client(app)
    ids = [(await (await client.post("/entities/", json={"name": f"e{i}"})).json())["id"] for i in range(5)]
    for k in range(30):
        a, b = ids[k % 5], ids[(k * 2 + 1) % 5]
        if a != b:
            await vote(client, a, b, [a, b, None][k % 3])
    await client.delete(f"/entities/{ids[4]}")
    before = {e["id"]: e for e in await (await client.get("/ratings")).json()}
    from compere.http.keys import DATABASE

    replayed = await rebuild_ratings(
        app[DATABASE],
        k_factor=settings.elo_k_factor,
        initial_rating=settings.elo_initial_rating,
        prior=prior_of(settings),
    )
    assert replayed == len(await (await client.get("/comparisons/", params={"limit": 1000})).json())
    after = {e["id"]: e for e in await (await client.get("/ratings")).json()}
    assert before.keys() == after.keys()
    for entity_id, old in before.items():
        new = after[entity_id]
        for field in ("rating", "score", "uncertainty"):
            assert new[field] == pytest.approx(old[field], abs=1e-9)
        assert (new["wins"], new["losses"], new["ties"]) == (old["wins"], old["losses"], old["ties"])


async def test_content_pairing_picks_the_most_dissimilar_texts(client):
    for name, description in [
        ("red apple", "sweet red fruit"),
        ("green apple", "sour green fruit"),
        ("granite", "igneous rock"),
    ]:
        await client.post("/entities/", json={"name": name, "description": description})
    assert (await client.get("/comparisons/next")).status == 200
    pair = await (await client.get("/comparisons/next", params={"seed": 3})).json()
    names = {pair["entity1"]["name"], pair["entity2"]["name"]}
    assert "granite" in names
    listed = await (await client.get("/dissimilar_entities", params={"seed": 3})).json()
    assert len(listed) == 2 and "granite" in {e["name"] for e in listed}
    again = await (await client.get("/dissimilar_entities", params={"seed": 3})).json()
    assert [e["id"] for e in again] == [e["id"] for e in listed]


async def test_content_pairing_needs_two_entities(client):
    assert (await client.get("/comparisons/next")).status == 400
    # The original answers the list it has: empty, then the one entity.
    empty = await client.get("/dissimilar_entities")
    assert empty.status == 200 and await empty.json() == []
    await client.post("/entities/", json={"name": "alone"})
    assert [e["name"] for e in await (await client.get("/dissimilar_entities")).json()] == ["alone"]


async def test_random_candidates_are_independent_draws(client, create_entities):
    # The random part of a candidate set must not be a fixed neighbourhood: over many
    # requests an entity should turn up beside nearly every other entity. (A run of
    # consecutive rows in a fixed random order would pair it with at most 62 others.)
    made = await create_entities(150)
    db = client.app[DATABASE]
    rng = random.Random(7)
    plan = CandidatePlan()
    fixed = {e["id"] for e in made[: plan.most_uncertain]}  # equal sigma: lowest ids first
    watched = made[-1]["id"]
    companions: set[int] = set()
    appearances = 0
    for _ in range(300):
        ids = {row["id"] for row in await pairing.pair_candidates(db, plan, rng)}
        assert fixed <= ids
        if watched in ids:
            appearances += 1
            companions |= ids - fixed - {watched}
    assert appearances >= 30  # about 300 * 32 / 126 expected
    assert len(companions) > 110  # of the 125 other randomly drawn entities
