"""Issuing API keys, shared by ``POST /auth/api-keys`` and ``compere apikey create``."""

from __future__ import annotations

from datetime import UTC, datetime

from compere.infra.api_keys import SCOPES, new_key
from compere.storage import api_keys as store
from compere.storage.database import Database, Row


class KeyRequestError(ValueError):
    """The key asked for cannot be made; ``field`` names what is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


async def issue_key(
    db: Database,
    *,
    user_id: int,
    scopes: list[str],
    name: str = "",
    project_id: int | None = None,
    expires_at: datetime | None = None,
    rate_limit: int | None = None,
    rate_window: int | None = None,
) -> tuple[Row, str]:
    """Store a new key for ``user_id`` and return its row and the key (shown once)."""
    if not scopes or any(scope not in SCOPES for scope in scopes):
        raise KeyRequestError("scopes", f"scopes must be some of {', '.join(SCOPES)}")
    stored_expiry = None
    if expires_at is not None:
        if expires_at.tzinfo is None:
            raise KeyRequestError("expires_at", "expires_at needs a time zone (e.g. Z)")
        if expires_at <= datetime.now(UTC):
            raise KeyRequestError("expires_at", "expires_at must be in the future")
        stored_expiry = expires_at.astimezone(UTC).isoformat(timespec="microseconds")
    if rate_window is not None and rate_limit is None:
        raise KeyRequestError("rate_window", "rate_window needs rate_limit")
    material = new_key()
    row = await store.create_key(
        db,
        user_id=user_id,
        project_id=project_id,
        name=name,
        prefix=material.prefix,
        key_hash=material.key_hash,
        scopes=sorted(set(scopes), key=SCOPES.index),
        rate_limit=rate_limit,
        rate_window=(rate_window or 60) if rate_limit is not None else None,
        expires_at=stored_expiry,
    )
    return row, material.key
