"""The PostgreSQL vote path: two round trips (three with a known voter, whose record is
locked in one of its own), prepared statements, COMMIT with the writes.

``record_comparison`` sends ``BEGIN`` with the locking query (which also draws the new
comparison's id) and then the writes with the ``COMMIT`` in one message; both statements
stay prepared on each connection. These tests pin what that shape must not change: the
answer is the row as stored, a refused vote leaves nothing behind and the connection
usable, and nothing else can run in a transaction after ``finish``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiopg
import pytest
import sqlalchemy as sa

from compere.domain.bayes import DEFAULT_PRIOR
from compere.storage import comparisons, entities
from compere.storage.connect import connect
from compere.storage.database import ConflictError, Database, Query
from compere.storage.migrations import migrate
from tests.helpers import empty_postgres

pytestmark = pytest.mark.postgres

_PREPARED = Query(sa.text("SELECT name FROM pg_prepared_statements ORDER BY name"))


async def _open(url: str, *, prepared: bool) -> Database:
    db = await connect(url, pool_min=1, pool_max=1, prepared_statements=prepared)
    await migrate(db)
    return db


@pytest.fixture
async def pg(shared_postgres_url: str) -> AsyncIterator[tuple[Database, list[int]]]:
    empty_postgres(shared_postgres_url)
    db = await _open(shared_postgres_url, prepared=True)
    ids = []
    for name in ("a", "b", "c"):
        row = await entities.create_entity(
            db, name=name, description="", image_urls=[], rating=1500.0, prior=DEFAULT_PRIOR
        )
        ids.append(row.id)
    try:
        yield db, ids
    finally:
        await db.close()


def _record_sent(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every message the aiopg cursors send from now on, one per round trip."""
    sent: list[str] = []
    original = aiopg.Cursor.execute

    async def counting(self, operation, *args, **kwargs):  # type: ignore[no-untyped-def]
        sent.append(operation)
        return await original(self, operation, *args, **kwargs)

    monkeypatch.setattr(aiopg.Cursor, "execute", counting)
    return sent


async def test_a_vote_is_two_round_trips_and_answers_the_stored_row(pg, monkeypatch) -> None:
    db, (a, b, _) = pg
    await comparisons.record_comparison(db, entity1_id=a, entity2_id=b, selected_entity_id=a, k_factor=32)
    sent = _record_sent(monkeypatch)  # the statements are prepared by now
    row = await comparisons.record_comparison(
        db, entity1_id=b, entity2_id=a, selected_entity_id=None, k_factor=32
    )
    assert len(sent) == 2
    assert sent[0].startswith("BEGIN;EXECUTE ")
    assert sent[1].startswith("EXECUTE ") and sent[1].endswith("; COMMIT")
    stored = await comparisons.get_comparison(db, row.id)
    assert stored is not None
    assert stored == row
    assert row.created_at.utcoffset().total_seconds() == 0


async def test_prepared_statements_are_per_connection_and_optional(pg, shared_postgres_url) -> None:
    db, (a, b, _) = pg
    await comparisons.record_comparison(db, entity1_id=a, entity2_id=b, selected_entity_id=b, k_factor=32)
    assert len(await db.fetch_all(_PREPARED)) == 2
    plain = await _open(shared_postgres_url, prepared=False)
    try:
        await comparisons.record_comparison(
            plain, entity1_id=a, entity2_id=b, selected_entity_id=b, k_factor=32
        )
        assert await plain.fetch_all(_PREPARED) == []
    finally:
        await plain.close()


async def test_a_refused_vote_leaves_nothing_and_the_connection_usable(pg) -> None:
    db, (a, b, c) = pg
    token = comparisons.PairProvenance("random", 0.5, "token-1")
    first = await comparisons.record_comparison(
        db, entity1_id=a, entity2_id=b, selected_entity_id=a, k_factor=32, provenance=token
    )
    before = await db.fetch_all(
        Query(sa.text("SELECT id, rating, mu, sigma, comparisons FROM entities ORDER BY id"))
    )
    with pytest.raises(ConflictError):
        await comparisons.record_comparison(
            db, entity1_id=a, entity2_id=b, selected_entity_id=b, k_factor=32, provenance=token
        )
    with pytest.raises(entities.EntityNotFound):
        await comparisons.record_comparison(
            db, entity1_id=a, entity2_id=10**12, selected_entity_id=a, k_factor=32
        )
    after = await db.fetch_all(
        Query(sa.text("SELECT id, rating, mu, sigma, comparisons FROM entities ORDER BY id"))
    )
    assert after == before
    assert await db.fetch_value(Query(sa.text("SELECT count(*) FROM comparisons"))) == 1
    # Same (single) pooled connection, prepared statements still in place.
    later = await comparisons.record_comparison(
        db, entity1_id=c, entity2_id=a, selected_entity_id=c, k_factor=32
    )
    assert later.id > first.id


async def test_nothing_runs_in_a_transaction_after_finish(pg) -> None:
    db, (a, _, _) = pg
    touch = Query(sa.text("UPDATE entities SET wins = wins WHERE id = :id"))
    with pytest.raises(RuntimeError):
        async with db.transaction() as tx:
            await tx.finish(touch, {"id": a})
            await tx.execute(touch, {"id": a})
    with pytest.raises(RuntimeError):
        await db.finish(touch, {"id": a})


async def test_a_known_voters_vote_is_three_round_trips_and_writes_its_record_with_the_vote(
    pg, monkeypatch
) -> None:
    from compere.domain.trust import POLICIES
    from compere.storage import users, voters

    db, (a, b, c) = pg
    policy = POLICIES["default"]
    user = await users.create_user(
        db, username="voter", email=None, full_name=None, hashed_password="x", creator_is_superuser=True
    )
    voter_id = user["id"]
    await comparisons.record_comparison(
        db,
        entity1_id=a,
        entity2_id=b,
        selected_entity_id=a,
        k_factor=32,
        user_id=voter_id,
        voter=f"u:{voter_id}",
        trust=policy,
    )
    sent = _record_sent(monkeypatch)
    row = await comparisons.record_comparison(
        db,
        entity1_id=b,
        entity2_id=c,
        selected_entity_id=c,
        k_factor=32,
        user_id=voter_id,
        voter=f"u:{voter_id}",
        trust=policy,
    )
    assert len(sent) == 3  # the voter's row is locked in a round trip of its own
    assert sent[-1].startswith("EXECUTE ") and sent[-1].endswith("; COMMIT")
    assert await comparisons.get_comparison(db, row.id) == row
    (record,) = await voters.all_voters(db, 1)
    assert (record["voter"], record["votes"], record["touched"]) == (f"u:{voter_id}", 2, 3)
    shares = {(r["voter"], r["entity_id"]): r["votes"] for r in await voters.live_shares(db, 1)}
    assert shares == {(f"u:{voter_id}", a): 1, (f"u:{voter_id}", b): 2, (f"u:{voter_id}", c): 1}
    # A refused vote (a reused pair token) leaves the voter's record as it was.
    token = comparisons.PairProvenance("random", 0.5, "token-1")
    await comparisons.record_comparison(
        db,
        entity1_id=a,
        entity2_id=c,
        selected_entity_id=a,
        k_factor=32,
        user_id=voter_id,
        voter=f"u:{voter_id}",
        trust=policy,
        provenance=token,
    )
    with pytest.raises(ConflictError):
        await comparisons.record_comparison(
            db,
            entity1_id=a,
            entity2_id=c,
            selected_entity_id=a,
            k_factor=32,
            user_id=voter_id,
            voter=f"u:{voter_id}",
            trust=policy,
            provenance=token,
        )
    (record,) = await voters.all_voters(db, 1)
    assert record["votes"] == 3
