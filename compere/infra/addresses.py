"""IP addresses as sockets and proxies report them: parsing, trusted proxies, client groups.

No HTTP here: ``compere.http.client_address`` reads a request's peer and
``X-Forwarded-For`` with these, and the settings parse ``TRUSTED_PROXIES`` with
:func:`parse_trusted_proxies` once, when they load.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "UNIX_PEER",
    "IPAddress",
    "IPNetwork",
    "TrustedProxies",
    "client_group",
    "parse_address",
    "parse_trusted_proxies",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# What a unix-socket peer (nginx on the same host, say) is called: the token to list in
# TRUSTED_PROXIES to trust it, and the address reported when it is not trusted.
UNIX_PEER = "unix"


@dataclass(frozen=True)
class TrustedProxies:
    """Proxies whose ``X-Forwarded-For`` entries we believe. Empty by default: trust none."""

    networks: tuple[IPNetwork, ...] = ()
    unix: bool = False

    def __bool__(self) -> bool:
        return bool(self.networks) or self.unix

    def trusts(self, address: IPAddress | None) -> bool:
        """Whether ``address`` (None for a unix-socket peer) is a trusted proxy."""
        if address is None:
            return self.unix
        return any(address.version == net.version and address in net for net in self.networks)


def parse_trusted_proxies(value: str | Iterable[str]) -> TrustedProxies:
    """Parse addresses and CIDRs separated by commas or spaces (``unix`` trusts a unix socket).

    Raises ``ValueError`` naming the bad entry.
    """
    items = re.split(r"[,\s]+", value) if isinstance(value, str) else list(value)
    networks: list[IPNetwork] = []
    unix = False
    for item in (i.strip() for i in items):
        if not item:
            continue
        if item.lower() == UNIX_PEER:
            unix = True
            continue
        try:
            network = ipaddress.ip_network(item, strict=True)
        except ValueError as exc:
            raise ValueError(f"{item!r} is not an IP address or CIDR network ({exc})") from None
        networks.append(_unmap_network(network))
    return TrustedProxies(tuple(networks), unix)


@functools.lru_cache(maxsize=4096)
def client_group(address: str) -> str:
    """Whose counter an address spends: the key every per-client limit uses (the rate
    limiter and the login throttle alike).

    IPv6 clients are counted per /64, the block one subscriber usually holds, so that
    hopping between addresses within it does not multiply a quota.
    """
    parsed = parse_address(address)
    if parsed is None:
        return f"peer:{address}"
    if parsed.version == 6:
        return f"ip6:{ipaddress.IPv6Network((parsed, 64), strict=False).network_address}/64"
    return f"ip:{parsed}"


_BRACKETED = re.compile(r"^\[([^\]]+)\](?::\d+)?$")
_V4_WITH_PORT = re.compile(r"^(\d{1,3}(?:\.\d{1,3}){3}):\d+$")


# A pure function of the text, called for every request with the same few peers: parse
# each distinct text once.
@functools.lru_cache(maxsize=4096)
def parse_address(text: str) -> IPAddress | None:
    """An address as a peer or proxy writes it (with a port or brackets, IPv4-mapped
    IPv6 shown as IPv4), or None when it is not an IP address."""
    text = text.strip()
    match = _BRACKETED.match(text) or _V4_WITH_PORT.match(text)
    if match:
        text = match.group(1)
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    return _unmap(address)


def _unmap(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _unmap_network(network: IPNetwork) -> IPNetwork:
    mapped = ipaddress.IPv6Network("::ffff:0:0/96")
    if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(mapped) and network.prefixlen >= 96:
        base = network.network_address.ipv4_mapped
        assert base is not None
        return ipaddress.IPv4Network(f"{base}/{network.prefixlen - 96}")
    return network
