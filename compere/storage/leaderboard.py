"""Leaderboard reads: pages, keyset-streamed full boards, and the inputs of model fits."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy import bindparam as param

from compere.storage.comparisons import vote_log as vote_batches
from compere.storage.database import Connection, Query, Row
from compere.storage.rows import EntityRow, attributes_of, entity_row
from compere.storage.tables import ENTITY_COLUMNS, LIVE, comparisons, entities

SORT_COLUMNS = {"rating": entities.c.rating, "score": entities.c.mu}


_IN_PROJECT = entities.c.project_id == param("project_id")


def _ordered(by: str) -> sa.Select[Any]:
    return (
        sa.select(*ENTITY_COLUMNS).where(_IN_PROJECT, LIVE).order_by(SORT_COLUMNS[by].desc(), entities.c.id)
    )


_PAGES = {by: Query(_ordered(by).limit(param("limit")).offset(param("skip"))) for by in SORT_COLUMNS}
_AFTER = {
    by: Query(
        _ordered(by)
        .where(
            sa.or_(column < param("value"), sa.and_(column == param("value"), entities.c.id > param("id")))
        )
        .limit(param("limit"))
    )
    for by, column in SORT_COLUMNS.items()
}
_MARKER = Query(
    sa.select(
        sa.select(sa.func.max(comparisons.c.id))
        .where(comparisons.c.project_id == param("project_id"))
        .scalar_subquery()
        .label("comparison"),
        sa.select(sa.func.max(entities.c.id)).where(_IN_PROJECT).scalar_subquery().label("entity"),
        sa.select(sa.func.max(entities.c.updated_at)).where(_IN_PROJECT).scalar_subquery().label("updated"),
    )
)
_STRENGTHS = Query(
    sa.select(entities.c.id, entities.c.mu, entities.c.sigma, entities.c.comparisons).where(_IN_PROJECT, LIVE)
)
_LIVE_IDS = Query(sa.select(entities.c.id).where(_IN_PROJECT, LIVE))
_LIVE_ATTRIBUTES = Query(sa.select(entities.c.id, entities.c.attributes).where(_IN_PROJECT, LIVE))
_VOTE_COUNT = Query(
    sa.select(sa.func.count().label("votes"))
    .select_from(comparisons)
    .where(comparisons.c.project_id == param("project_id"))
)


async def page(db: Connection, project_id: int, by: str, skip: int, limit: int) -> list[EntityRow]:
    params = {"project_id": project_id, "skip": skip, "limit": limit}
    return [entity_row(row) for row in await db.fetch_all(_PAGES[by], params)]


async def stream(
    db: Connection, project_id: int, by: str, batch: int = 1000
) -> AsyncIterator[list[EntityRow]]:
    """A project's whole board in order, ``batch`` rows per round trip (keyset, not OFFSET)."""
    rows = await db.fetch_all(_PAGES[by], {"project_id": project_id, "skip": 0, "limit": batch})
    column = "rating" if by == "rating" else "mu"
    while rows:
        yield [entity_row(row) for row in rows]
        if len(rows) < batch:
            return
        last = rows[-1]
        after = {"project_id": project_id, "value": last[column], "id": last["id"], "limit": batch}
        rows = await db.fetch_all(_AFTER[by], after)


async def change_marker(db: Connection, project_id: int) -> tuple[Any, ...]:
    """Changes whenever a vote, a new entity, an edit or a deletion could change a
    project's ranks."""
    row = await db.fetch_one(_MARKER, {"project_id": project_id})
    assert row is not None
    return (row["comparison"], row["entity"], str(row["updated"]))


async def strengths(db: Connection, project_id: int) -> list[Row]:
    return await db.fetch_all(_STRENGTHS, {"project_id": project_id})


async def by_ids(db: Connection, project_id: int, ids: Sequence[int]) -> dict[int, EntityRow]:
    if not ids:
        return {}
    stmt = sa.select(*ENTITY_COLUMNS).where(entities.c.project_id == project_id, entities.c.id.in_(list(ids)))
    rows = await db.fetch_all(Query(stmt))
    return {row["id"]: entity_row(row) for row in rows}


_CATEGORIES = Query(
    sa.select(comparisons.c.category, sa.func.count().label("votes"))
    .where(comparisons.c.project_id == param("project_id"), comparisons.c.category.is_not(None))
    .group_by(comparisons.c.category)
    .order_by(comparisons.c.category)
)


async def categories(db: Connection, project_id: int) -> dict[str, int]:
    """Every category a project's votes were given in, with its vote count."""
    rows = await db.fetch_all(_CATEGORIES, {"project_id": project_id})
    return {row["category"]: int(row["votes"]) for row in rows}


async def vote_count(db: Connection, project_id: int) -> int:
    row = await db.fetch_one(_VOTE_COUNT, {"project_id": project_id})
    assert row is not None
    return int(row["votes"])


async def live_ids(db: Connection, project_id: int) -> list[int]:
    return [row["id"] for row in await db.fetch_all(_LIVE_IDS, {"project_id": project_id})]


async def live_attributes(db: Connection, project_id: int) -> dict[int, dict[str, float]]:
    """Every live entity of a project with its attributes (the covariates of a board)."""
    rows = await db.fetch_all(_LIVE_ATTRIBUTES, {"project_id": project_id})
    return {row["id"]: attributes_of(row["attributes"]) for row in rows}


class VoteColumns(NamedTuple):
    first: list[int]
    second: list[int]
    winner: list[float]  # NaN for a tie or a both-bad verdict
    voter: list[str | None]  # who voted (None: no known voter)
    served: list[bool]  # the pair was served (a pair_token was echoed)


async def vote_log(
    db: Connection, project_id: int, batch: int = 50_000, category: str | None = None
) -> VoteColumns:
    """Every vote of a project (of ``category``, when given) as columns, read in id order."""
    log = VoteColumns([], [], [], [], [])
    async for rows in vote_batches(db, project_id, batch):
        for row in rows:
            if category is not None and row["category"] != category:
                continue
            log.first.append(row["entity1_id"])
            log.second.append(row["entity2_id"])
            selected = row["selected_entity_id"]
            log.winner.append(float("nan") if selected is None else float(selected))
            log.voter.append(row["voter"])
            log.served.append(bool(row["served"]))
    return log
