"""compere.client against a real server process (SQLite and PostgreSQL): every route, typed
answers, one exception class per error with the server's detail and request id.

The pacing and retry rules are also checked on their own, with an injected clock.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from datetime import UTC, datetime

import pytest
from aiohttp import web

from compere.client import (
    AsyncClient,
    BadRequest,
    Client,
    Conflict,
    Forbidden,
    NotFound,
    RateLimited,
    RateLimitGate,
    RetryPolicy,
    ServiceUnavailable,
    TransportError,
    Unauthorized,
    ValidationFailed,
)
from compere.client.ratelimit import parse_rate_limit_fields
from compere.client.retry import parse_retry_after
from compere.http.routes import ROUTES
from compere.http.schemas import (
    Comparison,
    Entity,
    Pair,
    PasswordChanged,
    RankedEntity,
    User,
    Webhook,
    WebhookCreated,
    WebhookDelivery,
)
from tests.helpers import TEST_SECRET_KEY
from tests.servers import free_port
from tests.webhook_helpers import FAST, eventually

# Which client method speaks to each route. A route added to the server without a client
# method fails test_every_route_has_a_client_method.
CLIENT_METHODS = {
    ("GET", "/voters"): "voters",
    ("GET", "/health"): "health",
    ("GET", "/health/ready"): "ready",
    ("POST", "/entities/"): "create_entity",
    ("GET", "/entities/"): "list_entities",
    ("POST", "/entities/import"): "import_entities",
    ("POST", "/comparisons/import"): "import_comparisons",
    ("GET", "/entities/{entity_id}"): "get_entity",
    ("PUT", "/entities/{entity_id}"): "update_entity",
    ("DELETE", "/entities/{entity_id}"): "delete_entity",
    ("POST", "/comparisons/"): "vote",
    ("POST", "/comparisons/batch"): "vote_batch",
    ("GET", "/comparisons/"): "list_comparisons",
    ("GET", "/comparisons/next"): "content_pair",
    ("GET", "/dissimilar_entities"): "dissimilar_entities",
    ("GET", "/comparisons/{comparison_id}"): "get_comparison",
    ("GET", "/mab/next_comparison"): "next_pair",
    ("POST", "/mab/update"): "mab_update",
    ("GET", "/ratings"): "ratings",
    ("GET", "/ratings/progress"): "progress",
    ("GET", "/ratings/categories"): "categories",
    ("GET", "/ratings/attributes"): "attributes",
    ("POST", "/auth/token"): "login",
    ("POST", "/auth/logout"): "logout",
    ("GET", "/auth/users/me"): "me",
    ("POST", "/auth/logout-all"): "logout_all",
    ("POST", "/auth/users/me/password"): "change_password",
    ("POST", "/auth/users/"): "create_user",
    ("GET", "/auth/users/"): "list_users",
    ("POST", "/auth/users/{user_id}/disable"): "disable_user",
    ("POST", "/auth/users/{user_id}/enable"): "enable_user",
    ("POST", "/auth/api-keys"): "create_api_key",
    ("GET", "/auth/api-keys"): "list_api_keys",
    ("DELETE", "/auth/api-keys/{key_id}"): "revoke_api_key",
    ("GET", "/export/comparisons"): "export_comparisons",
    ("GET", "/export/entities"): "export_entities",
    ("GET", "/comparisons/export/preferences"): "export_preferences",
    ("POST", "/webhooks/"): "create_webhook",
    ("GET", "/webhooks/"): "list_webhooks",
    ("GET", "/webhooks/{webhook_id}"): "get_webhook",
    ("PATCH", "/webhooks/{webhook_id}"): "update_webhook",
    ("DELETE", "/webhooks/{webhook_id}"): "delete_webhook",
    ("GET", "/webhooks/{webhook_id}/deliveries"): "list_deliveries",
    ("POST", "/webhooks/{webhook_id}/deliveries/{delivery_id}/replay"): "replay_delivery",
    ("GET", "/projects/"): "list_projects",
    ("POST", "/projects/"): "create_project",
    ("GET", "/projects/{slug}"): "get_project",
    ("PATCH", "/projects/{slug}"): "update_project",
    ("DELETE", "/projects/{slug}"): "archive_project",
    ("POST", "/projects/{slug}/restore"): "restore_project",
    ("GET", "/projects/{slug}/members"): "list_members",
    ("PUT", "/projects/{slug}/members/{username}"): "set_member",
    ("DELETE", "/projects/{slug}/members/{username}"): "remove_member",
}
# Every board route also answers under /projects/{slug}/: the same method, on a client
# made with ``project=slug``.
CLIENT_METHODS.update(
    {
        (method, "/projects/{slug}" + path): name
        for (method, path), name in list(CLIENT_METHODS.items())
        if path.startswith(
            (
                "/entities",
                "/comparisons",
                "/dissimilar_entities",
                "/mab/",
                "/ratings",
                "/export/",
                "/voters",
                "/webhooks",
            )
        )
    }
)

AUTH = {"AUTH_ENABLED": "true", "SECRET_KEY": TEST_SECRET_KEY, "BCRYPT_ROUNDS": "10"}
ADMIN = ("client-admin", "grey-heron-lantern-91")
ALICE = ("client-alice", "violet-otter-compass-27")
NEW_PASSWORD = "amber-falcon-meadow-64"


def test_every_route_has_a_client_method():
    routes = {(r.method, r.path) for r in ROUTES}
    missing = sorted(routes - set(CLIENT_METHODS))
    assert not missing, f"give these routes a method in compere/client/aio.py and list it here: {missing}"
    assert not set(CLIENT_METHODS) - routes, "CLIENT_METHODS names routes the server no longer has"
    for name in CLIENT_METHODS.values():
        assert callable(getattr(AsyncClient, name)) and callable(getattr(Client, name))


def test_importing_the_client_loads_no_database_or_redis_driver():
    code = (
        "import sys, compere.client; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'aiopg', 'aiosqlite', 'psycopg2', 'redis', 'sqlalchemy', 'bcrypt', 'jwt', 'numpy'}))"
    )
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "[]"


async def test_the_client_speaks_every_route_with_the_servers_models(start_server, tmp_path):
    server = start_server(**AUTH)
    async with AsyncClient(server.url) as admin:
        assert (await admin.health()).status == "healthy"
        assert (await admin.ready()).status == "ready"
        with pytest.raises(Unauthorized) as refused:
            await admin.list_entities()
        assert refused.value.status == 401 and refused.value.request_id

        first = await admin.create_user(*ADMIN)
        assert isinstance(first, User) and first.is_superuser
        await admin.login(*ADMIN)
        assert (await admin.me()).username == ADMIN[0]
        alice = await admin.create_user(*ALICE, email="alice@example.org")
        assert [u.username async for u in admin.iter_users(page_size=1)] == [ADMIN[0], ALICE[0]]
        assert (await admin.disable_user(alice.id)).disabled
        assert not (await admin.enable_user(alice.id)).disabled

        # Entities: create (also through an import), read, change, list, search, page.
        made = [await admin.create_entity(f"tea {i}", description=f"leaf {i}") for i in range(3)]
        assert all(isinstance(e, Entity) for e in made)
        with pytest.raises(Conflict):
            await admin.create_entity("again", external_id="x-1")
            await admin.create_entity("again", external_id="x-1")
        result = await admin.import_entities(
            [{"external_id": f"c-{i}", "name": f"coffee {i}"} for i in range(4)]
        )
        assert (result.created, result.existing) == (4, 0)
        csv_file = tmp_path / "more.csv"
        csv_file.write_text("external_id,name\nc-0,coffee 0\nm-1,mate\n")
        assert (await admin.import_entities(csv_file)).created == 1
        assert (await admin.get_entity(made[0].id)).name == "tea 0"
        changed = await admin.update_entity(made[0].id, description="green")
        assert (changed.name, changed.description) == ("tea 0", "green")
        page = await admin.list_entities(limit=2, search="coffee")
        assert page.total == 4 and len(page.items) == 2
        assert len([e async for e in admin.iter_entities(page_size=3)]) == 9
        with pytest.raises(ValidationFailed) as invalid:
            await admin.list_entities(limit=5000)
        assert invalid.value.status == 422 and invalid.value.detail[0]["loc"] == ["query", "limit"]

        # Pairs and votes.
        for strategy in (None, "active", "ucb", "random"):
            assert isinstance(await admin.next_pair(strategy), Pair)
        assert len(await admin.dissimilar_entities(seed=3)) == 2
        assert (await admin.content_pair(seed=3)).entity1.id > 0
        pair = await admin.next_pair()
        voted = await admin.vote_on(pair, pair.entity2)
        assert isinstance(voted, Comparison) and voted.strategy == pair.strategy
        with pytest.raises(Conflict):  # a pair_token votes once (a new key: not a retry)
            await admin.vote_on(pair, pair.entity1)
        with pytest.raises(BadRequest):
            await admin.vote(made[0], made[1], made[2])
        tie = await admin.vote(made[0].id, made[1].id, None)
        assert tie.selected_entity_id is None and tie.user_id == first.id
        key = str(uuid.uuid4())  # the Redis store outlives this test's database: a key of its own
        same_key = [await admin.vote(made[1], made[2], made[2], idempotency_key=key) for _ in range(2)]
        assert same_key[0] == same_key[1]  # the second was a replay, not a second vote
        assert (await admin.get_comparison(voted.id)).id == voted.id
        with pytest.raises(NotFound) as missing:
            await admin.get_comparison(10**6)
        assert missing.value.detail == f"Comparison with id {10**6} not found"
        assert (await admin.mab_update(voted.id)).message
        log = [c.id async for c in admin.iter_comparisons(page_size=2)]
        assert log == sorted(log, reverse=True) and len(log) == 3
        involving = await admin.list_comparisons(entity_id=made[1].id)
        assert {same_key[0].id, tie.id} <= {c.id for c in involving}
        assert all(made[1].id in (c.entity1_id, c.entity2_id) for c in involving)
        batch = await admin.vote_batch([(made[0], made[1], made[0]), (made[1].id, made[2].id, None)])
        assert batch.stored == 2 and [r.status for r in batch.results] == [200, 200]
        assert (
            batch.results[1].comparison is not None and batch.results[1].comparison.selected_entity_id is None
        )
        log += [r.comparison.id for r in batch.results if r.comparison is not None]

        # The leaderboard, with every option.
        for by in ("rating", "score"):
            for model in ("online", "bt"):
                whole = await admin.ratings(by=by, model=model)
                assert whole.total == 9 and len(whole.items) == 9
                assert all(isinstance(e, RankedEntity) for e in whole.items)
                top = await admin.ratings(by=by, model=model, skip=1, limit=3)
                assert [e.id for e in top.items] == [e.id for e in whole.items[1:4]]
        assert len([e async for e in admin.iter_ratings(by="score", page_size=4)]) == 9
        # Style control: two entities with a length, the board controlled for it.
        for entity, length in ((made[0], 10.0), (made[1], 30.0)):
            assert (await admin.update_entity(entity.id, attributes={"length": length})).attributes == {
                "length": length
            }
        assert [(a.attribute, a.entities) for a in await admin.attributes()] == [("length", 2)]
        controlled = await admin.controlled_ratings(["length"], detail="full", limit=20)
        assert controlled.control == ["length"] and len(controlled.entries) == 9
        assert controlled.coefficients[0].attribute == "length"
        assert sum(e.imputed == ["length"] for e in controlled.entries) == 7

        # Streamed exports.
        records = [r async for r in admin.export_comparisons()]
        assert [r["id"] for r in records] == sorted(log)
        csv_bytes = b"".join([chunk async for chunk in admin.export_comparisons_raw("csv")])
        assert csv_bytes.startswith(b"id,") and csv_bytes.count(b"\n") == 6
        target = tmp_path / "votes.jsonl"
        assert await admin.download_comparisons(target) == target.stat().st_size > 0

        async with AsyncClient(server.url) as other:
            await other.login(*ALICE)
            with pytest.raises(Forbidden) as forbidden:
                await other.delete_entity(made[2].id)
            assert forbidden.value.status == 403
            assert (await other.logout()).message
        assert (await admin.delete_entity(made[2].id)).message
        with pytest.raises(NotFound):
            await admin.get_entity(made[2].id)

    with Client(server.url) as blocking:  # the blocking wrapper: same methods, same models
        assert blocking.login(*ADMIN).token_type == "bearer"
        assert blocking.get_entity(made[0].id).description == "green"
        assert len(list(blocking.iter_entities(page_size=5))) == 8
        assert len(list(blocking.export_comparisons())) == 5
        with pytest.raises(NotFound):
            blocking.get_entity(10**6)


async def test_the_client_speaks_the_webhook_export_and_account_routes(start_server, receiver, tmp_path):
    server = start_server(**AUTH, **FAST)  # FAST allows the loopback receiver
    async with AsyncClient(server.url) as admin:
        await admin.create_user(*ADMIN)
        await admin.login(*ADMIN)
        assert [u.username for u in await admin.list_users()] == [ADMIN[0]]

        # Webhooks: subscribe, read, change only the fields given, the delivery log, replay.
        hook = await admin.create_webhook(receiver.url(), ["entity.created"], description="tour")
        assert isinstance(hook, WebhookCreated) and hook.secret.startswith("whsec_")
        assert [(w.id, type(w)) for w in await admin.list_webhooks()] == [(hook.id, Webhook)]
        assert (await admin.get_webhook(hook.id)).url == receiver.url()
        changed = await admin.update_webhook(hook.id, events=["entity.created", "comparison.created"])
        assert (changed.description, changed.events) == ("tour", ["comparison.created", "entity.created"])
        answers = [
            await admin.create_entity(f"reply {i}", description=f"text {i}", prompt="Write a haiku.")
            for i in range(3)
        ]

        async def delivered() -> bool:
            return bool(await admin.list_deliveries(hook.id, status="delivered", limit=1))

        await eventually(delivered, "a delivery")
        log = [d async for d in admin.iter_deliveries(hook.id, page_size=1)]
        assert all(isinstance(d, WebhookDelivery) for d in log) and log[-1].status == "delivered"
        assert [d.id for d in log] == sorted((d.id for d in log), reverse=True)
        replay = await admin.replay_delivery(hook.id, log[-1].id)
        assert (replay.replay_of, replay.event_type) == (log[-1].id, log[-1].event_type)

        async def replayed() -> bool:
            return any(
                d.id == replay.id and d.status == "delivered" for d in await admin.list_deliveries(hook.id)
            )

        await eventually(replayed, "the replay")
        with pytest.raises(NotFound):
            await admin.replay_delivery(hook.id, 10**6)

        # Exports: entities, and preference datasets in both formats.
        await admin.vote(answers[0], answers[1], None)
        await admin.vote(answers[0], answers[2], answers[2])
        unprompted = await admin.create_entity("no prompt")
        await admin.vote(answers[0], unprompted, answers[0])
        dpo = [r async for r in admin.export_preferences("dpo")]
        assert dpo == [{"prompt": "Write a haiku.", "chosen": "text 2", "rejected": "text 0"}]
        kept = [r async for r in admin.export_preferences("dpo", ties="keep")]
        assert len(kept) == 2 and kept[0]["tie"] is True
        arena = [r async for r in admin.export_preferences("arena")]
        assert [(r["model_a"], r["winner"]) for r in arena] == [
            ("reply 0", "tie"),
            ("reply 0", "model_b"),
            ("reply 0", "model_a"),
        ]
        raw = b"".join([chunk async for chunk in admin.export_preferences_raw("dpo", ties="keep")])
        assert raw.count(b"\n") == 2
        target = tmp_path / "arena.jsonl"
        assert await admin.download_preferences(target, "arena") == target.stat().st_size > 0
        names = [r["name"] async for r in admin.export_entities()]
        assert sorted(names) == ["no prompt", "reply 0", "reply 1", "reply 2"]
        csv_bytes = b"".join([chunk async for chunk in admin.export_entities_raw("csv")])
        assert csv_bytes.startswith(b"id,") and csv_bytes.count(b"\n") == 5
        target = tmp_path / "entities.csv"
        assert await admin.download_entities(target, "csv") == target.stat().st_size > 0

        with Client(server.url, token=admin.token) as blocking:  # the blocking wrapper
            assert [w.id for w in blocking.list_webhooks()] == [hook.id]
            assert len(list(blocking.iter_deliveries(hook.id))) >= len(log) + 1
            assert len(list(blocking.export_preferences("arena"))) == 3
            assert len(list(blocking.export_entities())) == 4
        assert (await admin.delete_webhook(hook.id)).message
        with pytest.raises(NotFound):
            await admin.get_webhook(hook.id)

        # The account: a password change ends older tokens and keeps the new one.
        async with AsyncClient(server.url) as elsewhere:
            await elsewhere.login(*ADMIN)
            changed_password = await admin.change_password(ADMIN[1], NEW_PASSWORD)
            assert isinstance(changed_password, PasswordChanged)
            assert admin.token == changed_password.access_token
            assert (await admin.me()).username == ADMIN[0]
            with pytest.raises(Unauthorized):
                await elsewhere.me()
            with pytest.raises(BadRequest):
                await admin.change_password(ADMIN[1], "another-long-passphrase-5")
            await elsewhere.login(ADMIN[0], NEW_PASSWORD)
            assert (await admin.logout_all()).message and admin.token is None
            with pytest.raises(Unauthorized):
                await elsewhere.me()


async def test_writes_the_server_cannot_deduplicate_are_not_retried_after_a_503(receiver):
    async def unavailable(seen: dict[str, object]) -> web.Response:
        return web.json_response({"detail": "Service unavailable"}, status=503)

    receiver.respond = unavailable
    retry = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02)
    async with AsyncClient(f"http://127.0.0.1:{receiver.port}", token="t", retry=retry) as compere:
        once = [
            compere.create_webhook("https://example.org/hook", ["entity.created"]),
            compere.replay_delivery(1, 2),
            compere.change_password("old-long-passphrase-1", "new-long-passphrase-2"),
        ]
        for call in once:
            with pytest.raises(ServiceUnavailable):
                await call
        assert [r["path"] for r in receiver.requests] == [
            "/webhooks/",
            "/webhooks/1/deliveries/2/replay",
            "/auth/users/me/password",
        ]
        with pytest.raises(ServiceUnavailable):  # a PATCH sets values: safe to send again
            await compere.update_webhook(1, active=False)
    assert len(receiver.requests) == 3 + retry.attempts


async def test_the_user_listing_is_asked_for_at_its_own_path_not_through_a_redirect(receiver):
    async def empty(seen: dict[str, object]) -> web.Response:
        return web.json_response([])

    receiver.respond = empty
    async with AsyncClient(f"http://127.0.0.1:{receiver.port}") as compere:
        assert await compere.list_users() == []
        assert [u async for u in compere.iter_users()] == []
    assert [r["path"] for r in receiver.requests] == ["/auth/users/", "/auth/users/"]


async def test_a_429_asking_for_a_long_wait_raises_at_once_instead_of_sleeping(start_server):
    server = start_server(**AUTH, LOGIN_MAX_FAILURES="2", LOGIN_FAILURE_WINDOW="900")
    async with AsyncClient(server.url) as compere:
        await compere.create_user(*ADMIN)
        for _ in range(2):
            with pytest.raises(Unauthorized):
                await compere.login(ADMIN[0], "not-the-password")
        async with asyncio.timeout(30):  # the lockout lasts 900 s: waiting it out would hang here
            with pytest.raises(RateLimited) as locked:
                await compere.login(*ADMIN)
    assert locked.value.status == 429 and int(locked.value.headers["Retry-After"]) > 60


async def test_a_server_that_never_answers_ends_in_a_transport_error_after_the_bounded_attempts():
    retry = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02)
    async with AsyncClient(f"http://127.0.0.1:{free_port()}", retry=retry) as compere:
        with pytest.raises(TransportError) as failed:
            await compere.vote(1, 2, 1)
    assert failed.value.status is None and "ClientConnectorError" in str(failed.value)


# --- the rules on their own -------------------------------------------------------------


def test_rate_limit_fields_and_retry_after_parse_as_the_server_writes_them():
    assert parse_rate_limit_fields('"default";q=100;w=60') == {"default": {"q": 100, "w": 60}}
    assert parse_rate_limit_fields('"auth";r=0;t=7, "x";r=bad') == {"auth": {"r": 0, "t": 7}, "x": {}}
    assert parse_rate_limit_fields(None) == {}
    assert parse_retry_after("3") == 3.0
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_retry_after("Thu, 01 Jan 2026 00:00:10 GMT", now) == 10.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_backoff_grows_is_jittered_capped_and_respects_retry_after():
    low = RetryPolicy(base_delay=1, max_delay=8, random=lambda: 0.0)
    high = RetryPolicy(base_delay=1, max_delay=8, random=lambda: 0.999999)
    assert [low.backoff(n) for n in (1, 2, 3, 4, 5)] == [0.5, 1, 2, 4, 4]
    assert [round(high.backoff(n)) for n in (1, 2, 3, 4, 5)] == [1, 2, 4, 8, 8]
    assert low.backoff(1, retry_after=5) == 5
    with pytest.raises(ValueError):
        RetryPolicy(attempts=0)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limited(remaining: int, reset: int = 2, limit: int = 3) -> dict[str, str]:
    return {
        "RateLimit-Policy": f'"default";q={limit};w=10',
        "RateLimit": f'"default";r={remaining};t={reset}',
    }


def started(*tasks: asyncio.Task[object]) -> list[bool]:
    return [t.done() for t in tasks]


async def test_the_gate_probes_once_then_keeps_every_task_inside_the_announced_quota():
    clock = Clock()
    gate = RateLimitGate(clock=clock, jitter=lambda: 0.0)
    probe = await gate.acquire("POST /comparisons/")
    waiting = asyncio.create_task(gate.acquire("POST /comparisons/"))
    await asyncio.sleep(0)
    assert not waiting.done()  # nothing known yet: one request finds out
    gate.release(probe, 200, limited(remaining=2))
    permits = [await waiting, await gate.acquire("GET /entities/")]  # the same policy
    third = asyncio.create_task(gate.acquire("POST /comparisons/"))
    await asyncio.sleep(0)
    assert not third.done()  # 1 answered + 2 in flight = the limit of 3
    gate.release(permits[0], 200, limited(remaining=1))
    await asyncio.sleep(0)
    assert not third.done()  # still 3 in the window: the answer counts until it leaves it
    clock.now += 10.5
    gate.release(permits[1], 200, limited(remaining=1))
    assert (await asyncio.wait_for(third, 1)).window is not None


async def test_a_429_holds_back_every_task_until_retry_after_and_counts_the_refusal():
    clock = Clock()
    gate = RateLimitGate(clock=clock, jitter=lambda: 0.0)
    first = await gate.acquire("GET /ratings")
    gate.release(first, 200, limited(remaining=2, limit=100))
    refused = await gate.acquire("GET /ratings")
    gate.release(refused, 429, {**limited(remaining=0, limit=100), "Retry-After": "30"})
    assert gate.refusals == 1
    others = [asyncio.create_task(gate.acquire("GET /ratings")) for _ in range(5)]
    await asyncio.sleep(0.05)
    assert started(*others) == [False] * 5
    for task in others:
        task.cancel()


async def test_routes_answered_without_limit_headers_are_not_paced():
    gate = RateLimitGate()
    probe = await gate.acquire("GET /health")
    gate.release(probe, 200, {})
    permits = [await gate.acquire("GET /health") for _ in range(50)]
    assert all(p.window is None for p in permits)
