"""Request middlewares, and the one place that decides their order.

aiohttp runs the first middleware in the list outermost. The order is:

1. ``request_logging``: outermost, so it times the whole request, assigns the
   request id every other layer (and every error body) uses, resolves the client
   (``CLIENT``: address and group) that every later step reads, and logs the final
   status, including the responses the inner layers produce for errors.
2. ``request_metrics`` (only with ``METRICS_ENABLED``): counts and times each
   request by route template and final status. Inside logging, outside error
   masking, so masked errors are counted with the status the client got.
3. ``error_masking``: turns every exception from the layers below (auth, rate
   limiting, handlers) into the one JSON error shape; in production a 5xx shows only
   a generic message and the request id.
4. ``identity`` (compere.http.auth): reads the bearer token, API key or session
   cookie, starts the database look-up and stores the caller under ``USER`` (the rate
   limiter waits for the look-up after starting its Redis call, so the two overlap). A bad or missing token is never refused here (it
   becomes "anonymous"), so token guessing still passes through the limiter; the
   guards in front of each handler decide who may call what. It refuses only what no
   quota could make acceptable: credentials in the URL, a cookie write without its
   CSRF token, and (503) a token it cannot check because Redis is down. It lets
   ``OPTIONS`` preflights through untouched.
5. ``rate_limit`` (when ``RATE_LIMIT_ENABLED``): after identity, so authenticated
   requests spend their user's (or API key's) quota; inside error masking, so 429/503 share the
   error shape and logging. It adds its headers to the handler's response, and to
   raised errors, which error masking keeps.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import Callable

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler, Middleware

from compere.http.auth import identity
from compere.http.client_address import resolve_client
from compere.http.errors import INTERNAL_ERROR_DETAIL, ApiError, json_response
from compere.http.keys import CLIENT, REQUEST_ID
from compere.http.ratelimit_middleware import (
    RATE_LIMIT_HEADER_NAMES,
    RateLimitPolicies,
    rate_limit_middleware,
)
from compere.infra import metrics
from compere.settings import Settings
from compere.storage.database import ConflictError, DatabaseUnavailable

log = logging.getLogger("compere.request")
error_log = logging.getLogger("compere.error")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
_STANDARD_REASONS = {
    400: "Bad request",
    404: "Not Found",  # the original's (FastAPI's) words for these two
    405: "Method Not Allowed",
    413: "Request body too large",
    415: "Unsupported media type",
}


# Kept when error masking renders a raised HTTP error: they tell the client what to do.
_KEPT_ERROR_HEADERS = frozenset(
    {"allow", "www-authenticate", "retry-after"} | {h.lower() for h in RATE_LIMIT_HEADER_NAMES}
)


def request_logging(settings: Settings) -> Middleware:
    enabled = settings.log_requests
    trusted = settings.proxies

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        incoming = request.headers.get("X-Request-ID", "")
        # 128 random bits as 32 hex digits (the shape of uuid4().hex, without the object).
        request_id = incoming if incoming and _REQUEST_ID.match(incoming) else os.urandom(16).hex()
        request[REQUEST_ID] = request_id
        # Resolved here, once, for every layer and handler below (they read CLIENT).
        client = request[CLIENT] = resolve_client(request, trusted)
        started = time.perf_counter()

        def write(status: int) -> None:
            if not (enabled and log.isEnabledFor(logging.INFO)):
                return
            duration_ms = (time.perf_counter() - started) * 1000
            method, path = request.method, request.path
            # Path only: query strings may carry credentials; bodies are never logged.
            # The record is built directly: log.info() would also walk the stack to
            # find the calling line, which no log format here shows (once per request).
            record = log.makeRecord(
                log.name,
                logging.INFO,
                __file__,
                0,
                "%s %s %d %s %.1fms %s",
                (method, path, status, client.address, duration_ms, request_id),
                None,
                extra={
                    "method": method,
                    "path": path,
                    "status": status,
                    "client": client.address,
                    "duration_ms": round(duration_ms, 2),
                    "request_id": request_id,
                },
            )
            log.handle(record)

        status = 499  # client went away before an answer was ready
        try:
            response = await handler(request)
            response.headers["X-Request-ID"] = request_id
            if when_file_sent(request, response, write):
                write = _nothing
            status = response.status
            return response
        finally:
            write(status)

    return middleware


# What the outer middlewares record about a file response once its status is known.
_WHEN_SENT: web.RequestKey[list[Callable[[int], None]]] = web.RequestKey("when_sent")


def _nothing(status: int) -> None:
    return None


def when_file_sent(request: web.Request, response: web.StreamResponse, record: Callable[[int], None]) -> bool:
    """Arrange ``record(status)`` for when ``response`` is sent, if it is a file; True if so.

    A file response settles its status (404 when the file is missing, 304, 206, ...)
    only as it is sent, after every middleware has returned; until then it says 200.
    """
    if not isinstance(response, web.FileResponse):
        return False
    request.setdefault(_WHEN_SENT, []).append(record)
    return True


async def record_file_status(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: run what :func:`when_file_sent` arranged, with the real status."""
    for record in request.pop(_WHEN_SENT, ()):
        record(response.status)


def route_template(request: web.Request) -> str:
    """The matched route's template (``/entities/{entity_id}``), never the raw path.

    Raw paths would give every id its own time series; unmatched requests share one.
    """
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


def request_metrics(settings: Settings) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()

        def observe(status: int) -> None:
            metrics.observe_request(
                request.method, route_template(request), status, time.perf_counter() - started
            )

        status = 499  # client went away before an answer was ready
        try:
            response = await handler(request)
            if when_file_sent(request, response, observe):
                observe = _nothing
            status = response.status
            return response
        finally:
            observe(status)

    return middleware


def body_failed(request: web.Request, exc: Exception) -> bool:
    """True when ``exc`` came from reading a body the client did not send whole.

    A client that closes before sending all the bytes its Content-Length promised (or
    sends a broken chunked body) makes the body read fail: that is the client's request
    being incomplete, not a server error, and deserves no traceback.
    """
    if isinstance(exc, HttpProcessingError):
        return True
    return isinstance(exc, ConnectionResetError) and request.content.exception() is not None


def error_masking(settings: Settings) -> Middleware:
    production = settings.is_production

    def error(
        request: web.Request, status: int, detail: object, headers: dict[str, str] | None = None
    ) -> web.Response:
        body = {"detail": detail, "request_id": request.get(REQUEST_ID)}
        return json_response(body, status=status, headers=headers)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as exc:
            return error(request, exc.status, exc.detail, exc.headers)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise  # redirects and the like are answers, not errors
            headers = {k: v for k, v in exc.headers.items() if k.lower() in _KEPT_ERROR_HEADERS}
            detail = _STANDARD_REASONS.get(exc.status, exc.reason)
            return error(request, exc.status, detail, headers)
        except DatabaseUnavailable as exc:
            error_log.warning("database unavailable: %s", exc, extra={"request_id": request.get(REQUEST_ID)})
            return error(
                request,
                503,
                "The database is temporarily unavailable. Please retry shortly.",
                {"Retry-After": "1"},
            )
        except ConflictError:
            return error(request, 409, "The request conflicts with the current state of the resource")
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # the client left or the server is stopping: nothing to answer
            return error(
                request,
                503,
                "The service did not answer in time. Please retry shortly.",
                {"Retry-After": "1"},
            )
        except Exception as exc:
            if body_failed(request, exc):
                # Logged once, quietly, by request logging (status 400); the answer
                # rarely reaches a client that has already gone.
                return error(request, 400, "The request body is incomplete or malformed")
            error_log.exception(
                "unhandled error on %s %s",
                request.method,
                request.path,
                extra={"request_id": request.get(REQUEST_ID)},
            )
            detail = INTERNAL_ERROR_DETAIL if production else f"{type(exc).__name__}: {exc}"
            return error(request, 500, detail)

    return middleware


def build_middlewares(settings: Settings) -> list[Middleware]:
    """The middleware chain, outermost first (see the module docstring for why)."""
    chain = [request_logging(settings)]
    if settings.metrics_enabled:
        chain.append(request_metrics(settings))
    chain.append(error_masking(settings))
    # With rate limiting on, the limiter waits for the identity look-up itself, after
    # starting its Redis call, so the database and Redis round trips overlap.
    chain.append(identity(settings, settled_by_next=settings.rate_limit_enabled))
    if settings.rate_limit_enabled:
        chain.append(
            rate_limit_middleware(
                RateLimitPolicies.from_settings(settings),
                fail_mode=settings.rate_limit_fail_mode,
            )
        )
    return chain
