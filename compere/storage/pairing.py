"""Candidate sets for pair selection: a few index scans, never a full table read.

Implements the contract of :class:`compere.domain.selection.CandidatePlan`: the most
uncertain entities (``sigma`` index), a uniform random sample (independent probes of
the primary key), and the nearest neighbours by ``mu`` of the few most uncertain ones.
Two round trips whatever the number of entities.

Candidates come back as plain rows (with the extra columns the queries add): the
selection arithmetic reads a few numbers of each, and only the two shown become
:class:`compere.storage.rows.EntityRow` (``entity_row``).
"""

from __future__ import annotations

import random
from typing import Any

import sqlalchemy as sa
from sqlalchemy import bindparam as param

from compere.domain.selection import CandidatePlan
from compere.storage.database import Connection, Query, Row
from compere.storage.tables import DEFAULT_PROJECT_ID, ENTITY_COLUMNS, LIVE, comparisons, entities

_IN_PROJECT = entities.c.project_id == param("project_id")


def _id_bound(fn: Any) -> Any:
    """The project's smallest or largest entity id (one probe of its (project_id, id) key)."""
    return sa.select(fn(entities.c.id)).where(_IN_PROJECT).scalar_subquery()


# Every row also carries the project's id range, which the random probes draw from.
_MOST_UNCERTAIN = Query(
    sa.select(
        *ENTITY_COLUMNS,
        _id_bound(sa.func.min).label("min_id"),
        _id_bound(sa.func.max).label("max_id"),
    )
    .where(_IN_PROJECT, LIVE)
    .order_by(entities.c.sigma.desc(), entities.c.id)
    .limit(param("limit")),
    prepare=True,
)
_LATEST_COMPARISON_ID = Query(
    sa.select(sa.func.max(comparisons.c.id)).where(comparisons.c.project_id == param("project_id"))
)
_STRONGEST = Query(
    sa.select(*ENTITY_COLUMNS)
    .where(_IN_PROJECT, LIVE)
    .order_by(entities.c.mu.desc(), entities.c.id)
    .limit(param("limit")),
    prepare=True,
)


async def strongest(db: Connection, limit: int, project_id: int = DEFAULT_PROJECT_ID) -> list[Row]:
    """The project's ``limit`` entities of highest ``mu`` (the ``top_k`` objective's candidates)."""
    return await db.fetch_all(_STRONGEST, {"limit": limit, "project_id": project_id})


def _spread_query(samples: int, anchors: int, neighbours: int) -> Query:
    """One statement: ``samples`` independent random probes of the primary key (part 0)
    plus each anchor's neighbours by ``mu`` on both sides (part 2).

    A probe ``r`` takes the first live entity with ``id >= r``: one index lookup each.
    The probe values travel as one ``VALUES`` list (``column1`` is its column's name
    in both PostgreSQL and SQLite), so the statement stays small to plan; a branch
    per probe took PostgreSQL longer to plan than to run. Independent probes matter:
    a single run of consecutive rows in a fixed random order (the obvious one-scan
    sample) keeps showing the same entities together, and the ranking simulation
    reached tau 0.8 about 0.5-1 N votes later with it.
    """
    half = max(neighbours // 2, 1)

    def part(number: int) -> tuple[Any, ...]:
        return (*ENTITY_COLUMNS, sa.literal(number).label("part"))

    parts: list[Any] = [_random_probes(samples, part(0))] if samples else []
    for k in range(anchors):
        mu: Any = param(f"mu{k}")
        parts.append(
            sa.select(*part(2))
            .where(_IN_PROJECT, LIVE, entities.c.mu >= mu)
            .order_by(entities.c.mu, entities.c.id)
            .limit(half + 1)
        )
        parts.append(
            sa.select(*part(2))
            .where(_IN_PROJECT, LIVE, entities.c.mu < mu)
            .order_by(entities.c.mu.desc(), entities.c.id)
            .limit(half)
        )
    # Prepared where the backend can: planning this union took PostgreSQL longer than
    # running it (about 4.5 ms against 1-3 ms), on every request for a pair.
    return Query(sa.union_all(*(p.subquery().select() for p in parts)), prepare=True)


def _random_probes(samples: int, columns: tuple[Any, ...]) -> Any:
    """The project's first live entity at or after each of ``samples`` random ids ``:r0``,
    ``:r1``... (one probe of the (project_id, id) key each)."""
    probes = (
        # The casts type the column for a prepared statement, which would take text.
        sa.text("VALUES " + ", ".join(f"(CAST(:r{k} AS BIGINT))" for k in range(samples)))
        .columns(sa.column("column1", sa.BigInteger))
        .subquery("probe")
    )
    later = entities.alias("later")
    # PostgreSQL walks the primary key from the probe and passes over other projects'
    # ids: about one row per project where their ids interleave (a few microseconds
    # each at ten projects; see bench/projects_bench.py).
    first_live_from = (
        sa.select(sa.func.min(later.c.id))
        .where(
            later.c.project_id == param("project_id"),
            later.c.id >= probes.c.column1,
            later.c.deleted_at.is_(None),
        )
        .scalar_subquery()
    )
    return sa.select(*columns).where(
        _IN_PROJECT, LIVE, entities.c.id.in_(sa.select(first_live_from).select_from(probes))
    )


_SPREAD_CACHE: dict[tuple[int, int, int], Query] = {}


async def pair_candidates(
    db: Connection, plan: CandidatePlan, rng: random.Random, project_id: int = DEFAULT_PROJECT_ID
) -> list[Row]:
    """Distinct live entities of a project to choose a pair from; all of them when there
    are few."""
    small = plan.most_uncertain + plan.random
    first = await db.fetch_all(_MOST_UNCERTAIN, {"project_id": project_id, "limit": small})
    if len(first) < small:
        return first  # that is every live entity
    chosen = {row["id"]: row for row in first[: plan.most_uncertain]}
    key = (plan.random, plan.anchors, plan.neighbours)
    query = _SPREAD_CACHE.get(key)
    if query is None:
        query = _SPREAD_CACHE[key] = _spread_query(*key)
    bottom, top = int(first[0]["min_id"]), int(first[0]["max_id"])
    params: dict[str, float | int] = {f"r{k}": rng.randint(bottom, top) for k in range(plan.random)}
    params["project_id"] = project_id
    for k, row in enumerate(first[: plan.anchors]):
        params[f"mu{k}"] = row["mu"]
    # A probe that lands on a deleted id takes the next live one (so an entity right
    # after a run of deleted ids, or of another project's ids, is drawn a little more often); a probe past the last
    # live entity finds nothing, so the sample can come back a few short.
    for row in await db.fetch_all(query, params):
        chosen.setdefault(row["id"], row)
    return list(chosen.values())


_RANDOM_RUN = Query(
    sa.select(*ENTITY_COLUMNS)
    .where(_IN_PROJECT, LIVE, entities.c.random_key >= param("r"))
    .order_by(entities.c.random_key)
    .limit(param("limit"))
)
_FIRST_RUN = Query(
    sa.select(*ENTITY_COLUMNS).where(_IN_PROJECT, LIVE).order_by(entities.c.random_key).limit(param("limit"))
)


async def random_sample(db: Connection, project_id: int, size: int, rng: random.Random) -> list[Row]:
    """Up to ``size`` distinct live entities of a project drawn at random (all of them
    when fewer)."""
    rows = await db.fetch_all(_RANDOM_RUN, {"project_id": project_id, "r": rng.random(), "limit": size})
    if len(rows) < size:  # the run reached the end of the key range: continue from the start
        seen = {row["id"] for row in rows}
        more = await db.fetch_all(_FIRST_RUN, {"project_id": project_id, "limit": size})
        rows += [r for r in more if r["id"] not in seen]
    return rows[:size]


async def latest_comparison_id(db: Connection, project_id: int) -> int:
    """Cheap stand-in for the number of a project's comparisons (ids only grow)."""
    return int(await db.fetch_value(_LATEST_COMPARISON_ID, {"project_id": project_id}) or 0)
