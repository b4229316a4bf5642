"""Stored answers to requests sent with an ``Idempotency-Key``: the durable record.

Redis may answer a retry faster, but this table is the record that counts: every answer
is written in its write's own transaction (a vote's in ``comparisons.record_votes``, an
entity's or a user's through :func:`record_answer`), so after
Redis lost its data, a worker died or Redis failed over, a retry still finds the
original answer and nothing is stored twice. Rows live for ``IDEMPOTENCY_TTL`` seconds:
older ones are ignored on read and deleted by :func:`purge_answers`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy import bindparam as param

from compere.storage.database import Connection, Database, Query
from compere.storage.tables import idempotency_records


@dataclass(frozen=True, slots=True)
class Receipt:
    """An Idempotency-Key to record with the write it protects: the caller's record key
    and the fingerprint of the request."""

    key: str
    fingerprint: str


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    """What a key holds: the fingerprint of its request and the answer it got."""

    fingerprint: str
    status: int
    content_type: str
    body: bytes


_FIND = Query(
    sa.select(
        idempotency_records.c.fingerprint,
        idempotency_records.c.status,
        idempotency_records.c.content_type,
        idempotency_records.c.body,
    ).where(
        idempotency_records.c.record_key == param("key"), idempotency_records.c.created_at >= param("since")
    ),
    prepare=True,
)
_PURGE = Query(sa.delete(idempotency_records).where(idempotency_records.c.created_at < param("before")))


def cutoff(retention: float) -> str:
    """The oldest ``created_at`` still replayed, as stored text."""
    return (datetime.now(UTC) - timedelta(seconds=retention)).isoformat(timespec="microseconds")


def answer_row(receipt: Receipt, status: int, content_type: str, body: bytes, now: str) -> dict[str, object]:
    """The row that records ``receipt``'s answer (columns of ``idempotency_records``)."""
    return {
        "record_key": receipt.key,
        "fingerprint": receipt.fingerprint,
        "status": status,
        "content_type": content_type,
        "body": body.decode("utf-8"),
        "created_at": now,
    }


async def find_answer(db: Connection, key: str, retention: float) -> StoredAnswer | None:
    """The answer recorded under ``key`` within the retention, if any."""
    row = await db.fetch_one(_FIND, {"key": key, "since": cutoff(retention)})
    if row is None:
        return None
    return StoredAnswer(
        row["fingerprint"], int(row["status"]), row["content_type"], row["body"].encode("utf-8")
    )


async def save_answer(db: Database, row: dict[str, object]) -> None:
    """Record an answer after its write (a route that does not record it in the write's
    own transaction: none does today); a row already there (a concurrent retry's) wins."""
    statement = db.insert_or_skip(idempotency_records).values(row).on_conflict_do_nothing()
    await db.execute(Query(statement))


async def record_answer(db: Database, tx: Connection, row: dict[str, object]) -> bool:
    """Record an answer on ``tx``, the transaction of the write it answers, so the two
    commit together or not at all. False when an answer is already recorded under the key
    (a concurrent request with it committed first; PostgreSQL waits for that one's
    transaction to end): the caller rolls its write back and replays that answer."""
    statement = db.insert_or_skip(idempotency_records).values(row).on_conflict_do_nothing()
    return await tx.execute(Query(statement)) == 1


async def purge_answers(db: Database, retention: float) -> int:
    """Delete every answer older than the retention; returns how many."""
    return await db.execute(_PURGE, {"before": cutoff(retention)})
