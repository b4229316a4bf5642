"""``/metrics``: Prometheus exposition (served when METRICS_ENABLED), for allowed addresses
and, with authentication on, for superusers from anywhere."""

from __future__ import annotations

import asyncio
import ipaddress

from aiohttp import web

from compere.http.errors import ApiError
from compere.http.keys import CLIENT, SETTINGS, USER
from compere.infra import metrics


async def may_read_metrics_with_token(request: web.Request) -> bool:
    """Whether the caller is a superuser, by bearer token (or session cookie).

    Only with ``AUTH_ENABLED=true``: with auth off nobody is checked anywhere, so the
    address allow-list stays the only way in.
    """
    if not request.app[SETTINGS].auth_enabled:
        return False
    user = request.get(USER)
    return user is not None and user.is_superuser


def _address_allowed(request: web.Request) -> bool:
    try:
        # The same resolved client the limiter and the request log see: behind a trusted
        # proxy, the forwarded client, never the proxy itself.
        address = ipaddress.ip_address(request[CLIENT].address.split("%", 1)[0])
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
