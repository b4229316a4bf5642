"""Which client sent a request, told honestly behind reverse proxies.

The address is the socket peer. Only when that peer is one of ``TRUSTED_PROXIES`` do we
read ``X-Forwarded-For``, and then from the right: each trusted proxy appends the address
it received the request from, so the right-most entry that is not itself a trusted proxy
was written by our own proxy about the real client. Everything to its left came from the
client and may be invented; a client can therefore never choose the address we see.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from compere.infra.addresses import (
    UNIX_PEER,
    IPAddress,
    TrustedProxies,
    client_group,
    parse_address,
    parse_trusted_proxies,
)

__all__ = [
    "Client",
    "TrustedProxies",
    "client_address",
    "client_group",
    "parse_trusted_proxies",
    "resolve_client",
]


@dataclass(frozen=True, slots=True)
class Client:
    """Who sent a request, resolved once at the edge and kept under ``CLIENT``."""

    address: str  # as :func:`client_address` tells it: what logs and /metrics's allow-list see
    group: str  # whose per-client quotas it spends (:func:`client_group`: IPv6 by /64)


def resolve_client(request: web.Request, trusted_proxies: TrustedProxies) -> Client:
    """The request's :class:`Client`: its address through ``trusted_proxies``, and its group."""
    address = client_address(request, trusted_proxies)
    return Client(address, client_group(address))


def client_address(request: web.Request, trusted_proxies: TrustedProxies) -> str:
    """The client's IP address as text (IPv4-mapped IPv6 shown as IPv4), or ``"unix"``."""
    peer_text = _peer_host(request)
    peer = parse_address(peer_text) if peer_text else None
    if peer_text and peer is None:
        return peer_text  # not an IP peer we understand: the socket peer is all we know
    if not trusted_proxies or not trusted_proxies.trusts(peer):
        return str(peer) if peer is not None else UNIX_PEER

    nearest_trusted: IPAddress | None = peer
    for entry in reversed(_forwarded_for(request)):
        hop = parse_address(entry)
        if hop is None:
            # Our proxy would only write a real address here; stop at the last hop we trust
            # rather than key on text the client may have supplied.
            break
        if not trusted_proxies.trusts(hop):
            return str(hop)
        nearest_trusted = hop
    return str(nearest_trusted) if nearest_trusted is not None else UNIX_PEER


def _peer_host(request: web.Request) -> str | None:
    transport = request.transport
    peername = transport.get_extra_info("peername") if transport is not None else request.remote
    if isinstance(peername, tuple | list) and peername:
        return str(peername[0])
    if isinstance(peername, str) and peername:
        # A unix socket's peer name is a path or empty; request.remote is an address.
        return None if transport is not None else peername
    return None


def _forwarded_for(request: web.Request) -> list[str]:
    values = request.headers.getall("X-Forwarded-For", [])
    return [part.strip() for value in values for part in value.split(",")]
