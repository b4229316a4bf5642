"""Client-side pacing: every request of one client passes one gate, so 100 tasks that share
a quota slow down together instead of each finding the limit by a 429.

The server announces its quota on every limited answer (draft-ietf-httpapi-ratelimit-headers):
``RateLimit-Policy: "default";q=100;w=60`` (at most q requests in any w seconds) and
``RateLimit: "default";r=7;t=3`` (r left, t seconds until one more is admitted). The gate
keeps its own sliding log per policy: requests in flight plus answers received within the
last ``w`` seconds. An answer is stamped when it arrives, after the server counted it, so
the local log never frees a slot before the server's does, and a client alone on its quota
stays under the limit. Each answer's ``r`` also caps what the client sends until the next
answer, which accounts for quota spent by others; with ``r`` at 0 and nothing in flight it
waits ``t`` seconds and sends one request to find out more. A 429 blocks the policy for
every task until ``Retry-After`` has passed.

Until the first answer shows the server's policy, requests go one at a time, so a burst
at start-up cannot overrun a quota the client has not seen yet. Routes not answered yet are
taken to share the first policy seen (the server's ``default``) until their own answer says
otherwise; routes answered without these headers (``/health``) are not paced.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from compere.client.retry import parse_retry_after

__all__ = ["RateLimitGate", "parse_rate_limit_fields"]


def parse_rate_limit_fields(value: str | None) -> dict[str, dict[str, float]]:
    """``"default";q=100;w=60, "auth";q=10;w=60`` -> ``{"default": {"q": 100, "w": 60}, ...}``.

    Items or parameters that do not parse are skipped: a malformed header must never break
    the request it came with.
    """
    found: dict[str, dict[str, float]] = {}
    if not value:
        return found
    for item in value.split(","):
        name, *params = (part.strip() for part in item.split(";"))
        name = name.strip('"')
        if not name:
            continue
        values: dict[str, float] = {}
        for param in params:
            key, _, raw = param.partition("=")
            try:
                values[key.strip()] = float(raw)
            except ValueError:
                continue
        found[name] = values
    return found


@dataclass
class _Window:
    """What the client knows of one server policy.

    Two estimates, both conservative: the client's own sliding log (requests in flight plus
    answers received in the last ``period``), and ``credit``, the server's last ``r`` minus
    the requests still in flight when it came and those sent since. The second one sees
    requests of other clients spending the same quota; the first one bounds the damage
    when answers arrive out of order.
    """

    limit: int
    period: float
    in_flight: int = 0
    answered: collections.deque[float] = field(default_factory=collections.deque)
    blocked_until: float = 0.0
    credit: int | None = None  # None: the server has not said yet
    more_at: float = 0.0  # when the server said one more request would be admitted

    def used(self, now: float) -> int:
        while self.answered and self.answered[0] <= now - self.period:
            self.answered.popleft()
        return self.in_flight + len(self.answered)

    def delay(self, now: float) -> float | None:
        """0 when a request may go now, else seconds to wait (None: until an answer arrives)."""
        if self.blocked_until > now:
            return self.blocked_until - now
        if self.used(now) >= self.limit:
            return self.answered[0] + self.period - now if self.answered else None
        if self.credit is not None and self.credit <= 0:
            if self.in_flight:
                return None  # its answer brings fresh news of the quota
            if self.more_at > now:
                return self.more_at - now
            self.credit = 1  # the server said a slot frees by now: one request finds out
        return 0.0

    def take(self) -> None:
        self.in_flight += 1
        if self.credit is not None:
            self.credit -= 1

    def answer(
        self, status: int, remaining: float | None, reset: float | None, retry_after: float, now: float
    ) -> None:
        """Account for an answer to one of this window's requests (already out of ``in_flight``)."""
        if status == 429:
            self.credit = 0
            self.blocked_until = max(self.blocked_until, now + retry_after)
            self.more_at = max(self.more_at, self.blocked_until)
            return
        self.answered.append(now)  # the server counted it
        if remaining is not None:
            self.credit = int(remaining) - self.in_flight
            self.more_at = now + (reset or 0.0)


@dataclass
class Permit:
    """One request's pass through the gate; hand it back with :meth:`RateLimitGate.release`."""

    route: str
    window: _Window | None
    probe: bool


_UNKNOWN = object()


class RateLimitGate:
    """The pacing shared by every request of one client (see the module docstring).

    ``route`` names what the server may limit separately (``"POST /auth/token"``); routes
    whose answers name the same policy share its window. All methods run on one event loop.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
        max_jitter: float = 0.1,
    ) -> None:
        self._clock = clock
        self._jitter = jitter
        self._max_jitter = max_jitter
        self._windows: dict[str, _Window] = {}
        self._route_policy: dict[str, str | None] = {}  # None: the route is not limited
        self._default: str | None = None  # the policy routes not seen yet probably fall under
        self._probe_out = False
        self._changed = asyncio.Event()
        self.refusals = 0  # 429 answers seen, for callers who want to report it

    def _policy_of(self, route: str) -> str | object | None:
        name = self._route_policy.get(route, _UNKNOWN)
        if name is _UNKNOWN and self._default is not None:
            return self._default
        return name

    async def acquire(self, route: str) -> Permit:
        """Wait until a request to ``route`` fits in the quota as far as the client knows."""
        while True:
            name = self._policy_of(route)
            if name is None:
                return Permit(route, None, probe=False)
            if name is _UNKNOWN:
                if not self._probe_out:
                    self._probe_out = True
                    return Permit(route, None, probe=True)
                await self._wait(None)
                continue
            assert isinstance(name, str)
            window = self._windows[name]
            delay = window.delay(self._clock())
            if delay == 0.0:
                window.take()
                return Permit(route, window, probe=False)
            await self._wait(None if delay is None else delay + self._max_jitter * self._jitter())

    def release(self, permit: Permit, status: int | None, headers: Mapping[str, str] | None = None) -> None:
        """Hand the permit back with the answer (``status`` None: no answer came)."""
        now = self._clock()
        if permit.window is not None:
            permit.window.in_flight -= 1
        if permit.probe:
            self._probe_out = False
        if status is not None:
            headers = headers or {}
            window = self._learn(permit.route, status, headers, now) or permit.window
            if status == 429:
                self.refusals += 1
            if window is not None:
                state = next(iter(parse_rate_limit_fields(headers.get("RateLimit")).values()), {})
                retry_after = parse_retry_after(headers.get("Retry-After")) or state.get("t") or 1.0
                window.answer(status, state.get("r"), state.get("t"), retry_after, now)
        self._notify()

    def _learn(self, route: str, status: int, headers: Mapping[str, str], now: float) -> _Window | None:
        """Update the policy and the server's count from an answer; its window, if any."""
        policies = parse_rate_limit_fields(headers.get("RateLimit-Policy"))
        if not policies:
            if status != 429 and route not in self._route_policy:
                self._route_policy[route] = None  # answered without limit headers: not limited
            return None
        name, params = next(iter(policies.items()))
        limit, period = int(params.get("q", 0)), params.get("w", 0.0)
        if limit < 1 or period <= 0:
            return None
        window = self._windows.get(name)
        if window is None:
            window = self._windows[name] = _Window(limit, period)
        else:
            window.limit, window.period = limit, period
        self._route_policy[route] = name
        if self._default is None or name == "default":
            self._default = name
        return window

    async def _wait(self, seconds: float | None) -> None:
        """Until the gate changes (an answer arrived), or ``seconds`` passed."""
        event = self._changed
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await event.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()
