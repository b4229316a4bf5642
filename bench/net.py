"""What every benchmark needs from the network: loopback-only targets and free ports.

Kept apart from the load generator so that any benchmark (and ``seed_sql``, which the
load generator itself uses) can check its targets without importing the others.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit


class LoopbackOnlyError(ValueError):
    """Raised when a target address is not on the loopback interface."""


def require_loopback_host(host: str | None) -> None:
    """Refuse any host that is not a loopback address (or the name ``localhost``)."""
    if not host:
        raise LoopbackOnlyError("target has no host")
    if host.lower() in ("localhost", "localhost."):
        return
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        # A name other than localhost could resolve anywhere: refuse rather than trust DNS.
        raise LoopbackOnlyError(f"refusing non-loopback target host {host!r}") from None
    if not address.is_loopback:
        raise LoopbackOnlyError(f"refusing non-loopback target host {host!r}")


def require_loopback_url(url: str) -> str:
    """Return ``url`` without a trailing slash if it is an http(s) URL on loopback."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise LoopbackOnlyError(f"target must be an http(s) URL, got {url!r}")
    require_loopback_host(parts.hostname)
    return url.rstrip("/")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
