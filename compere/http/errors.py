"""The one error shape of the API: JSON ``{"detail": ...}`` with a fitting status."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

INTERNAL_ERROR_DETAIL = "An internal error occurred. Please try again later."


def json_response(data: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON response encoded with orjson (datetimes as ISO 8601)."""
    return web.Response(
        body=orjson.dumps(data),
        status=status,
        headers=headers,
        content_type="application/json",
    )


async def start_stream(request: web.Request, response: web.StreamResponse) -> bool:
    """Send a streamed answer's status and headers; False when nothing may follow.

    A ``HEAD`` answer ends after its headers (RFC 9110), but aiohttp would still send
    whatever a handler writes, corrupting the connection: streaming views stop here.
    """
    await response.prepare(request)
    if request.method == "HEAD":
        await response.write_eof()
        return False
    return True


class ApiError(Exception):
    """Raised by views for an expected failure; the error middleware answers it."""

    def __init__(self, status: int, detail: Any, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}


def not_found(kind: str, ident: object) -> ApiError:
    """404 in the original Compere's words ("Entity with id 5 not found"): clients match on them."""
    return ApiError(404, f"{kind} with id {ident} not found")


def validation_error(loc: list[str | int], msg: str, kind: str = "value_error") -> ApiError:
    """A 422 in the same list shape that pydantic errors get."""
    return ApiError(422, [{"loc": loc, "msg": msg, "type": kind}])
