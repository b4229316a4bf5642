"""The one format both backends store moments in, and reading it back."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def utc_now() -> str:
    """The current time as the ISO 8601 text both backends store."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def as_datetime(value: Any) -> datetime:
    """A stored timestamp (``datetime`` from PostgreSQL, text from SQLite) as aware UTC."""
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
