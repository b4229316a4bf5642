"""Projects through HTTP: isolation between boards, the roles, archiving, per-project
settings, and the database's own refusal of a cross-project comparison. Both backends."""

from __future__ import annotations

import orjson
import pytest
import sqlalchemy as sa

from compere.http.keys import DATABASE
from compere.storage.database import ConflictError, DatabaseError, Query
from compere.storage.tables import comparisons
from tests.helpers import ADMIN, bearer, log_in, sign_up


async def _project(client, slug: str, headers=None, **extra) -> dict:
    resp = await client.post(
        "/projects/", json={"slug": slug, "name": slug.title(), **extra}, headers=headers
    )
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def _entities(client, prefix: str, names: list[str], headers=None) -> list[int]:
    ids = []
    for name in names:
        resp = await client.post(f"{prefix}/entities/", json={"name": name}, headers=headers)
        assert resp.status == 200, await resp.text()
        ids.append((await resp.json())["id"])
    return ids


async def _vote(client, prefix: str, a: int, b: int, winner: int | None, headers=None):
    return await client.post(
        f"{prefix}/comparisons/",
        json={"entity1_id": a, "entity2_id": b, "selected_entity_id": winner},
        headers=headers,
    )


async def test_two_projects_side_by_side_never_see_each_other(client):
    await _project(client, "tea")
    await _project(client, "coffee")
    tea = await _entities(client, "/projects/tea", ["green", "black", "oolong"])
    coffee = await _entities(client, "/projects/coffee", ["espresso", "filter", "mocha", "latte"])
    assert (await _vote(client, "/projects/tea", tea[0], tea[1], tea[0])).status == 200
    voted = await _vote(client, "/projects/coffee", coffee[0], coffee[1], None)
    assert voted.status == 200
    coffee_vote = (await voted.json())["id"]

    # Entities, one by one and listed
    listed = await (await client.get("/projects/tea/entities/")).json()
    assert sorted(e["id"] for e in listed) == sorted(tea)
    assert (await client.get(f"/projects/tea/entities/{coffee[0]}")).status == 404
    assert (await client.put(f"/projects/tea/entities/{coffee[0]}", json={"name": "x"})).status == 404
    assert (await client.delete(f"/projects/tea/entities/{coffee[0]}")).status == 404
    # Votes
    tea_log = await (await client.get("/projects/tea/comparisons/")).json()
    assert [c["entity1_id"] for c in tea_log] == [tea[0]]
    assert (await client.get(f"/projects/tea/comparisons/{coffee_vote}")).status == 404
    assert (
        await client.post("/projects/tea/mab/update", params={"comparison_id": coffee_vote})
    ).status == 404
    # A comparison across the two is refused (the entity is not in the project)
    across = await _vote(client, "/projects/tea", tea[0], coffee[0], tea[0])
    assert across.status == 404 and "not found" in (await across.json())["detail"]
    # Pairs come from the project only
    for _ in range(10):
        pair = await (await client.get("/projects/coffee/mab/next_comparison")).json()
        assert {pair["entity1"]["id"], pair["entity2"]["id"]} <= set(coffee)
        content = await (await client.get("/projects/tea/comparisons/next")).json()
        assert {content["entity1"]["id"], content["entity2"]["id"]} <= set(tea)
    # Leaderboards, every model
    for params in ({}, {"by": "score"}, {"model": "bt"}, {"limit": "10"}):
        board = await (await client.get("/projects/tea/ratings", params=params)).json()
        assert sorted(e["id"] for e in board) == sorted(tea), params
    # Exports
    exported = (await (await client.get("/projects/coffee/export/entities")).read()).splitlines()
    assert sorted(orjson.loads(line)["id"] for line in exported) == sorted(coffee)
    votes = (await (await client.get("/projects/coffee/export/comparisons")).read()).splitlines()
    assert [orjson.loads(line)["id"] for line in votes] == [coffee_vote]
    assert "project_id" not in orjson.loads(votes[0])
    # The top-level API acts on default, which holds none of it
    assert await (await client.get("/entities/")).json() == []
    assert await (await client.get("/ratings")).json() == []
    assert await (await client.get("/comparisons/")).json() == []
    assert (await client.get(f"/entities/{tea[0]}")).status == 404


async def test_the_top_level_routes_are_the_default_project(client, create_entities):
    made = await create_entities(3)
    a, b = made[0]["id"], made[1]["id"]
    assert (await _vote(client, "", a, b, a)).status == 200
    for path in ("/entities/", "/comparisons/", "/ratings", "/ratings?by=score", "/export/entities"):
        top = await client.get(path)
        scoped = await client.get("/projects/default" + path)
        assert (top.status, await top.read()) == (scoped.status, await scoped.read()), path


async def test_the_database_refuses_a_comparison_across_projects(client):
    await _project(client, "left")
    await _project(client, "right")
    (left,) = await _entities(client, "/projects/left", ["l"])
    (right,) = await _entities(client, "/projects/right", ["r"])
    db = client.app[DATABASE]
    project_id = (await (await client.get("/projects/left")).json())["id"]
    insert = sa.insert(comparisons).values(
        project_id=project_id,
        entity1_id=left,
        entity2_id=right,
        selected_entity_id=left,
        created_at="2026-01-01T00:00:00+00:00",
    )
    with pytest.raises((ConflictError, DatabaseError)):
        await db.execute(Query(insert))
    assert await (await client.get("/projects/left/comparisons/")).json() == []


async def test_per_project_settings_are_used_and_default_follows_the_deployment(client):
    await _project(client, "strict", allow_ties=False, elo_k_factor=64, strategy="random")
    got = await (await client.get("/projects/strict")).json()
    assert got["overrides"]["elo_k_factor"] == 64 and got["overrides"]["prior_sd"] is None
    assert got["settings"]["strategy"] == "random" and got["settings"]["allow_ties"] is False
    a, b = await _entities(client, "/projects/strict", ["a", "b"])
    tie = await _vote(client, "/projects/strict", a, b, None)
    assert tie.status == 400 and "ties" in (await tie.json())["detail"]
    assert (await _vote(client, "/projects/strict", a, b, a)).status == 200
    winner = await (await client.get(f"/projects/strict/entities/{a}")).json()
    assert winner["rating"] == pytest.approx(1500 + 64 / 2)  # K 64, not the deployment's 32
    pair = await (await client.get("/projects/strict/mab/next_comparison")).json()
    assert pair["strategy"] == "random"
    default = await (await client.get("/projects/default")).json()
    assert set(default["overrides"].values()) == {None}
    assert default["settings"]["elo_k_factor"] == 32 and default["settings"]["allow_ties"] is True
    # null goes back to following the deployment
    patched = await client.patch("/projects/strict", json={"allow_ties": None, "elo_k_factor": None})
    assert (await patched.json())["settings"]["allow_ties"] is True
    assert (await _vote(client, "/projects/strict", a, b, None)).status == 200


async def test_an_empty_project_has_an_empty_board_in_every_model(client):
    # Regression: model=bt on a board without entities was a 500 (the fit needs one).
    await _project(client, "empty")
    for params in ({}, {"by": "score"}, {"model": "bt"}, {"model": "bt", "limit": "1"}):
        resp = await client.get("/projects/empty/ratings", params=params)
        assert resp.status == 200 and await resp.json() == [], params


async def test_bad_project_input_is_a_clear_4xx(client):
    assert (await client.post("/projects/", json={"slug": "Bad Slug", "name": "x"})).status == 422
    assert (await client.post("/projects/", json={"slug": "new", "name": "x"})).status == 422
    assert (await client.post("/projects/", json={"slug": "ok", "name": "x", "exploration": 2})).status == 422
    await _project(client, "ok")
    again = await client.post("/projects/", json={"slug": "ok", "name": "x"})
    assert again.status == 409 and "already exists" in (await again.json())["detail"]
    assert (await client.get("/projects/nope/entities/")).status == 404
    assert (await client.get("/projects/NOPE%20/ratings")).status == 404
    assert (await client.delete("/projects/default")).status == 400


# --- roles ------------------------------------------------------------------------------

USERS = {
    "owner": ("olivia", "amber-falcon-meadow-64"),
    "editor": ("edgar", "violet-otter-compass-27"),
    "voter": ("vera", "copper-lynx-harbor-58"),
    "viewer": ("victor", "silver-moth-canyon-33"),
    "outsider": ("oscar", "quiet-raven-pillar-12"),
}


@pytest.fixture
async def team(make_auth_client):
    """An auth-enabled client, a superuser, and a private project 'secret' created by its
    owner with one member of each other role; tokens by role ('admin' the superuser)."""
    client = await make_auth_client()
    assert (await sign_up(client, *ADMIN)).status == 200
    tokens = {"admin": await log_in(client, *ADMIN)}
    for role, (name, password) in USERS.items():
        assert (await sign_up(client, name, password, token=tokens["admin"])).status == 200
        tokens[role] = await log_in(client, name, password)
    await _project(client, "secret", headers=bearer(tokens["owner"]))
    for role in ("editor", "voter", "viewer"):
        resp = await client.put(
            f"/projects/secret/members/{USERS[role][0]}", json={"role": role}, headers=bearer(tokens["owner"])
        )
        assert resp.status == 200, await resp.text()
    await _entities(client, "/projects/secret", ["one", "two", "three"], headers=bearer(tokens["owner"]))
    return client, tokens


async def _can(client, tokens, slug: str, headers) -> dict[str, int]:
    """The status of one request of each kind on ``slug``."""
    listed = await client.get(f"/projects/{slug}/entities/", headers=bearer(tokens["admin"]))
    ids = [e["id"] for e in await listed.json()]
    statuses = {
        "read": (await client.get(f"/projects/{slug}/ratings", headers=headers)).status,
        "list": (await client.get(f"/projects/{slug}/entities/", headers=headers)).status,
        "pair": (await client.get(f"/projects/{slug}/mab/next_comparison", headers=headers)).status,
        "vote": (await _vote(client, f"/projects/{slug}", ids[0], ids[1], ids[0], headers=headers)).status,
        "write": (
            await client.post(f"/projects/{slug}/entities/", json={"name": "n"}, headers=headers)
        ).status,
        "export": (await client.get(f"/projects/{slug}/export/comparisons", headers=headers)).status,
        "admin": (await client.patch(f"/projects/{slug}", json={"name": "Renamed"}, headers=headers)).status,
        "members": (await client.get(f"/projects/{slug}/members", headers=headers)).status,
    }
    return statuses


ALLOWED = {
    "viewer": {"read", "list"},
    "voter": {"read", "list", "pair", "vote"},
    "editor": {"read", "list", "pair", "vote", "write", "export"},
    "owner": {"read", "list", "pair", "vote", "write", "export", "admin", "members"},
    "admin": {"read", "list", "pair", "vote", "write", "export", "admin", "members"},
}


async def test_every_role_gets_exactly_what_it_may(team):
    client, tokens = team
    for role, allowed in ALLOWED.items():
        got = await _can(client, tokens, "secret", bearer(tokens[role]))
        assert {k for k, status in got.items() if status == 200} == allowed, (role, got)
        refused = {status for k, status in got.items() if k not in allowed}
        assert refused <= {403}, (role, got)
    refusal = await client.post(
        "/projects/secret/entities/", json={"name": "n"}, headers=bearer(tokens["viewer"])
    )
    assert "role is viewer" in (await refusal.json())["detail"]


async def test_a_private_project_does_not_exist_for_outsiders(team):
    client, tokens = team
    # Signed in: 404, as a project that does not exist; anonymous: 401, as for one too.
    for headers, status in ((bearer(tokens["outsider"]), 404), ({}, 401)):
        got = await _can(client, tokens, "secret", headers)
        assert set(got.values()) == {status}, got
        assert (await client.get("/projects/secret", headers=headers)).status == status
        assert (await client.get("/projects/no-such-project", headers=headers)).status == status
    same = await client.get("/projects/no-such-project", headers=bearer(tokens["outsider"]))
    hidden = await client.get("/projects/secret", headers=bearer(tokens["outsider"]))
    assert (await same.json())["detail"].replace("no-such-project", "X") == (await hidden.json())[
        "detail"
    ].replace("secret", "X")
    listed = await (await client.get("/projects/", headers=bearer(tokens["outsider"]))).json()
    assert [p["slug"] for p in listed] == ["default"]
    mine = await (await client.get("/projects/", headers=bearer(tokens["voter"]))).json()
    assert {p["slug"]: p["role"] for p in mine} == {"default": None, "secret": "voter"}


async def test_a_public_project_is_read_by_anyone_and_voted_in_as_it_allows(team):
    client, tokens = team
    owner = bearer(tokens["owner"])
    assert (
        await client.patch("/projects/secret", json={"visibility": "public"}, headers=owner)
    ).status == 200
    signed_in = await _can(client, tokens, "secret", bearer(tokens["outsider"]))
    assert {k for k, s in signed_in.items() if s == 200} == {"read", "list", "pair", "vote"}
    anonymous = await _can(client, tokens, "secret", {})
    assert {k for k, s in anonymous.items() if s == 200} == {"read", "list"}
    assert anonymous["vote"] == 401 and anonymous["write"] == 401
    assert (
        await client.patch("/projects/secret", json={"allow_anonymous": True}, headers=owner)
    ).status == 200
    anonymous = await _can(client, tokens, "secret", {})
    assert {k for k, s in anonymous.items() if s == 200} == {"read", "list", "pair", "vote"}


async def test_archived_projects_are_read_only_hidden_and_restored_by_a_superuser(team):
    client, tokens = team
    owner, admin = bearer(tokens["owner"]), bearer(tokens["admin"])
    ids = [e["id"] for e in await (await client.get("/projects/secret/entities/", headers=owner)).json()]
    assert (await client.delete("/projects/secret", headers=bearer(tokens["editor"]))).status == 403
    assert (await client.delete("/projects/secret", headers=owner)).status == 200
    assert "secret" not in [p["slug"] for p in await (await client.get("/projects/", headers=owner)).json()]
    assert (await client.get("/projects/secret/ratings", headers=owner)).status == 200
    refused = await _vote(client, "/projects/secret", ids[0], ids[1], ids[0], headers=owner)
    assert refused.status == 403 and "archived" in (await refused.json())["detail"]
    assert (await client.post("/projects/secret/entities/", json={"name": "n"}, headers=owner)).status == 403
    assert (await client.post("/projects/secret/restore", headers=owner)).status == 403
    archived = await (await client.get("/projects/", params={"archived": "true"}, headers=admin)).json()
    assert [p["slug"] for p in archived] == ["secret"]
    assert (await client.post("/projects/secret/restore", headers=admin)).status == 200
    assert (await _vote(client, "/projects/secret", ids[0], ids[1], ids[0], headers=owner)).status == 200


async def test_members_are_managed_by_owners_and_a_project_keeps_one(team):
    client, tokens = team
    owner = bearer(tokens["owner"])
    members = await (await client.get("/projects/secret/members", headers=owner)).json()
    assert {m["username"]: m["role"] for m in members} == {
        "olivia": "owner",
        "edgar": "editor",
        "vera": "voter",
        "victor": "viewer",
    }
    last = await client.put("/projects/secret/members/olivia", json={"role": "viewer"}, headers=owner)
    assert last.status == 409
    assert (
        await client.put("/projects/secret/members/nobody", json={"role": "voter"}, headers=owner)
    ).status == 404
    assert (
        await client.put("/projects/secret/members/vera", json={"role": "boss"}, headers=owner)
    ).status == 422
    assert (await client.delete("/projects/secret/members/vera", headers=owner)).status == 200
    assert (await client.get("/projects/secret/ratings", headers=bearer(tokens["voter"]))).status == 404


async def test_creating_a_project_needs_a_user_when_auth_is_on(team):
    client, tokens = team
    assert (await client.post("/projects/", json={"slug": "x", "name": "x"})).status == 401
    made = await _project(client, "mine", headers=bearer(tokens["viewer"]))
    assert made["role"] == "owner"


async def test_the_client_speaks_to_a_project(start_server):
    from compere.client import AsyncClient

    server = start_server()
    async with AsyncClient(server.url) as top, AsyncClient(server.url, project="tea") as tea:
        made = await top.create_project("tea", "Tea", visibility="public", elo_k_factor=16)
        assert made.slug == "tea" and made.settings.elo_k_factor == 16 and made.overrides["prior_sd"] is None
        green = await tea.create_entity("green")
        black = await tea.create_entity("black")
        pair = await tea.next_pair()
        assert {pair.entity1.id, pair.entity2.id} == {green.id, black.id}
        await tea.vote_on(pair, winner=pair.entity1)
        assert (await tea.ratings(limit=1)).items[0].id == pair.entity1.id
        assert (await tea.get_entity(green.id)).name == "green"
        assert (await top.list_entities()).items == []  # the top level is the project default
        updated = await top.update_project("tea", elo_k_factor=None, description="Leaves")
        assert updated.settings.elo_k_factor == 32 and updated.description == "Leaves"
        assert updated.ratings_rebuilt is None
        updated = await top.update_project("tea", trust_mode="off")  # the deployment's is default
        assert updated.settings.trust_mode == "off" and updated.ratings_rebuilt == 1
        assert [p.slug for p in await top.list_projects()] == ["default", "tea"]
        assert (await top.archive_project("tea")).message == "Project archived"
        assert [p.slug for p in await top.list_projects(archived=True)] == ["tea"]
        assert (await top.restore_project("tea")).archived_at is None
