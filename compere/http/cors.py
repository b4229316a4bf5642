"""Cross-origin access for browser clients, through aiohttp-cors.

Only the origins listed in ``CORS_ORIGINS`` get CORS headers; any other origin gets
none, so the browser keeps the answer from its page. ``*`` (refused in production)
allows every origin but never with credentials.
"""

from __future__ import annotations

import aiohttp_cors
from aiohttp import web

from compere.http.auth import CSRF_HEADER
from compere.settings import Settings

ALLOWED_HEADERS = ("Authorization", "Content-Type", "X-Request-ID", CSRF_HEADER)
EXPOSED_HEADERS = (
    "X-Request-ID",
    "X-Total-Count",
    "Retry-After",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
)
PREFLIGHT_CACHE_SECONDS = 600


def setup_cors(app: web.Application, settings: Settings) -> None:
    """Enable CORS on every registered route. Call after all routes are added."""
    origins = settings.cors_origins
    if not origins:
        return
    wildcard = "*" in origins
    methods = sorted({route.method for route in app.router.routes() if route.method not in ("HEAD", "*")})
    options = aiohttp_cors.ResourceOptions(
        allow_credentials=not wildcard,  # a page from any site must not use the user's cookies
        allow_headers=ALLOWED_HEADERS,
        expose_headers=EXPOSED_HEADERS,
        allow_methods=methods,
        max_age=PREFLIGHT_CACHE_SECONDS,
    )
    cors = aiohttp_cors.setup(app, defaults={"*": options} if wildcard else dict.fromkeys(origins, options))
    for route in list(app.router.routes()):
        if isinstance(route.resource, web.StaticResource):
            continue  # the /docs assets are same-origin only
        cors.add(route)
