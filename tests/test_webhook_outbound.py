"""Webhook requests never reach private addresses, follow no redirects, and time out.

Through HTTP where a user sees it (subscription refused, delivery log), and on the
sender itself for host names that resolve to private addresses: a resolver that
answers from a fixed table stands in for DNS, which a test cannot run for arbitrary
names.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from compere.infra.outbound import AddressPolicy, WebhookSender
from tests.webhook_helpers import FAST, Receiver, make_entities, newest_delivery_when, subscribe

REFUSED_LITERALS = [
    "http://10.0.0.1/hook",
    "http://10.255.255.255:8080/hook",
    "http://172.16.0.1/",
    "http://192.168.1.1/",
    "http://169.254.169.254/latest/meta-data/",  # cloud metadata
    "http://127.0.0.1/",
    "http://127.1.2.3/",
    "http://0.0.0.0/",
    "http://100.64.0.1/",  # shared address space
    "http://[::1]/",
    "http://[fc00::1]/",
    "http://[fd12:3456::1]/",
    "http://[fe80::1]/",
    "http://[::ffff:10.0.0.1]/",  # IPv4-mapped
    "http://[::ffff:127.0.0.1]/",
    "http://[::]/",
]


@pytest.mark.parametrize("url", REFUSED_LITERALS)
async def test_private_address_literals_are_refused_at_subscription(make_client, url):
    client = await make_client(**{**FAST, "WEBHOOK_ALLOW_PRIVATE": "false"})
    resp = await client.post("/webhooks/", json={"url": url, "events": ["entity.created"]})
    assert resp.status == 422, await resp.text()
    (issue,) = (await resp.json())["detail"]
    assert issue["loc"] == ["body", "url"] and "may not reach" in issue["msg"]
    resp = await client.post("/webhooks/", json={"url": "https://example.com/", "events": ["entity.created"]})
    assert resp.status == 200
    hook_id = (await resp.json())["id"]
    resp = await client.patch(f"/webhooks/{hook_id}", json={"url": url})
    assert resp.status == 422


async def test_a_name_resolving_to_loopback_is_refused_at_delivery(make_client, receiver):
    # The receiver listens on 127.0.0.1; "localhost" resolves there (real resolver).
    client = await make_client(**{**FAST, "WEBHOOK_ALLOW_PRIVATE": "false"})
    hook = await subscribe(client, f"http://localhost:{receiver.port}/hook", ["entity.created"])
    await make_entities(client, 1)

    delivery = await newest_delivery_when(client, hook["id"], lambda d: d["attempts"] >= 2, "two attempts")
    assert delivery["status"] == "pending" and delivery["response_code"] is None
    assert delivery["last_error"].startswith("refused: localhost resolves to")
    assert "loopback" in delivery["last_error"]
    assert receiver.requests == []  # nothing ever connected


async def test_redirects_are_not_followed(make_client, receiver):
    async def respond(request: dict[str, Any]) -> web.StreamResponse:
        if request["path"] == "/hook":
            raise web.HTTPFound(receiver.url("/elsewhere"))
        return web.Response(text="ok")

    receiver.respond = respond
    client = await make_client(**FAST)
    hook = await subscribe(client, receiver.url(), ["entity.created"])
    await make_entities(client, 1)

    delivery = await newest_delivery_when(client, hook["id"], lambda d: d["attempts"] >= 2, "two attempts")
    assert delivery["status"] == "pending" and delivery["response_code"] == 302
    assert {r["path"] for r in receiver.requests} == {"/hook"}


async def test_a_receiver_that_never_answers_times_out(make_client, receiver):
    async def respond(request: dict[str, Any]) -> web.StreamResponse:
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    receiver.respond = respond
    client = await make_client(**{**FAST, "WEBHOOK_TIMEOUT": "0.3"})
    hook = await subscribe(client, receiver.url(), ["entity.created"])
    await make_entities(client, 1)

    await newest_delivery_when(client, hook["id"], lambda d: d["last_error"] == "timed out", "a time-out")
    # Votes and reads are not held up meanwhile.
    assert (await client.get("/entities/")).status == 200


class FixedResolver(AbstractResolver):
    """Answers from a table, as a DNS server under an attacker's control might."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET6 if ":" in address else socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
            for address in self.table[host]
        ]

    async def close(self) -> None:
        return None


@pytest.mark.parametrize(
    ("addresses", "reason"),
    [
        (["10.1.2.3"], "private"),
        (["169.254.169.254"], "link-local"),
        (["127.0.0.1"], "loopback"),
        (["::1"], "loopback"),
        (["fc00::5"], "private"),
        (["fe80::1"], "link-local"),
        (["93.184.216.34", "10.0.0.7"], "private"),  # one bad address spoils the name
    ],
)
async def test_names_resolving_to_private_addresses_are_refused(addresses, reason):
    receiver = Receiver()
    await receiver.start()
    resolver = FixedResolver({"hooks.example": addresses})
    sender = WebhookSender(AddressPolicy(allow_private=False), timeout=2, resolver=resolver)
    try:
        outcome = await sender.post(f"http://hooks.example:{receiver.port}/", b"{}", {})
    finally:
        await sender.close()
        await receiver.stop()
    assert not outcome.ok and outcome.status is None
    assert outcome.error is not None and outcome.error.startswith("refused: hooks.example resolves to")
    assert reason in outcome.error
    assert receiver.requests == []


async def test_the_checked_address_is_the_one_connected_to():
    # With private addresses allowed (as in tests), the name still goes to exactly the
    # address the resolver returned: the loopback receiver gets the request.
    receiver = Receiver()
    await receiver.start()
    sender = WebhookSender(
        AddressPolicy(allow_private=True), timeout=2, resolver=FixedResolver({"hooks.example": ["127.0.0.1"]})
    )
    try:
        outcome = await sender.post(f"http://hooks.example:{receiver.port}/in", b'{"type": "x"}', {})
    finally:
        await sender.close()
        await receiver.stop()
    assert outcome.ok and outcome.status == 200
    assert [r["path"] for r in receiver.requests] == ["/in"]


def test_address_policy_allows_public_addresses():
    policy = AddressPolicy()
    assert policy.refusal("93.184.216.34") is None
    assert policy.refusal("2606:2800:220:1:248:1893:25c8:1946") is None
    assert AddressPolicy(allow_private=True).refusal("10.0.0.1") is None


@pytest.mark.parametrize("host", ["localhost", "2130706433", "0x7f000001", "127.1"])
async def test_numeric_and_local_host_forms_never_connect(host):
    # Forms that the system resolver turns into 127.0.0.1: refused by the checking
    # resolver, or rejected by aiohttp as non-canonical, never connected to.
    receiver = Receiver()
    await receiver.start()
    sender = WebhookSender(AddressPolicy(allow_private=False), timeout=2)
    try:
        outcome = await sender.post(f"http://{host}:{receiver.port}/", b"{}", {})
    finally:
        await sender.close()
        await receiver.stop()
    assert not outcome.ok and outcome.status is None
    assert receiver.requests == []
    assert outcome.error is not None
