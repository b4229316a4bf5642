"""AUTH HOOK: the superuser check for bulk endpoints (export, import).

Until the auth module is wired in, this is the only guard on them: with
``AUTH_ENABLED=false`` the API is open, as in the original, and so are they; with auth
on, they refuse everyone (403) until ``require_superuser`` replaces the body below. It
fails closed, never open.
"""

from __future__ import annotations

from aiohttp import web

from compere.http.errors import ApiError
from compere.http.keys import SETTINGS


async def require_bulk_permission(request: web.Request, action: str) -> None:
    """Refuse unless the caller may run bulk ``action`` ("export comparisons", ...)."""
    if request.app[SETTINGS].auth_enabled:
        # Wire to auth: `await require_superuser(request)` and drop this refusal.
        raise ApiError(403, f"Only a superuser may {action}")
