"""Per-project trust mode, provisional thresholds and ranking objective, through HTTP.

One deployment, several projects fed the same votes: each project weighs them by its
own trust mode (online scores, the fitted board, the voters report), ``default`` keeps
following the deployment's ``TRUST_MODE``, a change of mode replays the project's log in
the same request, and ``rebuild-ratings`` reproduces every project's state exactly."""

from __future__ import annotations

import asyncio
import itertools
import shutil
from typing import Any

import pytest
import sqlalchemy as sa

from compere.cli import _rebuild
from compere.http.app import create_app
from compere.http.keys import SETTINGS
from compere.settings import load_settings
from compere.storage.connect import connect
from compere.storage.database import Query
from compere.storage.migrations import migrate, sql_root
from tests.helpers import ADMIN, NO_DOTENV, Rigging, bearer, log_in, sign_up

ENTITIES, TARGET, HONEST = Rigging.ENTITIES, Rigging.TARGET, Rigging.HONEST
HONEST_VOTES_EACH, ATTACKERS, RIGGED_EACH = Rigging.HONEST_VOTES_EACH, Rigging.ATTACKERS, Rigging.RIGGED_EACH
PAIRS = list(itertools.combinations(range(ENTITIES), 2))
NEW_SETTINGS = (
    "trust_mode",
    "provisional_max_uncertainty",
    "provisional_min_votes",
    "ranking_objective",
    "ranking_top_k",
)


async def _user(client: Any, name: str, admin: str) -> str:
    resp = await sign_up(client, name, "lantern-heron-quartz-42", token=admin)
    assert resp.status == 200, await resp.text()
    return await log_in(client, name, "lantern-heron-quartz-42")


def _base(slug: str) -> str:
    return "" if slug == "default" else f"/projects/{slug}"


async def _project(client: Any, admin: str, slug: str, **settings: Any) -> None:
    body = {"slug": slug, "name": slug.title(), "visibility": "public", **settings}
    resp = await client.post("/projects/", json=body, headers=bearer(admin))
    assert resp.status == 200, await resp.text()


async def _entities(client: Any, admin: str, slug: str) -> dict[str, int]:
    ids = {}
    for k in range(ENTITIES):
        resp = await client.post(f"{_base(slug)}/entities/", json={"name": f"e{k}"}, headers=bearer(admin))
        assert resp.status == 200, await resp.text()
        ids[f"e{k}"] = (await resp.json())["id"]
    return ids


async def _vote(client: Any, token: str, slug: str, ids: dict[str, int], a: int, b: int, winner: int) -> None:
    body = {"entity1_id": ids[f"e{a}"], "entity2_id": ids[f"e{b}"], "selected_entity_id": ids[f"e{winner}"]}
    resp = await client.post(f"{_base(slug)}/comparisons/", json=body, headers=bearer(token))
    assert resp.status == 200, await resp.text()


async def _honest_votes(client: Any, admin: str, ids: dict[str, dict[str, int]]) -> None:
    """The same votes in every project (``ids`` by slug), in the same order: honest voters
    pick the stronger side of a fixed round of pairs."""
    honest = [await _user(client, f"honest{h}", admin) for h in range(HONEST)]
    for k in range(HONEST_VOTES_EACH):
        for h, token in enumerate(honest):
            a, b = PAIRS[(k * HONEST + h * 17) % len(PAIRS)]
            for slug, own in ids.items():
                await _vote(client, token, slug, own, a, b, min(a, b))


async def _rigged_votes(client: Any, admin: str, ids: dict[str, dict[str, int]]) -> None:
    """Then riggers vote e7 over stronger entities, the same in every project."""
    riggers = [await _user(client, f"rigger{x}", admin) for x in range(ATTACKERS)]
    for token in riggers:
        for k in range(RIGGED_EACH):
            for slug, own in ids.items():
                await _vote(client, token, slug, own, TARGET, k % TARGET, TARGET)


async def _board(client: Any, token: str, slug: str, **params: str) -> list[dict[str, Any]]:
    resp = await client.get(
        f"{_base(slug)}/ratings", params={"limit": "100", **params}, headers=bearer(token)
    )
    assert resp.status == 200, await resp.text()
    return list(await resp.json())


async def _place(client: Any, token: str, slug: str, **params: str) -> int:
    return [e["name"] for e in await _board(client, token, slug, **params)].index(f"e{TARGET}") + 1


async def _state(client: Any, token: str, slug: str) -> tuple[dict[str, tuple[Any, ...]], list[Any]]:
    """What the stored, derived state says: every entity's rating, strength and counters
    (by name), and the voter records."""
    board = {
        e["name"]: (e["rating"], e["score"], e["uncertainty"], e["wins"], e["losses"], e["ties"])
        for e in await _board(client, token, slug, by="score")
    }
    resp = await client.get(f"{_base(slug)}/voters", headers=bearer(token))
    assert resp.status == 200, await resp.text()
    # Entity ids differ between projects: a voter's most-influenced entity is named instead.
    names = {e["id"]: e["name"] for e in await _board(client, token, slug)}
    voters = [
        {**v, "max_influence_entity_id": names.get(v["max_influence_entity_id"])}
        for v in (await resp.json())["voters"]
    ]
    return board, voters


async def _deployment(make_auth_client: Any, **modes: str) -> tuple[Any, str]:
    """A deployment with TRUST_MODE=default, its superuser's token, and a public project
    per ``slug=trust_mode``."""
    client = await make_auth_client(TRUST_MODE="default")
    assert (await sign_up(client, *ADMIN)).status == 200
    admin = await log_in(client, *ADMIN)
    for slug, mode in modes.items():
        await _project(client, admin, slug, trust_mode=mode)
    return client, admin


async def test_each_project_weighs_the_same_votes_by_its_own_trust_mode(make_auth_client):
    client, admin = await _deployment(make_auth_client, loose="off", tight="strict", stated="default")
    slugs = ["default", "loose", "tight", "stated"]
    honest_place = {}
    ids = {slug: await _entities(client, admin, slug) for slug in slugs}
    await _honest_votes(client, admin, ids)
    for slug in slugs:
        honest_place[slug] = (
            await _place(client, admin, slug, model="bt"),
            await _place(client, admin, slug, by="score"),
        )
    await _rigged_votes(client, admin, ids)

    # Without the defence the rigged entity climbs, on the fitted and the online board...
    loose_bt, loose_online = honest_place["loose"]
    assert loose_bt - await _place(client, admin, "loose", model="bt") >= 3
    assert loose_online - await _place(client, admin, "loose", by="score") >= 3
    # ... with the strict defence it barely moves.
    tight_bt, tight_online = honest_place["tight"]
    assert tight_bt - await _place(client, admin, "tight", model="bt") <= 1
    assert tight_online - await _place(client, admin, "tight", by="score") <= 1
    score = {}
    for slug in slugs:
        target = next(e for e in await _board(client, admin, slug, by="score") if e["name"] == f"e{TARGET}")
        score[slug] = target["score"]
    assert score["loose"] > score["default"] >= score["tight"]

    # Each project's voters report speaks of its own mode; the riggers count fully on the
    # board without the defence and next to nothing with the strict one.
    reports = {}
    for slug in slugs:
        reports[slug] = await (await client.get(f"{_base(slug)}/voters", headers=bearer(admin))).json()
    assert [reports[slug]["mode"] for slug in slugs] == ["default", "off", "strict", "default"]

    def riggers_weight(slug: str) -> float:
        return max(v["board_weight"] for v in reports[slug]["voters"] if v["votes"] == RIGGED_EACH)

    assert riggers_weight("loose") == 1.0 and riggers_weight("tight") < 0.05

    # `default`, which sets nothing, follows the deployment: exactly a project that says "default".
    assert await _state(client, admin, "default") == await _state(client, admin, "stated")
    fitted = {}
    for slug in ("default", "stated"):
        board = await _board(client, admin, slug, model="bt")
        fitted[slug] = [(e["name"], e["rank"], e["score"], e["uncertainty"]) for e in board]
    # The fit sums in entity-id order, which differs: equal up to the last bit.
    assert [f[:2] for f in fitted["default"]] == [f[:2] for f in fitted["stated"]]
    assert [f[2:] for f in fitted["default"]] == [pytest.approx(f[2:], rel=1e-12) for f in fitted["stated"]]
    shown = await (await client.get("/projects/default", headers=bearer(admin))).json()
    assert shown["overrides"]["trust_mode"] is None and shown["settings"]["trust_mode"] == "default"
    shown = await (await client.get("/projects/tight", headers=bearer(admin))).json()
    assert shown["overrides"]["trust_mode"] == "strict" and shown["settings"]["trust_mode"] == "strict"

    # The same database read by a deployment with TRUST_MODE=off: `default` follows it, the
    # projects that chose a mode keep theirs.
    other = await make_auth_client(TRUST_MODE="off")
    assert (await (await other.get("/voters", headers=bearer(admin))).json())["mode"] == "off"
    assert (await (await other.get("/projects/tight/voters", headers=bearer(admin))).json())[
        "mode"
    ] == "strict"
    default_bt = await _board(other, admin, "default", model="bt")
    loose_bt_board = await _board(other, admin, "loose", model="bt")
    assert [e["name"] for e in default_bt] == [e["name"] for e in loose_bt_board]
    assert [e["score"] for e in default_bt] == pytest.approx([e["score"] for e in loose_bt_board], rel=1e-12)


async def test_changing_the_trust_mode_replays_the_project_and_rebuild_ratings_agrees(make_auth_client):
    client, admin = await _deployment(make_auth_client, loose="off", tight="strict")
    slugs = ["default", "loose", "tight"]
    ids = {slug: await _entities(client, admin, slug) for slug in slugs}
    await _honest_votes(client, admin, ids)
    await _rigged_votes(client, admin, ids)
    votes = HONEST * HONEST_VOTES_EACH + ATTACKERS * RIGGED_EACH
    online = {slug: await _state(client, admin, slug) for slug in slugs}
    assert online["loose"] != online["tight"] != online["default"]

    # rebuild-ratings replays every project under its own mode: nothing moves.
    assert await _rebuild(client.server.app[SETTINGS]) == 3 * votes
    for slug in slugs:
        assert await _state(client, admin, slug) == online[slug], slug  # exactly, not approximately

    # A change of mode answers with the project replayed under the new one: the strict
    # project now holds exactly what the project that was always `off` holds.
    resp = await client.patch("/projects/tight", json={"trust_mode": "off"}, headers=bearer(admin))
    assert resp.status == 200, await resp.text()
    changed = await resp.json()
    assert changed["ratings_rebuilt"] == votes and changed["settings"]["trust_mode"] == "off"
    assert await _state(client, admin, "tight") == online["loose"]
    # Back again: exactly where it was.
    resp = await client.patch("/projects/tight", json={"trust_mode": "strict"}, headers=bearer(admin))
    assert (await resp.json())["ratings_rebuilt"] == votes
    assert await _state(client, admin, "tight") == online["tight"]
    # Following the deployment again (here "default") replays it under that: as `default`.
    resp = await client.patch("/projects/tight", json={"trust_mode": None}, headers=bearer(admin))
    assert (await resp.json())["ratings_rebuilt"] == votes
    assert await _state(client, admin, "tight") == online["default"]
    # Saying the mode already in force, or changing anything else, replays nothing.
    for body in ({"trust_mode": "default"}, {"name": "Tight", "provisional_min_votes": 2}):
        resp = await client.patch("/projects/tight", json=body, headers=bearer(admin))
        assert resp.status == 200 and (await resp.json())["ratings_rebuilt"] is None
    # Votes after the change are weighed by the new mode, and rebuild-ratings still agrees.
    resp = await client.patch("/projects/loose", json={"trust_mode": "strict"}, headers=bearer(admin))
    assert (await resp.json())["ratings_rebuilt"] == votes
    ids = {e["name"]: e["id"] for e in await _board(client, admin, "loose")}
    rigger = await log_in(client, "rigger0", "lantern-heron-quartz-42")
    for k in range(4):
        await _vote(client, rigger, "loose", ids, TARGET, k, TARGET)
    after = {slug: await _state(client, admin, slug) for slug in slugs}
    assert await _rebuild(client.server.app[SETTINGS]) == 3 * votes + 4
    for slug in slugs:
        assert await _state(client, admin, slug) == after[slug], slug


async def test_a_project_marks_provisional_entries_by_its_own_thresholds(make_client):
    client = await make_client()
    resp = await client.post(
        "/projects/",
        json={
            "slug": "lenient",
            "name": "Lenient",
            "provisional_min_votes": 0,
            "provisional_max_uncertainty": 5,
        },
    )
    assert resp.status == 200, await resp.text()
    for slug in ("default", "lenient"):
        ids = []
        for name in ("a", "b", "c"):
            resp = await client.post(f"{_base(slug)}/entities/", json={"name": name})
            ids.append((await resp.json())["id"])
        for _ in range(3):
            body = {"entity1_id": ids[0], "entity2_id": ids[1], "selected_entity_id": ids[0]}
            assert (await client.post(f"{_base(slug)}/comparisons/", json=body)).status == 200
    flags = {}
    for slug in ("default", "lenient"):
        resp = await client.get(f"{_base(slug)}/ratings", params={"detail": "full", "provisional": "inline"})
        assert resp.status == 200, await resp.text()
        flags[slug] = {e["name"]: e["provisional"] for e in await resp.json()}
    # The deployment's thresholds (5 votes, 0.75): everything is provisional after 3 votes.
    assert flags["default"] == {"a": True, "b": True, "c": True}
    # The project's: an entry below 5 logits of uncertainty is settled, whatever its votes.
    assert flags["lenient"] == {"a": False, "b": False, "c": False}
    shown = await (await client.get("/projects/lenient")).json()
    assert shown["settings"]["provisional_min_votes"] == 0
    assert shown["settings"]["provisional_max_uncertainty"] == 5.0
    assert (await (await client.get("/projects/default")).json())["settings"]["provisional_min_votes"] == 5


async def test_a_top_k_project_serves_pairs_for_its_objective(make_client):
    client = await make_client()
    for slug, settings in (("best", {"ranking_objective": "top_k", "ranking_top_k": 2}), ("whole", {})):
        resp = await client.post(
            "/projects/",
            json={"slug": slug, "name": slug, "strategy": "active", "exploration": 0, **settings},
        )
        assert resp.status == 200, await resp.text()
        ids = []
        for k in range(12):
            resp = await client.post(f"/projects/{slug}/entities/", json={"name": f"e{k}"})
            ids.append((await resp.json())["id"])
        # A clear order: e0 beats everyone below it, several times.
        for _ in range(2):
            for a, b in itertools.combinations(range(12), 2):
                body = {"entity1_id": ids[a], "entity2_id": ids[b], "selected_entity_id": ids[a]}
                assert (await client.post(f"/projects/{slug}/comparisons/", json=body)).status == 200
    top = {}
    for slug in ("best", "whole"):
        names = set()
        for _ in range(30):
            resp = await client.get(f"/projects/{slug}/mab/next_comparison")
            assert resp.status == 200, await resp.text()
            pair = await resp.json()
            names |= {pair["entity1"]["name"], pair["entity2"]["name"]}
            top[slug] = top.get(slug, 0) + sum(
                pair[side]["name"] in ("e0", "e1", "e2") for side in ("entity1", "entity2")
            )
    # The top_k project spends its pairs on the top 2 and the contenders at the edge.
    assert top["best"] >= 50, top
    assert top["best"] > top["whole"], top
    progress = await (await client.get("/projects/best/ratings/progress")).json()
    assert progress["top_k"] == 2  # progress speaks of the project's K unless asked otherwise
    assert (await (await client.get("/projects/whole/ratings/progress")).json())["top_k"] == 10


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"trust_mode": "paranoid"}, "trust_mode"),
        ({"trust_mode": 1}, "trust_mode"),
        ({"provisional_max_uncertainty": -1}, "provisional_max_uncertainty"),
        ({"provisional_max_uncertainty": 0}, "provisional_max_uncertainty"),
        ({"provisional_max_uncertainty": "wide"}, "provisional_max_uncertainty"),
        ({"provisional_min_votes": -1}, "provisional_min_votes"),
        ({"provisional_min_votes": 2.5}, "provisional_min_votes"),
        ({"provisional_min_votes": True}, "provisional_min_votes"),
        ({"ranking_objective": "top"}, "ranking_objective"),
        ({"ranking_top_k": 0}, "ranking_top_k"),
        ({"ranking_top_k": -3}, "ranking_top_k"),
        ({"ranking_top_k": 10_001}, "ranking_top_k"),
    ],
)
async def test_bad_settings_are_refused_naming_the_field(client, body, field):
    resp = await client.post("/projects/", json={"slug": "p", "name": "P"})
    assert resp.status == 200
    for method, path, sent in (
        ("PATCH", "/projects/p", body),
        ("POST", "/projects/", {"slug": "q", "name": "Q", **body}),
    ):
        resp = await client.request(method, path, json=sent)
        assert resp.status == 422, await resp.text()
        detail = (await resp.json())["detail"]
        assert any(item["loc"][-1] == field for item in detail), detail
    shown = await (await client.get("/projects/p")).json()
    assert all(value is None for value in shown["overrides"].values())  # nothing changed


async def test_votes_during_a_change_of_mode_wait_for_it_and_are_all_kept(make_auth_client):
    """The replay keeps votes out of every table it rewrites until it commits: a vote that
    arrives meanwhile waits (it must not take its entity locks first and then meet the
    replay writing those rows: a deadlock), and counts under the new mode."""
    client, admin = await _deployment(make_auth_client, busy="off")
    ids = await _entities(client, admin, "busy")
    votes = [
        {"entity1_id": ids[f"e{a}"], "entity2_id": ids[f"e{b}"], "selected_entity_id": ids[f"e{a}"]}
        for a, b in PAIRS
    ] * 15
    voters = [await _user(client, f"voter{v}", admin) for v in range(4)]
    for start in range(0, len(votes), 1000):
        batch = {"votes": votes[start : start + 1000]}
        resp = await client.post("/projects/busy/comparisons/batch", json=batch, headers=bearer(voters[0]))
        assert resp.status == 200, await resp.text()

    async def vote(k: int) -> int:
        await asyncio.sleep(0.002 * k)
        a, b = PAIRS[k % len(PAIRS)]
        body = {"entity1_id": ids[f"e{a}"], "entity2_id": ids[f"e{b}"], "selected_entity_id": ids[f"e{b}"]}
        resp = await client.post("/projects/busy/comparisons/", json=body, headers=bearer(voters[k % 4]))
        return resp.status

    async def change() -> Any:
        resp = await client.patch("/projects/busy", json={"trust_mode": "strict"}, headers=bearer(admin))
        assert resp.status == 200, await resp.text()
        return await resp.json()

    changed, *statuses = await asyncio.gather(change(), *(vote(k) for k in range(40)))
    assert statuses == [200] * 40
    assert len(votes) <= changed["ratings_rebuilt"] <= len(votes) + 40
    online = await _state(client, admin, "busy")
    assert await _rebuild(client.server.app[SETTINGS]) == len(votes) + 40
    assert await _state(client, admin, "busy") == online


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_url(request, tmp_path, postgres_factory) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'before.db'}"
    return str(postgres_factory())


async def test_0013_leaves_every_existing_project_following_the_deployment(
    fresh_url, tmp_path, aiohttp_client
):
    """A database at 0012 with a project that overrides settings: after 0013 the new
    columns are NULL, so every project keeps the deployment's values, and they can be set."""
    root = tmp_path / "sql"
    shutil.copytree(sql_root(), root)
    for path in root.glob("*/*.sql"):
        if int(path.name[:4]) > 12:
            path.unlink()
    db = await connect(fresh_url)
    try:
        await migrate(db, root)
        await db.execute(
            Query(
                sa.text(
                    "INSERT INTO projects (slug, name, description, visibility, strategy, daily_vote_cap,"
                    " created_at) VALUES ('old', 'Old', '', 'public', 'random', 3, '2026-01-01T00:00:00+00:00')"
                )
            )
        )
        assert (await migrate(db))[0] == "0013_project_ranking_settings.sql"  # and any later ones
        rows = await db.fetch_all(
            Query(
                sa.text(
                    "SELECT slug, trust_mode, provisional_max_uncertainty, provisional_min_votes,"
                    " ranking_objective, ranking_top_k FROM projects ORDER BY id"
                )
            )
        )
    finally:
        await db.close()
    assert [dict(row) for row in rows] == [
        {"slug": slug, **dict.fromkeys(NEW_SETTINGS)} for slug in ("default", "old")
    ]
    settings = load_settings(
        {"DATABASE_URL": fresh_url, "TRUST_MODE": "strict", "RANKING_TOP_K": "7"}, dotenv=NO_DOTENV
    )
    client = await aiohttp_client(await create_app(settings, configure_logs=False))
    for slug in ("default", "old"):
        shown = await (await client.get(f"/projects/{slug}")).json()
        assert {name: shown["overrides"][name] for name in NEW_SETTINGS} == dict.fromkeys(NEW_SETTINGS)
        assert {name: shown["settings"][name] for name in NEW_SETTINGS} == {
            "trust_mode": "strict",
            "provisional_max_uncertainty": 0.75,
            "provisional_min_votes": 5,
            "ranking_objective": "full",
            "ranking_top_k": 7,
        }
    assert shown["overrides"]["strategy"] == "random" and shown["overrides"]["daily_vote_cap"] == 3
    resp = await client.patch("/projects/old", json={"ranking_objective": "top_k", "trust_mode": "off"})
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["overrides"]["ranking_objective"] == "top_k"
