"""Candidate sets for pair selection: a few index scans, never a full table read.

Implements the contract of :class:`compere.domain.selection.CandidatePlan`: the most
uncertain entities (``sigma`` index), a uniform random sample (a range scan on the
per-entity ``random_key``), and the nearest neighbours by ``mu`` of the few most
uncertain ones. Two round trips whatever the number of entities.
"""

from __future__ import annotations

import random
from typing import Any

import sqlalchemy as sa
from sqlalchemy import bindparam as param

from compere.domain.selection import CandidatePlan
from compere.storage.database import Connection, Query, Row
from compere.storage.queries import ENTITY_COLUMNS
from compere.storage.tables import comparisons, entities

_live = entities.c.deleted_at.is_(None)

_MOST_UNCERTAIN = Query(
    sa.select(*ENTITY_COLUMNS)
    .where(_live)
    .order_by(entities.c.sigma.desc(), entities.c.id)
    .limit(param("limit"))
)
_LATEST_COMPARISON_ID = Query(sa.select(sa.func.max(comparisons.c.id)))


def _spread_query(anchors: int, neighbours: int) -> Query:
    """One statement: a random run of ``random_key`` (part 0, wrapping to the start as
    part 1) plus each anchor's neighbours by ``mu`` on both sides (parts 2+)."""
    half = max(neighbours // 2, 1)

    def part(number: int) -> tuple[Any, ...]:
        return (*ENTITY_COLUMNS, entities.c.random_key, sa.literal(number).label("part"))

    parts = [
        sa.select(*part(0))
        .where(_live, entities.c.random_key >= param("r"))
        .order_by(entities.c.random_key)
        .limit(param("sample")),
        sa.select(*part(1)).where(_live).order_by(entities.c.random_key).limit(param("sample")),
    ]
    for k in range(anchors):
        mu: Any = param(f"mu{k}")
        parts.append(
            sa.select(*part(2))
            .where(_live, entities.c.mu >= mu)
            .order_by(entities.c.mu, entities.c.id)
            .limit(half + 1)
        )
        parts.append(
            sa.select(*part(2))
            .where(_live, entities.c.mu < mu)
            .order_by(entities.c.mu.desc(), entities.c.id)
            .limit(half)
        )
    return Query(sa.union_all(*(p.subquery().select() for p in parts)))


_SPREAD_CACHE: dict[tuple[int, int], Query] = {}


async def pair_candidates(db: Connection, plan: CandidatePlan, rng: random.Random) -> list[Row]:
    """Distinct live entities to choose a pair from; all of them when there are few."""
    small = plan.most_uncertain + plan.random
    first = await db.fetch_all(_MOST_UNCERTAIN, {"limit": small})
    if len(first) < small:
        return first  # that is every live entity
    chosen = {row["id"]: row for row in first[: plan.most_uncertain]}
    key = (plan.anchors, plan.neighbours)
    query = _SPREAD_CACHE.get(key)
    if query is None:
        query = _SPREAD_CACHE[key] = _spread_query(*key)
    params: dict[str, float | int] = {"r": rng.random(), "sample": plan.random}
    for k, row in enumerate(first[: plan.anchors]):
        params[f"mu{k}"] = row["mu"]
    rows = await db.fetch_all(query, params)
    # The random run continues from the start of the key range when it hits the end.
    run = sorted((r for r in rows if r["part"] < 2), key=lambda r: (r["part"], r["random_key"]))
    for row in [*run[: plan.random], *(r for r in rows if r["part"] >= 2)]:
        chosen.setdefault(row["id"], row)
    return list(chosen.values())


_RANDOM_RUN = Query(
    sa.select(*ENTITY_COLUMNS)
    .where(_live, entities.c.random_key >= param("r"))
    .order_by(entities.c.random_key)
    .limit(param("limit"))
)
_FIRST_RUN = Query(
    sa.select(*ENTITY_COLUMNS).where(_live).order_by(entities.c.random_key).limit(param("limit"))
)


async def random_sample(db: Connection, size: int, rng: random.Random) -> list[Row]:
    """Up to ``size`` distinct live entities drawn at random (all of them when fewer)."""
    rows = await db.fetch_all(_RANDOM_RUN, {"r": rng.random(), "limit": size})
    if len(rows) < size:  # the run reached the end of the key range: continue from the start
        seen = {row["id"] for row in rows}
        rows += [r for r in await db.fetch_all(_FIRST_RUN, {"limit": size}) if r["id"] not in seen]
    return rows[:size]


async def latest_comparison_id(db: Connection) -> int:
    """Cheap stand-in for the number of comparisons (ids only grow)."""
    return int(await db.fetch_value(_LATEST_COMPARISON_ID) or 0)
