"""Every query Compere runs, and the transactions that must be atomic.

Hot-path statements are module-level :class:`Query` constants, compiled once per
dialect. Rows come back as plain dicts with database-native values; the HTTP layer
turns them into API shapes.
"""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
import sqlalchemy.dialects.postgresql
import sqlalchemy.dialects.sqlite
from sqlalchemy import bindparam as param
from sqlalchemy.ext.compiler import compiles

from compere.domain.bayes import Prior, bayes_update
from compere.domain.elo import elo_update, score_of
from compere.storage.database import Connection, Database, Query, Row
from compere.storage.tables import comparisons, entities, webhook_events

ENTITY_COLUMNS = (
    entities.c.id,
    entities.c.name,
    entities.c.description,
    entities.c.image_urls,
    entities.c.rating,
    entities.c.comparisons,
    entities.c.wins,
    entities.c.losses,
    entities.c.ties,
    entities.c.created_at,
    entities.c.updated_at,
    entities.c.external_id,
    entities.c.mu,
    entities.c.sigma,
    entities.c.prompt,
)
COMPARISON_COLUMNS = (
    comparisons.c.id,
    comparisons.c.entity1_id,
    comparisons.c.entity2_id,
    comparisons.c.selected_entity_id,
    comparisons.c.created_at,
    comparisons.c.user_id,
    comparisons.c.strategy,
    comparisons.c.selection_probability,
)
_live = entities.c.deleted_at.is_(None)


class EntityNotFound(LookupError):
    """An entity id named in a request does not exist (or was deleted)."""

    def __init__(self, entity_id: int) -> None:
        super().__init__(entity_id)
        self.entity_id = entity_id


def utc_now() -> str:
    """The current time as the ISO 8601 text both backends store."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def as_datetime(value: Any) -> datetime:
    """A stored timestamp (``datetime`` from PostgreSQL, text from SQLite) as aware UTC."""
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# --- entities --------------------------------------------------------------------

# What a new entity row is made of; shared by single creates and bulk imports.
_NEW_ENTITY: dict[str, Any] = {
    "name": param("name"),
    "description": param("description"),
    "image_urls": param("image_urls"),
    "rating": param("rating"),
    "mu": param("mu"),
    "sigma": param("sigma"),
    "random_key": param("random_key"),
    "created_at": param("now"),
    "updated_at": param("now"),
    "external_id": param("external_id"),
    "prompt": param("prompt"),
}
_INSERT_ENTITY = Query(sa.insert(entities).values(**_NEW_ENTITY).returning(*ENTITY_COLUMNS))
_GET_ENTITY = Query(sa.select(*ENTITY_COLUMNS).where(entities.c.id == param("id"), _live))
_SOFT_DELETE_ENTITY = Query(
    sa.update(entities)
    .where(entities.c.id == param("id"), _live)
    .values(deleted_at=param("now"), updated_at=param("now"))
)
_COUNT_LIVE = Query(sa.select(sa.func.count()).select_from(entities).where(_live))


async def create_entity(
    db: Connection,
    *,
    name: str,
    description: str,
    image_urls: Sequence[str],
    rating: float,
    prior: Prior,
    external_id: str | None = None,
    prompt: str | None = None,
) -> Row:
    row = await db.fetch_one(
        _INSERT_ENTITY,
        {
            "name": name,
            "description": description,
            "image_urls": json.dumps(list(image_urls)),
            "rating": rating,
            "mu": prior.mu0,
            "sigma": prior.sigma0,
            "random_key": random.random(),
            "now": utc_now(),
            "external_id": external_id,
            "prompt": prompt,
        },
    )
    assert row is not None
    return row


async def get_entity(db: Connection, entity_id: int) -> Row | None:
    return await db.fetch_one(_GET_ENTITY, {"id": entity_id})


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _search_filter(search: str | None) -> list[sa.ColumnElement[bool]]:
    if not search:
        return []
    pattern = f"%{_escape_like(search)}%"
    return [
        sa.or_(
            entities.c.name.ilike(pattern, escape="\\"),
            entities.c.description.ilike(pattern, escape="\\"),
        )
    ]


async def list_entities(db: Connection, *, skip: int, limit: int, search: str | None) -> list[Row]:
    """Live entities, best rated first (as the original lists them)."""
    stmt = (
        sa.select(*ENTITY_COLUMNS)
        .where(_live, *_search_filter(search))
        .order_by(entities.c.rating.desc(), entities.c.id)
        .limit(limit)
        .offset(skip)
    )
    return await db.fetch_all(Query(stmt))


async def count_entities(db: Connection, *, search: str | None = None) -> int:
    if not search:
        return int(await db.fetch_value(_COUNT_LIVE))
    stmt = sa.select(sa.func.count()).select_from(entities).where(_live, *_search_filter(search))
    return int(await db.fetch_value(Query(stmt)))


async def update_entity(db: Connection, entity_id: int, changes: dict[str, Any]) -> Row | None:
    """Apply a partial update; ``changes`` holds only the fields the client sent."""
    if not changes:
        return await get_entity(db, entity_id)
    values = dict(changes)
    if "image_urls" in values:
        values["image_urls"] = json.dumps(list(values["image_urls"]))
    values["updated_at"] = utc_now()
    stmt = (
        sa.update(entities)
        .where(entities.c.id == entity_id, _live)
        .values(**values)
        .returning(*ENTITY_COLUMNS)
    )
    return await db.fetch_one(Query(stmt))


async def delete_entity(db: Connection, entity_id: int) -> bool:
    """Soft-delete: the entity leaves every listing and pairing; its votes stay in the log."""
    return await db.execute(_SOFT_DELETE_ENTITY, {"id": entity_id, "now": utc_now()}) > 0


# --- comparisons -----------------------------------------------------------------


def _lock_pair(*extra: Any, prepare: bool = False) -> Query:
    return Query(
        sa.select(entities.c.id, entities.c.rating, entities.c.mu, entities.c.sigma, *extra)
        .where(entities.c.id.in_([param("a"), param("b")]), _live)
        .order_by(entities.c.id)
        .with_for_update(),
        prepare=prepare,
    )


_LOCK_PAIR = _lock_pair()
# PostgreSQL also draws the new comparison's id from the identity sequence of
# comparisons.id (named by PostgreSQL's convention for identity columns) while it locks:
# the vote's last round trip then carries its COMMIT and need not return anything. The
# scalar subquery runs once per statement, not per row.
_LOCK_PAIR_DRAWING_ID = _lock_pair(
    sa.select(sa.func.nextval(sa.literal_column("'comparisons_id_seq'"))).scalar_subquery().label("new_id"),
    prepare=True,
)
_APPLY_RESULT = Query(
    sa.update(entities)
    .where(entities.c.id == param("id"))
    .values(
        rating=param("rating"),
        mu=param("mu"),
        sigma=param("sigma"),
        comparisons=entities.c.comparisons + 1,
        wins=entities.c.wins + param("win"),
        losses=entities.c.losses + param("loss"),
        ties=entities.c.ties + param("tie"),
    )
)


def _new_comparison(first: str, second: str) -> dict[str, Any]:
    """A new comparison row; the entity ids are bound under the given names."""
    return {
        "entity1_id": param(first),
        "entity2_id": param(second),
        "selected_entity_id": param("selected_entity_id"),
        "created_at": param("now"),
        "user_id": param("user_id"),
        "strategy": param("strategy"),
        "selection_probability": param("probability"),
        "pair_token_id": param("pair_token_id"),
    }


_INSERT_COMPARISON = Query(
    sa.insert(comparisons)
    .values(**_new_comparison("entity1_id", "entity2_id"))
    .returning(*COMPARISON_COLUMNS)
)
_GET_COMPARISON = Query(sa.select(*COMPARISON_COLUMNS).where(comparisons.c.id == param("id")))


def _apply_result_cte(n: int) -> Any:
    return (
        sa.update(entities)
        .where(entities.c.id == param(f"id{n}"))
        .values(
            rating=param(f"rating{n}"),
            mu=param(f"mu{n}"),
            sigma=param(f"sigma{n}"),
            comparisons=entities.c.comparisons + 1,
            wins=entities.c.wins + param(f"win{n}"),
            losses=entities.c.losses + param(f"loss{n}"),
            ties=entities.c.ties + param(f"tie{n}"),
        )
        .cte(f"apply{n}")
    )


class _InsertWithOwnId(sa.Insert):
    """An INSERT that supplies the id of a ``GENERATED ALWAYS`` identity column."""

    inherit_cache = True


@compiles(_InsertWithOwnId, "postgresql")
def _insert_overriding_identity(element: _InsertWithOwnId, compiler: Any, **kw: Any) -> str:
    sql: str = compiler.visit_insert(element, **kw)
    if sql.count(") VALUES (") != 1:
        raise ValueError("expected a single-row INSERT ... VALUES")
    return sql.replace(") VALUES (", ") OVERRIDING SYSTEM VALUE VALUES (")


# PostgreSQL writes a vote in one statement: both entity updates ride in data-modifying
# CTEs of the comparison INSERT (SQLite has no DML in CTEs and runs the three separately).
# The id was drawn by _LOCK_PAIR_DRAWING_ID, so the statement returns nothing and goes
# out together with the COMMIT (Connection.finish).
_RECORD_VOTE_IN_ONE = Query(
    _InsertWithOwnId(comparisons)
    .values(id=param("new_id"), **_new_comparison("id1", "id2"))
    .add_cte(_apply_result_cte(1))
    .add_cte(_apply_result_cte(2)),
    prepare=True,
)
VOTE_EVENT = "comparison.created"
# The vote's webhook event rides in the same statement as one more CTE, so announcing a
# vote costs no round trip; INSERT ... SELECT keeps the statement's one VALUES list.
_RECORD_VOTE_AND_EVENT = Query(
    _InsertWithOwnId(comparisons)
    .values(id=param("new_id"), **_new_comparison("id1", "id2"))
    .add_cte(_apply_result_cte(1))
    .add_cte(_apply_result_cte(2))
    .add_cte(
        sa.insert(webhook_events)
        .from_select(
            ["event_type", "subject_id", "created_at"],
            sa.select(sa.literal_column(f"'{VOTE_EVENT}'"), param("new_id"), param("now")),
        )
        .cte("vote_event")
    ),
    prepare=True,
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
) -> Row:
    """Store one vote and apply it to both entities, all in one transaction.

    Both entity rows are locked in id order (``FOR UPDATE`` on PostgreSQL, so two
    votes on overlapping pairs cannot deadlock; SQLite's ``BEGIN IMMEDIATE`` already
    serialises writers). Elo and the Bayesian strengths are computed from the locked
    values and the counters that feed the bandit move with them: either all of it is
    stored or none. A reused pair token hits a unique index and rolls it all back.
    On PostgreSQL that is two round trips: ``BEGIN`` with the locking ``SELECT`` (which
    also draws the new comparison's id), then the writes (one statement) with the
    ``COMMIT``.
    ``user_id`` records who voted (None when the API is open). ``announce`` also writes
    a ``comparison.created`` webhook event in the same transaction (same statement on
    PostgreSQL), so an acknowledged vote is never missing from the webhooks.
    """
    postgres = db.name == "postgresql"
    async with db.transaction() as tx:
        locked = {
            row["id"]: row
            for row in await tx.fetch_all(
                _LOCK_PAIR_DRAWING_ID if postgres else _LOCK_PAIR, {"a": entity1_id, "b": entity2_id}
            )
        }
        for entity_id in (entity1_id, entity2_id):
            if entity_id not in locked:
                raise EntityNotFound(entity_id)
        effect1, effect2 = vote_effects(
            locked[entity1_id], locked[entity2_id], score_of(entity1_id, selected_entity_id), k_factor
        )
        first = {"id": entity1_id, **effect1}
        second = {"id": entity2_id, **effect2}
        now = utc_now()
        vote = {
            "selected_entity_id": selected_entity_id,
            "now": now,
            "user_id": user_id,
            "strategy": provenance.strategy if provenance else None,
            "probability": provenance.probability if provenance else None,
            "pair_token_id": provenance.token_id if provenance else None,
        }
        row: Row | None
        if postgres:
            new_id = locked[entity1_id]["new_id"]
            both = {f"{key}1": value for key, value in first.items()}
            both.update({f"{key}2": value for key, value in second.items()})
            statement = _RECORD_VOTE_AND_EVENT if announce else _RECORD_VOTE_IN_ONE
            await tx.finish(statement, {"new_id": new_id, **both, **vote})
            # The row as stored, with nothing left to ask the database.
            row = {
                "id": new_id,
                "entity1_id": entity1_id,
                "entity2_id": entity2_id,
                "selected_entity_id": selected_entity_id,
                "created_at": as_datetime(now),
                "user_id": user_id,
                "strategy": vote["strategy"],
                "selection_probability": vote["probability"],
            }
        else:
            await tx.execute(_APPLY_RESULT, first)
            await tx.execute(_APPLY_RESULT, second)
            row = await tx.fetch_one(
                _INSERT_COMPARISON, {"entity1_id": entity1_id, "entity2_id": entity2_id, **vote}
            )
            if announce and row is not None:
                await tx.execute(_INSERT_VOTE_EVENT, {"subject_id": row["id"], "now": now})
    assert row is not None
    return row


def vote_effects(
    one: Mapping[str, Any], two: Mapping[str, Any], score1: float, k_factor: float
) -> tuple[dict[str, Any], dict[str, Any]]:
    """What one vote does to each side: new ``rating``, ``mu``, ``sigma`` and counter steps.

    The one place where a vote meets the models; the online path and the rebuild both
    use it, so a rebuild reproduces exactly what the votes did.
    """
    elo = elo_update(one["rating"], two["rating"], score1, k_factor)
    bayes = bayes_update(one["mu"], one["sigma"], two["mu"], two["sigma"], score1)

    def effect(rating: float, mu: float, sigma: float, score: float) -> dict[str, Any]:
        return {
            "rating": rating,
            "mu": mu,
            "sigma": sigma,
            "win": int(score == 1.0),
            "loss": int(score == 0.0),
            "tie": int(score == 0.5),
        }

    return (
        effect(elo.rating1, bayes.mu1, bayes.sigma1, score1),
        effect(elo.rating2, bayes.mu2, bayes.sigma2, 1.0 - score1),
    )


async def get_comparison(db: Connection, comparison_id: int) -> Row | None:
    return await db.fetch_one(_GET_COMPARISON, {"id": comparison_id})


async def list_comparisons(db: Connection, *, skip: int, limit: int, entity_id: int | None) -> list[Row]:
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
    return await db.fetch_all(Query(stmt))


# --- pair selection ---------------------------------------------------------------


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


# --- bulk import and export ------------------------------------------------------


def _insert_if_new(insert: Any) -> Query:
    """One entity row, skipped when its external id is already taken (by any row)."""
    stmt = insert(entities).values(**_NEW_ENTITY)
    return Query(stmt.on_conflict_do_nothing(index_elements=[entities.c.external_id]))


# ON CONFLICT is spelled by each dialect's own insert(); both compile to the same idea.
_IMPORT_ENTITY = {
    "postgresql": _insert_if_new(sa.dialects.postgresql.insert),
    "sqlite": _insert_if_new(sa.dialects.sqlite.insert),
}


async def import_entities(db: Database, records: Sequence[Row], *, rating: float, prior: Prior) -> int:
    """Insert one batch of entities in one transaction; return how many were new.

    Each record has ``external_id``, ``name``, ``description`` and ``image_urls``.
    Records whose external id already exists (also on a deleted entity) are skipped,
    so an import can be re-run, or resumed after a failure, without duplicates.
    """
    query = _IMPORT_ENTITY[db.name]
    now = utc_now()
    created = 0
    async with db.transaction() as tx:
        for record in records:
            created += await tx.execute(
                query,
                {
                    "name": record["name"],
                    "description": record["description"],
                    "image_urls": json.dumps(list(record["image_urls"])),
                    "rating": rating,
                    "mu": prior.mu0,
                    "sigma": prior.sigma0,
                    "random_key": random.random(),
                    "now": now,
                    "external_id": record["external_id"],
                    "prompt": record.get("prompt"),
                },
            )
    return created


_PG_COLUMNS = Query(
    sa.select(sa.column("column_name"))
    .select_from(sa.table("columns", schema="information_schema"))
    .where(
        sa.column("table_schema") == sa.func.current_schema(),
        sa.column("table_name") == param("table"),
    )
    .order_by(sa.column("ordinal_position"))
)


async def column_names(db: Database, table: str) -> list[str]:
    """The columns a table has in this database, in order.

    Exports use this to include what later schema files added (who voted, model
    scores) without knowing about them in advance.
    """
    if db.name == "postgresql":
        return [row["column_name"] for row in await db.fetch_all(_PG_COLUMNS, {"table": table})]
    if not table.isidentifier():
        raise ValueError(table)
    pragma = Query(sa.text(f"SELECT name FROM pragma_table_info('{table}') ORDER BY cid"))
    return [row["name"] for row in await db.fetch_all(pragma)]


async def iter_rows(
    db: Database,
    table: str,
    columns: Sequence[str],
    *,
    live_only: bool = False,
    batch_size: int = 5000,
) -> AsyncIterator[list[Row]]:
    """Every row of ``table`` in id order, ``batch_size`` at a time (keyset pagination).

    Each batch is one short ``WHERE id > last ORDER BY id LIMIT n`` query on the
    primary key, so memory stays bounded by the batch and no transaction or cursor is
    held open between batches; rows added during the run after the last id are
    included, earlier ones are not repeated.
    """
    source = sa.table(table, *(sa.column(name) for name in columns))
    stmt = sa.select(*source.c).where(source.c.id > param("after"))
    if live_only:
        stmt = stmt.where(source.c.deleted_at.is_(None))
    query = Query(stmt.order_by(source.c.id).limit(param("limit")))
    async for rows in _keyset_batches(db, query, batch_size):
        yield rows


async def _keyset_batches(db: Database, query: Query, batch_size: int) -> AsyncIterator[list[Row]]:
    """Run ``query`` (``... WHERE id > :after ORDER BY id LIMIT :limit``) batch after batch."""
    after = 0
    while True:
        rows = await db.fetch_all(query, {"after": after, "limit": batch_size})
        if not rows:
            return
        yield rows
        if len(rows) < batch_size:
            return
        after = rows[-1]["id"]


def _votes_with_entities(same_prompt: bool) -> Query:
    one, two = entities.alias("one"), entities.alias("two")
    stmt = (
        sa.select(
            comparisons.c.id,
            comparisons.c.entity1_id,
            comparisons.c.entity2_id,
            comparisons.c.selected_entity_id,
            comparisons.c.created_at,
            comparisons.c.user_id,
            one.c.name.label("name1"),
            one.c.description.label("description1"),
            one.c.prompt.label("prompt1"),
            two.c.name.label("name2"),
            two.c.description.label("description2"),
            two.c.prompt.label("prompt2"),
        )
        .select_from(
            comparisons.join(one, one.c.id == comparisons.c.entity1_id).join(
                two, two.c.id == comparisons.c.entity2_id
            )
        )
        .where(comparisons.c.id > param("after"))
    )
    if same_prompt:
        stmt = stmt.where(one.c.prompt.is_not(None), one.c.prompt == two.c.prompt)
    return Query(stmt.order_by(comparisons.c.id).limit(param("limit")))


_VOTES_WITH_ENTITIES = {False: _votes_with_entities(False), True: _votes_with_entities(True)}


async def iter_votes_with_entities(
    db: Database, *, same_prompt: bool = False, batch_size: int = 5000
) -> AsyncIterator[list[Row]]:
    """Every comparison in id order with both entities' names, descriptions and prompts.

    ``same_prompt`` keeps only votes between two entities that carry the same prompt.
    Keyset batches as in :func:`iter_rows`: bounded memory, no long transaction.
    """
    async for rows in _keyset_batches(db, _VOTES_WITH_ENTITIES[same_prompt], batch_size):
        yield rows


async def count_rows(db: Database, table: str, *, live_only: bool = False) -> int:
    source = sa.table(table, sa.column("deleted_at"))
    stmt = sa.select(sa.func.count()).select_from(source)
    if live_only:
        stmt = stmt.where(source.c.deleted_at.is_(None))
    return int(await db.fetch_value(Query(stmt)))


# --- rebuilding derived state ----------------------------------------------------

_ALL_ENTITY_IDS = Query(sa.select(entities.c.id))
_LOG_AFTER = Query(
    sa.select(
        comparisons.c.id, comparisons.c.entity1_id, comparisons.c.entity2_id, comparisons.c.selected_entity_id
    )
    .where(comparisons.c.id > param("after"))
    .order_by(comparisons.c.id)
    .limit(param("limit"))
)
_WRITE_DERIVED = Query(
    sa.update(entities)
    .where(entities.c.id == param("id"))
    .values(
        rating=param("rating"),
        mu=param("mu"),
        sigma=param("sigma"),
        comparisons=param("comparisons"),
        wins=param("wins"),
        losses=param("losses"),
        ties=param("ties"),
    )
)


async def rebuild_ratings(db: Database, *, k_factor: float, initial_rating: float, prior: Prior) -> int:
    """Recompute every rating, strength and counter from the vote log, in id order.

    Runs in one transaction; on PostgreSQL the tables are locked against concurrent
    votes for its duration (SQLite's write lock does the same). Deleted entities are
    replayed too, so their opponents end up exactly where the online updates put them.
    Returns the number of votes replayed.
    """
    replayed = 0
    async with db.transaction() as tx:
        if db.name == "postgresql":
            await tx.raw("LOCK TABLE entities, comparisons IN SHARE ROW EXCLUSIVE MODE")
        state = {
            row["id"]: {
                "rating": initial_rating,
                "mu": prior.mu0,
                "sigma": prior.sigma0,
                "comparisons": 0,
                "wins": 0,
                "losses": 0,
                "ties": 0,
            }
            for row in await tx.fetch_all(_ALL_ENTITY_IDS)
        }
        after = 0
        while True:
            batch = await tx.fetch_all(_LOG_AFTER, {"after": after, "limit": 10_000})
            for vote in batch:
                one, two = state[vote["entity1_id"]], state[vote["entity2_id"]]
                score1 = score_of(vote["entity1_id"], vote["selected_entity_id"])
                for side, effect in zip((one, two), vote_effects(one, two, score1, k_factor), strict=True):
                    side["rating"], side["mu"], side["sigma"] = (
                        effect["rating"],
                        effect["mu"],
                        effect["sigma"],
                    )
                    side["comparisons"] += 1
                    side["wins"] += effect["win"]
                    side["losses"] += effect["loss"]
                    side["ties"] += effect["tie"]
            replayed += len(batch)
            if len(batch) < 10_000:
                break
            after = batch[-1]["id"]
        for entity_id, values in state.items():
            await tx.execute(_WRITE_DERIVED, {"id": entity_id, **values})
    return replayed


_ANALYZE_ENTITIES = Query(sa.text("ANALYZE entities"))


async def refresh_statistics(db: Database) -> None:
    """Update the query planner's statistics of the entities table (both backends)."""
    await db.execute(_ANALYZE_ENTITIES)
