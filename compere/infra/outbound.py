"""Outbound HTTP for webhooks: signed bodies, and no requests into private networks.

A webhook URL is chosen by a user, so the server must not become a way to reach what
only it can reach (its own loopback, the cloud metadata address, the private network).
:class:`AddressPolicy` refuses loopback, link-local, private, shared, multicast and
reserved addresses unless ``WEBHOOK_ALLOW_PRIVATE`` is set. Host names are checked by
:class:`GuardedResolver`: every address the name resolves to must pass, and aiohttp
then connects to exactly those checked addresses (no second lookup that DNS could
answer differently). Address literals never reach a resolver in aiohttp, so
:meth:`WebhookSender.post` checks them itself. Redirects are not followed.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import socket
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

SIGNATURE_HEADER = "Compere-Signature"


class RefusedAddress(aiohttp.ClientError):
    """The destination is an address webhooks may not reach."""


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``"<timestamp>." + body`` under the subscription's secret."""
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Compere-Signature`` value: ``t=<unix seconds>,v1=<hex>``."""
    return f"t={timestamp},v1={signature(secret, timestamp, body)}"


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    """Which destination addresses outbound requests may connect to."""

    allow_private: bool = False

    def refusal(self, address: str) -> str | None:
        """Why ``address`` may not be reached ("a loopback address"), or None when it may."""
        if self.allow_private:
            return None
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
        except ValueError:
            return "not an IP address"
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # ::ffff:10.0.0.1 is 10.0.0.1
        if ip.is_loopback:
            return "a loopback address"
        if ip.is_link_local:
            return "a link-local address"
        if ip.is_private or ip.is_unspecified or ip.is_reserved or ip.is_multicast or not ip.is_global:
            return "a private or reserved address"
        return None

    def check(self, address: str) -> None:
        reason = self.refusal(address)
        if reason is not None:
            raise RefusedAddress(f"refused: {address} is {reason} (WEBHOOK_ALLOW_PRIVATE is off)")


def literal_address(host: str) -> str | None:
    """``host`` when it is an IP address literal, else None."""
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    return host


class GuardedResolver(AbstractResolver):
    """Resolves with ``base`` and refuses the name if any of its addresses is refused."""

    def __init__(self, policy: AddressPolicy, base: AbstractResolver | None = None) -> None:
        self._policy = policy
        self._base = base or aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._base.resolve(host, port, family)
        for result in results:
            address = result["host"]
            reason = self._policy.refusal(address)
            if reason is not None:
                raise RefusedAddress(
                    f"refused: {host} resolves to {address}, {reason} (WEBHOOK_ALLOW_PRIVATE is off)"
                )
        return results

    async def close(self) -> None:
        await self._base.close()


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one delivery attempt gave: success, the HTTP status if any, an error text."""

    ok: bool
    status: int | None = None
    error: str | None = None


class WebhookSender:
    """One aiohttp session per worker for signed webhook POSTs."""

    def __init__(
        self, policy: AddressPolicy, timeout: float, resolver: AbstractResolver | None = None
    ) -> None:
        self._policy = policy
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        connector = aiohttp.TCPConnector(
            resolver=GuardedResolver(policy, resolver), limit=100, ttl_dns_cache=10
        )
        # trust_env=False: no proxy from the environment may carry requests elsewhere.
        self._session = aiohttp.ClientSession(connector=connector, trust_env=False, timeout=self._timeout)

    async def post(self, url: str, body: bytes, headers: dict[str, Any]) -> Outcome:
        """POST ``body``; 2xx is success, anything else (3xx included) a failure."""
        target = URL(url)
        try:
            if target.scheme not in ("http", "https") or not target.host:
                return Outcome(False, error="refused: only http and https URLs with a host")
            literal = literal_address(target.host)
            if literal is not None:
                self._policy.check(literal)
            async with self._session.post(
                target, data=body, headers=headers, allow_redirects=False
            ) as response:
                await response.read()
                if 200 <= response.status < 300:
                    return Outcome(True, response.status)
                return Outcome(False, response.status, f"HTTP {response.status}")
        except RefusedAddress as exc:
            return Outcome(False, error=str(exc))
        except TimeoutError:
            return Outcome(False, error="timed out")
        except aiohttp.ClientConnectorError as exc:
            reason = exc.os_error.strerror or type(exc.os_error).__name__
            return Outcome(False, error=f"connection failed: {reason}")
        except aiohttp.ClientError as exc:
            return Outcome(False, error=f"request failed: {type(exc).__name__}")

    async def close(self) -> None:
        await self._session.close()
