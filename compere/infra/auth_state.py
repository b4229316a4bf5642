"""Login attempt counters, shared by every worker and instance through Redis.

They count attempts before the password is checked, per canonical username and per
client group, so that parallel guesses cannot slip past a limit. They are the fast,
shared first line only: what must outlast a Redis restart (logouts, disabled users,
token epochs, account lockouts) is kept in the database (``compere.storage.users``).
Without ``REDIS_URL`` (local development only; production requires it) an in-process
store with the same interface is used instead.

Every Redis key this module uses is built by :func:`redis_key`.
"""

from __future__ import annotations

import abc
import time

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from compere.domain.accounts import canonical_name

_PREFIX = "compere:auth:"  # the default; the app passes REDIS_KEY_PREFIX + "auth:"


def redis_key(kind: str, subject: str, prefix: str = _PREFIX) -> str:
    """The one place the names of authentication keys are built."""
    return f"{prefix}{kind}:{subject}"


class AuthStateUnavailable(Exception):
    """Redis did not answer; the caller refuses rather than guess (fail closed)."""


class LoginThrottle(abc.ABC):
    """Counts login attempts per username and per client group in a fixed window.

    Every attempt is counted before the password is checked, so parallel guesses
    cannot slip past the limit. A successful login clears its username's count and
    takes its attempt back from the client's count (many people may share an address).
    ``client`` is the client's group (``compere.http.client_address.client_group``),
    the same grouping the rate limiter counts by.
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
        return (
            redis_key("fail:user", canonical_name(username), self.prefix),
            redis_key("fail:client", client, self.prefix),
        )


# --- Redis -------------------------------------------------------------------------

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
