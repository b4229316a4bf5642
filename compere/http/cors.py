"""Cross-origin access for browser clients, through aiohttp-cors.

Only the origins listed in ``CORS_ORIGINS`` get CORS headers; any other origin gets
none, so the browser keeps the answer from its page. ``*`` (refused in production)
allows every origin but never with credentials. In development with ``CORS_ORIGINS``
unset, pages served from this machine (``localhost``, ``127.0.0.1``, ``[::1]``, any
port, http or https) are allowed, so a separate frontend dev server works as it did
with the original; no other site is.
"""

from __future__ import annotations

import re

import aiohttp_cors
from aiohttp import web
from aiohttp_cors.urldispatcher_router_adapter import ResourcesUrlDispatcherRouterAdapter

from compere.http import idempotency
from compere.http.auth import CSRF_HEADER
from compere.settings import Settings

ALLOWED_HEADERS = ("Authorization", "Content-Type", "X-Request-ID", CSRF_HEADER, idempotency.HEADER)
EXPOSED_HEADERS = (
    "X-Request-ID",
    "X-Total-Count",
    "Retry-After",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "RateLimit",
    "RateLimit-Policy",
    idempotency.REPLAYED_HEADER,
)
PREFLIGHT_CACHE_SECONDS = 600
_LOOPBACK_ORIGIN = re.compile(r"https?://(localhost|127\.0\.0\.1|\[::1\])(:[0-9]{1,5})?")


def allows_loopback_origins(settings: Settings) -> bool:
    """The development default: no CORS_ORIGINS given, so this machine's pages may call."""
    return settings.environment == "development" and not settings.cors_origins


def cors_enabled(settings: Settings) -> bool:
    """Whether any origin can get CORS headers (and answers must vary by Origin)."""
    return bool(settings.cors_origins) or allows_loopback_origins(settings)


def is_loopback_origin(origin: str) -> bool:
    return _LOOPBACK_ORIGIN.fullmatch(origin) is not None


class _AllowedOrigins(dict[str, aiohttp_cors.ResourceOptions]):
    """aiohttp-cors's origin table (it asks ``bool()``, ``in`` and ``[]``), which also
    answers for any loopback origin when ``loopback`` options are given."""

    def __init__(
        self,
        listed: dict[str, aiohttp_cors.ResourceOptions],
        loopback: aiohttp_cors.ResourceOptions | None,
    ) -> None:
        super().__init__(listed)
        self._loopback = loopback

    def __bool__(self) -> bool:
        return self._loopback is not None or super().__len__() > 0

    def __contains__(self, origin: object) -> bool:
        return super().__contains__(origin) or self._loopback_matches(origin)

    def __missing__(self, origin: str) -> aiohttp_cors.ResourceOptions:
        if self._loopback is not None and self._loopback_matches(origin):
            return self._loopback
        raise KeyError(origin)

    def _loopback_matches(self, origin: object) -> bool:
        return self._loopback is not None and isinstance(origin, str) and is_loopback_origin(origin)


def setup_cors(app: web.Application, settings: Settings) -> None:
    """Enable CORS on every registered route. Call after all routes are added."""
    if not cors_enabled(settings):
        return
    origins = settings.cors_origins
    wildcard = "*" in origins
    methods = sorted({route.method for route in app.router.routes() if route.method not in ("HEAD", "*")})
    options = aiohttp_cors.ResourceOptions(
        allow_credentials=not wildcard,  # a page from any site must not use the user's cookies
        allow_headers=ALLOWED_HEADERS,
        expose_headers=EXPOSED_HEADERS,
        allow_methods=methods,
        max_age=PREFLIGHT_CACHE_SECONDS,
    )
    table = _AllowedOrigins(
        {"*": options} if wildcard else dict.fromkeys(origins, options),
        options if allows_loopback_origins(settings) else None,
    )
    cors = aiohttp_cors.CorsConfig(app, router_adapter=ResourcesUrlDispatcherRouterAdapter(app.router, table))
    app[aiohttp_cors.APP_CONFIG_KEY] = cors
    for route in list(app.router.routes()):
        if isinstance(route.resource, web.StaticResource):
            continue  # the web app's files are same-origin only
        cors.add(route)
