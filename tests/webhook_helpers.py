"""Helpers of the webhook tests: a receiver on loopback, and short HTTP steps."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from tests.servers import free_port

# Short schedules so retries happen within a test; loopback allowed (the receiver).
FAST = {
    "WEBHOOK_ALLOW_PRIVATE": "true",
    "WEBHOOK_POLL_INTERVAL": "0.05",
    "WEBHOOK_RETRY_BASE": "0.05",
    "WEBHOOK_RETRY_MAX_DELAY": "0.2",
    "WEBHOOK_TIMEOUT": "2",
    "WEBHOOK_LEADERBOARD_INTERVAL": "0.05",
}


class Receiver:
    """An aiohttp server on 127.0.0.1 that records what webhooks POST to it.

    ``respond`` decides the status per request (default 200); ``start``/``stop`` take it
    up and down on the same port, for outages.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.requests: list[dict[str, Any]] = []
        self.respond: Callable[[dict[str, Any]], Awaitable[web.StreamResponse]] | None = None
        self._runner: web.AppRunner | None = None

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        seen = {
            "path": request.path,
            "headers": dict(request.headers),
            "body": body,
            "json": json.loads(body) if body else None,
        }
        self.requests.append(seen)
        if self.respond is not None:
            return await self.respond(seen)
        return web.Response(text="ok")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.2)  # handlers may hang on purpose
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def of_type(self, event_type: str, path: str | None = None) -> list[dict[str, Any]]:
        return [
            r
            for r in self.requests
            if r["json"]["type"] == event_type and (path is None or r["path"] == path)
        ]


async def eventually(check: Callable[[], Awaitable[bool] | bool], what: str, within: float = 15.0) -> None:
    """Wait (bounded) until ``check`` holds."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        result = check()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def subscribe(
    client: TestClient, url: str, events: list[str], *, prefix: str = "", **extra: Any
) -> dict[str, Any]:
    """Subscribe ``url``; ``prefix`` ``/projects/{slug}`` for a project's own webhooks."""
    resp = await client.post(f"{prefix}/webhooks/", json={"url": url, "events": events, **extra})
    assert resp.status == 200, await resp.text()
    return dict(await resp.json())


async def deliveries(client: TestClient, webhook_id: int, **query: str) -> list[dict[str, Any]]:
    resp = await client.get(f"/webhooks/{webhook_id}/deliveries", params=query)
    assert resp.status == 200, await resp.text()
    return list(await resp.json())


async def all_delivered(client: TestClient, webhook_id: int) -> bool:
    """Whether every delivery of the subscription is marked delivered (the sender does
    that only after the receiver has answered)."""
    return {d["status"] for d in await deliveries(client, webhook_id)} == {"delivered"}


async def make_entities(client: TestClient, count: int, *, prefix: str = "", **fields: Any) -> list[int]:
    ids = []
    for i in range(count):
        resp = await client.post(f"{prefix}/entities/", json={"name": f"item {i}", **fields})
        assert resp.status == 200, await resp.text()
        ids.append((await resp.json())["id"])
    return ids


async def vote(client: TestClient, one: int, two: int, winner: int | None, *, prefix: str = "") -> int:
    resp = await client.post(
        f"{prefix}/comparisons/", json={"entity1_id": one, "entity2_id": two, "selected_entity_id": winner}
    )
    assert resp.status == 200, await resp.text()
    return int((await resp.json())["id"])


async def newest_delivery_when(
    client: TestClient, webhook_id: int, check: Callable[[dict[str, Any]], bool], what: str
) -> dict[str, Any]:
    """Wait (bounded) until the subscription's newest delivery passes ``check``; return it."""
    found: dict[str, Any] = {}

    async def ready() -> bool:
        log = await deliveries(client, webhook_id)
        if log and check(log[0]):
            found.update(log[0])
            return True
        return False

    await eventually(ready, what)
    return found
