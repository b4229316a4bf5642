"""Login attempt counters, shared by every worker and instance through Redis.

They count attempts before the password is checked, per canonical username and per
client group, so that parallel guesses cannot slip past a limit. They are the fast,
shared first line only: what must outlast a Redis restart (logouts, disabled users,
token epochs, account lockouts) is kept in the database (``compere.storage.users``).
Without ``REDIS_URL`` (local development only; production requires it) an in-process
store with the same interface is used instead. Both read the time from the caller (the
app's clock, ``compere.http.keys.CLOCK``), so windows end by that one clock.

Every Redis key this module uses is built by :func:`redis_key`. Both keys of one
attempt go into one Lua script, so they share the hash tag ``{login}`` and so one Redis
Cluster slot (a script's keys must; docs/deployment.md lists every key).
"""

from __future__ import annotations

import abc
import asyncio
import math

from compere.domain.accounts import canonical_name
from compere.infra.redis import REDIS_ERRORS, RedisClient, retry_in_background

_PREFIX = "compere:auth:"  # the default; the app passes REDIS_KEY_PREFIX + "auth:"
# Redis Cluster hashes only the part of a key between the first "{" and the next "}":
# every login key carries this tag, so a script's keys always share a slot.
HASH_TAG = "{login}"
# A whole call, including a cluster client's slot-map reload, ends within this.
CALL_TIMEOUT = 1.0


def redis_key(kind: str, subject: str, prefix: str = _PREFIX) -> str:
    """The one place the names of authentication keys are built."""
    return f"{prefix}{HASH_TAG}:{kind}:{subject}"


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

    _RETRY_INTERVAL = 0.25

    def __init__(self, *, per_user: int, per_client: int, window: int, prefix: str = _PREFIX) -> None:
        self.prefix = prefix
        self.per_user = per_user
        self.per_client = per_client
        self.window = window
        self._pending: set[asyncio.Task[None]] = set()

    @abc.abstractmethod
    async def attempt(self, username: str, client: str, now: float) -> int:
        """Count one attempt at Unix time ``now``; 0 when allowed, else the seconds until it will be."""

    @abc.abstractmethod
    async def succeeded(self, username: str, client: str) -> None: ...

    def succeeded_later(self, username: str, client: str, within: float) -> None:
        """Keep trying :meth:`succeeded` in the background for ``within`` seconds.

        For a right password whose success could not be recorded (Redis failing over):
        its attempt stays counted until then, and a few such attempts during an outage
        would otherwise lock the user out for the rest of the window once Redis is back.
        """

        retry_in_background(
            self._pending,
            lambda: self.succeeded(username, client),
            unavailable=AuthStateUnavailable,
            within=within,
            what="take back a successful login attempt",
            interval=self._RETRY_INTERVAL,
        )

    async def aclose(self) -> None:
        """Stop the background retries (at shutdown)."""
        for task in list(self._pending):
            task.cancel()
        await asyncio.gather(*self._pending, return_exceptions=True)

    def keys(self, username: str, client: str) -> tuple[str, str]:
        return (
            redis_key("fail:user", canonical_name(username), self.prefix),
            redis_key("fail:client", client, self.prefix),
        )


# --- Redis -------------------------------------------------------------------------

# Counts an attempt on both keys at once; answers 0 or the longest wait still to run.
# Each key is a hash of the count and the window's end in milliseconds of the app's
# clock (ARGV[1] is now), so the caller's time decides when a window is over; Redis's
# own expiry, a second later, only clears it away. A key of another type (a counter of
# an older version) starts a new window.
_ATTEMPT = """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local wait = 0
for i, key in ipairs(KEYS) do
  local ends = nil
  if redis.call('TYPE', key)['ok'] == 'hash' then ends = tonumber(redis.call('HGET', key, 'ends')) end
  if ends == nil or ends <= now then
    ends = now + window
    redis.call('DEL', key)
    redis.call('HSET', key, 'ends', ends)
    redis.call('PEXPIRE', key, window + 1000)
  end
  local count = redis.call('HINCRBY', key, 'count', 1)
  if count > tonumber(ARGV[i + 2]) then
    local left = math.ceil((ends - now) / 1000)
    if left < 1 then left = 1 end
    if left > wait then wait = left end
  end
end
return wait
"""
# After a success: the username starts afresh; the client gets its attempt back.
_REFUND = """
redis.call('DEL', KEYS[1])
if redis.call('TYPE', KEYS[2])['ok'] == 'hash'
    and tonumber(redis.call('HGET', KEYS[2], 'count') or '0') > 0 then
  redis.call('HINCRBY', KEYS[2], 'count', -1)
end
return 0
"""


class RedisLoginThrottle(LoginThrottle):
    def __init__(
        self, client: RedisClient, *, per_user: int, per_client: int, window: int, prefix: str = _PREFIX
    ) -> None:
        super().__init__(per_user=per_user, per_client=per_client, window=window, prefix=prefix)
        self._attempt = client.register_script(_ATTEMPT)
        self._refund = client.register_script(_REFUND)

    async def attempt(self, username: str, client: str, now: float) -> int:
        args = [int(now * 1000), self.window * 1000, self.per_user, self.per_client]
        try:
            async with asyncio.timeout(CALL_TIMEOUT):
                wait = await self._attempt(keys=list(self.keys(username, client)), args=args)
        except REDIS_ERRORS as exc:
            raise AuthStateUnavailable("redis") from exc
        return int(wait)

    async def succeeded(self, username: str, client: str) -> None:
        try:
            async with asyncio.timeout(CALL_TIMEOUT):
                await self._refund(keys=list(self.keys(username, client)))
        except REDIS_ERRORS as exc:
            raise AuthStateUnavailable("redis") from exc


# --- in-process (development without Redis) ------------------------------------------


class MemoryLoginThrottle(LoginThrottle):
    def __init__(self, *, per_user: int, per_client: int, window: int) -> None:
        super().__init__(per_user=per_user, per_client=per_client, window=window)
        self._counts: dict[str, tuple[int, float]] = {}  # key -> (count, window end)

    async def attempt(self, username: str, client: str, now: float) -> int:
        self._counts = {k: v for k, v in self._counts.items() if v[1] > now}
        wait = 0
        for key, limit in zip(self.keys(username, client), (self.per_user, self.per_client), strict=True):
            count, until = self._counts.get(key, (0, now + self.window))
            self._counts[key] = (count + 1, until)
            if count + 1 > limit:
                wait = max(wait, max(1, math.ceil(until - now)))
        return wait

    async def succeeded(self, username: str, client: str) -> None:
        user_key, client_key = self.keys(username, client)
        self._counts.pop(user_key, None)
        if client_key in self._counts and self._counts[client_key][0] > 0:
            count, until = self._counts[client_key]
            self._counts[client_key] = (count - 1, until)
