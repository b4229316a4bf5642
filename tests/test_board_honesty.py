"""What a board does not know yet, through HTTP: provisional entries listed after the
settled ones (opt-in, the original /ratings unchanged), rank intervals, and progress."""

from __future__ import annotations

import json

import numpy as np
import pytest

from compere.domain import honesty
from compere.settings import SettingsError, load_settings


async def vote(client, a, b, winner, **extra):
    body = {"entity1_id": a, "entity2_id": b, "selected_entity_id": winner, **extra}
    resp = await client.post("/comparisons/", json=body)
    assert resp.status == 200, await resp.text()
    return resp


async def _settled_three_and_two_newcomers(client, create_entities):
    """A, B, C well measured (A > B > C); D has one win over A; E has no votes."""
    a, b, c, d, e = (x["id"] for x in await create_entities(5))
    for _ in range(4):  # two wins in three for the stronger side: every vote informative
        for x, y in ((a, b), (b, c), (a, c)):
            await vote(client, x, y, x)
            await vote(client, x, y, x)
            await vote(client, x, y, y)
    await vote(client, d, a, d)
    return a, b, c, d, e


async def test_provisional_entries_come_after_the_settled_ones_only_when_asked(client, create_entities):
    a, b, c, d, e = await _settled_three_and_two_newcomers(client, create_entities)
    plain = await (await client.get("/ratings", params={"by": "score"})).json()
    # The original call keeps its fields and its order: the newcomer with one win sits high.
    assert all("provisional" not in x and "rank_interval_95" not in x for x in plain)
    order = [x["id"] for x in plain]
    assert order.index(d) < order.index(c)

    full = await client.get("/ratings", params={"detail": "full"})
    assert full.status == 200 and full.headers["X-Total-Count"] == "5"
    board = await full.json()
    assert [x["id"] for x in board][:3] == [a, b, c]
    assert {x["id"] for x in board[3:]} == {d, e}
    flags = {x["id"]: x["provisional"] for x in board}
    assert flags == {a: False, b: False, c: False, d: True, e: True}

    inline = await (await client.get("/ratings", params={"detail": "full", "provisional": "inline"})).json()
    assert [x["id"] for x in inline] == order  # in place: the score order
    paged = await (await client.get("/ratings", params={"detail": "full", "skip": 3, "limit": 2})).json()
    assert [x["id"] for x in paged] == [x["id"] for x in board[3:]]


async def test_rank_intervals_are_narrow_for_the_settled_and_wide_for_newcomers(client, create_entities):
    a, _, c, _, e = await _settled_three_and_two_newcomers(client, create_entities)
    for model in ("online", "bt"):
        board = await (await client.get("/ratings", params={"detail": "full", "model": model})).json()
        intervals = {x["id"]: x["rank_interval_95"] for x in board}
        for low, high in intervals.values():
            assert 1 <= low <= high <= 5
        assert intervals[e][1] - intervals[e][0] >= 3  # never compared: could be anywhere
        assert intervals[c][1] >= 4  # beaten by A and B in most votes
        assert intervals[a][0] == 1


async def test_detail_full_with_an_explicit_rating_order_is_a_clear_422(client, create_entities):
    await create_entities(2)
    resp = await client.get("/ratings", params={"detail": "full", "by": "rating"})
    assert resp.status == 422
    assert "detail=full" in str((await resp.json())["detail"])
    bad = await client.get("/ratings", params={"detail": "everything"})
    assert bad.status == 422


async def test_settings_move_the_provisional_threshold(make_client):
    client = await make_client(PROVISIONAL_MIN_VOTES="0", PROVISIONAL_MAX_UNCERTAINTY="2")
    ids = [(await (await client.post("/entities/", json={"name": f"n{i}"})).json())["id"] for i in range(3)]
    board = await (await client.get("/ratings", params={"detail": "full"})).json()
    assert [x["provisional"] for x in board] == [False, False, False]
    assert sorted(x["id"] for x in board) == ids


async def test_progress_reports_expected_tau_settled_pairs_and_votes_needed(client, create_entities):
    ids = [x["id"] for x in await create_entities(8)]
    empty = await client.get("/ratings/progress")
    assert empty.status == 200
    before = await empty.json()
    assert before["entities"] == 8 and before["votes"] == 0
    assert before["expected_tau"] == pytest.approx(0.0, abs=1e-9)
    assert before["settled_adjacent_share"] == 0.0
    assert before["votes_to_target"] > 0 and before["target_tau"] == 0.8
    for _ in range(6):  # a clear order 0 > 1 > ... > 7
        for i in range(7):
            await vote(client, ids[i], ids[i + 1], ids[i])
    after = await (await client.get("/ratings/progress", params={"target_tau": 0.5, "top_k": 3})).json()
    assert after["votes"] == 42
    assert 0.3 < after["expected_tau"] < 1.0
    assert 0.0 <= after["settled_adjacent_share"] <= 1.0
    assert after["top_k"] == 3 and after["target_tau"] == 0.5
    assert after["votes_to_target"] < before["votes_to_target"]
    reached = await (await client.get("/ratings/progress", params={"target_tau": 0.1})).json()
    assert reached["votes_to_target"] == 0
    bt = await (await client.get("/ratings/progress", params={"model": "bt"})).json()
    assert bt["model"] == "bt" and 0.3 < bt["expected_tau"] < 1.0
    for bad in ({"target_tau": 1.5}, {"top_k": 0}, {"model": "elo"}):
        resp = await client.get("/ratings/progress", params=bad)
        assert resp.status == 422, bad
        assert "detail" in await resp.json()


def test_rank_intervals_cover_a_known_order_and_widen_with_uncertainty():
    mu = np.array([3.0, 2.0, 1.0, 0.0])
    lower, upper = honesty.rank_intervals(mu, np.full(4, 0.01))
    assert lower.tolist() == [1, 2, 3, 4] and upper.tolist() == [1, 2, 3, 4]
    lower, upper = honesty.rank_intervals(mu, np.full(4, 3.0))
    assert lower.min() == 1 and upper.max() == 4 and (upper - lower).min() >= 2


def test_expected_tau_grows_with_more_votes_and_the_search_finds_the_target():
    rng = np.random.default_rng(3)
    mu = rng.normal(0.0, 1.0, 60)
    sigma = np.full(60, 0.8)
    now = honesty.expected_tau(mu, sigma)
    later = honesty.expected_tau(mu, sigma, votes=600, information=0.2)
    assert now < later < 1.0
    needed = honesty.votes_to_tau(mu, sigma, 0.8, 0.2)
    assert needed is not None and needed > 0
    assert honesty.expected_tau(mu, sigma, votes=needed, information=0.2) >= 0.8 - 1e-9
    assert honesty.expected_tau(mu, sigma, votes=0.9 * needed, information=0.2) < 0.8


# --- verdicts: tie and both-bad stored and exported apart ---------------------------------


async def test_tie_and_both_bad_are_stored_and_exported_apart(client, create_entities):
    a, b = (x["id"] for x in await create_entities(2))
    won = await (await vote(client, a, b, a)).json()
    tie = await (await vote(client, a, b, None)).json()  # the original's tie: still valid
    bad = await (await vote(client, a, b, None, verdict="both_bad")).json()
    explicit = await (await vote(client, a, b, None, verdict="tie")).json()
    assert [won["verdict"], tie["verdict"], bad["verdict"], explicit["verdict"]] == [
        "win",
        "tie",
        "both_bad",
        "tie",
    ]
    again = await (await client.get(f"/comparisons/{bad['id']}")).json()
    assert again["verdict"] == "both_bad" and again["selected_entity_id"] is None
    listed = {x["id"]: x["verdict"] for x in await (await client.get("/comparisons/")).json()}
    assert listed[bad["id"]] == "both_bad" and listed[tie["id"]] == "tie"
    for body, message in (
        ({"selected_entity_id": a, "verdict": "both_bad"}, "both_bad"),
        ({"selected_entity_id": None, "verdict": "win"}, "win"),
        ({"selected_entity_id": a, "verdict": "draw"}, None),
    ):
        resp = await client.post("/comparisons/", json={"entity1_id": a, "entity2_id": b, **body})
        assert resp.status in (400, 422), body
        detail = (await resp.json())["detail"]
        assert message is None or message in str(detail)
    # Exports keep them apart: the vote log's own column, and the Arena battle spelling.
    exported = await client.get("/export/comparisons", params={"format": "jsonl"})
    assert exported.status == 200
    rows = {r["id"]: r for r in map(json.loads, (await exported.text()).splitlines())}
    assert [rows[x["id"]]["verdict"] for x in (won, tie, bad)] == ["win", "tie", "both_bad"]
    arena = await client.get("/comparisons/export/preferences", params={"format": "arena"})
    winners = [json.loads(line)["winner"] for line in (await arena.text()).splitlines()]
    assert winners == ["model_a", "tie", "tie (bothbad)", "tie"]
    # Both-bad counts as a tie in the online models (the entities' tie counters).
    entity = await (await client.get(f"/entities/{a}")).json()
    assert entity["ties"] == 3 and entity["wins"] == 1


# --- categories: one vote log, a board per category ---------------------------------------


async def test_boards_per_category_come_from_one_vote_log(client, create_entities):
    a, b, c = (x["id"] for x in await create_entities(3))
    for _ in range(6):
        await vote(client, a, b, a, category="helpfulness")
        await vote(client, b, c, b, category="helpfulness")
        await vote(client, b, a, b, category="style")
        await vote(client, c, b, c, category="style")
    await vote(client, a, c, a)  # no category: only on the overall boards
    helpful = await (await client.get("/ratings", params={"category": "helpfulness"})).json()
    style = await (await client.get("/ratings", params={"category": "style"})).json()
    assert [x["id"] for x in helpful] == [a, b, c]
    assert [x["id"] for x in style] == [c, b, a]
    overall = await (await client.get("/ratings", params={"model": "bt"})).json()
    assert len(overall) == 3
    detailed = await (await client.get("/ratings", params={"category": "style", "detail": "full"})).json()
    assert [x["id"] for x in detailed if not x["provisional"]][:1] in ([c], [])
    assert all("rank_interval_95" in x for x in detailed)
    listed = await (await client.get("/ratings/categories")).json()
    assert listed == [{"category": "helpfulness", "votes": 12}, {"category": "style", "votes": 12}]
    progress = await (await client.get("/ratings/progress", params={"category": "style"})).json()
    assert progress["category"] == "style" and progress["model"] == "bt" and progress["votes"] == 12
    nothing = await (await client.get("/ratings", params={"category": "unknown"})).json()
    assert {x["score"] for x in nothing} == {0.0}
    too_long = await client.get("/ratings", params={"category": "x" * 101})
    assert too_long.status == 422


async def test_pairs_can_focus_on_what_one_category_does_not_know(client, create_entities):
    ids = [x["id"] for x in await create_entities(4)]
    # In "style" only 0 and 1 were compared; overall 2 and 3 are the better known pair.
    for k in range(8):
        await vote(client, ids[0], ids[1], ids[k % 2], category="style")
    for k in range(16):
        await vote(client, ids[2], ids[3], ids[2 + k % 2])
    unknown = frozenset(ids[2:])

    async def served(**params) -> int:
        hits = 0
        for _ in range(10):
            pair = await (
                await client.get("/mab/next_comparison", params={"strategy": "active", **params})
            ).json()
            hits += frozenset((pair["entity1"]["id"], pair["entity2"]["id"])) == unknown
        return hits

    assert await served(category="style") >= 6  # the pair "style" knows nothing about
    assert await served() <= 4  # overall that pair is the best known
    bad = await client.get("/mab/next_comparison", params={"category": ""})
    assert bad.status == 422


# --- the top_k objective --------------------------------------------------------------------


def test_top_k_weights_send_votes_to_the_top_instead_of_the_crowded_middle():
    from compere.domain.bayes import DEFAULT_PRIOR
    from compere.domain.selection import expected_shrinkage

    mu = np.linspace(-3.0, 3.0, 13)
    sigma = np.full(13, 0.8)
    i, j = np.triu_indices(13, 1)
    full = expected_shrinkage(mu[i], sigma[i], mu[j], sigma[j], DEFAULT_PRIOR)
    top = expected_shrinkage(mu[i], sigma[i], mu[j], sigma[j], DEFAULT_PRIOR, top_threshold=2.25)
    best_full = (i[np.argmax(full)], j[np.argmax(full)])
    best_top = (i[np.argmax(top)], j[np.argmax(top)])
    assert abs(mu[list(best_full)]).max() <= 0.5  # the crowded middle
    assert mu[list(best_top)].min() >= 1.5  # the top of the board


async def test_the_top_k_objective_serves_pairs_from_a_large_board(make_client):
    client = await make_client(RANKING_OBJECTIVE="top_k", RANKING_TOP_K="3")
    ids = [(await (await client.post("/entities/", json={"name": f"t{k}"})).json())["id"] for k in range(70)]
    for k in range(1, 30):  # the first entity beats many: the strongest by far
        await vote(client, ids[0], ids[k], ids[0])
    for _ in range(5):
        resp = await client.get("/mab/next_comparison", params={"strategy": "active"})
        assert resp.status == 200
        pair = await resp.json()
        assert pair["entity1"]["id"] != pair["entity2"]["id"]
        assert 0 < pair["selection_probability"] <= 1
    with pytest.raises(SettingsError, match="RANKING_OBJECTIVE"):
        load_settings({"RANKING_OBJECTIVE": "top"})


# --- verdicts and categories through the group commit, per project ---------------------


async def test_verdicts_and_categories_ride_batches_and_keyed_votes_and_stay_in_their_project(
    client, create_entities
):
    resp = await client.post("/projects/", json={"slug": "tea", "name": "Tea"})
    assert resp.status in (200, 201), await resp.text()
    tea = []
    for i in range(3):
        resp = await client.post("/projects/tea/entities/", json={"name": f"tea {i}"})
        tea.append((await resp.json())["id"])
    a, b, c = tea
    batch = [
        {"entity1_id": a, "entity2_id": b, "selected_entity_id": a, "category": "style"},
        {
            "entity1_id": b,
            "entity2_id": c,
            "selected_entity_id": None,
            "verdict": "both_bad",
            "category": "style",
        },
        {"entity1_id": a, "entity2_id": c, "selected_entity_id": None},
    ]
    resp = await client.post("/projects/tea/comparisons/batch", json={"votes": batch})
    assert resp.status == 200, await resp.text()
    stored = [r["comparison"] for r in (await resp.json())["results"]]
    assert [(x["verdict"], x["category"]) for x in stored] == [
        ("win", "style"),
        ("both_bad", "style"),
        ("tie", None),
    ]
    # Read back from the database, not the answer: the batch insert wrote both columns.
    listed = {x["id"]: x for x in await (await client.get("/projects/tea/comparisons/")).json()}
    assert [(listed[x["id"]]["verdict"], listed[x["id"]]["category"]) for x in stored] == [
        ("win", "style"),
        ("both_bad", "style"),
        ("tie", None),
    ]

    # A vote with an Idempotency-Key goes through the batch writer too (its answer is recorded).
    x, y = (e["id"] for e in await create_entities(2))
    keyed = await client.post(
        "/comparisons/",
        json={
            "entity1_id": x,
            "entity2_id": y,
            "selected_entity_id": None,
            "verdict": "both_bad",
            "category": "taste",
        },
        headers={"Idempotency-Key": "both-bad-taste-1"},
    )
    assert keyed.status == 200, await keyed.text()
    again = await (await client.get(f"/comparisons/{(await keyed.json())['id']}")).json()
    assert (again["verdict"], again["category"]) == ("both_bad", "taste")

    # Each project's categories, boards and progress are its own.
    assert await (await client.get("/projects/tea/ratings/categories")).json() == [
        {"category": "style", "votes": 2}
    ]
    assert await (await client.get("/ratings/categories")).json() == [{"category": "taste", "votes": 1}]
    full = await client.get("/projects/tea/ratings", params={"detail": "full"})
    assert full.status == 200 and full.headers["X-Total-Count"] == "3"
    assert {e["id"] for e in await full.json()} == {a, b, c}
    assert all(e["provisional"] and "rank_interval_95" in e for e in await full.json())
    progress = await (await client.get("/projects/tea/ratings/progress")).json()
    assert (progress["entities"], progress["votes"]) == (3, 3)
    style = await (await client.get("/projects/tea/ratings", params={"category": "style"})).json()
    assert {e["id"] for e in style} == {a, b, c}
