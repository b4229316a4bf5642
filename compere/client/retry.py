"""When and how long to wait before trying a request again."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

__all__ = ["RetryPolicy", "parse_retry_after"]


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries with jittered exponential back-off.

    ``attempts`` bounds the tries of one request that fail with 503, with a connection error
    or a timeout (so ``attempts=1`` never retries). Waits grow as ``base_delay * 2**n``,
    capped at ``max_delay``, each multiplied by a random factor between 0.5 and 1 so that
    many clients failing together do not come back together; a ``Retry-After`` from the
    server is a floor. ``rate_limit_waits`` bounds the 429 answers one request accepts
    (waiting as the server asks each time) before :class:`~compere.client.RateLimited`;
    a 429 that asks for a wait longer than ``max_wait`` seconds (a login lockout, a quota
    that resets in an hour) raises at once instead of sleeping through it.
    """

    attempts: int = 6
    base_delay: float = 0.25
    max_delay: float = 10.0
    rate_limit_waits: int = 30
    max_wait: float = 60.0
    random: Callable[[], float] = field(default=random.random, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.rate_limit_waits < 0:
            raise ValueError("attempts must be at least 1 and rate_limit_waits not negative")
        if self.base_delay < 0 or self.max_delay < self.base_delay:
            raise ValueError("need 0 <= base_delay <= max_delay")

    def backoff(self, failures: int, retry_after: float | None = None) -> float:
        """Seconds to wait after the ``failures``-th failure in a row (1 for the first)."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** (failures - 1))
        delay = ceiling * (0.5 + 0.5 * self.random())
        return max(delay, retry_after or 0.0)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` in seconds: either delay-seconds or an HTTP date; None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
