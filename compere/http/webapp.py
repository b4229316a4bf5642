"""The built-in web app: voting, leaderboard, entity and login pages at ``/``.

Plain HTML, CSS and ES modules from ``compere/static/app/``: no build step, no CDN,
no inline script or style, so the pages carry a strict Content-Security-Policy.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from compere import __version__
from compere.http.errors import json_response
from compere.http.keys import SETTINGS
from compere.http.static_files import STATIC_DIR

APP_DIR = STATIC_DIR / "app"

# Scripts, styles and API calls only from this origin. Entity images may come from any
# http(s) host or a data: URL: image_urls are the entities' own, wherever the pictures
# live; an image runs no code, and https pages upgrade or block http images anyway.
# Keep in step with nginx/snippets/csp-app.conf; docs/webapp.md says why.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' https: http: data:",
        "connect-src 'self'",
        "form-action 'self'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ]
)
PAGES = {
    "/": "index.html",
    "/leaderboard": "leaderboard.html",
    "/admin": "admin.html",
    "/login": "login.html",
    "/p/": "projects.html",
}
# The same pages on one project's board (the original pages above show "default"), the
# owners' settings page, and the share page: a public project's vote page for anonymous
# voters, with nothing else of the app on it. The page reads the slug from its address.
SLUG = "{slug:[a-z0-9][a-z0-9-]*}"  # a project slug, as the projects table allows
PROJECT_PAGES = {
    f"/p/{SLUG}/": "index.html",
    f"/p/{SLUG}/leaderboard": "leaderboard.html",
    f"/p/{SLUG}/admin": "admin.html",
    f"/p/{SLUG}/settings": "settings.html",
    f"/share/{SLUG}": "share.html",
}


def _page(filename: str) -> Callable[[web.Request], Awaitable[web.FileResponse]]:
    path = APP_DIR / filename

    async def handler(request: web.Request) -> web.FileResponse:
        return web.FileResponse(
            path,
            headers={
                "Content-Security-Policy": CONTENT_SECURITY_POLICY,
                "Cache-Control": "no-cache",
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "same-origin",
            },
        )

    handler.__name__ = f"page_{filename.split('.')[0]}"
    return handler


async def app_config(request: web.Request) -> web.Response:
    """What the pages need to know: whether to show the login page, how long pair tokens
    live, the largest request body (so the import page can say a file is too large)."""
    settings = request.app[SETTINGS]
    return json_response(
        {
            "auth_enabled": settings.auth_enabled,
            "pair_token_ttl": settings.pair_token_ttl,
            "max_body_size": settings.max_body_size,
            "version": __version__,
        }
    )


async def _to_project_home(request: web.Request) -> web.Response:
    raise web.HTTPPermanentRedirect(f"/p/{request.match_info['slug']}/")


def setup_webapp(app: web.Application) -> None:
    for path, filename in (PAGES | PROJECT_PAGES).items():
        app.router.add_get(path, _page(filename))
    app.router.add_get(f"/p/{SLUG}", _to_project_home)
    app.router.add_get("/app/config.json", app_config)
    app.router.add_static("/app/", APP_DIR)
