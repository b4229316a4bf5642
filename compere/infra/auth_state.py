"""Shared authentication state: revoked token ids and failed-login counters.

Both live in Redis so every worker and every instance sees them. Without
``REDIS_URL`` (local development only; production requires it) an in-process
store with the same interface is used instead.
"""

from __future__ import annotations

import abc
import time

import redis.asyncio as aioredis
from redis.exceptions import RedisError

_PREFIX = "compere:auth:"  # the default; the app passes REDIS_KEY_PREFIX + "auth:"


class AuthStateUnavailable(Exception):
    """Redis did not answer; the caller refuses rather than guess (fail closed)."""


class RevokedTokens(abc.ABC):
    """Token ids that were logged out, each remembered until the token would expire."""

    @abc.abstractmethod
    async def revoke(self, token_id: str, expires_at: int) -> None: ...

    @abc.abstractmethod
    async def is_revoked(self, token_id: str) -> bool: ...


class LoginThrottle(abc.ABC):
    """Counts login attempts per username and per client address in a fixed window.

    Every attempt is counted before the password is checked, so parallel guesses
    cannot slip past the limit. A successful login clears its username's count and
    takes its attempt back from the client's count (many people may share an address).
    """

    def __init__(self, *, per_user: int, per_client: int, window: int, prefix: str = _PREFIX) -> None:
        self.prefix = prefix
        self.per_user = per_user
        self.per_client = per_client
        self.window = window

    @abc.abstractmethod
    async def attempt(self, username: str, client: str) -> int:
        """Count one attempt; 0 when allowed, else the seconds until it will be."""

    @abc.abstractmethod
    async def succeeded(self, username: str, client: str) -> None: ...

    def keys(self, username: str, client: str) -> tuple[str, str]:
        return f"{self.prefix}fail:user:{username.lower()}", f"{self.prefix}fail:client:{client}"


# --- Redis -------------------------------------------------------------------------


class RedisRevokedTokens(RevokedTokens):
    def __init__(self, client: aioredis.Redis, *, prefix: str = _PREFIX) -> None:
        self._redis = client
        self.prefix = prefix

    async def revoke(self, token_id: str, expires_at: int) -> None:
        try:
            # EXAT: Redis forgets the id exactly when the token would stop working anyway.
            await self._redis.set(
                f"{self.prefix}revoked:{token_id}", b"1", exat=max(expires_at, int(time.time()) + 1)
            )
        except RedisError as exc:
            raise AuthStateUnavailable("redis") from exc

    async def is_revoked(self, token_id: str) -> bool:
        try:
            return bool(await self._redis.exists(f"{self.prefix}revoked:{token_id}"))
        except RedisError as exc:
            raise AuthStateUnavailable("redis") from exc


# Counts an attempt on both keys at once; answers 0 or the longest wait still to run.
_ATTEMPT = """
local window = tonumber(ARGV[1])
local wait = 0
for i, key in ipairs(KEYS) do
  local count = redis.call('INCR', key)
  if count == 1 then redis.call('EXPIRE', key, window) end
  if count > tonumber(ARGV[i + 1]) then
    local ttl = redis.call('TTL', key)
    if ttl < 1 then ttl = 1 end
    if ttl > wait then wait = ttl end
  end
end
return wait
"""
# After a success: the username starts afresh; the client gets its attempt back.
_REFUND = """
redis.call('DEL', KEYS[1])
if tonumber(redis.call('GET', KEYS[2]) or '0') > 0 then redis.call('DECR', KEYS[2]) end
return 0
"""


class RedisLoginThrottle(LoginThrottle):
    def __init__(
        self, client: aioredis.Redis, *, per_user: int, per_client: int, window: int, prefix: str = _PREFIX
    ) -> None:
        super().__init__(per_user=per_user, per_client=per_client, window=window, prefix=prefix)
        self._attempt = client.register_script(_ATTEMPT)
        self._refund = client.register_script(_REFUND)

    async def attempt(self, username: str, client: str) -> int:
        try:
            wait = await self._attempt(
                keys=list(self.keys(username, client)), args=[self.window, self.per_user, self.per_client]
            )
        except RedisError as exc:
            raise AuthStateUnavailable("redis") from exc
        return int(wait)

    async def succeeded(self, username: str, client: str) -> None:
        try:
            await self._refund(keys=list(self.keys(username, client)))
        except RedisError as exc:
            raise AuthStateUnavailable("redis") from exc


# --- in-process (development without Redis) ------------------------------------------


class MemoryRevokedTokens(RevokedTokens):
    def __init__(self) -> None:
        self._until: dict[str, int] = {}

    async def revoke(self, token_id: str, expires_at: int) -> None:
        now = time.time()
        self._until = {k: v for k, v in self._until.items() if v > now}
        self._until[token_id] = expires_at

    async def is_revoked(self, token_id: str) -> bool:
        return self._until.get(token_id, 0) > time.time()


class MemoryLoginThrottle(LoginThrottle):
    def __init__(self, *, per_user: int, per_client: int, window: int) -> None:
        super().__init__(per_user=per_user, per_client=per_client, window=window)
        self._counts: dict[str, tuple[int, float]] = {}  # key -> (count, window end)

    async def attempt(self, username: str, client: str) -> int:
        now = time.monotonic()
        self._counts = {k: v for k, v in self._counts.items() if v[1] > now}
        wait = 0
        for key, limit in zip(self.keys(username, client), (self.per_user, self.per_client), strict=True):
            count, until = self._counts.get(key, (0, now + self.window))
            self._counts[key] = (count + 1, until)
            if count + 1 > limit:
                wait = max(wait, max(1, round(until - now)))
        return wait

    async def succeeded(self, username: str, client: str) -> None:
        user_key, client_key = self.keys(username, client)
        self._counts.pop(user_key, None)
        if client_key in self._counts and self._counts[client_key][0] > 0:
            count, until = self._counts[client_key]
            self._counts[client_key] = (count - 1, until)
