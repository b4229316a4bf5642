"""Typed keys for state shared between middlewares and handlers through the request."""

from __future__ import annotations

from typing import Any

from aiohttp import web

# The authenticated user, set by the auth identity middleware when a valid token came
# with the request; absent (or None) for anonymous requests. Other middlewares (rate
# limiting) read it, so it lives here rather than in the auth module.
USER_KEY: web.RequestKey[Any] = web.RequestKey("compere.user", object)
