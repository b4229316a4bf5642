"""Client address resolution: X-Forwarded-For counts only when a trusted proxy sent it."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from compere.http.app import create_app
from compere.http.client_address import client_address, parse_trusted_proxies
from compere.http.keys import CLIENT


class PeerTransport:
    """Just enough of a transport to say who is at the other end of the socket."""

    def __init__(self, peername: Any) -> None:
        self._peername = peername

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._peername if name == "peername" else default


def request_from(peer: Any, *forwarded_for: str):  # type: ignore[no-untyped-def]
    headers = CIMultiDict(("X-Forwarded-For", value) for value in forwarded_for)
    return make_mocked_request("GET", "/", headers=headers, transport=PeerTransport(peer))


NGINX = ("10.0.0.5", 41000)


@pytest.mark.parametrize(
    ("trusted", "peer", "forwarded", "expected"),
    [
        # No trusted proxies: the header is ignored whatever it says.
        ("", ("203.0.113.9", 5000), ["198.51.100.1"], "203.0.113.9"),
        ("", ("203.0.113.9", 5000), [], "203.0.113.9"),
        # A peer that is not a trusted proxy cannot pick its key.
        ("10.0.0.0/24", ("203.0.113.9", 5000), ["198.51.100.1"], "203.0.113.9"),
        # Behind a trusted proxy: the right-most entry that is not a proxy.
        ("10.0.0.0/24", NGINX, ["198.51.100.1"], "198.51.100.1"),
        ("10.0.0.0/24", NGINX, ["1.1.1.1, 198.51.100.1"], "198.51.100.1"),
        ("10.0.0.0/24", NGINX, ["1.1.1.1", "198.51.100.1, 10.0.0.7"], "198.51.100.1"),
        (
            "10.0.0.0/24 192.168.1.1",
            NGINX,
            ["6.6.6.6, 198.51.100.1, 192.168.1.1"],
            "198.51.100.1",
        ),
        # Ports and brackets as some proxies write them; IPv6 normalised.
        ("10.0.0.5", NGINX, ["198.51.100.1:4711"], "198.51.100.1"),
        ("10.0.0.5", NGINX, ["[2001:DB8::1]:4711"], "2001:db8::1"),
        ("10.0.0.5", NGINX, ["2001:db8:0:0::1"], "2001:db8::1"),
        # Garbage where the proxy would have written an address: stop at the proxy.
        ("10.0.0.5", NGINX, ["198.51.100.1, not-an-ip"], "10.0.0.5"),
        ("10.0.0.5", NGINX, ["unknown"], "10.0.0.5"),
        # Trusted proxy without the header, or only proxies in it.
        ("10.0.0.0/24", NGINX, [], "10.0.0.5"),
        ("10.0.0.0/24", NGINX, ["10.0.0.9, 10.0.0.8"], "10.0.0.9"),
        # IPv4-mapped peers (dual-stack sockets) match IPv4 entries.
        (
            "10.0.0.5",
            ("::ffff:10.0.0.5", 41000, 0, 0),
            ["198.51.100.1"],
            "198.51.100.1",
        ),
        ("::ffff:10.0.0.0/120", ("10.0.0.5", 41000), ["198.51.100.1"], "198.51.100.1"),
        ("::1", ("::1", 41000, 0, 0), ["198.51.100.1"], "198.51.100.1"),
        # A unix-socket peer is trusted only when listed.
        ("", "", ["198.51.100.1"], "unix"),
        ("unix", "", ["198.51.100.1"], "198.51.100.1"),
    ],
)
def test_client_address(trusted: str, peer: Any, forwarded: list[str], expected: str) -> None:
    request = request_from(peer, *forwarded)
    assert client_address(request, parse_trusted_proxies(trusted)) == expected


def test_rotating_forwarded_for_from_untrusted_peer_keeps_one_address() -> None:
    trusted = parse_trusted_proxies("10.0.0.0/8")
    seen = {
        client_address(request_from(("203.0.113.9", 5000), f"198.51.100.{i}"), trusted) for i in range(20)
    }
    assert seen == {"203.0.113.9"}


@pytest.mark.parametrize("bad", ["10.0.0.1/8", "10.0.0.300", "proxy.example.com", "::g"])
def test_bad_trusted_proxies_are_refused_with_the_entry_named(bad: str) -> None:
    with pytest.raises(ValueError, match=repr(bad).replace("[", r"\[")):
        parse_trusted_proxies(f"127.0.0.1, {bad}")


def test_trusted_proxies_parse_lists_and_strings_alike() -> None:
    assert parse_trusted_proxies(["127.0.0.1", "10.0.0.0/8"]) == parse_trusted_proxies(
        " 127.0.0.1 ,10.0.0.0/8 "
    )
    assert not parse_trusted_proxies("")


async def test_the_client_is_resolved_once_at_the_edge_and_every_layer_reads_it(
    make_client, make_settings, caplog
) -> None:
    settings = make_settings(
        TRUSTED_PROXIES="127.0.0.1, ::1", METRICS_ENABLED="true", METRICS_ALLOWED_IPS="198.51.100.0/24"
    )
    app = await create_app(settings, configure_logs=False)

    async def whoami(request: web.Request) -> web.Response:
        return web.json_response({"address": request[CLIENT].address, "group": request[CLIENT].group})

    app.router.add_get("/whoami", whoami)
    client = await make_client(app)
    behind_proxy = {"X-Forwarded-For": "203.0.113.1, 198.51.100.7"}
    with caplog.at_level(logging.INFO, logger="compere.request"):
        resp = await client.get("/whoami", headers=behind_proxy)
    assert await resp.json() == {"address": "198.51.100.7", "group": "ip:198.51.100.7"}
    assert [r.client for r in caplog.records if r.name == "compere.request"] == ["198.51.100.7"]
    six = await client.get("/whoami", headers={"X-Forwarded-For": "2001:db8::5"})
    assert await six.json() == {"address": "2001:db8::5", "group": "ip6:2001:db8::/64"}
    # /metrics's allow-list sees the same forwarded client, not the proxy (loopback).
    assert (await client.get("/metrics", headers=behind_proxy)).status == 200
    assert (await client.get("/metrics")).status == 403
