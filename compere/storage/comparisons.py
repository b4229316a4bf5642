"""Comparisons: the atomic vote, reading the vote log, and recent opponents."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import bindparam as param
from sqlalchemy.ext.compiler import compiles

from compere.domain.elo import score_of
from compere.domain.vote import vote_effects
from compere.storage.database import Connection, Database, Query, Row, keyset_batches
from compere.storage.entities import EntityNotFound
from compere.storage.rows import ComparisonRow, comparison_row, verdict_of
from compere.storage.tables import (
    COMPARISON_COLUMNS,
    LIVE,
    comparisons,
    entities,
    new_comparison,
    webhook_events,
)
from compere.storage.timestamps import as_datetime, utc_now

VOTE_EVENT = "comparison.created"


def _lock_pair(*extra: Any, prepare: bool = False) -> Query:
    return Query(
        sa.select(entities.c.id, entities.c.rating, entities.c.mu, entities.c.sigma, *extra)
        .where(entities.c.id.in_([param("a"), param("b")]), LIVE)
        .order_by(entities.c.id)
        .with_for_update(),
        prepare=prepare,
    )


_LOCK_PAIR = _lock_pair()
# In one-statement votes the new comparison's id is drawn from the identity sequence of
# comparisons.id (named by PostgreSQL's convention for identity columns) while the pair
# is locked: the vote's last round trip then carries its COMMIT and need not return
# anything. The scalar subquery runs once per statement, not per row.
_LOCK_PAIR_DRAWING_ID = _lock_pair(
    sa.select(sa.func.nextval(sa.literal_column("'comparisons_id_seq'"))).scalar_subquery().label("new_id"),
    prepare=True,
)


def _apply_result(suffix: str = "") -> Any:
    """One side's vote effect on its entity row; parameters named ``id{suffix}`` etc."""
    return (
        sa.update(entities)
        .where(entities.c.id == param(f"id{suffix}"))
        .values(
            rating=param(f"rating{suffix}"),
            mu=param(f"mu{suffix}"),
            sigma=param(f"sigma{suffix}"),
            comparisons=entities.c.comparisons + 1,
            wins=entities.c.wins + param(f"win{suffix}"),
            losses=entities.c.losses + param(f"loss{suffix}"),
            ties=entities.c.ties + param(f"tie{suffix}"),
        )
    )


_APPLY_RESULT = Query(_apply_result())
_INSERT_COMPARISON = Query(
    sa.insert(comparisons).values(**new_comparison("entity1_id", "entity2_id")).returning(*COMPARISON_COLUMNS)
)
_GET_COMPARISON = Query(sa.select(*COMPARISON_COLUMNS).where(comparisons.c.id == param("id")))


class _InsertWithOwnId(sa.Insert):
    """An INSERT that supplies the id of a ``GENERATED ALWAYS`` identity column."""

    inherit_cache = True


@compiles(_InsertWithOwnId, "postgresql")
def _insert_overriding_identity(element: _InsertWithOwnId, compiler: Any, **kw: Any) -> str:
    sql: str = compiler.visit_insert(element, **kw)
    if sql.count(") VALUES (") != 1:
        raise ValueError("expected a single-row INSERT ... VALUES")
    return sql.replace(") VALUES (", ") OVERRIDING SYSTEM VALUE VALUES (")


def _vote_in_one(*more_ctes: Any) -> Query:
    """The whole vote as one statement: both entity updates ride in data-modifying CTEs
    of the comparison INSERT (``Database.writes_vote_in_one_statement``). The id was
    drawn by ``_LOCK_PAIR_DRAWING_ID``, so the statement returns nothing and goes out
    together with the COMMIT (``Connection.finish``)."""
    stmt = (
        _InsertWithOwnId(comparisons)
        .values(id=param("new_id"), **new_comparison("id1", "id2"))
        .add_cte(_apply_result("1").cte("apply1"))
        .add_cte(_apply_result("2").cte("apply2"))
    )
    return Query(stmt.add_cte(*more_ctes) if more_ctes else stmt, prepare=True)


_RECORD_VOTE_IN_ONE = _vote_in_one()
# The vote's webhook event rides in the same statement as one more CTE, so announcing a
# vote costs no round trip; INSERT ... SELECT keeps the statement's one VALUES list.
_RECORD_VOTE_AND_EVENT = _vote_in_one(
    sa.insert(webhook_events)
    .from_select(
        ["event_type", "subject_id", "created_at"],
        sa.select(sa.literal_column(f"'{VOTE_EVENT}'"), param("new_id"), param("now")),
    )
    .cte("vote_event")
)
_INSERT_VOTE_EVENT = Query(
    sa.insert(webhook_events).values(
        event_type=VOTE_EVENT, subject_id=param("subject_id"), created_at=param("now")
    )
)


@dataclass(frozen=True, slots=True)
class PairProvenance:
    """How the voted pair was served (from its pair token), stored with the vote."""

    strategy: str
    probability: float
    token_id: str


async def record_comparison(
    db: Database,
    *,
    entity1_id: int,
    entity2_id: int,
    selected_entity_id: int | None,
    k_factor: float,
    user_id: int | None = None,
    provenance: PairProvenance | None = None,
    announce: bool = False,
    verdict: str | None = None,
    category: str | None = None,
) -> ComparisonRow:
    """Store one vote and apply it to both entities, all in one transaction.

    Both entity rows are locked in id order (``FOR UPDATE`` on PostgreSQL, so two
    votes on overlapping pairs cannot deadlock; SQLite's ``BEGIN IMMEDIATE`` already
    serialises writers). Elo and the Bayesian strengths are computed from the locked
    values and the counters that feed the bandit move with them: either all of it is
    stored or none. A reused pair token hits a unique index and rolls it all back.
    Where the backend writes a vote in one statement (PostgreSQL) that is two round
    trips: ``BEGIN`` with the locking ``SELECT`` (which also draws the new comparison's
    id), then the writes (one statement) with the ``COMMIT``.
    ``user_id`` records who voted (None when the API is open). ``announce`` also writes
    a ``comparison.created`` webhook event in the same transaction (same statement
    where the vote is one), so an acknowledged vote is never missing from the webhooks.
    ``verdict`` ('win', 'tie' or 'both_bad'; by default win or tie as ``selected_entity_id``
    says) and ``category`` are stored with the vote; tie and both-bad score half a win
    each in the online models.
    """
    verdict = verdict_of(verdict, selected_entity_id)
    in_one = db.writes_vote_in_one_statement
    async with db.transaction() as tx:
        locked = {
            row["id"]: row
            for row in await tx.fetch_all(
                _LOCK_PAIR_DRAWING_ID if in_one else _LOCK_PAIR, {"a": entity1_id, "b": entity2_id}
            )
        }
        for entity_id in (entity1_id, entity2_id):
            if entity_id not in locked:
                raise EntityNotFound(entity_id)
        effect1, effect2 = vote_effects(
            locked[entity1_id], locked[entity2_id], score_of(entity1_id, selected_entity_id), k_factor
        )
        first = {"id": entity1_id, **effect1._asdict()}
        second = {"id": entity2_id, **effect2._asdict()}
        now = utc_now()
        vote = {
            "selected_entity_id": selected_entity_id,
            "now": now,
            "user_id": user_id,
            "strategy": provenance.strategy if provenance else None,
            "probability": provenance.probability if provenance else None,
            "pair_token_id": provenance.token_id if provenance else None,
            "verdict": verdict,
            "category": category,
        }
        row: ComparisonRow
        if in_one:
            new_id = locked[entity1_id]["new_id"]
            both = {f"{key}1": value for key, value in first.items()}
            both.update({f"{key}2": value for key, value in second.items()})
            statement = _RECORD_VOTE_AND_EVENT if announce else _RECORD_VOTE_IN_ONE
            await tx.finish(statement, {"new_id": new_id, **both, **vote})
            # The row as stored, with nothing left to ask the database.
            row = ComparisonRow(
                id=new_id,
                entity1_id=entity1_id,
                entity2_id=entity2_id,
                selected_entity_id=selected_entity_id,
                created_at=as_datetime(now),
                user_id=user_id,
                strategy=provenance.strategy if provenance else None,
                selection_probability=provenance.probability if provenance else None,
                verdict=verdict,
                category=category,
            )
        else:
            await tx.execute(_APPLY_RESULT, first)
            await tx.execute(_APPLY_RESULT, second)
            stored = await tx.fetch_one(
                _INSERT_COMPARISON, {"entity1_id": entity1_id, "entity2_id": entity2_id, **vote}
            )
            assert stored is not None
            row = comparison_row(stored)
            if announce:
                await tx.execute(_INSERT_VOTE_EVENT, {"subject_id": row.id, "now": now})
    return row


async def get_comparison(db: Connection, comparison_id: int) -> ComparisonRow | None:
    row = await db.fetch_one(_GET_COMPARISON, {"id": comparison_id})
    return None if row is None else comparison_row(row)


async def list_comparisons(
    db: Connection, *, skip: int, limit: int, entity_id: int | None
) -> list[ComparisonRow]:
    """The vote log, newest first."""
    stmt = sa.select(*COMPARISON_COLUMNS)
    if entity_id is not None:
        stmt = stmt.where(
            sa.or_(
                comparisons.c.entity1_id == entity_id,
                comparisons.c.entity2_id == entity_id,
            )
        )
    stmt = stmt.order_by(comparisons.c.id.desc()).limit(limit).offset(skip)
    return [comparison_row(row) for row in await db.fetch_all(Query(stmt))]


_VOTE_LOG = Query(
    sa.select(
        comparisons.c.id,
        comparisons.c.entity1_id,
        comparisons.c.entity2_id,
        comparisons.c.selected_entity_id,
        comparisons.c.category,
    )
    .where(comparisons.c.id > param("after"))
    .order_by(comparisons.c.id)
    .limit(param("limit"))
)


def vote_log(db: Connection, batch_size: int) -> AsyncIterator[list[Row]]:
    """Every vote's id, entity ids and selected id, in id order, ``batch_size`` at a time."""
    return keyset_batches(db, _VOTE_LOG, batch_size)


def _recent_opponents_query() -> Query:
    as_first = (
        sa.select(comparisons.c.id, comparisons.c.entity2_id.label("opponent"))
        .where(comparisons.c.entity1_id == param("id"))
        .order_by(comparisons.c.id.desc())
        .limit(param("limit"))
    )
    as_second = (
        sa.select(comparisons.c.id, comparisons.c.entity1_id.label("opponent"))
        .where(comparisons.c.entity2_id == param("id"))
        .order_by(comparisons.c.id.desc())
        .limit(param("limit"))
    )
    both = sa.union_all(as_first.subquery().select(), as_second.subquery().select()).subquery()
    return Query(sa.select(both.c.opponent).order_by(both.c.id.desc()).limit(param("limit")))


_RECENT_OPPONENTS = _recent_opponents_query()


async def recent_opponents(db: Connection, entity_id: int, limit: int) -> list[int]:
    """Ids of the entities ``entity_id`` met in its last ``limit`` comparisons."""
    if limit <= 0:
        return []
    rows = await db.fetch_all(_RECENT_OPPONENTS, {"id": entity_id, "limit": limit})
    return [int(row["opponent"]) for row in rows]
