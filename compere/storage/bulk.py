"""Whole-table work: bulk import, streamed exports, row counts, rebuilding the ratings
from the vote log, and refreshing the planner's statistics."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import sqlalchemy as sa
from sqlalchemy import bindparam as param

from compere.domain.bayes import Prior
from compere.domain.elo import score_of
from compere.domain.trust import POLICIES, Ledger, TrustPolicy
from compere.domain.vote import apply_vote
from compere.storage import voters
from compere.storage.comparisons import vote_log
from compere.storage.database import Connection, Database, Query, Row, keyset_batches
from compere.storage.entities import new_entity_params
from compere.storage.rows import plain_values
from compere.storage.tables import COMPARISON_COLUMNS, DEFAULT_PROJECT_ID, NEW_ENTITY, comparisons, entities
from compere.storage.timestamps import utc_now

# One import statement per backend, each spelled by its dialect's own insert().
_IMPORT_ENTITY_QUERIES: dict[str, Query] = {}


def import_entity_query(db: Database) -> Query:
    """One entity row, skipped when its external id is already taken in its project
    (also by a deleted row)."""
    query = _IMPORT_ENTITY_QUERIES.get(db.name)
    if query is None:
        stmt = db.insert_or_skip(entities).values(**NEW_ENTITY)
        query = Query(
            stmt.on_conflict_do_nothing(index_elements=[entities.c.project_id, entities.c.external_id])
        )
        _IMPORT_ENTITY_QUERIES[db.name] = query
    return query


async def import_entities(
    db: Database, project_id: int, records: Sequence[Row], *, rating: float, prior: Prior
) -> int:
    """Insert one batch of entities in one transaction; return how many were new.

    Each record has ``external_id``, ``name``, ``description`` and ``image_urls`` (and
    optionally ``prompt`` and ``attributes``).
    Records whose external id already exists (also on a deleted entity) are skipped,
    so an import can be re-run, or resumed after a failure, without duplicates.
    """
    query = import_entity_query(db)
    now = utc_now()
    created = 0
    async with db.transaction() as tx:
        for record in records:
            created += await tx.execute(
                query,
                new_entity_params(
                    project_id=project_id,
                    name=record["name"],
                    description=record["description"],
                    image_urls=record["image_urls"],
                    rating=rating,
                    prior=prior,
                    now=now,
                    external_id=record["external_id"],
                    prompt=record.get("prompt"),
                    attributes=record.get("attributes"),
                ),
            )
    return created


async def iter_rows(
    db: Connection,
    project_id: int,
    table: str,
    columns: Sequence[str],
    *,
    live_only: bool = False,
    batch_size: int = 5000,
) -> AsyncIterator[list[Row]]:
    """Every row of ``table`` (entities or comparisons) of a project in id order, ``batch_size`` at a time (keyset pagination),
    with plain values (:func:`compere.storage.rows.plain_values`).

    Memory stays bounded by the batch and no transaction or cursor is held open between
    batches (see :func:`compere.storage.database.keyset_batches`).
    """
    source = sa.table(table, *(sa.column(name) for name in {*columns, "project_id"}))
    shown = [source.c[name] for name in columns]
    stmt = sa.select(*shown).where(source.c.id > param("after"), source.c.project_id == param("project_id"))
    if live_only:
        stmt = stmt.where(sa.column("deleted_at").is_(None))
    query = Query(stmt.order_by(source.c.id).limit(param("limit")))
    async for rows in keyset_batches(db, query, batch_size, {"project_id": project_id}):
        yield plain_values(rows)


# The comparison export also names each entity by its external id (with its creation time,
# from which an export makes one for entities that have none), so the vote log can be
# imported into another database. One compiled statement per column list.
_COMPARISONS_FOR_EXPORT: dict[tuple[str, ...], Query] = {}


async def iter_comparisons_for_export(
    db: Connection, project_id: int, columns: Sequence[str], *, batch_size: int = 5000
) -> AsyncIterator[list[Row]]:
    """Every comparison of a project (``columns`` of the table) in id order, as :func:`iter_rows`, with
    ``entity1_external_id``, ``entity1_created_at``, ``entity2_external_id`` and
    ``entity2_created_at`` of its two entities (deleted ones too)."""
    query = _COMPARISONS_FOR_EXPORT.get(tuple(columns))
    if query is None:
        source = sa.table("comparisons", *(sa.column(name) for name in {*columns, "project_id"}))
        one, two = entities.alias("one"), entities.alias("two")
        stmt = (
            sa.select(
                *(source.c[name] for name in columns),
                one.c.external_id.label("entity1_external_id"),
                one.c.created_at.label("entity1_created_at"),
                two.c.external_id.label("entity2_external_id"),
                two.c.created_at.label("entity2_created_at"),
            )
            .select_from(
                source.join(one, one.c.id == source.c.entity1_id).join(two, two.c.id == source.c.entity2_id)
            )
            .where(source.c.id > param("after"), source.c.project_id == param("project_id"))
            .order_by(source.c.id)
            .limit(param("limit"))
        )
        query = _COMPARISONS_FOR_EXPORT[tuple(columns)] = Query(stmt)
    async for rows in keyset_batches(db, query, batch_size, {"project_id": project_id}):
        yield plain_values(rows)


def _votes_with_entities(same_prompt: bool) -> Query:
    one, two = entities.alias("one"), entities.alias("two")
    stmt = (
        sa.select(
            *COMPARISON_COLUMNS,
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
        .where(comparisons.c.id > param("after"), comparisons.c.project_id == param("project_id"))
    )
    if same_prompt:
        stmt = stmt.where(one.c.prompt.is_not(None), one.c.prompt == two.c.prompt)
    return Query(stmt.order_by(comparisons.c.id).limit(param("limit")))


_VOTES_WITH_ENTITIES = {False: _votes_with_entities(False), True: _votes_with_entities(True)}


async def iter_votes_with_entities(
    db: Connection, project_id: int, *, same_prompt: bool = False, batch_size: int = 5000
) -> AsyncIterator[list[Row]]:
    """Every comparison of a project in id order with both entities' names, descriptions and prompts.

    ``same_prompt`` keeps only votes between two entities that carry the same prompt.
    Keyset batches as in :func:`iter_rows`: bounded memory, no long transaction; plain
    values as there.
    """
    query = _VOTES_WITH_ENTITIES[same_prompt]
    async for rows in keyset_batches(db, query, batch_size, {"project_id": project_id}):
        yield plain_values(rows)


async def count_rows(db: Database, project_id: int, table: str, *, live_only: bool = False) -> int:
    source = sa.table(table, sa.column("deleted_at"), sa.column("project_id"))
    stmt = sa.select(sa.func.count()).select_from(source).where(source.c.project_id == project_id)
    if live_only:
        stmt = stmt.where(source.c.deleted_at.is_(None))
    return int(await db.fetch_value(Query(stmt)))


# --- rebuilding derived state ----------------------------------------------------

_ALL_ENTITY_IDS = Query(sa.select(entities.c.id).where(entities.c.project_id == param("project_id")))
WRITE_DERIVED = Query(
    sa.update(entities)
    .where(entities.c.id == param("id"))
    .values(
        rating=param("rating"),
        mu=param("mu"),
        sigma=param("sigma"),
        vote_weight=param("vote_weight"),
        comparisons=param("comparisons"),
        wins=param("wins"),
        losses=param("losses"),
        ties=param("ties"),
    )
)  # also what a vote-log import writes for each entity of a batch


async def rebuild_ratings(
    db: Database,
    project_id: int = DEFAULT_PROJECT_ID,
    *,
    k_factor: float,
    initial_rating: float,
    prior: Prior,
    trust: TrustPolicy = POLICIES["off"],
) -> int:
    """Recompute every rating, strength and counter of a project, and every voter record
    and vote weight, from its vote log, in id order, with the project's Elo K and prior,
    exactly as the votes applied them online.

    Runs in one transaction with the tables locked against concurrent votes for its
    duration. Deleted entities are replayed too, so their opponents end up exactly
    where the online updates put them. Returns the number of votes replayed.
    """
    async with db.transaction() as tx:
        await lock_for_replay(tx)
        return await replay_project(
            tx, project_id, k_factor=k_factor, initial_rating=initial_rating, prior=prior, trust=trust
        )


async def lock_for_replay(tx: Connection) -> None:
    """Keep votes out of every table a replay rewrites until the transaction ends."""
    await tx.lock_tables("entities", "comparisons", "voters", "voter_entities")


async def replay_project(
    tx: Connection,
    project_id: int,
    *,
    k_factor: float,
    initial_rating: float,
    prior: Prior,
    trust: TrustPolicy,
) -> int:
    """:func:`rebuild_ratings` inside the caller's transaction, which has already called
    :func:`lock_for_replay`. Returns the number of votes replayed."""
    replayed = 0
    ledger = Ledger(trust, prior)
    state = {
        row["id"]: {
            "rating": initial_rating,
            "mu": prior.mu0,
            "sigma": prior.sigma0,
            "vote_weight": 0.0,
            "comparisons": 0,
            "wins": 0,
            "losses": 0,
            "ties": 0,
        }
        for row in await tx.fetch_all(_ALL_ENTITY_IDS, {"project_id": project_id})
    }
    async for batch in vote_log(tx, project_id, 10_000):
        for vote in batch:
            first, second = vote["entity1_id"], vote["entity2_id"]
            one, two = state[first], state[second]
            score1 = score_of(first, vote["selected_entity_id"])
            weight = ledger.vote(
                vote["voter"],
                first,
                second,
                (one["mu"], one["sigma"]),
                (two["mu"], two["sigma"]),
                score1,
                served=bool(vote["served"]),
            )
            apply_vote(one, two, score1, k_factor, weight)
        replayed += len(batch)
    for entity_id, values in state.items():
        await tx.execute(WRITE_DERIVED, {"id": entity_id, **values})
    await voters.replace_all(tx, project_id, ledger.voters, ledger.shares)
    return replayed


_ANALYZE_ENTITIES = Query(sa.text("ANALYZE entities"))


async def refresh_statistics(db: Database) -> None:
    """Update the query planner's statistics of the entities table (both backends)."""
    await db.execute(_ANALYZE_ENTITIES)
