"""Rate limiting as a client sees it: statuses, headers, quotas, proxies and Redis failures.

Most tests run the real application (SQLite; the limiter is independent of the database)
with rate limiting switched on through the same environment variables an operator uses.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client import REGISTRY

from compere.http.app import create_app
from compere.http.client_address import parse_trusted_proxies
from compere.http.keys import USER
from compere.http.middlewares import error_masking
from compere.http.ratelimit_middleware import RateLimitPolicies, rate_limit_cleanup_ctx, rate_limit_middleware
from compere.infra.ratelimit import RateLimitPolicy
from compere.settings import Settings, SettingsError, load_settings
from tests.helpers import RedisRole
from tests.servers import RedisInstance

ClientFactory = Callable[..., Awaitable[TestClient]]
LIMITED = {"GET /entities/"}


@pytest.fixture
def limited_settings(
    tmp_path: Path, ratelimit_redis: RedisRole, ratelimit_redis_prefix: str
) -> Callable[..., Settings]:
    """Settings with rate limiting on, 3 requests per minute by default, from env-style overrides."""

    def make(**env: str) -> Settings:
        base = {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'compere.db'}",
            "REDIS_URL": ratelimit_redis.url,
            "RATE_LIMIT_ENABLED": "true",
            "RATE_LIMIT_REQUESTS": "3",
            "RATE_LIMIT_WINDOW": "60",
            "RATE_LIMIT_AUTH_REQUESTS": "2",
            "RATE_LIMIT_KEY_PREFIX": ratelimit_redis_prefix,
            # Generous for a busy test machine; the failure tests below use a dead port,
            # which fails at once whatever the timeout.
            "RATE_LIMIT_REDIS_TIMEOUT": "2",
            "LOG_REQUESTS": "false",
        }
        return load_settings({**base, **env}, dotenv=tmp_path / "no.env")

    return make


@pytest.fixture
def limited_client(aiohttp_client: ClientFactory, limited_settings: Callable[..., Settings]) -> ClientFactory:
    async def make(**env: str) -> TestClient:
        return await aiohttp_client(await create_app(limited_settings(**env), configure_logs=False))

    return make


async def test_exactly_the_limit_is_allowed_then_429_with_headers(limited_client: ClientFactory) -> None:
    client = await limited_client()
    refusals_before = _refusals("default")
    now = time.time()
    allowed = [await client.get("/entities/") for _ in range(3)]
    assert [r.status for r in allowed] == [200, 200, 200]
    assert [r.headers["X-RateLimit-Remaining"] for r in allowed] == ["2", "1", "0"]
    for response in allowed:
        assert response.headers["X-RateLimit-Limit"] == "3"
        assert now + 58 <= int(response.headers["X-RateLimit-Reset"]) <= now + 62
        assert response.headers["RateLimit-Policy"] == '"default";q=3;w=60'
    assert allowed[0].headers["RateLimit"] == '"default";r=2;t=60'

    refused = await client.get("/entities/")
    assert refused.status == 429
    body = await refused.json()
    assert body["detail"] == "Rate limit exceeded. Max 3 requests per 60 seconds."
    assert refused.headers["X-RateLimit-Limit"] == "3"
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["RateLimit"] == f'"default";r=0;t={refused.headers["Retry-After"]}'
    assert int(refused.headers["X-RateLimit-Reset"]) == pytest.approx(now + 60, abs=2)
    # Refusals take no quota: still refused, still exactly as many as before.
    assert (await client.get("/entities/")).headers["X-RateLimit-Remaining"] == "0"
    assert _refusals("default") == refusals_before + 2


def _refusals(policy: str) -> float:
    value = REGISTRY.get_sample_value("compere_rate_limit_refusals_total", {"policy": policy})
    return value or 0.0


async def test_error_responses_carry_the_headers_too(limited_client: ClientFactory) -> None:
    client = await limited_client()
    invalid = await client.post("/entities/", json={"name": ""})  # a view's validation error
    assert invalid.status == 422
    assert invalid.headers["X-RateLimit-Remaining"] == "2"
    unknown = await client.get("/no-such-page")  # the router's own 404
    assert unknown.status == 404
    assert unknown.headers["X-RateLimit-Remaining"] == "1"
    assert unknown.headers["RateLimit-Policy"] == '"default";q=3;w=60'


async def test_health_is_exempt(limited_client: ClientFactory) -> None:
    client = await limited_client()
    for path in ["/health", "/health/ready"] * 4:
        response = await client.get(path)
        assert response.status == 200
        assert "X-RateLimit-Limit" not in response.headers
    assert (await client.get("/entities/")).headers["X-RateLimit-Remaining"] == "2"


async def test_login_and_signup_share_their_own_small_quota(limited_client: ClientFactory) -> None:
    client = await limited_client(RATE_LIMIT_AUTH_REQUESTS="2", RATE_LIMIT_AUTH_WINDOW="300")
    first = await client.post("/auth/token", data={"username": "a", "password": "b"})
    assert first.headers["RateLimit-Policy"] == '"auth";q=2;w=300'
    second = await client.post("/auth/users", json={})  # with or without the slash
    assert second.headers["X-RateLimit-Remaining"] == "0"
    refused = await client.post("/auth/users/", json={})
    assert refused.status == 429
    assert refused.headers["X-RateLimit-Limit"] == "2"
    # The default quota is untouched by the auth group.
    assert (await client.get("/entities/")).headers["X-RateLimit-Remaining"] == "2"


async def test_window_slides(limited_client: ClientFactory) -> None:
    # A 2 s window with the second request in its middle leaves ~1 s of slack either
    # way, so a slow, busy machine cannot blur which request has aged out.
    client = await limited_client(RATE_LIMIT_REQUESTS="2", RATE_LIMIT_WINDOW="2")
    start = time.monotonic()
    assert (await client.get("/entities/")).status == 200
    await asyncio.sleep(1.0)
    assert (await client.get("/entities/")).status == 200
    assert (await client.get("/entities/")).status == 429
    await asyncio.sleep(max(0.0, start + 2.15 - time.monotonic()))
    # The first request has aged out, the second has not: exactly one more.
    assert (await client.get("/entities/")).status == 200
    assert (await client.get("/entities/")).status == 429


async def test_two_app_instances_share_one_global_limit(limited_client: ClientFactory) -> None:
    instances = [await limited_client(RATE_LIMIT_REQUESTS="5") for _ in range(2)]
    responses = await asyncio.gather(*(instances[i % 2].get("/entities/") for i in range(10)))
    assert sorted(r.status for r in responses) == [200] * 5 + [429] * 5


async def test_rotating_forwarded_for_from_an_untrusted_peer_does_not_escape(
    limited_client: ClientFactory,
) -> None:
    # Proxies are trusted, but the test client (127.0.0.1) is not one of them.
    client = await limited_client(TRUSTED_PROXIES="10.0.0.0/8")
    statuses = [
        (await client.get("/entities/", headers={"X-Forwarded-For": f"198.51.100.{i}"})).status
        for i in range(6)
    ]
    assert statuses == [200, 200, 200, 429, 429, 429]


async def test_behind_a_trusted_proxy_each_client_has_its_own_quota(limited_client: ClientFactory) -> None:
    client = await limited_client(TRUSTED_PROXIES="127.0.0.1, ::1")
    for real_client in ("198.51.100.7", "203.0.113.8"):
        # Whatever the client sends, the proxy appends the address it saw last.
        statuses = [
            (await client.get("/entities/", headers={"X-Forwarded-For": f"10.9.9.{i}, {real_client}"})).status
            for i in range(4)
        ]
        assert statuses == [200, 200, 200, 429]


async def test_dead_redis_fails_open_without_hanging(
    limited_client: ClientFactory, dead_redis_url: str
) -> None:
    client = await limited_client(REDIS_URL=dead_redis_url, RATE_LIMIT_FAIL_MODE="open")
    started = time.monotonic()
    responses = [await client.get("/entities/") for _ in range(5)]
    assert time.monotonic() - started < 2.5
    assert [r.status for r in responses] == [200] * 5
    assert "X-RateLimit-Limit" not in responses[0].headers
    ready = await client.get("/health/ready")
    assert ready.status == 200
    assert (await ready.json())["checks"]["rate_limiter"] == "degraded"


async def test_dead_redis_fails_closed_with_503(limited_client: ClientFactory, dead_redis_url: str) -> None:
    client = await limited_client(REDIS_URL=dead_redis_url, RATE_LIMIT_FAIL_MODE="closed")
    started = time.monotonic()
    response = await client.get("/entities/")
    assert time.monotonic() - started < 1.0
    assert response.status == 503
    assert response.headers["Retry-After"] == "1"
    assert "temporarily unavailable" in (await response.json())["detail"]
    assert (await client.get("/health")).status == 200
    ready = await client.get("/health/ready")
    assert ready.status == 503
    assert (await ready.json())["checks"]["rate_limiter"] == "unavailable"


async def test_redis_outage_and_recovery(
    limited_client: ClientFactory, own_redis_server: RedisInstance
) -> None:
    client = await limited_client(REDIS_URL=own_redis_server.url(), RATE_LIMIT_FAIL_MODE="closed")
    assert (await client.get("/entities/")).status == 200

    own_redis_server.stop()
    started = time.monotonic()
    assert (await client.get("/entities/")).status == 503
    assert time.monotonic() - started < 1.0

    own_redis_server.start()  # same port, no data, no cached script
    deadline = time.monotonic() + 5
    while (response := await client.get("/entities/")).status == 503:
        assert time.monotonic() < deadline, "limiting did not resume"
        await asyncio.sleep(0.1)
    # The restarted server remembers nothing: a fresh quota of 3.
    assert response.headers["X-RateLimit-Remaining"] == "2"
    assert [(await client.get("/entities/")).status for _ in range(3)] == [200, 200, 429]
    assert (await (await client.get("/health/ready")).json())["checks"]["rate_limiter"] == "ok"


async def test_openapi_documents_the_429_and_headers(limited_client: ClientFactory) -> None:
    doc = await (await (await limited_client()).get("/openapi.json")).json()
    listing = doc["paths"]["/entities/"]["get"]["responses"]
    assert {"X-RateLimit-Remaining", "RateLimit"} <= set(listing["200"]["headers"])
    assert "Retry-After" in listing["429"]["headers"]
    assert "429" not in doc["paths"]["/health"]["get"]["responses"]


async def test_limiting_off_sends_no_headers(limited_client: ClientFactory) -> None:
    client = await limited_client(RATE_LIMIT_ENABLED="false")
    responses = [await client.get("/entities/") for _ in range(5)]
    assert [r.status for r in responses] == [200] * 5
    assert "X-RateLimit-Limit" not in responses[-1].headers


# The auth issue sets the identity; until then a stand-in middleware plays its part.
@web.middleware
async def identity_from_header(request: web.Request, handler):  # type: ignore[no-untyped-def]
    if "X-Test-User" in request.headers:
        request[USER] = {"id": request.headers["X-Test-User"]}
    return await handler(request)


async def test_users_are_limited_by_identity_not_address(
    aiohttp_client: ClientFactory, ratelimit_redis: RedisRole, ratelimit_redis_prefix: str
) -> None:
    settings = Settings(
        redis_url=ratelimit_redis.url,
        rate_limit_key_prefix=ratelimit_redis_prefix,
        rate_limit_redis_timeout=2,
    )
    app = web.Application(
        middlewares=[
            error_masking(settings),
            identity_from_header,
            rate_limit_middleware(RateLimitPolicies(RateLimitPolicy("default", 3, 60))),
        ]
    )
    app.cleanup_ctx.append(rate_limit_cleanup_ctx(settings))

    async def ok(request: web.Request) -> web.Response:
        return web.json_response({})

    app.router.add_get("/entities/", ok)
    client = await aiohttp_client(app)
    for user in ("alice", "bob"):
        statuses = [(await client.get("/entities/", headers={"X-Test-User": user})).status for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
    # Anonymous requests from the same address have their own quota.
    assert (await client.get("/entities/")).status == 200


def test_middleware_validates_its_arguments() -> None:
    policies = RateLimitPolicies(RateLimitPolicy("default", 1, 1))
    with pytest.raises(ValueError, match="fail_mode"):
        rate_limit_middleware(policies, fail_mode="ajar")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        rate_limit_middleware({"default": (1, 1)})  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        rate_limit_middleware(policies, trusted_proxies=["127.0.0.1"])  # type: ignore[arg-type]
    assert parse_trusted_proxies("") == parse_trusted_proxies([])


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({"RATE_LIMIT_REQUESTS": "0"}, "RATE_LIMIT_REQUESTS"),
        ({"RATE_LIMIT_WINDOW": "soon"}, "RATE_LIMIT_WINDOW"),
        ({"RATE_LIMIT_AUTH_REQUESTS": "-1"}, "RATE_LIMIT_AUTH_REQUESTS"),
        ({"RATE_LIMIT_AUTH_WINDOW": "0"}, "RATE_LIMIT_AUTH_WINDOW"),
        ({"RATE_LIMIT_FAIL_MODE": "ajar"}, "RATE_LIMIT_FAIL_MODE"),
        ({"TRUSTED_PROXIES": "nginx"}, "TRUSTED_PROXIES"),
        ({"TRUSTED_PROXIES": "10.0.0.1/8"}, "TRUSTED_PROXIES"),
        ({"RATE_LIMIT_KEY_PREFIX": "has space"}, "RATE_LIMIT_KEY_PREFIX"),
        ({"RATE_LIMIT_REDIS_TIMEOUT": "0"}, "RATE_LIMIT_REDIS_TIMEOUT"),
    ],
)
def test_bad_settings_name_the_variable(environ: dict[str, str], variable: str, tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=variable):
        load_settings(environ, dotenv=tmp_path / "no.env")


def test_production_refuses_rate_limiting_without_redis(tmp_path: Path) -> None:
    production = {
        "ENVIRONMENT": "production",
        "SECRET_KEY": "q7Rk-2vLx_9TmZ4pWc8nHs1bYd6FjG3a",
        "AUTH_ENABLED": "true",
        "CORS_ORIGINS": "https://app.example.com",
        "DATABASE_URL": "postgresql://compere@db.example.com/compere",
        "RATE_LIMIT_ENABLED": "true",
    }
    with pytest.raises(SettingsError, match="REDIS_URL"):
        load_settings(production, dotenv=tmp_path / "no.env")
    settings = load_settings({**production, "REDIS_URL": "redis://cache:6379/0"}, dotenv=tmp_path / "no.env")
    assert settings.rate_limit_enabled


def test_settings_defaults_and_overrides(tmp_path: Path) -> None:
    defaults = load_settings({}, dotenv=tmp_path / "no.env")
    assert (defaults.rate_limit_requests, defaults.rate_limit_window) == (100, 60)
    assert (defaults.rate_limit_auth_requests, defaults.rate_limit_auth_window) == (10, 60)
    assert (defaults.rate_limit_fail_mode, defaults.trusted_proxies) == ("open", ())
    custom = load_settings(
        {
            "RATE_LIMIT_AUTH_REQUESTS": "3",
            "RATE_LIMIT_AUTH_WINDOW": "300",
            "TRUSTED_PROXIES": "10.0.0.0/8 unix",
        },
        dotenv=tmp_path / "no.env",
    )
    policies = RateLimitPolicies.from_settings(custom)
    assert policies.for_request("POST", "/auth/token") == RateLimitPolicy("auth", 3, 300)
    assert policies.for_request("GET", "/auth/token") == RateLimitPolicy("default", 100, 60)
    assert policies.for_request("GET", "/health/ready") is None
    assert parse_trusted_proxies(custom.trusted_proxies).unix
