"""What a rate limit allows: a policy (a limit per window) and what to do without a store.

Plain values, kept apart from the limiters in ``ratelimit.py`` so the settings can build
their policies without importing Redis or the metrics registry (which gunicorn's master
must not import; see gunicorn.conf.py).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

__all__ = ["FailMode", "RateLimitPolicy"]

# What to do while the store cannot be reached: serve unlimited, or answer 503.
FailMode = Literal["open", "closed"]

_POLICY_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


@dataclass(frozen=True)
class RateLimitPolicy:
    """At most ``limit`` requests in any interval of ``window`` seconds."""

    name: str
    limit: int
    window: float

    def __post_init__(self) -> None:
        # The name appears in Redis keys and in the RateLimit-Policy header.
        if not _POLICY_NAME.match(self.name):
            raise ValueError(f"rate limit policy name {self.name!r} must match {_POLICY_NAME.pattern}")
        if isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 1:
            raise ValueError(f"rate limit policy {self.name!r}: limit must be a positive integer")
        if not (isinstance(self.window, int | float) and math.isfinite(self.window)) or self.window < 0.001:
            raise ValueError(f"rate limit policy {self.name!r}: window must be at least 0.001 seconds")
