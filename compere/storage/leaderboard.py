"""Leaderboard reads: pages, keyset-streamed full boards, and the inputs of model fits."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import bindparam as param

from compere.storage.comparisons import vote_log as vote_batches
from compere.storage.database import Connection, Query, Row
from compere.storage.rows import EntityRow, entity_row
from compere.storage.tables import ENTITY_COLUMNS, LIVE, comparisons, entities

SORT_COLUMNS = {"rating": entities.c.rating, "score": entities.c.mu}


def _ordered(by: str) -> sa.Select[Any]:
    return sa.select(*ENTITY_COLUMNS).where(LIVE).order_by(SORT_COLUMNS[by].desc(), entities.c.id)


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
        sa.select(sa.func.max(comparisons.c.id)).scalar_subquery().label("comparison"),
        sa.select(sa.func.max(entities.c.id)).scalar_subquery().label("entity"),
        sa.select(sa.func.max(entities.c.updated_at)).scalar_subquery().label("updated"),
    )
)
_STRENGTHS = Query(
    sa.select(entities.c.id, entities.c.mu, entities.c.sigma, entities.c.comparisons).where(LIVE)
)
_LIVE_IDS = Query(sa.select(entities.c.id).where(LIVE))
_VOTE_COUNT = Query(sa.select(sa.func.count().label("votes")).select_from(comparisons))


async def page(db: Connection, by: str, skip: int, limit: int) -> list[EntityRow]:
    return [entity_row(row) for row in await db.fetch_all(_PAGES[by], {"skip": skip, "limit": limit})]


async def stream(db: Connection, by: str, batch: int = 1000) -> AsyncIterator[list[EntityRow]]:
    """The whole board in order, ``batch`` rows per round trip (keyset, not OFFSET)."""
    rows = await db.fetch_all(_PAGES[by], {"skip": 0, "limit": batch})
    column = "rating" if by == "rating" else "mu"
    while rows:
        yield [entity_row(row) for row in rows]
        if len(rows) < batch:
            return
        last = rows[-1]
        rows = await db.fetch_all(_AFTER[by], {"value": last[column], "id": last["id"], "limit": batch})


async def change_marker(db: Connection) -> tuple[Any, ...]:
    """Changes whenever a vote, a new entity, an edit or a deletion could change ranks."""
    row = await db.fetch_one(_MARKER)
    assert row is not None
    return (row["comparison"], row["entity"], str(row["updated"]))


async def strengths(db: Connection) -> list[Row]:
    return await db.fetch_all(_STRENGTHS)


async def by_ids(db: Connection, ids: Sequence[int]) -> dict[int, EntityRow]:
    if not ids:
        return {}
    rows = await db.fetch_all(Query(sa.select(*ENTITY_COLUMNS).where(entities.c.id.in_(list(ids)))))
    return {row["id"]: entity_row(row) for row in rows}


_CATEGORIES = Query(
    sa.select(comparisons.c.category, sa.func.count().label("votes"))
    .where(comparisons.c.category.is_not(None))
    .group_by(comparisons.c.category)
    .order_by(comparisons.c.category)
)


async def categories(db: Connection) -> dict[str, int]:
    """Every category votes were given in, with its vote count."""
    return {row["category"]: int(row["votes"]) for row in await db.fetch_all(_CATEGORIES)}


async def vote_count(db: Connection) -> int:
    row = await db.fetch_one(_VOTE_COUNT)
    assert row is not None
    return int(row["votes"])


async def live_ids(db: Connection) -> list[int]:
    return [row["id"] for row in await db.fetch_all(_LIVE_IDS)]


async def vote_log(
    db: Connection, batch: int = 50_000, category: str | None = None
) -> tuple[list[int], list[int], list[float]]:
    """Every vote (of ``category``, when given) as three columns (winner NaN for a tie or
    a both-bad verdict), read in id order."""
    first: list[int] = []
    second: list[int] = []
    winner: list[float] = []
    async for rows in vote_batches(db, batch):
        for row in rows:
            if category is not None and row["category"] != category:
                continue
            first.append(row["entity1_id"])
            second.append(row["entity2_id"])
            selected = row["selected_entity_id"]
            winner.append(float("nan") if selected is None else float(selected))
    return first, second, winner
