"""One exception type per class of error the server answers, all under :class:`CompereError`.

Every error carries what the server said (``detail``: a message, or for 422 the list of
``{loc, msg, type}`` issues), the HTTP ``status`` and the ``request_id`` to quote when
asking an operator to find the request in the server's log.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

__all__ = [
    "BadRequest",
    "CompereError",
    "Conflict",
    "Forbidden",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "ServerError",
    "ServiceUnavailable",
    "TransportError",
    "Unauthorized",
    "UnsupportedMediaType",
    "ValidationFailed",
    "error_from_response",
]


class CompereError(Exception):
    """Base of every error the client raises for a failed request.

    ``status`` is None when no answer came back at all (:class:`TransportError`).
    """

    def __init__(
        self,
        detail: Any,
        *,
        status: int | None = None,
        request_id: str | None = None,
        method: str = "",
        url: str = "",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status
        self.request_id = request_id
        self.method = method
        self.url = url
        self.headers: dict[str, str] = dict(headers or {})

    def __str__(self) -> str:
        where = f"{self.method} {self.url}".strip()
        status = f"{self.status} " if self.status is not None else ""
        request = f" (request id {self.request_id})" if self.request_id else ""
        return f"{status}{where}: {self.detail}{request}"


class TransportError(CompereError):
    """No usable answer: the connection failed or timed out on every attempt."""


class BadRequest(CompereError):
    """400: the request makes no sense (a winner outside the pair, a bad file, a stale pair_token)."""


class Unauthorized(CompereError):
    """401: no token, or a token that is expired, revoked or wrong."""


class Forbidden(CompereError):
    """403: authenticated, but not allowed (a superuser-only route, a disabled account)."""


class NotFound(CompereError):
    """404: no such entity, comparison, user or route."""


class Conflict(CompereError):
    """409: a unique value is taken, or a pair_token was already used for a vote."""


class PayloadTooLarge(CompereError):
    """413: the body exceeds the server's MAX_BODY_SIZE."""


class UnsupportedMediaType(CompereError):
    """415: the body was sent in a content type the route does not read."""


class ValidationFailed(CompereError):
    """422: the body or query failed validation; ``detail`` lists ``{loc, msg, type}`` issues."""


class RateLimited(CompereError):
    """429: the rate limit was still exceeded after the client's bounded number of waits."""


class ServerError(CompereError):
    """500 or another unexpected server failure."""


class ServiceUnavailable(CompereError):
    """503: the server could not do it right now (database, Redis), even after retries."""


_BY_STATUS: dict[int, type[CompereError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    422: ValidationFailed,
    429: RateLimited,
    503: ServiceUnavailable,
}


def error_from_response(
    status: int, body: bytes, headers: Mapping[str, str], *, method: str = "", url: str = ""
) -> CompereError:
    """The exception for an error answer: its class from the status, ``detail`` from the body."""
    detail: Any = None
    request_id = headers.get("X-Request-ID")
    try:
        parsed = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict):
        detail = parsed.get("detail")
        request_id = request_id or parsed.get("request_id")
    if detail is None:
        # Not our JSON shape (a proxy's HTML page, an empty body): keep a short excerpt.
        detail = body[:200].decode("utf-8", "replace") or f"HTTP {status}"
    kind = _BY_STATUS.get(status) or (ServerError if status >= 500 else CompereError)
    return kind(detail, status=status, request_id=request_id, method=method, url=url, headers=headers)
