"""Comparisons: the atomic vote, reading the vote log, and recent opponents."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import bindparam as param
from sqlalchemy.ext.compiler import compiles

from compere.domain.bayes import DEFAULT_PRIOR, Prior
from compere.domain.elo import score_of
from compere.domain.trust import (
    POLICIES,
    Share,
    Side,
    TrustPolicy,
    after_vote,
    unweighed,
    vote_evidence,
    weigh_vote,
)
from compere.domain.vote import vote_effects
from compere.storage import voters
from compere.storage.database import Connection, Database, Query, Row, keyset_batches
from compere.storage.entities import EntityNotFound
from compere.storage.rows import ComparisonRow, comparison_row
from compere.storage.tables import (
    COMPARISON_COLUMNS,
    DEFAULT_PROJECT_ID,
    LIVE,
    comparisons,
    entities,
    new_comparison,
    voter_daily_votes,
    voter_entities,
    webhook_events,
)
from compere.storage.timestamps import as_datetime, utc_now

VOTE_EVENT = "comparison.created"


def _share(column: Any, label: str) -> Any:
    """The voting voter's share of the row's entity (NULL when none or no voter)."""
    return (
        sa.select(column)
        .where(voter_entities.c.voter == param("voter"), voter_entities.c.entity_id == entities.c.id)
        .scalar_subquery()
        .label(label)
    )


def _lock_pair(*extra: Any, prepare: bool = False) -> Query:
    return Query(
        sa.select(
            entities.c.id,
            entities.c.rating,
            entities.c.mu,
            entities.c.sigma,
            entities.c.vote_weight,
            _share(voter_entities.c.votes, "share_votes"),
            _share(voter_entities.c.weight, "share_weight"),
            *extra,
        )
        .where(
            entities.c.id.in_([param("a"), param("b")]), entities.c.project_id == param("project_id"), LIVE
        )
        .order_by(entities.c.id)
        .with_for_update(),
        prepare=prepare,
    )


_LOCK_PAIR = _lock_pair(prepare=True)
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
            vote_weight=param(f"vote_weight{suffix}"),
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
_GET_COMPARISON = Query(
    sa.select(*COMPARISON_COLUMNS).where(
        comparisons.c.id == param("id"), comparisons.c.project_id == param("project_id")
    )
)


class _InsertWithOwnId(sa.Insert):
    """An INSERT that supplies the id of a ``GENERATED ALWAYS`` identity column."""

    inherit_cache = True


@compiles(_InsertWithOwnId, "postgresql")
def _insert_overriding_identity(element: _InsertWithOwnId, compiler: Any, **kw: Any) -> str:
    sql: str = compiler.visit_insert(element, **kw)
    # CTEs (the voter's upserts) come first and may have VALUES lists of their own: the
    # clause goes into the main statement, the last INSERT INTO the element's table.
    head, marker, main = sql.rpartition(f"INSERT INTO {element.table.name} ")
    if not marker or main.count(") VALUES (") != 1:
        raise ValueError("expected a single-row INSERT ... VALUES")
    return head + marker + main.replace(") VALUES (", ") OVERRIDING SYSTEM VALUE VALUES (")


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


# The vote's webhook event rides in the same statement as one more CTE, so announcing a
# vote costs no round trip; INSERT ... SELECT keeps the statement's one VALUES list.
_VOTE_EVENT_CTE = (
    sa.insert(webhook_events)
    .from_select(
        ["event_type", "subject_id", "created_at"],
        sa.select(sa.literal_column(f"'{VOTE_EVENT}'"), param("new_id"), param("now")),
    )
    .cte("vote_event")
)
_ONE_STATEMENT: dict[tuple[bool, bool], Query] = {}


def _record_vote_in_one(db: Database, announce: bool, with_voter: bool) -> Query:
    """The one-statement vote, with the webhook event and the voter's record as CTEs."""
    query = _ONE_STATEMENT.get((announce, with_voter))
    if query is None:
        ctes = [_VOTE_EVENT_CTE] if announce else []
        if with_voter:
            ctes += [
                voters.update_voter_statement().cte("voter_record"),
                voters.upsert_share_statement(db, "1").cte("voter_share1"),
                voters.upsert_share_statement(db, "2").cte("voter_share2"),
            ]
        query = _ONE_STATEMENT[(announce, with_voter)] = _vote_in_one(*ctes)
    return query


_INSERT_VOTE_EVENT = Query(
    sa.insert(webhook_events).values(
        event_type=VOTE_EVENT, subject_id=param("subject_id"), created_at=param("now")
    )
)


class DailyCapReached(Exception):
    """The voter has cast the project's daily_vote_cap votes today (UTC)."""


# One counter row per (project, voter, UTC day), raised in the vote's own transaction
# only while below the cap: the row lock (PostgreSQL) or the single writer (SQLite)
# makes concurrent votes of one voter on any worker take their turns, and a refused
# vote rolls the whole transaction back. No row comes back when the cap is reached.
_COUNT_DAILY_VOTE: dict[str, Query] = {}


def _count_daily_vote(db: Database) -> Query:
    """The counter upsert in the backend's dialect (built once per dialect)."""
    query = _COUNT_DAILY_VOTE.get(db.name)
    if query is None:
        query = _COUNT_DAILY_VOTE[db.name] = Query(
            db.insert_or_skip(voter_daily_votes)
            .values(project_id=param("project_id"), voter=param("voter"), day=param("day"), votes=1)
            .on_conflict_do_update(
                index_elements=["project_id", "voter", "day"],
                set_={"votes": voter_daily_votes.c.votes + 1},
                where=voter_daily_votes.c.votes < param("cap"),
            )
            .returning(voter_daily_votes.c.votes)
        )
    return query


@dataclass(frozen=True, slots=True)
class PairProvenance:
    """How the voted pair was served (from its pair token), stored with the vote."""

    strategy: str
    probability: float
    token_id: str


async def record_comparison(
    db: Database,
    project_id: int = DEFAULT_PROJECT_ID,
    *,
    entity1_id: int,
    entity2_id: int,
    selected_entity_id: int | None,
    k_factor: float,
    user_id: int | None = None,
    provenance: PairProvenance | None = None,
    announce: bool = False,
    voter: str | None = None,
    daily_cap: int = 0,
    trust: TrustPolicy = POLICIES["off"],
    prior: Prior = DEFAULT_PRIOR,
) -> ComparisonRow:
    """Store one vote and apply it to both entities, all in one transaction.

    Both entities must be live in ``project_id`` (else :class:`EntityNotFound`); the
    database's composite keys refuse a comparison across projects in any case.
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
    ``voter`` is who cast it (``compere.infra.voters``); with a ``daily_cap`` the voter's
    counter for today is raised in the same transaction, and :class:`DailyCapReached`
    rolls everything back once the voter has used the day's votes.

    With a known voter the vote also locks the voter's record (after the pair, so the
    lock order stays entities then voter), weighs the vote by ``trust``
    (:func:`compere.domain.trust.weigh_vote`, from the record before it) and writes the
    new record and the voter's shares of both entities in the same statement; the new
    comparison's id is then drawn once every lock is held, so a replay of the log in id
    order (``rebuild-ratings``) meets the votes in an order they could have run in.
    """
    in_one = db.writes_vote_in_one_statement
    async with db.transaction() as tx:
        if daily_cap > 0 and voter is not None:
            counted = await tx.fetch_one(
                _count_daily_vote(db),
                {"project_id": project_id, "voter": voter, "day": utc_now()[:10], "cap": daily_cap},
            )
            if counted is None:
                raise DailyCapReached(voter)
        draw_with_pair = in_one and voter is None
        locked = {
            row["id"]: row
            for row in await tx.fetch_all(
                _LOCK_PAIR_DRAWING_ID if draw_with_pair else _LOCK_PAIR,
                {"a": entity1_id, "b": entity2_id, "project_id": project_id, "voter": voter},
            )
        }
        for entity_id in (entity1_id, entity2_id):
            if entity_id not in locked:
                raise EntityNotFound(entity_id)
        one, two = locked[entity1_id], locked[entity2_id]
        new_id = one["new_id"] if draw_with_pair else None
        score1 = score_of(entity1_id, selected_entity_id)
        weight = 1.0
        voter_params: dict[str, Any] = {}
        if voter is not None:
            record = await tx.fetch_one(
                (voters.lock_voter_drawing_id if in_one else voters.lock_voter)(db),
                {"project_id": project_id, "voter": voter},
            )
            assert record is not None
            if in_one:
                new_id = record["new_id"]
            state = voters.voter_state(record)
            share1 = Share(one["share_votes"] or 0, one["share_weight"] or 0.0)
            share2 = Share(two["share_votes"] or 0, two["share_weight"] or 0.0)
            side1, side2 = Side(one["sigma"], one["vote_weight"]), Side(two["sigma"], two["vote_weight"])
            if not unweighed(voter, state):
                weight = weigh_vote(state, share1, share2, side1, side2, trust, prior)
            evidence = vote_evidence(
                one["mu"], one["sigma"], two["mu"], two["sigma"], score1, served=provenance is not None
            )
            state, share1, share2 = after_vote(state, share1, share2, weight, evidence)
            voter_params = voters.share_params(
                project_id, voter, state, {"1": (entity1_id, share1), "2": (entity2_id, share2)}
            )
        effect1, effect2 = vote_effects(one, two, score1, k_factor, weight)
        first = {"id": entity1_id, "vote_weight": one["vote_weight"] + weight, **effect1._asdict()}
        second = {"id": entity2_id, "vote_weight": two["vote_weight"] + weight, **effect2._asdict()}
        now = utc_now()
        vote = {
            "project_id": project_id,
            "selected_entity_id": selected_entity_id,
            "now": now,
            "user_id": user_id,
            "strategy": provenance.strategy if provenance else None,
            "probability": provenance.probability if provenance else None,
            "pair_token_id": provenance.token_id if provenance else None,
            "voter": voter,
        }
        row: ComparisonRow
        if in_one:
            both = {f"{key}1": value for key, value in first.items()}
            both.update({f"{key}2": value for key, value in second.items()})
            statement = _record_vote_in_one(db, announce, voter is not None)
            await tx.finish(statement, {"new_id": new_id, **both, **vote, **voter_params})
            # The row as stored, with nothing left to ask the database.
            assert new_id is not None
            row = ComparisonRow(
                id=new_id,
                entity1_id=entity1_id,
                entity2_id=entity2_id,
                selected_entity_id=selected_entity_id,
                created_at=as_datetime(now),
                user_id=user_id,
                strategy=provenance.strategy if provenance else None,
                selection_probability=provenance.probability if provenance else None,
            )
        else:
            await tx.execute(_APPLY_RESULT, first)
            await tx.execute(_APPLY_RESULT, second)
            stored = await tx.fetch_one(
                _INSERT_COMPARISON, {"entity1_id": entity1_id, "entity2_id": entity2_id, **vote}
            )
            assert stored is not None
            row = comparison_row(stored)
            if voter is not None:
                await voters.write_voter(tx, db, voter_params)
            if announce:
                await tx.execute(_INSERT_VOTE_EVENT, {"subject_id": row.id, "now": now})
    return row


async def get_comparison(
    db: Connection, comparison_id: int, project_id: int = DEFAULT_PROJECT_ID
) -> ComparisonRow | None:
    row = await db.fetch_one(_GET_COMPARISON, {"id": comparison_id, "project_id": project_id})
    return None if row is None else comparison_row(row)


async def list_comparisons(
    db: Connection, project_id: int, *, skip: int, limit: int, entity_id: int | None
) -> list[ComparisonRow]:
    """A project's vote log, newest first."""
    stmt = sa.select(*COMPARISON_COLUMNS).where(comparisons.c.project_id == project_id)
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
        comparisons.c.voter,
        comparisons.c.pair_token_id.is_not(None).label("served"),
    )
    .where(comparisons.c.id > param("after"), comparisons.c.project_id == param("project_id"))
    .order_by(comparisons.c.id)
    .limit(param("limit"))
)


def vote_log(db: Connection, project_id: int, batch_size: int) -> AsyncIterator[list[Row]]:
    """Every vote of a project: id, entity ids, selected id, voter and whether its pair
    was served (``served``), in id order, ``batch_size`` at a time."""
    return keyset_batches(db, _VOTE_LOG, batch_size, {"project_id": project_id})


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
