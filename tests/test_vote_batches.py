"""Votes stored in batches: the group commit of concurrent votes and POST /comparisons/batch.

A batch must leave exactly the state that one vote per transaction leaves for the same
votes in the same order (ratings, Bayesian scores, counters, and with known voters under
TRUST_MODE=default their records and shares), and ``rebuild-ratings`` must agree with it;
a bad vote in a batch gets its own answer and the others are stored.
"""

from __future__ import annotations

import asyncio
import random
import uuid

import pytest
import sqlalchemy as sa

from compere.http.keys import DATABASE, PAIR_TOKENS, SETTINGS, VOTER_IDS, VOTES
from compere.storage import comparisons as store
from compere.storage.bulk import rebuild_ratings
from compere.storage.database import Query
from compere.storage.entities import EntityNotFound
from compere.storage.rows import ComparisonRow
from compere.storage.tables import comparisons, entities, voter_entities
from compere.storage.tables import voters as voters_table
from tests.helpers import ADMIN, bearer, log_in, sign_up
from tests.webhook_helpers import FAST, eventually, make_entities, subscribe

BOARD = 6
PLAN_VOTES = 120


def vote_plan(seed: int = 7) -> list[tuple[int, int, int | None]]:
    """Votes as positions on a board: (first, second, winner position or None)."""
    rng = random.Random(seed)
    plan = []
    for _ in range(PLAN_VOTES):
        a, b = rng.sample(range(BOARD), 2)
        plan.append((a, b, rng.choice([a, b, None])))
    return plan


async def new_board(client, prefix: str, headers: dict[str, str] | None = None) -> list[int]:
    ids = []
    for i in range(BOARD):
        resp = await client.post("/entities/", json={"name": f"{prefix} {i}"}, headers=headers)
        ids.append((await resp.json())["id"])
    return ids


def as_votes(app, ids: list[int], plan) -> list[store.Vote]:
    k = app[SETTINGS].elo_k_factor
    return [store.Vote(ids[a], ids[b], None if w is None else ids[w], k_factor=k) for a, b, w in plan]


async def board_state(client, ids: list[int]) -> list[tuple]:
    state = []
    for entity_id in ids:
        e = await (await client.get(f"/entities/{entity_id}")).json()
        state.append(
            (e["rating"], e["score"], e["uncertainty"], e["comparisons"], e["wins"], e["losses"], e["ties"])
        )
    return state


async def test_batched_votes_leave_the_same_state_as_one_vote_per_transaction(client):
    app = client.app
    db = app[DATABASE]
    plan = vote_plan()
    one_by_one, grouped, batched = [await new_board(client, name) for name in ("single", "group", "batch")]

    # One vote per transaction, in order.
    for vote in as_votes(app, one_by_one, plan):
        await store.record_vote(db, vote)
    # The group commit: all submitted at once, so all but the first wait and go together.
    queue = app[VOTES]
    batches_before = queue.batches
    outcomes = await asyncio.gather(*(queue.submit(v) for v in as_votes(app, grouped, plan)))
    assert all(isinstance(o, ComparisonRow) for o in outcomes)
    assert queue.batches - batches_before < PLAN_VOTES / 2  # really grouped
    assert [o.id for o in outcomes] == sorted(o.id for o in outcomes)  # ids in arrival order
    # The batch endpoint.
    body = {
        "votes": [
            {
                "entity1_id": batched[a],
                "entity2_id": batched[b],
                "selected_entity_id": None if w is None else batched[w],
            }
            for a, b, w in plan
        ]
    }
    resp = await client.post("/comparisons/batch", json=body)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["stored"] == PLAN_VOTES

    expected = await board_state(client, one_by_one)
    assert await board_state(client, grouped) == expected  # identical, not approximately
    assert await board_state(client, batched) == expected

    settings = app[SETTINGS]
    await rebuild_ratings(
        db, k_factor=settings.elo_k_factor, initial_rating=settings.elo_initial_rating, prior=settings.prior
    )
    for ids in (one_by_one, grouped, batched):
        rebuilt = await board_state(client, ids)
        for got, want in zip(rebuilt, expected, strict=True):
            assert got[3:] == want[3:]
            assert got[:3] == pytest.approx(want[:3], abs=1e-9)


async def test_a_bad_vote_in_a_group_commit_gets_its_own_answer(client):
    app = client.app
    ids = await new_board(client, "mixed")
    gone = (await (await client.post("/entities/", json={"name": "to delete"})).json())["id"]
    await client.delete(f"/entities/{gone}")
    served = await (await client.get("/mab/next_comparison")).json()
    pair = (served["entity1"]["id"], served["entity2"]["id"])
    claims = app[PAIR_TOKENS].verify(served["pair_token"])
    used = store.PairProvenance(claims.strategy, claims.probability, claims.token_id)
    k = app[SETTINGS].elo_k_factor
    first = await app[VOTES].submit(store.Vote(*pair, pair[0], k_factor=k, provenance=used))
    assert isinstance(first, ComparisonRow)

    votes = [store.Vote(ids[i % BOARD], ids[(i + 1) % BOARD], None, k_factor=k) for i in range(20)]
    votes[5] = store.Vote(ids[0], gone, gone, k_factor=k)  # a deleted entity
    votes[11] = store.Vote(*pair, pair[1], k_factor=k, provenance=used)  # a replayed pair token
    outcomes = await asyncio.gather(*(app[VOTES].submit(v) for v in votes))
    assert isinstance(outcomes[5], EntityNotFound) and outcomes[5].entity_id == gone
    assert isinstance(outcomes[11], store.PairTokenUsed)
    good = [o for i, o in enumerate(outcomes) if i not in (5, 11)]
    assert all(isinstance(o, ComparisonRow) for o in good)
    log = await (await client.get("/comparisons/", params={"limit": 1000})).json()
    assert {c["id"] for c in log} == {first.id} | {o.id for o in good}


async def test_concurrent_http_votes_answer_each_on_its_own(client):
    ids = await new_board(client, "http")
    gone = (await (await client.post("/entities/", json={"name": "gone"})).json())["id"]
    await client.delete(f"/entities/{gone}")
    bodies = [
        {"entity1_id": ids[i % BOARD], "entity2_id": ids[(i + 2) % BOARD], "selected_entity_id": None}
        for i in range(30)
    ]
    bodies[7] = {"entity1_id": ids[0], "entity2_id": gone, "selected_entity_id": ids[0]}
    responses = await asyncio.gather(*(client.post("/comparisons/", json=b) for b in bodies))
    statuses = [r.status for r in responses]
    assert statuses[7] == 404
    assert (await responses[7].json())["detail"] == f"Entity with id {gone} not found"
    assert statuses.count(200) == 29
    board = await (await client.get("/ratings")).json()
    assert sum(e["comparisons"] for e in board) == 2 * 29


async def test_the_batch_endpoint_answers_each_vote_in_order(client):
    ids = await new_board(client, "order")
    gone = (await (await client.post("/entities/", json={"name": "gone"})).json())["id"]
    await client.delete(f"/entities/{gone}")
    served = await (await client.get("/mab/next_comparison")).json()
    a, b = served["entity1"]["id"], served["entity2"]["id"]
    token_vote = {
        "entity1_id": a,
        "entity2_id": b,
        "selected_entity_id": a,
        "pair_token": served["pair_token"],
    }
    votes = [
        {"entity1_id": ids[0], "entity2_id": ids[1], "selected_entity_id": ids[0]},
        token_vote,
        {"entity1_id": ids[2], "entity2_id": gone, "selected_entity_id": None},
        token_vote,  # the same token again, in the same batch
        {"entity1_id": ids[1], "entity2_id": ids[0], "selected_entity_id": None},
    ]
    resp = await client.post("/comparisons/batch", json={"votes": votes})
    assert resp.status == 200, await resp.text()
    result = await resp.json()
    assert [r["status"] for r in result["results"]] == [200, 200, 404, 409, 200]
    assert [r["index"] for r in result["results"]] == [0, 1, 2, 3, 4]
    assert result["stored"] == 3
    stored = [r["comparison"] for r in result["results"] if r["status"] == 200]
    assert [c["id"] for c in stored] == sorted(c["id"] for c in stored)
    assert stored[1]["strategy"] == served["strategy"]
    assert result["results"][3]["detail"] == "This pair_token was already used for a vote"
    log = await (await client.get("/comparisons/", params={"limit": 1000})).json()
    assert sorted(c["id"] for c in log) == sorted(c["id"] for c in stored)


@pytest.mark.parametrize(
    ("bad", "loc"),
    [
        (
            {"entity1_id": "x", "entity2_id": 2, "selected_entity_id": None},
            ["body", "votes", 3, "entity1_id"],
        ),
        ({"entity1_id": 1, "entity2_id": 1, "selected_entity_id": None}, ["body", "votes", 3]),
        ({"entity1_id": 1, "entity2_id": 2, "selected_entity_id": 9}, ["body", "votes", 3]),
        (
            {"entity1_id": 1, "entity2_id": 2, "selected_entity_id": 1, "pair_token": "forged"},
            ["body", "votes", 3, "pair_token"],
        ),
    ],
)
async def test_one_malformed_vote_fails_the_whole_batch_naming_it(client, bad, loc):
    ids = await new_board(client, "malformed")
    fine = {"entity1_id": ids[0], "entity2_id": ids[1], "selected_entity_id": ids[0]}
    resp = await client.post("/comparisons/batch", json={"votes": [fine, fine, fine, bad, fine]})
    assert resp.status == 422
    detail = (await resp.json())["detail"]
    assert [issue["loc"] for issue in detail] == [loc]
    assert await (await client.get("/comparisons/")).json() == []


async def test_a_batch_is_between_one_and_a_thousand_votes(client):
    ids = await new_board(client, "size")
    vote = {"entity1_id": ids[0], "entity2_id": ids[1], "selected_entity_id": None}
    assert (await client.post("/comparisons/batch", json={"votes": []})).status == 422
    assert (await client.post("/comparisons/batch", json={"votes": [vote] * 1001})).status == 422
    resp = await client.post("/comparisons/batch", json={"votes": [vote] * 1000})
    assert resp.status == 200
    assert (await resp.json())["stored"] == 1000
    board = {e["id"]: e for e in await (await client.get("/ratings")).json()}
    assert board[ids[0]]["ties"] == board[ids[1]]["ties"] == 1000


async def test_a_batch_replayed_with_its_idempotency_key_is_stored_once(client):
    ids = await new_board(client, "keyed")
    votes = [
        {"entity1_id": ids[i], "entity2_id": ids[i + 1], "selected_entity_id": ids[i]}
        for i in range(BOARD - 1)
    ]
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = await client.post("/comparisons/batch", json={"votes": votes}, headers=key)
    assert first.status == 200
    again = await client.post("/comparisons/batch", json={"votes": votes}, headers=key)
    assert again.status == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await again.read() == await first.read()
    other = await client.post("/comparisons/batch", json={"votes": votes[:2]}, headers=key)
    assert other.status == 422
    log = await (await client.get("/comparisons/", params={"limit": 1000})).json()
    assert len(log) == BOARD - 1


async def test_batched_votes_announce_each_vote_to_webhooks(make_client, receiver):
    client = await make_client(**FAST)
    ids = await make_entities(client, 4)
    await subscribe(client, receiver.url(), ["comparison.created"])
    grouped = await asyncio.gather(
        *(
            client.post(
                "/comparisons/",
                json={"entity1_id": ids[i % 4], "entity2_id": ids[(i + 1) % 4], "selected_entity_id": None},
            )
            for i in range(10)
        )
    )
    cast = [(await resp.json())["id"] for resp in grouped]
    batch = [{"entity1_id": ids[0], "entity2_id": ids[2], "selected_entity_id": ids[2]}] * 5
    result = await (await client.post("/comparisons/batch", json={"votes": batch})).json()
    cast += [r["comparison"]["id"] for r in result["results"]]

    def received() -> list[int]:
        return [v["id"] for r in receiver.requests for v in r["json"]["data"]["comparisons"]]

    await eventually(lambda: len(received()) >= 15, "all 15 votes")
    assert sorted(received()) == sorted(cast)  # each once


async def test_batches_and_group_commits_keep_to_their_project(client):
    for slug in ("tea", "coffee"):
        resp = await client.post("/projects/", json={"slug": slug, "name": slug.title()})
        assert resp.status == 200, await resp.text()
    tea, coffee = [], []
    for prefix, ids in (("/projects/tea", tea), ("/projects/coffee", coffee)):
        for i in range(3):
            resp = await client.post(f"{prefix}/entities/", json={"name": f"{prefix} {i}"})
            ids.append((await resp.json())["id"])
    votes = [
        {"entity1_id": tea[0], "entity2_id": tea[1], "selected_entity_id": tea[0]},
        {"entity1_id": tea[0], "entity2_id": coffee[1], "selected_entity_id": None},  # across projects
        {"entity1_id": tea[1], "entity2_id": tea[2], "selected_entity_id": tea[2]},
    ]
    result = await (await client.post("/projects/tea/comparisons/batch", json={"votes": votes})).json()
    assert [r["status"] for r in result["results"]] == [200, 404, 200]
    # Concurrent single votes on two projects share group commits but not their boards.
    bodies = [
        ("/projects/tea", {"entity1_id": tea[0], "entity2_id": tea[2], "selected_entity_id": None}),
        ("/projects/coffee", {"entity1_id": coffee[0], "entity2_id": coffee[1], "selected_entity_id": None}),
        ("/projects/coffee", {"entity1_id": tea[0], "entity2_id": tea[1], "selected_entity_id": None}),
    ] * 4
    responses = await asyncio.gather(*(client.post(f"{p}/comparisons/", json=b) for p, b in bodies))
    assert [r.status for r in responses] == [200, 200, 404] * 4
    tea_log = await (await client.get("/projects/tea/comparisons/", params={"limit": 100})).json()
    coffee_log = await (await client.get("/projects/coffee/comparisons/", params={"limit": 100})).json()
    assert len(tea_log) == 2 + 4 and len(coffee_log) == 4
    assert await (await client.get("/comparisons/")).json() == []


def trust_plan(seed: int = 11) -> list[tuple[int, int, int | None, str, bool]]:
    """Votes of four known voters on a board whose position 0 is strongest: (first,
    second, winner position or None, voter, served). ``v3`` always picks the weaker side
    (it loses trust); ``v0`` piles onto position 0 (it meets the influence cap)."""
    rng = random.Random(seed)
    plan = []
    for k in range(PLAN_VOTES):
        voter = f"v{k % 4}"
        a, b = (0, rng.randrange(1, BOARD)) if voter == "v0" else rng.sample(range(BOARD), 2)
        stronger, weaker = min(a, b), max(a, b)
        winner = weaker if voter == "v3" else rng.choice([stronger, stronger, None])
        plan.append((a, b, winner, voter, rng.random() < 0.7))
    return plan


def trusted_votes(app, ids: list[int], plan, tag: str) -> list[store.Vote]:
    """The plan as votes by voters named for ``tag`` (voter records are per project and
    the three boards share one); served votes carry a provenance of their own."""
    settings = app[SETTINGS]
    return [
        store.Vote(
            ids[a],
            ids[b],
            None if w is None else ids[w],
            k_factor=settings.elo_k_factor,
            voter=f"u:{tag}-{voter}",
            provenance=store.PairProvenance("random", 0.1, f"{tag}-{n}") if served else None,
            trust=settings.trust,
            prior=settings.prior,
        )
        for n, (a, b, w, voter, served) in enumerate(plan)
    ]


def plan_voters(tag: str) -> dict[str, str]:
    """The stored names of ``trusted_votes``' voters, to their plan names."""
    return {f"u:{tag}-v{n}": f"v{n}" for n in range(4)}


async def stored_state(db, ids: list[int], names: dict[str, str]) -> tuple[list, dict, dict, list]:
    """Entity rows, voter records, voter shares and the vote log of one board, with its
    ids replaced by positions and its voters' stored names by ``names``' values."""
    position = {entity_id: n for n, entity_id in enumerate(ids)}
    rows = await db.fetch_all(
        Query(sa.select(entities).where(entities.c.id.in_(ids)).order_by(entities.c.id))
    )
    columns = ("rating", "mu", "sigma", "vote_weight", "comparisons", "wins", "losses", "ties")
    board = [(position[row["id"]], *(row[c] for c in columns)) for row in rows]
    records = {
        names[row["voter"]]: (row["votes"], row["evidence"], row["touched"], row["weight"])
        for row in await db.fetch_all(Query(sa.select(voters_table)))
        if row["voter"] in names
    }
    shares = {
        (names[row["voter"]], position[row["entity_id"]]): (row["votes"], row["weight"])
        for row in await db.fetch_all(Query(sa.select(voter_entities)))
        if row["voter"] in names
    }
    log = [
        (
            position[row["entity1_id"]],
            position[row["entity2_id"]],
            None if row["selected_entity_id"] is None else position[row["selected_entity_id"]],
            names[row["voter"]],
            row["verdict"],
            row["pair_token_id"] is not None,
        )
        for row in await db.fetch_all(
            Query(sa.select(comparisons).where(comparisons.c.entity1_id.in_(ids)).order_by(comparisons.c.id))
        )
    ]
    return board, records, shares, log


async def test_batches_weigh_known_voters_exactly_as_one_vote_per_transaction(make_client):
    client = await make_client(TRUST_MODE="default")
    app = client.app
    db = app[DATABASE]
    plan = trust_plan()
    one_by_one, grouped, batched = [await new_board(client, name) for name in ("single", "group", "batch")]

    for vote in trusted_votes(app, one_by_one, plan, "single"):
        assert isinstance(await store.record_vote(db, vote), ComparisonRow)
    queue = app[VOTES]
    batches_before = queue.batches
    outcomes = await asyncio.gather(*(queue.submit(v) for v in trusted_votes(app, grouped, plan, "group")))
    assert all(isinstance(o, ComparisonRow) for o in outcomes)
    assert queue.batches - batches_before < PLAN_VOTES / 2  # really grouped
    # What POST /comparisons/batch runs for its votes.
    outcomes = await store.record_votes(db, trusted_votes(app, batched, plan, "batch"))
    assert all(isinstance(o, ComparisonRow) for o in outcomes)

    expected = await stored_state(db, one_by_one, plan_voters("single"))
    board, records, shares, _ = expected
    # The plan really weighs: the disagreeing voter and the capped votes count less.
    assert records["v3"][3] < records["v1"][3] < PLAN_VOTES / 4
    assert any(weight < votes for votes, weight in shares.values())
    assert sum(entity[4] for entity in board) < 2 * PLAN_VOTES
    assert await stored_state(db, grouped, plan_voters("group")) == expected  # identical, not approximately
    assert await stored_state(db, batched, plan_voters("batch")) == expected


async def test_concurrent_lone_votes_of_one_voter_count_every_vote_in_its_record(client):
    """Two workers' lone votes by one voter on the same pair: each reads the voter's
    shares only once it holds the voter's lock, so none is lost."""
    db = client.app[DATABASE]
    first, second = (await new_board(client, "race"))[:2]
    settings = client.app[SETTINGS]
    votes = 12
    vote = store.Vote(
        first,
        second,
        first,
        settings.elo_k_factor,
        voter="u:race",
        trust=settings.trust,
        prior=settings.prior,
    )
    await asyncio.gather(*(store.record_vote(db, vote) for _ in range(votes)))
    records = await db.fetch_all(Query(sa.select(voters_table).where(voters_table.c.voter == "u:race")))
    assert [(r["votes"], r["touched"]) for r in records] == [(votes, 2)]
    shares = await db.fetch_all(Query(sa.select(voter_entities).where(voter_entities.c.voter == "u:race")))
    assert sorted(r["votes"] for r in shares) == [votes, votes]


async def test_votes_on_behalf_of_known_voters_store_the_same_through_http_batches(make_auth_client):
    """A key's end users voting through the group commit (concurrent POST /comparisons/)
    and through POST /comparisons/batch leave what the same votes leave one request at a
    time, in the order they were stored."""
    client = await make_auth_client(TRUST_MODE="default")
    app = client.server.app
    db = app[DATABASE]
    assert (await sign_up(client, *ADMIN)).status == 200
    admin = bearer(await log_in(client, *ADMIN))
    resp = await client.post("/auth/api-keys", json={"scopes": ["vote", "write"]}, headers=admin)
    assert resp.status == 200, await resp.text()
    key = await resp.json()
    by_key = {"X-API-Key": key["key"]}
    plan = trust_plan()
    boards = {tag: await new_board(client, tag, admin) for tag in ("single", "group", "replay", "batch")}

    def body(tag: str, a: int, b: int, winner: int | None, voter: str) -> dict:
        ids = boards[tag]
        return {
            "entity1_id": ids[a],
            "entity2_id": ids[b],
            "selected_entity_id": None if winner is None else ids[winner],
            "voter": f"{tag}-{voter}",
        }

    def names(tag: str) -> dict[str, str]:
        return {app[VOTER_IDS].on_behalf_of(key["id"], f"{tag}-v{n}"): f"v{n}" for n in range(4)}

    async def one_at_a_time(tag: str, votes) -> None:
        for a, b, winner, voter in votes:
            resp = await client.post("/comparisons/", json=body(tag, a, b, winner, voter), headers=by_key)
            assert resp.status == 200, await resp.text()

    # The group commit takes the votes in the order their requests reach it: replay that.
    batches_before = app[VOTES].batches
    answers = await asyncio.gather(
        *(
            client.post("/comparisons/", json=body("group", a, b, w, v), headers=by_key)
            for a, b, w, v, _ in plan
        )
    )
    assert [r.status for r in answers] == [200] * PLAN_VOTES
    assert app[VOTES].batches - batches_before < PLAN_VOTES / 2  # really grouped
    _, _, _, arrived = await stored_state(db, boards["group"], names("group"))
    await one_at_a_time("replay", [(a, b, w, v) for a, b, w, v, *_ in arrived])
    replayed = await stored_state(db, boards["replay"], names("replay"))
    records = replayed[1]
    assert records["v3"][1] < records["v1"][1]  # the disagreeing voter's evidence is lower
    assert any(weight < votes for votes, _, _, weight in records.values())  # votes were weighed
    assert await stored_state(db, boards["group"], names("group")) == replayed

    resp = await client.post(
        "/comparisons/batch",
        json={"votes": [body("batch", a, b, w, v) for a, b, w, v, _ in plan]},
        headers=by_key,
    )
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["stored"] == PLAN_VOTES
    await one_at_a_time("single", [(a, b, w, v) for a, b, w, v, _ in plan])
    assert await stored_state(db, boards["batch"], names("batch")) == await stored_state(
        db, boards["single"], names("single")
    )
