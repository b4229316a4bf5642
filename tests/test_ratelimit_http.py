"""Rate limiting as a client sees it: statuses, headers, quotas, proxies and Redis failures."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from compere.http.client_address import parse_trusted_proxies
from compere.http.keys import USER_KEY
from compere.http.ratelimit_middleware import (
    RateLimitPolicies,
    load_rate_limit_settings,
    rate_limit_cleanup_ctx,
    rate_limit_middleware,
)
from compere.infra.ratelimit import RateLimitPolicy
from tests.conftest import RATELIMIT_REDIS_URL, OwnRedisServer

ClientFactory = Callable[..., Awaitable[TestClient]]


async def ok(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def missing(request: web.Request) -> web.Response:
    raise web.HTTPNotFound(
        text='{"detail": "Not found"}', content_type="application/json"
    )


@web.middleware
async def fake_identity(request: web.Request, handler):  # type: ignore[no-untyped-def]
    """Stands in for the auth identity middleware: X-Test-User names the user."""
    if "X-Test-User" in request.headers:
        request[USER_KEY] = {"id": request.headers["X-Test-User"]}
    return await handler(request)


def make_app(
    *,
    redis_url: str | None,
    prefix: str,
    requests: int = 3,
    window: float = 60,
    auth_requests: int = 2,
    trusted: str = "",
    fail_mode: str = "open",
) -> web.Application:
    policies = RateLimitPolicies.standard(
        RateLimitPolicy("default", requests, window),
        RateLimitPolicy("auth", auth_requests, 60),
    )
    app = web.Application(
        middlewares=[
            fake_identity,
            rate_limit_middleware(
                policies,
                trusted_proxies=parse_trusted_proxies(trusted),
                fail_mode=fail_mode,  # type: ignore[arg-type]
            ),
        ]
    )
    app.cleanup_ctx.append(rate_limit_cleanup_ctx(redis_url, key_prefix=prefix))
    app.router.add_get("/entities/", ok)
    app.router.add_get("/entities/{id}", missing)
    app.router.add_get("/health", ok)
    app.router.add_get("/health/ready", ok)
    app.router.add_post("/auth/token", ok)
    app.router.add_post("/auth/users/", ok)
    return app


async def test_exactly_the_limit_is_allowed_then_429_with_headers(
    aiohttp_client: ClientFactory, ratelimit_redis_prefix: str
) -> None:
    client = await aiohttp_client(
        make_app(redis_url=RATELIMIT_REDIS_URL, prefix=ratelimit_redis_prefix)
    )
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
    assert "Rate limit exceeded" in (await refused.json())["detail"]
    assert refused.headers["X-RateLimit-Limit"] == "3"
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert (
        refused.headers["RateLimit"]
        == f'"default";r=0;t={refused.headers["Retry-After"]}'
    )
    assert int(refused.headers["X-RateLimit-Reset"]) == pytest.approx(now + 60, abs=2)


async def test_raised_http_errors_carry_the_headers_and_count(
    aiohttp_client: ClientFactory, ratelimit_redis_prefix: str
) -> None:
    client = await aiohttp_client(
        make_app(redis_url=RATELIMIT_REDIS_URL, prefix=ratelimit_redis_prefix)
    )
    response = await client.get("/entities/42")
    assert response.status == 404
    assert response.headers["X-RateLimit-Remaining"] == "2"
    assert response.headers["RateLimit-Policy"] == '"default";q=3;w=60'


async def test_health_is_exempt(
    aiohttp_client: ClientFactory, ratelimit_redis_prefix: str
) -> None:
    client = await aiohttp_client(
        make_app(redis_url=RATELIMIT_REDIS_URL, prefix=ratelimit_redis_prefix)
    )
    for path in ["/health", "/health/ready"] * 4:
        response = await client.get(path)
        assert response.status == 200
        assert "X-RateLimit-Limit" not in response.headers
    assert (await client.get("/entities/")).headers["X-RateLimit-Remaining"] == "2"


async def test_login_and_signup_share_their_own_small_quota(
    aiohttp_client: ClientFactory, ratelimit_redis_prefix: str
) -> None:
    client = await aiohttp_client(
        make_app(redis_url=RATELIMIT_REDIS_URL, prefix=ratelimit_redis_prefix)
    )
    first = await client.post("/auth/token")
    assert first.status == 200
    assert first.headers["RateLimit-Policy"] == '"auth";q=2;w=60'
    # With or without the slash, the same group (this app routes only one spelling).
    assert (await client.post("/auth/users")).headers["X-RateLimit-Remaining"] == "0"
    refused = await client.post("/auth/users/")
    assert refused.status == 429
    assert refused.headers["X-RateLimit-Limit"] == "2"
    # The default quota is untouched by the auth group.
    assert (await client.get("/entities/")).headers["X-RateLimit-Remaining"] == "2"


async def test_window_slides(
    aiohttp_client: ClientFactory, ratelimit_redis_prefix: str
) -> None:
    client = await aiohttp_client(
        make_app(
            redis_url=RATELIMIT_REDIS_URL,
            prefix=ratelimit_redis_prefix,
            requests=2,
            window=0.8,
        )
    )
    start = time.monotonic()
    assert (await client.get("/entities/")).status == 200
    await asyncio.sleep(0.4)
    assert (await client.get("/entities/")).status == 200
    assert (await client.get("/entities/")).status == 429
    await asyncio.sleep(max(0.0, start + 0.85 - time.monotonic()))
    # The first request has aged out, the second has not: exactly one more.
    assert (await client.get("/entities/")).status == 200
    assert (await client.get("/entities/")).status == 429


async def test_two_app_instances_share_one_global_limit(
    aiohttp_client: ClientFactory, ratelimit_redis_prefix: str
) -> None:
    instances = [
        await aiohttp_client(
            make_app(
                redis_url=RATELIMIT_REDIS_URL, prefix=ratelimit_redis_prefix, requests=5
            )
        )
        for _ in range(2)
    ]
    statuses = await asyncio.gather(
        *(instances[i % 2].get("/entities/") for i in range(10))
    )
    assert sorted(r.status for r in statuses) == [200] * 5 + [429] * 5


async def test_users_are_limited_by_identity_not_address(
    aiohttp_client: ClientFactory, ratelimit_redis_prefix: str
) -> None:
    client = await aiohttp_client(
        make_app(redis_url=RATELIMIT_REDIS_URL, prefix=ratelimit_redis_prefix)
    )
    for user in ("alice", "bob"):
        statuses = [
            (await client.get("/entities/", headers={"X-Test-User": user})).status
            for _ in range(4)
        ]
        assert statuses == [200, 200, 200, 429]
    # Anonymous requests from the same address still have their own quota.
    assert (await client.get("/entities/")).status == 200


async def test_rotating_forwarded_for_from_an_untrusted_peer_does_not_escape(
    aiohttp_client: ClientFactory, ratelimit_redis_prefix: str
) -> None:
    client = await aiohttp_client(
        make_app(
            redis_url=RATELIMIT_REDIS_URL,
            prefix=ratelimit_redis_prefix,
            trusted="10.0.0.0/8",
        )
    )
    statuses = [
        (
            await client.get(
                "/entities/", headers={"X-Forwarded-For": f"198.51.100.{i}"}
            )
        ).status
        for i in range(6)
    ]
    assert statuses == [200, 200, 200, 429, 429, 429]


async def test_behind_a_trusted_proxy_each_client_has_its_own_quota(
    aiohttp_client: ClientFactory, ratelimit_redis_prefix: str
) -> None:
    client = await aiohttp_client(
        make_app(
            redis_url=RATELIMIT_REDIS_URL,
            prefix=ratelimit_redis_prefix,
            trusted="127.0.0.1, ::1",
        )
    )
    for real_client in ("198.51.100.7", "203.0.113.8"):
        # Whatever the client prepends, the proxy appends the real address last.
        statuses = [
            (
                await client.get(
                    "/entities/",
                    headers={"X-Forwarded-For": f"10.9.9.{i}, {real_client}"},
                )
            ).status
            for i in range(4)
        ]
        assert statuses == [200, 200, 200, 429]


async def test_dead_redis_fails_open_without_hanging(
    aiohttp_client: ClientFactory, dead_redis_url: str
) -> None:
    client = await aiohttp_client(
        make_app(redis_url=dead_redis_url, prefix="unused:", fail_mode="open")
    )
    started = time.monotonic()
    responses = [await client.get("/entities/") for _ in range(5)]
    assert time.monotonic() - started < 2.5
    assert [r.status for r in responses] == [200] * 5
    assert "X-RateLimit-Limit" not in responses[0].headers


async def test_dead_redis_fails_closed_with_503(
    aiohttp_client: ClientFactory, dead_redis_url: str
) -> None:
    client = await aiohttp_client(
        make_app(redis_url=dead_redis_url, prefix="unused:", fail_mode="closed")
    )
    started = time.monotonic()
    response = await client.get("/entities/")
    assert time.monotonic() - started < 1.0
    assert response.status == 503
    assert response.headers["Retry-After"] == "1"
    assert "temporarily unavailable" in (await response.json())["detail"]
    assert (await client.get("/health")).status == 200


async def test_redis_outage_and_recovery(
    aiohttp_client: ClientFactory, own_redis_server: OwnRedisServer
) -> None:
    client = await aiohttp_client(
        make_app(redis_url=own_redis_server.url, prefix="rl:", fail_mode="closed")
    )
    assert (await client.get("/entities/")).status == 200

    own_redis_server.stop()
    started = time.monotonic()
    assert (await client.get("/entities/")).status == 503
    assert time.monotonic() - started < 1.0

    own_redis_server.start()
    deadline = time.monotonic() + 5
    while (response := await client.get("/entities/")).status == 503:
        assert time.monotonic() < deadline, "limiting did not resume"
        await asyncio.sleep(0.1)
    # The restarted server has no memory of the first request: a fresh quota of 3.
    assert response.headers["X-RateLimit-Remaining"] == "2"
    assert [(await client.get("/entities/")).status for _ in range(3)] == [
        200,
        200,
        429,
    ]


def test_middleware_validates_its_arguments() -> None:
    policies = RateLimitPolicies(RateLimitPolicy("default", 1, 1))
    with pytest.raises(ValueError, match="fail_mode"):
        rate_limit_middleware(policies, fail_mode="ajar")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        rate_limit_middleware({"default": (1, 1)})  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        rate_limit_middleware(policies, trusted_proxies=["127.0.0.1"])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({"RATE_LIMIT_REQUESTS": "0"}, "RATE_LIMIT_REQUESTS"),
        ({"RATE_LIMIT_WINDOW": "soon"}, "RATE_LIMIT_WINDOW"),
        ({"RATE_LIMIT_AUTH_REQUESTS": "-1"}, "RATE_LIMIT_AUTH_REQUESTS"),
        ({"RATE_LIMIT_FAIL_MODE": "ajar"}, "RATE_LIMIT_FAIL_MODE"),
        ({"TRUSTED_PROXIES": "nginx"}, "TRUSTED_PROXIES"),
        ({"ENVIRONMENT": "production", "RATE_LIMIT_ENABLED": "true"}, "REDIS_URL"),
    ],
)
def test_bad_settings_name_the_variable(environ: dict[str, str], variable: str) -> None:
    with pytest.raises(ValueError, match=variable):
        load_rate_limit_settings(environ)


def test_settings_defaults_and_overrides() -> None:
    defaults = load_rate_limit_settings({})
    assert (
        defaults.requests,
        defaults.window,
        defaults.auth_requests,
        defaults.fail_mode,
    ) == (100, 60, 10, "open")
    custom = load_rate_limit_settings(
        {
            "RATE_LIMIT_AUTH_REQUESTS": "3",
            "RATE_LIMIT_AUTH_WINDOW": "300",
            "TRUSTED_PROXIES": "10.0.0.0/8",
        }
    )
    policy = custom.policies().for_request("POST", "/auth/token")
    assert policy == RateLimitPolicy("auth", 3, 300)
    assert custom.trusted_proxies
