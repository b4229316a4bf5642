"""Who may call what, checked for every route in the route table.

The expectations come from each route's declared access level, so a route added
later is covered without touching this file.
"""

from __future__ import annotations

import re

from compere.http.keys import DATABASE, TOKENS
from compere.http.routes import ROUTES, Route
from compere.storage import users
from tests.helpers import ADMIN, bearer, sign_up

PUBLIC_EXTRAS = ("/openapi.json", "/docs")


def concrete(route: Route) -> str:
    return re.sub(r"\{[^}]+\}", "1", route.path)


async def fresh_token(client, user_id: int) -> str:
    """A token issued under the user's current token epoch (logging out everywhere moves it)."""
    app = client.server.app
    row = await users.credentials_by_id(app[DATABASE], user_id)
    return str(app[TOKENS].issue(user_id, row["token_epoch"])[0])


async def call(client, route: Route, headers: dict[str, str] | None = None):
    return await client.request(route.method, concrete(route), json={}, headers=headers or {})


async def test_every_protected_route_needs_a_token_and_superuser_routes_a_superuser(admin_and_alice):
    client, admin_token, alice_token = admin_and_alice
    ids = {}
    for token in (admin_token, alice_token):
        me = await (await client.get("/auth/users/me", headers=bearer(token))).json()
        ids[me["username"]] = me["id"]
    protected = [r for r in ROUTES if r.access != "public"]
    assert protected, "the route table declares no protected route"
    for route in ROUTES:
        name = f"{route.method} {route.path}"
        # Fresh tokens for every route: some of them log out.
        alice_token = await fresh_token(client, ids["alice"])
        admin_token = await fresh_token(client, ids["admin"])
        anonymous = await call(client, route)
        if route.access == "public":
            assert anonymous.status not in (401, 403), name
            continue
        assert anonymous.status == 401, name
        assert anonymous.headers["WWW-Authenticate"].startswith("Bearer"), name
        as_user = await call(client, route, bearer(alice_token))
        if route.access == "superuser":
            assert as_user.status == 403, name
            # Sign-up keeps the original Compere's words; Compere's own routes say this.
            signup = name == "POST /auth/users/"
            expected = "Only superusers can create new users" if signup else "Not enough permissions"
            assert (await as_user.json())["detail"] == expected, name
        else:
            assert as_user.status not in (401, 403), (name, as_user.status)
        as_admin = await call(client, route, bearer(admin_token))
        assert as_admin.status not in (401, 403), (name, as_admin.status)
    for path in PUBLIC_EXTRAS:
        assert (await client.get(path)).status == 200, path


async def test_with_auth_off_the_ranking_api_is_open_and_auth_routes_still_checked(make_auth_client):
    client = await make_auth_client(AUTH_ENABLED="false")
    assert (await sign_up(client, *ADMIN)).status == 200  # so sign-up is no longer open either
    for route in ROUTES:
        name = f"{route.method} {route.path}"
        resp = await call(client, route)
        if route.auth_always and route.access != "public":
            assert resp.status == 401, name
        else:
            assert resp.status not in (401, 403), (name, resp.status)


async def test_preflights_pass_the_identity_layer(make_auth_client):
    client = await make_auth_client(CORS_ORIGINS="https://app.example.com")
    for route in ROUTES:
        resp = await client.options(
            concrete(route),
            headers={"Origin": "https://app.example.com", "Access-Control-Request-Method": route.method},
        )
        assert resp.status == 200, f"{route.method} {route.path}"


async def test_the_openapi_document_states_each_routes_access(client):
    doc = await (await client.get("/openapi.json")).json()
    assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    for route in ROUTES:
        op = doc["paths"][route.path][route.method.lower()]
        if route.access == "public":
            assert op["security"] == [], route.path
            continue
        assert {"bearerAuth": []} in op["security"], route.path
        assert "401" in op["responses"], route.path
        # Project routes answer 403 for a role that does not suffice (require_project_access).
        assert ("403" in op["responses"]) == (route.access in ("superuser", "project")), route.path
    login = doc["paths"]["/auth/token"]["post"]["requestBody"]["content"]
    assert set(login) == {"application/json", "application/x-www-form-urlencoded"}
