"""A Python client for Compere: asyncio (:class:`AsyncClient`) and blocking (:class:`Client`).

Requests and answers use the server's own pydantic models (``compere.http.schemas``).
The client adds what every program would otherwise write itself: an ``Idempotency-Key``
on each write, retries of 503 and connection errors with jittered back-off, pacing by the
server's ``RateLimit`` headers shared by all tasks, lazy paging and streamed exports, and
one exception class per kind of error. See docs/client.md.
"""

from compere.client.aio import AsyncClient, Page
from compere.client.errors import (
    BadRequest,
    CompereError,
    Conflict,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ServerError,
    ServiceUnavailable,
    TransportError,
    Unauthorized,
    UnsupportedMediaType,
    ValidationFailed,
)
from compere.client.ratelimit import RateLimitGate
from compere.client.retry import RetryPolicy
from compere.client.sync import Client

__all__ = [
    "AsyncClient",
    "BadRequest",
    "Client",
    "CompereError",
    "Conflict",
    "Forbidden",
    "NotFound",
    "Page",
    "PayloadTooLarge",
    "RateLimitGate",
    "RateLimited",
    "RetryPolicy",
    "ServerError",
    "ServiceUnavailable",
    "TransportError",
    "Unauthorized",
    "UnsupportedMediaType",
    "ValidationFailed",
]
