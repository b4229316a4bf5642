"""The original Compere's HTTP contract, kept to the letter: readiness fields, both
spellings of every path, HEAD wherever GET works, /redoc, and its error wording."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

import pytest

from compere.http.keys import READINESS
from compere.http.routes import ROUTES
from tests.helpers import FakeClock, admin_connection, bearer, log_in

# --- /health/ready ---------------------------------------------------------------------


async def test_readiness_keeps_the_original_fields_beside_the_checks(client):
    resp = await client.get("/health/ready")
    assert resp.status == 200
    body = await resp.json()
    assert body["status"] == "ready" and body["database"] == "connected" and body["timestamp"]
    assert body["checks"]["database"] == "ok"
    assert "detail" not in body
    doc = await (await client.get("/openapi.json")).json()
    answers = doc["paths"]["/health/ready"]["get"]["responses"]
    for status in ("200", "503"):
        assert answers[status]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/Readiness"
        }
    assert {"status", "database", "timestamp", "checks"} <= set(
        doc["components"]["schemas"]["Readiness"]["required"]
    )


def _allow_connections(database: str, allowed: bool) -> None:
    conn = admin_connection()
    with conn.cursor() as cur:
        cur.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {str(allowed).lower()}')
        if not allowed:
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (database,)
            )
    conn.close()


@pytest.mark.postgres
async def test_readiness_is_cached_briefly_and_turns_503_when_the_database_goes(
    make_client, postgres_factory: Callable[[], str]
):
    url = postgres_factory()
    database = url.rsplit("/", 1)[1]
    client = await make_client(DATABASE_URL=url, READY_CACHE_SECONDS="1")
    clock = FakeClock(start=1000.0)
    client.server.app[READINESS].clock = clock
    try:
        assert (await client.get("/health/ready")).status == 200
        _allow_connections(database, False)
        # Within the cache time the last answer stands: probes cannot hammer the database.
        clock.now += 0.5
        cached = await client.get("/health/ready")
        assert cached.status == 200
        # Once it is older than READY_CACHE_SECONDS the database is asked again.
        clock.now += 0.6
        down = await client.get("/health/ready")
        assert down.status == 503
        body = await down.json()
        assert body["status"] == "not ready" and body["database"] == "disconnected"
        assert body["detail"] == {"status": "not ready", "database": "disconnected"}
        assert body["checks"]["database"] == "unavailable" and body["timestamp"]
    finally:
        _allow_connections(database, True)
    clock.now += 1.1
    assert (await client.get("/health/ready")).status == 200


async def test_readiness_without_cache_checks_every_time(make_client):
    client = await make_client(READY_CACHE_SECONDS="0")
    first = await (await client.get("/health/ready")).json()
    second = await (await client.get("/health/ready")).json()
    assert first["timestamp"] != second["timestamp"]


# --- both spellings of every path ----------------------------------------------------


def _other_spelling(path: str) -> str:
    return path[:-1] if path.endswith("/") else f"{path}/"


def _concrete(path: str) -> str:
    return re.sub(r"\{[a-z_]+\}", "1", path)


async def test_every_route_answers_its_other_spelling_with_a_307_keeping_the_query(client):
    query = "?skip=0&search=a%20b"
    for route in ROUTES:
        other = _other_spelling(_concrete(route.path))
        resp = await client.request(route.method, other + query, allow_redirects=False, json={})
        assert resp.status == 307, (route.method, other)
        assert resp.headers["Location"] == _concrete(route.path) + query, (route.method, other)
    # The same for the pages outside the route table.
    for page in ("/docs", "/redoc", "/openapi.json", "/leaderboard"):
        resp = await client.get(page + "/", allow_redirects=False)
        assert (resp.status, resp.headers["Location"]) == (307, page), page


async def test_the_original_spellings_reach_their_routes(client):
    # The original declared /entities/ and /comparisons/ with the slash: without it, a 307.
    listing = await client.get("/entities?limit=5", allow_redirects=False)
    assert (listing.status, listing.headers["Location"]) == (307, "/entities/?limit=5")
    created = await client.post("/entities", json={"name": "followed"})  # the client follows the 307
    assert created.status == 200 and (await created.json())["name"] == "followed"
    assert str(created.url).endswith("/entities/")
    comparisons = await client.get("/comparisons")
    assert comparisons.status == 200 and await comparisons.json() == []
    # POST /auth/users/ is the original's spelling; Compere's user list sits beside it.
    sign_up = await client.post(
        "/auth/users", json={"username": "first", "password": "grey-heron-lantern-91"}
    )
    assert sign_up.status == 200 and str(sign_up.url).endswith("/auth/users/")
    token = await log_in(client, "first", "grey-heron-lantern-91")
    listing = await client.get("/auth/users", headers=bearer(token))
    assert listing.status == 200 and [u["username"] for u in await listing.json()] == ["first"]


async def test_the_openapi_document_lists_each_path_once(client):
    doc = await (await client.get("/openapi.json")).json()
    assert set(doc["paths"]) == {route.path for route in ROUTES}
    for path, operations in doc["paths"].items():
        assert _other_spelling(path) not in doc["paths"], path
        assert "head" not in operations, path


# --- HEAD wherever GET works ---------------------------------------------------------


async def _raw_head_then_get(client, path: str) -> bytes:
    """HEAD ``path`` and then GET /health on one connection: whatever follows HEAD's headers."""
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    writer.write(
        f"HEAD {path} HTTP/1.1\r\nHost: test\r\n\r\n"
        "GET /health HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n".encode()
    )
    await writer.drain()
    data = await reader.read()
    writer.close()
    await writer.wait_closed()
    return data.split(b"\r\n\r\n", 1)[1]


async def test_head_answers_wherever_get_does_with_the_same_headers_and_no_body(client):
    entities = [await (await client.post("/entities/", json={"name": f"e{i}"})).json() for i in range(2)]
    vote = {"entity1_id": entities[0]["id"], "entity2_id": entities[1]["id"]}
    await client.post("/comparisons/", json={**vote, "selected_entity_id": entities[0]["id"]})
    paths = [
        _concrete(route.path) for route in ROUTES if route.method == "GET" and route.access != "superuser"
    ]
    paths += ["/export/comparisons", "/ratings?skip=0", "/docs", "/openapi.json", "/", "/entities/999"]
    for path in paths:
        get = await client.get(path)
        head = await client.head(path)
        assert head.status == get.status, path
        assert head.headers.get("Content-Type") == get.headers.get("Content-Type"), path
        assert await head.read() == b"", path
        # Streamed answers (the whole leaderboard, exports) must not leak body bytes either.
        after = await _raw_head_then_get(client, path)
        assert after.startswith(b"HTTP/1.1 200"), (path, after[:80])


# --- /docs and /redoc ----------------------------------------------------------------


async def test_redoc_is_served_from_local_assets_under_a_policy_that_allows_it(client):
    page = await client.get("/redoc")
    assert page.status == 200
    html = await page.text()
    assert "http://" not in html and "https://" not in html
    assert '<redoc spec-url="/openapi.json">' in html
    policy = page.headers["Content-Security-Policy"]
    for directive in ("script-src 'self'", "connect-src 'self'", "worker-src blob:", "style-src 'self'"):
        assert directive in policy
    script = await client.get("/docs/redoc/redoc.standalone.js")
    assert script.status == 200 and script.content_type == "application/javascript"
    assert len(await script.read()) > 500_000
    assert "/docs/redoc/redoc.standalone.js" in html


async def test_only_the_files_the_docs_pages_load_are_served(client):
    for used in (
        "/docs/swagger-ui/swagger-ui-bundle.js",
        "/docs/swagger-ui/swagger-ui.css",
        "/docs/swagger-ui/favicon-32x32.png",
        "/docs/static/init.js",
    ):
        assert (await client.get(used)).status == 200, used
    for unused in (
        "/docs/swagger-ui/index.html",
        "/docs/swagger-ui/oauth2-redirect.html",
        "/docs/swagger-ui/swagger-ui-bundle.js.map",
        "/docs/swagger-ui/swagger-initializer.js",
        "/docs/swagger-ui/",
        "/docs/static/index.html",
        "/docs/static/redoc.html",
        "/docs/redoc/redoc.standalone.js.LICENSE.txt",
    ):
        assert (await client.get(unused)).status == 404, unused


# --- CORS ----------------------------------------------------------------------------

APP = "https://app.example.com"


async def test_preflights_may_ask_for_idempotency_keys_and_answers_expose_compere_headers(make_client):
    client = await make_client(CORS_ORIGINS=APP, RATE_LIMIT_ENABLED="true")
    preflight = await client.options(
        "/comparisons/",
        headers={
            "Origin": APP,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, idempotency-key",
        },
    )
    assert preflight.status == 200
    assert "IDEMPOTENCY-KEY" in preflight.headers["Access-Control-Allow-Headers"].upper()
    resp = await client.get("/entities/", headers={"Origin": APP})
    exposed = {h.strip().lower() for h in resp.headers["Access-Control-Expose-Headers"].split(",")}
    for name in ("Idempotent-Replayed", "RateLimit", "RateLimit-Policy", "Retry-After", "X-Request-ID"):
        assert name.lower() in exposed, name
    assert "RateLimit" in resp.headers  # and it really is there to read
    # A page calling the other spelling can follow the 307: preflight and redirect carry CORS.
    other = await client.options(
        "/comparisons", headers={"Origin": APP, "Access-Control-Request-Method": "POST"}
    )
    assert other.status == 200 and other.headers["Access-Control-Allow-Origin"] == APP
    moved = await client.post("/comparisons", json={}, headers={"Origin": APP}, allow_redirects=False)
    assert moved.status == 307 and moved.headers["Access-Control-Allow-Origin"] == APP


@pytest.mark.parametrize(
    "origin",
    [
        "http://localhost:5173",
        "http://localhost",
        "https://localhost:8443",
        "http://127.0.0.1:3000",
        "http://[::1]:8080",
    ],
)
async def test_development_allows_this_machines_pages_on_any_port_by_default(make_client, origin):
    client = await make_client()  # ENVIRONMENT=development, CORS_ORIGINS unset
    resp = await client.get("/entities/", headers={"Origin": origin})
    assert resp.headers["Access-Control-Allow-Origin"] == origin
    assert "Origin" in resp.headers["Vary"]
    preflight = await client.options(
        "/entities/",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert preflight.status == 200 and preflight.headers["Access-Control-Allow-Origin"] == origin


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example.net",
        "http://localhost.evil.example.net",
        "http://127.0.0.1.evil.example.net:80",
        "http://evil.example.net/http://localhost",
        "http://localhost:5173/",
        "null",
    ],
)
async def test_the_development_default_opens_to_no_other_site(make_client, origin):
    client = await make_client()
    resp = await client.get("/entities/", headers={"Origin": origin})
    assert "Access-Control-Allow-Origin" not in resp.headers
    preflight = await client.options(
        "/entities/", headers={"Origin": origin, "Access-Control-Request-Method": "POST"}
    )
    assert preflight.status == 403


async def test_outside_development_only_listed_origins_get_cors(make_client):
    staging = await make_client(ENVIRONMENT="staging")
    resp = await staging.get("/health", headers={"Origin": "http://localhost:5173"})
    assert "Access-Control-Allow-Origin" not in resp.headers
    listed = await make_client(CORS_ORIGINS=APP)  # an explicit list replaces the default
    resp = await listed.get("/health", headers={"Origin": "http://localhost:5173"})
    assert "Access-Control-Allow-Origin" not in resp.headers


# --- the original's words ----------------------------------------------------------


async def detail(resp) -> object:
    return (await resp.json())["detail"]


async def test_errors_and_messages_use_the_originals_words(client):
    assert await detail(await client.get("/entities/5")) == "Entity with id 5 not found"
    assert await detail(await client.put("/entities/5", json={"name": "x"})) == "Entity with id 5 not found"
    assert await detail(await client.get("/entities/99999999999999999999")) == (
        "Entity with id 99999999999999999999 not found"
    )
    assert await detail(await client.get("/comparisons/7")) == "Comparison with id 7 not found"
    a, b = [await (await client.post("/entities/", json={"name": n})).json() for n in ("a", "b")]
    missing = await client.post(
        "/comparisons/", json={"entity1_id": a["id"], "entity2_id": 999, "selected_entity_id": a["id"]}
    )
    assert (missing.status, await detail(missing)) == (404, "Entity with id 999 not found")
    wrong = await client.post(
        "/comparisons/", json={"entity1_id": a["id"], "entity2_id": b["id"], "selected_entity_id": 999}
    )
    assert (wrong.status, await detail(wrong)) == (
        400,
        "Selected entity must be one of the compared entities",
    )
    unknown = await client.post("/mab/update?comparison_id=12345")
    assert (unknown.status, await detail(unknown)) == (404, "Comparison not found")
    vote = await client.post(
        "/comparisons/", json={"entity1_id": a["id"], "entity2_id": b["id"], "selected_entity_id": b["id"]}
    )
    applied = await client.post(f"/mab/update?comparison_id={(await vote.json())['id']}")
    assert await applied.json() == {"message": "MAB updated successfully"}
    deleted = await client.delete(f"/entities/{a['id']}")
    assert await deleted.json() == {"message": "Entity deleted successfully"}
    assert await detail(await client.get("/no/such/path")) == "Not Found"
    assert await detail(await client.patch("/entities/")) == "Method Not Allowed"


async def test_closed_sign_up_is_refused_in_the_originals_words(admin_and_alice):
    client, _, alice_token = admin_and_alice
    body = {"username": "mallory", "password": "grey-heron-lantern-91"}
    anonymous = await client.post("/auth/users/", json=body)
    assert (anonymous.status, await detail(anonymous)) == (401, "Authentication required to create users")
    assert anonymous.headers["WWW-Authenticate"] == "Bearer"
    as_user = await client.post("/auth/users/", json=body, headers=bearer(alice_token))
    assert (as_user.status, await detail(as_user)) == (403, "Only superusers can create new users")
    me = await client.get("/auth/users/me")
    assert (me.status, await detail(me)) == (401, "Could not validate credentials")
