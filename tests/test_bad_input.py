"""No input produces a 500, and production error bodies never leak internals."""

from __future__ import annotations

import re
import uuid

import pytest
from aiohttp import web

from compere.http.app import create_app
from compere.http.routes import ROUTES
from compere.settings import load_settings
from tests.helpers import NO_DOTENV, empty_postgres

HUGE = "99999999999999999999"
LEAKS = re.compile(
    r"Traceback|sqlalchemy|psycopg|sqlite|aiopg|SELECT |INSERT |UPDATE |DELETE FROM|File \"", re.I
)

BODIES = [
    b"",
    b"null",
    b"[]",
    b"[1, 2]",
    b'"a string"',
    b"42",
    b"true",
    b"{bad json",
    b"\xff\xfe\x00garbage",
    b'{"name": "\\ud800"}',
    b'{"name": "\\udfff\\ud800"}',
    b'{"name": null, "description": null, "image_urls": null}',
    b'{"name": {"nested": 1}}',
    b'{"name": "' + b"x" * 5000 + b'"}',
    b'{"entity1_id": ' + HUGE.encode() + b', "entity2_id": 1, "selected_entity_id": 1}',
    b'{"entity1_id": -1, "entity2_id": 0, "selected_entity_id": null}',
    b'{"entity1_id": 1.5, "entity2_id": "2", "selected_entity_id": true}',
    b'{"entity1_id": null, "entity2_id": null, "selected_entity_id": null}',
    b'{"entity1_id": [1], "entity2_id": {}, "selected_entity_id": "x"}',
    b'{"entity1_id": 1e400, "entity2_id": NaN, "selected_entity_id": Infinity}',
    b"[" * 5000 + b"]" * 5000,
    b'{"skip": -1}',
]
QUERIES = [
    {"skip": "-1"},
    {"limit": "0"},
    {"limit": "1001"},
    {"limit": "abc"},
    {"skip": HUGE},
    {"limit": HUGE},
    {"entity_id": HUGE},
    {"entity_id": "-5"},
    {"search": "\x00"},
    {"search": "%_\\"},
    {"comparison_id": HUGE},
    {"comparison_id": "1.5"},
]
# Every route in the table, so a new endpoint is fuzzed without anyone remembering to.
PATHS = [(route.method, re.sub(r"\{[a-z_]+\}", "{id}", route.path)) for route in ROUTES]
IDS = ["1", HUGE, "-1", "0", "abc", "1.5", "%F0%9F%98%80", "1e3", "9223372036854775808"]


def assert_clean(status: int, text: str, where: str) -> None:
    assert status < 500, f"{where} -> {status}: {text[:300]}"
    assert not LEAKS.search(text), f"{where} leaked internals: {text[:300]}"


PRODUCTION = {
    "ENVIRONMENT": "production",
    "SECRET_KEY": "q7Rk-2vLx_9TmZ4pWc8nHs1bYd6FjG3a",
    "AUTH_ENABLED": "true",
    "CORS_ORIGINS": "https://app.example.com",
    "RATE_LIMIT_ENABLED": "true",
}


@pytest.fixture
def production_app(shared_postgres_url, ratelimit_redis, ratelimit_redis_prefix):
    """An app in production mode (which refuses SQLite, so PostgreSQL only)."""
    empty_postgres(shared_postgres_url)

    async def make() -> web.Application:
        # Production must limit rates; these tests send hundreds of requests from one
        # address, so each app gets its own limiter keys and a quota it cannot exhaust.
        env = {
            "DATABASE_URL": shared_postgres_url,
            **PRODUCTION,
            "REDIS_URL": ratelimit_redis.url,
            "RATE_LIMIT_REQUESTS": "1000000",
            "RATE_LIMIT_KEY_PREFIX": f"{ratelimit_redis_prefix}{uuid.uuid4().hex}:",
        }
        settings = load_settings(env, dotenv=NO_DOTENV)
        return await create_app(settings, configure_logs=False)

    return make


async def test_every_endpoint_survives_hostile_input(client, create_entities):
    await create_entities(2)
    for method, template in PATHS:
        for ident in IDS:
            path = template.replace("{id}", ident)
            for body in BODIES if method in ("POST", "PUT") else [b""]:
                resp = await client.request(
                    method, path, data=body, headers={"Content-Type": "application/json"}
                )
                text = await resp.text()
                assert resp.status < 500, f"{method} {path} {body[:60]!r} -> {resp.status}: {text[:300]}"
                if resp.status >= 400:
                    assert "detail" in await resp.json()
            for params in QUERIES:
                resp = await client.request(method, path, params=params)
                assert resp.status < 500, f"{method} {path} {params} -> {resp.status}: {await resp.text()}"
            if "{id}" not in template:
                break


async def test_unknown_route_wrong_method_and_oversized_body(make_client):
    client = await make_client(MAX_BODY_SIZE="2048")
    resp = await client.get("/no/such/thing")
    assert resp.status == 404 and (await resp.json())["detail"]
    resp = await client.patch("/entities/")
    assert resp.status == 405 and "Allow" in resp.headers and (await resp.json())["detail"]
    resp = await client.post(
        "/entities/", data=b'{"name": "' + b"x" * 4096 + b'"}', headers={"Content-Type": "application/json"}
    )
    assert resp.status == 413 and (await resp.json())["detail"]


async def boom(request: web.Request) -> web.Response:
    raise RuntimeError('psycopg2.errors: SELECT secret FROM "users" -- sqlite3 Traceback')


async def test_unexpected_errors_are_masked_in_production(aiohttp_client, production_app, caplog):
    app = await production_app()
    app.router.add_get("/boom", boom)
    client = await aiohttp_client(app)
    resp = await client.get("/boom")
    assert resp.status == 500
    body = await resp.json()
    assert body["detail"] == "An internal error occurred. Please try again later."
    assert body["request_id"] == resp.headers["X-Request-ID"]
    assert not LEAKS.search(await resp.text())
    # the full error still reaches the server log
    assert any("unhandled error" in r.getMessage() and r.exc_info for r in caplog.records)


async def test_development_shows_the_error(make_settings, aiohttp_client):
    app = await create_app(make_settings(ENVIRONMENT="development"), configure_logs=False)
    app.router.add_get("/boom", boom)
    client = await aiohttp_client(app)
    resp = await client.get("/boom")
    assert resp.status == 500
    assert "RuntimeError" in (await resp.json())["detail"]


async def test_production_bodies_never_leak_on_hostile_input(aiohttp_client, production_app):
    client = await aiohttp_client(await production_app())
    for method, template in PATHS:
        path = template.replace("{id}", HUGE)
        for body in BODIES if method in ("POST", "PUT") else [b""]:
            resp = await client.request(method, path, data=body, headers={"Content-Type": "application/json"})
            assert_clean(resp.status, await resp.text(), f"{method} {path} {body[:40]!r}")
