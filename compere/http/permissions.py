"""The superuser check for bulk endpoints (export, import).

The route table already puts these routes behind the superuser guard when
``AUTH_ENABLED=true``; the views call this too, so the rule holds even if a route is
registered some other way. With auth off the API is open, as in the original.
"""

from __future__ import annotations

from aiohttp import web

from compere.http.auth import require_superuser
from compere.http.keys import SETTINGS


async def require_bulk_permission(request: web.Request, action: str) -> None:
    """Refuse unless the caller may run bulk ``action`` ("export comparisons", ...)."""
    if request.app[SETTINGS].auth_enabled:
        require_superuser(request)
