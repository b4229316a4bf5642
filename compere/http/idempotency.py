"""``Idempotency-Key`` on write routes: a retried request gets the first answer again.

Routes opt in with ``idempotent=True`` in the route table; :func:`idempotent` wraps their
handler, so it runs inside every middleware (after identity has named the caller and
after rate limiting). The answer is recorded in the database, in the write's own
transaction (votes and batches by the vote writer, other routes through
:func:`record_in_transaction`), which is the record that counts;
Redis in front of it holds the lock while a request runs and answers most retries
without a database read. The rules (scope, fingerprint, what is stored, locks, what
happens while Redis is down) are in docs/resilience.md, "Idempotency keys".
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import secrets
from collections.abc import Mapping

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from compere.http.errors import ApiError
from compere.http.keys import (
    ANSWER_RECORDED,
    CLIENT,
    DATABASE,
    IDEMPOTENCY,
    IDEMPOTENCY_RECEIPT,
    SETTINGS,
    USER,
)
from compere.infra.idempotency import IdempotencyStore, StoredResponse, StoreUnavailable
from compere.storage.comparisons import AlreadyRecorded
from compere.storage.database import Connection, DatabaseError
from compere.storage.idempotency import (
    Receipt,
    StoredAnswer,
    answer_row,
    find_answer,
    purge_answers,
    record_answer,
    save_answer,
)
from compere.storage.timestamps import utc_now

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255

log = logging.getLogger(__name__)


def _store_unavailable() -> ApiError:
    # A new exception each time: raising one shared instance again and again would
    # chain every traceback (and the requests in its frames) onto it, a memory leak.
    return ApiError(
        503,
        "Idempotency keys cannot be checked right now, so the request was not processed. "
        "Please retry shortly with the same key.",
        headers={"Retry-After": "1"},
    )


def parse_key(raw: str) -> str:
    """The key from the header: 1-255 printable ASCII characters, optionally quoted."""
    key = raw.strip()
    if len(key) >= 2 and key[0] == key[-1] == '"':
        key = key[1:-1]  # the IETF draft sends it as a structured-field string
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not all(" " <= ch <= "~" for ch in key):
        raise ApiError(400, f"{HEADER} must be 1 to {MAX_KEY_LENGTH} printable ASCII characters")
    return key


def caller_scope(request: web.Request) -> str:
    """Whose keys these are: the authenticated user, else the client address (as
    resolved at the edge, through TRUSTED_PROXIES)."""
    user = request.get(USER)
    if user is not None:
        ident = user.get("id") if isinstance(user, Mapping) else getattr(user, "id", None)
        if ident is not None:
            return f"user:{ident}"
    return f"addr:{request[CLIENT].address}"


def record_key(scope: str, key: str) -> str:
    """Where a caller's key is kept (hashed: keys are client-chosen text)."""
    return f"{scope}:{hashlib.sha256(key.encode()).hexdigest()}"


def fingerprint(method: str, path_qs: str, body: bytes) -> str:
    """A digest of method, path and body; JSON bodies compare by content, not layout."""
    try:
        canonical = orjson.dumps(orjson.loads(body), option=orjson.OPT_SORT_KEYS)
    except (orjson.JSONDecodeError, TypeError):
        canonical = body
    digest = hashlib.sha256()
    for part in (method.encode(), path_qs.encode(), canonical):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def _replay(stored: StoredResponse) -> web.Response:
    return web.Response(
        body=stored.body,
        status=stored.status,
        headers={"Content-Type": stored.content_type, REPLAYED_HEADER: "true"},
    )


def _replay_recorded(answer: StoredAnswer, digest: str) -> web.Response:
    """Replay an answer from the database (422 when the key was used for another request)."""
    if answer.fingerprint != digest:
        raise ApiError(422, f"This {HEADER} was already used for a different request")
    return _replay(StoredResponse(answer.status, answer.content_type, answer.body))


async def _release(store: IdempotencyStore, key: str, token: str, lock_ttl: float) -> None:
    try:
        await store.release(key, token)
    except StoreUnavailable as exc:
        # Until it is released (retried in the background) or expires, retries get 409.
        log.warning("could not release an idempotency lock: %s", str(exc))
        store.release_later(key, token, within=lock_ttl)


async def record_in_transaction(request: web.Request, tx: Connection, response: web.Response) -> None:
    """Record ``response`` as the answer to the request's ``Idempotency-Key`` on ``tx``,
    the transaction of the write it answers (nothing without a key), so a crash leaves
    both or neither and a retry never runs the write twice. Raises ``AlreadyRecorded``
    when a concurrent request with the key committed first: ``tx`` rolls back and the
    wrapper replays that answer."""
    receipt = request.get(IDEMPOTENCY_RECEIPT)
    if receipt is None:
        return
    body = response.body
    assert isinstance(body, bytes), "an idempotent answer has a body of bytes"
    content_type = response.headers.get("Content-Type", "application/octet-stream")
    row = answer_row(receipt, response.status, content_type, body, utc_now())
    if not await record_answer(request.app[DATABASE], tx, row):
        raise AlreadyRecorded(receipt.key)
    request[ANSWER_RECORDED] = True


def idempotent(handler: Handler) -> Handler:
    """Wrap a write handler with ``Idempotency-Key`` handling (see the module docstring)."""

    @functools.wraps(handler)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        raw = request.headers.get(HEADER)
        if raw is None:
            return await handler(request)
        key = parse_key(raw)
        settings = request.app[SETTINGS]
        store = request.app[IDEMPOTENCY]
        db = request.app[DATABASE]
        retention = settings.idempotency_ttl
        body = await request.read()  # cached: the handler reads it again for free
        digest = fingerprint(request.method, request.rel_url.raw_path_qs, body)
        record = record_key(caller_scope(request), key)
        token = secrets.token_hex(8)
        try:
            existing = await store.claim(record, digest, token, settings.idempotency_lock_ttl)
        except StoreUnavailable as exc:
            log.warning("idempotency store unavailable: %s", str(exc))
            raise _store_unavailable() from None
        if existing is not None:
            if existing.fingerprint != digest:
                raise ApiError(422, f"This {HEADER} was already used for a different request")
            if existing.response is not None:
                return _replay(existing.response)
            # Redis says a request with this key is running; the database knows whether
            # it finished (its worker may have died before telling Redis).
            recorded = await find_answer(db, record, retention)
            if recorded is None:
                raise ApiError(
                    409,
                    f"A request with this {HEADER} is still being processed. Retry shortly.",
                    headers={"Retry-After": "1"},
                )
            return _replay_recorded(recorded, digest)

        # Redis had nothing: it may have lost what the database recorded.
        try:
            recorded = await find_answer(db, record, retention)
        except BaseException:
            await asyncio.shield(_release(store, record, token, settings.idempotency_lock_ttl))
            raise
        if recorded is not None:
            await _release(store, record, token, settings.idempotency_lock_ttl)
            return _replay_recorded(recorded, digest)

        request[IDEMPOTENCY_RECEIPT] = Receipt(record, digest)
        try:
            try:
                response = await handler(request)
            except AlreadyRecorded:
                # A concurrent request with this key committed first (Redis could not
                # tell): its answer is the one.
                recorded = await find_answer(db, record, retention)
                if recorded is None:
                    # Only an expired answer still in the table: drop those and run.
                    await purge_answers(db, retention)
                    response = await handler(request)
                else:
                    await _release(store, record, token, settings.idempotency_lock_ttl)
                    return _replay_recorded(recorded, digest)
        except BaseException:
            # Shielded: the lock must be released even when this task is cancelled.
            await asyncio.shield(_release(store, record, token, settings.idempotency_lock_ttl))
            raise
        body_out = response.body if isinstance(response, web.Response) else None
        if not 200 <= response.status < 300 or not isinstance(body_out, bytes | bytearray):
            await _release(store, record, token, settings.idempotency_lock_ttl)
            return response
        content_type = response.headers.get("Content-Type", "application/octet-stream")
        stored = StoredResponse(response.status, content_type, bytes(body_out))
        if not request.get(ANSWER_RECORDED, False):
            # A route that does not record its answer in its own transaction (every route
            # does today, see record_in_transaction): right after, the weaker promise.
            try:
                await save_answer(
                    db,
                    answer_row(Receipt(record, digest), stored.status, content_type, stored.body, utc_now()),
                )
            except (DatabaseError, UnicodeDecodeError) as exc:
                log.warning("could not record an idempotent answer in the database: %s", str(exc))
        try:
            if not await store.complete(record, token, digest, stored, settings.idempotency_ttl):
                log.warning(
                    "an idempotency lock expired before its request finished; raise IDEMPOTENCY_LOCK_TTL"
                )
        except StoreUnavailable as exc:
            # The work is done and the client must hear so. Our lock still guards the key
            # (retries get 409), so keep trying to store the answer until the lock would
            # expire; the database has the answer either way.
            log.warning("could not store an idempotent response yet: %s", str(exc))
            store.complete_later(
                record, token, digest, stored, settings.idempotency_ttl, within=settings.idempotency_lock_ttl
            )
        return response

    return wrapper
