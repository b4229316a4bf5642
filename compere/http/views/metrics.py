"""``/metrics``: Prometheus exposition, for allowed addresses only (served when METRICS_ENABLED)."""

from __future__ import annotations

import asyncio
import ipaddress

from aiohttp import web

from compere.http.client_address import client_address, parse_trusted_proxies
from compere.http.errors import ApiError
from compere.http.keys import SETTINGS
from compere.infra import metrics


async def may_read_metrics_with_token(request: web.Request) -> bool:
    """AUTH HOOK: a superuser's token also opens ``/metrics``.

    Answers False until wired to the auth module (return whether the request carries
    a valid superuser token); the address allow-list is the only way in until then.
    """
    return False


def _address_allowed(request: web.Request) -> bool:
    try:
        # The same resolved client the limiter and the request log see: behind a trusted
        # proxy, the forwarded client, never the proxy itself.
        trusted = parse_trusted_proxies(request.app[SETTINGS].trusted_proxies)
        address = ipaddress.ip_address(client_address(request, trusted).split("%", 1)[0])
    except ValueError:
        return False  # no usable peer address (a Unix socket, say): refuse
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in request.app[SETTINGS].metrics_allowed_ips)


async def serve_metrics(request: web.Request) -> web.Response:
    if not _address_allowed(request) and not await may_read_metrics_with_token(request):
        raise ApiError(403, "Metrics are not available to this client")
    # Multiprocess mode reads one file per worker: keep that off the event loop.
    body = await asyncio.get_running_loop().run_in_executor(None, metrics.render)
    return web.Response(body=body, headers={"Content-Type": metrics.CONTENT_TYPE_LATEST})
