"""Where idempotency records live: Redis in production, a dict in development.

A record is one value under one key: while the first request runs it is a short-lived
*lock* (``running``, expiring after the lock TTL so a crashed worker cannot block the key
for long); when that request succeeds it becomes the stored *response* (``done``, kept for
the record TTL). Both carry the fingerprint of the request that created them, so a reuse
of the key for a different request can be told apart from a retry.

Every change is a single atomic step (``SET NX GET`` to claim; a small Lua script to
finish or release only the lock this request holds), so two workers racing for one key
cannot both win.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from compere.infra.redis import REDIS_ERRORS, RedisClient, retry_in_background

__all__ = [
    "Claim",
    "IdempotencyStore",
    "InMemoryIdempotencyStore",
    "RedisIdempotencyStore",
    "StoreUnavailable",
    "StoredResponse",
]

KEY_PREFIX = "compere:idem:"  # the default; the app passes REDIS_KEY_PREFIX + "idem:"

log = logging.getLogger(__name__)


class StoreUnavailable(Exception):
    """The idempotency store could not be reached or did not answer in time."""


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status: int
    content_type: str
    body: bytes


@dataclass(frozen=True, slots=True)
class Claim:
    """What a key already holds when this request could not claim it."""

    fingerprint: str
    response: StoredResponse | None  # None: the first request is still running


def _running(token: str, fingerprint: str) -> bytes:
    return f"running {token} {fingerprint}\n".encode()


def _done(fingerprint: str, response: StoredResponse) -> bytes:
    head = f"done - {fingerprint} {response.status} {response.content_type}\n".encode()
    return head + response.body


def _lock_prefix(token: str) -> bytes:
    return f"running {token} ".encode()


def _parse(value: bytes) -> Claim:
    head, _, body = value.partition(b"\n")
    state, _token, fingerprint, *rest = head.decode().split(" ", 4)
    if state == "running":
        return Claim(fingerprint, None)
    status, content_type = rest
    return Claim(fingerprint, StoredResponse(int(status), content_type, body))


class IdempotencyStore(abc.ABC):
    """Claim a key, then either store the response under it or release it."""

    _RETRY_INTERVAL = 0.25

    def __init__(self) -> None:
        self._pending: set[asyncio.Task[None]] = set()

    @abc.abstractmethod
    async def claim(self, key: str, fingerprint: str, token: str, lock_ttl: float) -> Claim | None:
        """Take the key for this request (None), or return what it already holds."""

    @abc.abstractmethod
    async def complete(
        self, key: str, token: str, fingerprint: str, response: StoredResponse, ttl: float
    ) -> bool:
        """Replace this request's lock by its response; False if the lock was lost."""

    @abc.abstractmethod
    async def release(self, key: str, token: str) -> None:
        """Drop this request's lock (it failed) so a retry runs again."""

    def complete_later(
        self, key: str, token: str, fingerprint: str, response: StoredResponse, ttl: float, within: float
    ) -> None:
        """Keep trying :meth:`complete` in the background for ``within`` seconds.

        Used when the store failed just as a request finished: the lock is still in
        the store (with persistence, across a restart), so storing the response once
        the store is back, before the lock expires, still protects every retry.
        """
        self._spawn(lambda: self.complete(key, token, fingerprint, response, ttl), within, "store a response")

    def release_later(self, key: str, token: str, within: float) -> None:
        """Keep trying :meth:`release` in the background (else retries wait for the lock TTL)."""
        self._spawn(lambda: self.release(key, token), within, "release a lock")

    def _spawn(self, attempt: Callable[[], Awaitable[object]], within: float, what: str) -> None:
        retry_in_background(
            self._pending,
            attempt,
            unavailable=StoreUnavailable,
            within=within,
            what=what,
            interval=self._RETRY_INTERVAL,
        )

    async def aclose(self) -> None:
        """Stop the background retries (at shutdown)."""
        for task in list(self._pending):
            task.cancel()
        await asyncio.gather(*self._pending, return_exceptions=True)


# Finish or drop the lock only if it is still ours: after a lock expired, another
# request may hold the key, and its lock must survive our late answer.
_COMPLETE = """
local current = redis.call('GET', KEYS[1])
if current and string.sub(current, 1, string.len(ARGV[1])) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""
_RELEASE = """
local current = redis.call('GET', KEYS[1])
if current and string.sub(current, 1, string.len(ARGV[1])) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class RedisIdempotencyStore(IdempotencyStore):
    def __init__(self, client: RedisClient, *, timeout: float = 1.0, key_prefix: str = KEY_PREFIX) -> None:
        super().__init__()
        self._redis = client
        self._prefix = key_prefix
        self._timeout = timeout  # on top of the client's own socket timeouts
        self._complete = client.register_script(_COMPLETE)
        self._release = client.register_script(_RELEASE)

    async def claim(self, key: str, fingerprint: str, token: str, lock_ttl: float) -> Claim | None:
        try:
            async with asyncio.timeout(self._timeout):
                previous = await self._redis.set(
                    self._prefix + key,
                    _running(token, fingerprint),
                    nx=True,
                    px=int(lock_ttl * 1000),
                    get=True,
                )
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(str(exc)) from exc
        if previous is None:
            return None
        return _parse(previous.encode() if isinstance(previous, str) else bytes(previous))

    async def complete(
        self, key: str, token: str, fingerprint: str, response: StoredResponse, ttl: float
    ) -> bool:
        try:
            async with asyncio.timeout(self._timeout):
                done = await self._complete(
                    keys=[self._prefix + key],
                    args=[_lock_prefix(token), _done(fingerprint, response), int(ttl * 1000)],
                )
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(str(exc)) from exc
        return bool(done)

    async def release(self, key: str, token: str) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                await self._release(keys=[self._prefix + key], args=[_lock_prefix(token)])
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(str(exc)) from exc


class InMemoryIdempotencyStore(IdempotencyStore):
    """The same behaviour inside one process, for development without Redis.

    Each process has its own records, so with several workers a retry that reaches
    another worker is not recognised: never rely on this in production.
    """

    _SWEEP_EVERY = 1000

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._records: dict[str, tuple[float, bytes]] = {}
        self._clock = clock
        self._calls = 0

    def _get(self, key: str) -> bytes | None:
        entry = self._records.get(key)
        if entry is None:
            return None
        if entry[0] <= self._clock():
            del self._records[key]
            return None
        return entry[1]

    def _sweep(self) -> None:
        self._calls += 1
        if self._calls % self._SWEEP_EVERY == 0:
            now = self._clock()
            for key in [k for k, (expires, _) in self._records.items() if expires <= now]:
                del self._records[key]

    async def claim(self, key: str, fingerprint: str, token: str, lock_ttl: float) -> Claim | None:
        self._sweep()
        current = self._get(key)
        if current is not None:
            return _parse(current)
        self._records[key] = (self._clock() + lock_ttl, _running(token, fingerprint))
        return None

    async def complete(
        self, key: str, token: str, fingerprint: str, response: StoredResponse, ttl: float
    ) -> bool:
        current = self._get(key)
        if current is None or not current.startswith(_lock_prefix(token)):
            return False
        self._records[key] = (self._clock() + ttl, _done(fingerprint, response))
        return True

    async def release(self, key: str, token: str) -> None:
        current = self._get(key)
        if current is not None and current.startswith(_lock_prefix(token)):
            del self._records[key]
