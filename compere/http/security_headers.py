"""Security headers the app sets itself, for deployments without a reverse proxy.

The values match the ones the policy gives for nginx, so a proxy that adds them as
well sends the same answer twice rather than two different ones.
"""

from __future__ import annotations

from aiohttp import web, web_response

from compere.http.cors import cors_enabled
from compere.settings import Settings

# Instead of aiohttp's default "Python/3.x aiohttp/3.y": versions help only an attacker.
SERVER = "compere"

HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "SAMEORIGIN",
    "Referrer-Policy": "strict-origin-when-cross-origin",
}


def setup_security_headers(app: web.Application, settings: Settings) -> None:
    """Add the headers to every response, errors and static files included."""
    vary_origin = cors_enabled(settings)
    # The answers aiohttp makes itself for requests it cannot parse skip the app's
    # signals below; they take the Server value from this module-level default.
    web_response.SERVER_SOFTWARE = SERVER

    async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
        headers = response.headers
        headers["Server"] = SERVER
        for name, value in HEADERS.items():
            headers.setdefault(name, value)
        if request.path.startswith("/auth/"):
            # Tokens and account data must not be kept by browsers or proxies.
            headers["Cache-Control"] = "no-store"
            headers["Pragma"] = "no-cache"
        if vary_origin:
            # CORS answers depend on the Origin header; caches must not mix them up.
            vary = [v.strip() for v in headers.get("Vary", "").split(",") if v.strip()]
            if "origin" not in {v.lower() for v in vary}:
                headers["Vary"] = ", ".join([*vary, "Origin"])

    app.on_response_prepare.append(add_headers)
