"""Importing a vote log: import runs (how far each file is stored) and one batch of votes
applied in order in one transaction.

A batch locks every entity it touches once, in id order (as a vote locks its pair, so
imports and live votes cannot deadlock), applies the votes one after another to the
locked values with :func:`compere.domain.vote.vote_effects`, each weighed by its voter's
record as a live vote is (the batch's voters are locked before the entities, as every vote
path locks them), writes each entity and voter once, all comparison rows in multi-row
INSERTs, and the run's new position, then commits: the ratings equal recording the same
votes one by one, and the position says exactly what is stored.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import bindparam as param

from compere.domain.bayes import Prior
from compere.domain.trust import POLICIES, Ledger, TrustPolicy
from compere.domain.vote import apply_vote
from compere.storage import voters
from compere.storage.bulk import WRITE_DERIVED, import_entity_query
from compere.storage.database import Connection, Database, Query
from compere.storage.entities import new_entity_params
from compere.storage.tables import NEW_ENTITY, comparisons, entities, import_runs
from compere.storage.timestamps import utc_now

# Rows per INSERT and ids per lock query; one compiled statement per size is cached.
_CHUNK = 500


@dataclass(frozen=True, slots=True)
class ImportRun:
    id: int
    kind: str
    lines_done: int
    bytes_done: int
    prefix_digest: str


@dataclass(frozen=True, slots=True)
class Position:
    """How far into the file a batch reaches: every line up to ``lines`` is done."""

    lines: int
    bytes: int
    digest: str


@dataclass(frozen=True, slots=True)
class ImportedVote:
    """One vote of the file: its two sides by key (external id or name), side one's score,
    and what the log says of it: verdict, category, who cast it, how the pair was served."""

    key1: str
    key2: str
    score1: float  # 1, 0.5 or 0
    created_at: str | None  # ISO 8601 UTC; None: the time of the import
    strategy: str | None = None
    probability: float | None = None
    verdict: str | None = None  # 'win' | 'tie' | 'both_bad'
    category: str | None = None
    voter: str | None = None  # as comparisons.voter stores it (compere.infra.voters)
    served: bool = False  # the pair was served with a pair token (trust evidence needs it)
    line: int = 0  # the file's line: names a served vote's stand-in pair token


class RunMoved(Exception):
    """Another import of the same file stored lines since this one last looked."""


_RUN_COLUMNS = (
    import_runs.c.id,
    import_runs.c.kind,
    import_runs.c.lines_done,
    import_runs.c.bytes_done,
    import_runs.c.prefix_digest,
)
_GET_RUN = Query(
    sa.select(*_RUN_COLUMNS).where(
        import_runs.c.project_id == param("project_id"), import_runs.c.source == param("source")
    )
)
_LOCK_RUN = Query(
    sa.select(*_RUN_COLUMNS)
    .where(import_runs.c.project_id == param("project_id"), import_runs.c.source == param("source"))
    .with_for_update()
)
_ADVANCE_RUN = Query(
    sa.update(import_runs)
    .where(import_runs.c.id == param("id"))
    .values(
        lines_done=param("lines"),
        bytes_done=param("bytes"),
        prefix_digest=param("digest"),
        stored=import_runs.c.stored + param("stored"),
        rejected=import_runs.c.rejected + param("rejected"),
        entities_created=import_runs.c.entities_created + param("created"),
        updated_at=param("now"),
    )
)
_NEW_ENTITY_BY_NAME = Query(sa.insert(entities).values(**NEW_ENTITY).returning(entities.c.id))
_CACHED: dict[tuple[str, int], Query] = {}


async def get_run(db: Database, project_id: int, source: str) -> ImportRun | None:
    row = await db.fetch_one(_GET_RUN, {"project_id": project_id, "source": source})
    return None if row is None else ImportRun(**row)


def _cached(kind: str, size: int) -> Query:
    """A statement over ``size`` values, compiled once per size."""
    query = _CACHED.get((kind, size))
    if query is None:
        names: list[Any] = [param(f"v{i}") for i in range(size)]
        if kind == "lock":
            stmt: Any = (
                sa.select(
                    entities.c.id,
                    entities.c.rating,
                    entities.c.mu,
                    entities.c.sigma,
                    entities.c.comparisons,
                    entities.c.wins,
                    entities.c.losses,
                    entities.c.ties,
                    entities.c.vote_weight,
                )
                .where(entities.c.id.in_(names))
                .order_by(entities.c.id)
                .with_for_update()
            )
        elif kind == "external_id":  # any entity, deleted ones too: their votes count
            stmt = sa.select(entities.c.id, entities.c.external_id.label("key")).where(
                entities.c.project_id == param("project_id"), entities.c.external_id.in_(names)
            )
        elif kind == "name":  # live entities; the oldest of several with one name
            stmt = (
                sa.select(entities.c.id, entities.c.name.label("key"))
                .where(
                    entities.c.project_id == param("project_id"),
                    entities.c.name.in_(names),
                    entities.c.deleted_at.is_(None),
                )
                .order_by(entities.c.id.desc())
            )
        else:  # "insert": comparison rows
            stmt = sa.insert(comparisons).values(
                [
                    {
                        "project_id": param(f"j{i}"),
                        "entity1_id": param(f"a{i}"),
                        "entity2_id": param(f"b{i}"),
                        "selected_entity_id": param(f"w{i}"),
                        "created_at": param(f"t{i}"),
                        "strategy": param(f"s{i}"),
                        "selection_probability": param(f"p{i}"),
                        "verdict": param(f"v{i}"),
                        "category": param(f"c{i}"),
                        "voter": param(f"u{i}"),
                        "pair_token_id": param(f"k{i}"),
                    }
                    for i in range(size)
                ]
            )
        query = Query(stmt)
        _CACHED[(kind, size)] = query
    return query


def _chunks(items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


async def _find(tx: Connection, project_id: int, by: str, keys: Sequence[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for chunk in _chunks(keys):
        params: dict[str, Any] = {f"v{i}": key for i, key in enumerate(chunk)}
        rows = await tx.fetch_all(_cached(by, len(chunk)), {**params, "project_id": project_id})
        for row in rows:  # by name: newest first, so the oldest entity wins
            found[row["key"]] = row["id"]
    return found


@dataclass(slots=True)
class BatchResult:
    stored: int
    entities_created: int


async def apply_vote_batch(
    db: Database,
    *,
    project_id: int,
    source: str,
    kind: str,
    match_on: str,
    expected_lines: int,
    votes: Sequence[ImportedVote],
    position: Position,
    rejected: int,
    known: dict[str, int],
    k_factor: float,
    rating: float,
    prior: Prior,
    trust: TrustPolicy = POLICIES["off"],
) -> BatchResult:
    """Store one batch of votes and the run's new position in one transaction.

    ``match_on`` is ``external_id`` (any entity with that external id; a missing one is
    created with the key as its name and external id) or ``name`` (the oldest live
    entity of that name; a missing one is created). ``known`` caches key -> entity id
    across batches (the caller bounds it); it is only updated once the batch commits.
    ``expected_lines`` is where the run stood when this import last looked: if another
    import moved it, :class:`RunMoved` is raised and nothing is stored.

    A vote with a voter counts what its voter's record says (``trust``, as a live vote
    of that voter would); a served vote is stored with a stand-in pair token
    (``import:<run>:<line>``) so a rebuild sees it as served too.
    """
    now = utc_now()
    learned: dict[str, int] = {}
    created = 0
    async with db.transaction() as tx:
        run = await _lock_run(tx, db, project_id=project_id, source=source, kind=kind, now=now)
        if run.lines_done != expected_lines:
            raise RunMoved(f"another import of this file has stored up to line {run.lines_done}")

        keys = sorted({v.key1 for v in votes} | {v.key2 for v in votes})
        ids = {key: known[key] for key in keys if key in known}
        missing = [key for key in keys if key not in ids]
        if missing:
            learned = await _find(tx, project_id, match_on, missing)
            for key in missing:
                if key not in learned:
                    learned[key], new = await _create(
                        tx, db, project_id, match_on, key, rating=rating, prior=prior, now=now
                    )
                    created += new
            ids.update(learned)

        entity_ids = sorted(set(ids.values()))
        # Voters first, then entities: the lock order of every vote path.
        ledger = Ledger(trust, prior)
        names = {vote.voter for vote in votes if vote.voter is not None}
        loaded = await voters.load_ledger(tx, db, project_id, ledger, list(names), entity_ids)
        state: dict[int, dict[str, Any]] = {}
        for chunk in _chunks(entity_ids):
            rows = await tx.fetch_all(_cached("lock", len(chunk)), {f"v{i}": v for i, v in enumerate(chunk)})
            state.update((row["id"], row) for row in rows)
        ledger.entity_weight = {entity_id: float(row["vote_weight"]) for entity_id, row in state.items()}

        rows_to_insert: list[dict[str, Any]] = []
        for vote in votes:
            id1, id2 = ids[vote.key1], ids[vote.key2]
            one, two = state[id1], state[id2]
            weight = ledger.vote(
                vote.voter,
                id1,
                id2,
                (one["mu"], one["sigma"]),
                (two["mu"], two["sigma"]),
                vote.score1,
                served=vote.served,
            )
            apply_vote(one, two, vote.score1, k_factor, weight)
            winner = id1 if vote.score1 == 1.0 else id2 if vote.score1 == 0.0 else None
            rows_to_insert.append(
                {
                    "j": project_id,
                    "a": id1,
                    "b": id2,
                    "w": winner,
                    "t": vote.created_at or now,
                    "s": vote.strategy,
                    "p": vote.probability,
                    "v": vote.verdict or ("tie" if winner is None else "win"),
                    "c": vote.category,
                    "u": vote.voter,
                    "k": f"import:{run.id}:{vote.line}" if vote.served else None,
                }
            )
        for chunk in _chunks(rows_to_insert):
            values = {f"{name}{i}": value for i, row in enumerate(chunk) for name, value in row.items()}
            await tx.execute(_cached("insert", len(chunk)), values)
        for entity_id in entity_ids:
            await tx.execute(WRITE_DERIVED, state[entity_id])
        await voters.write_ledger(tx, db, project_id, ledger, loaded)
        await tx.execute(
            _ADVANCE_RUN,
            {
                "id": run.id,
                "lines": position.lines,
                "bytes": position.bytes,
                "digest": position.digest,
                "stored": len(votes),
                "rejected": rejected,
                "created": created,
                "now": now,
            },
        )
    known.update(learned)
    return BatchResult(len(votes), created)


async def _lock_run(
    tx: Connection, db: Database, *, project_id: int, source: str, kind: str, now: str
) -> ImportRun:
    params = {"project_id": project_id, "source": source}
    row = await tx.fetch_one(_LOCK_RUN, params)
    if row is None:
        insert = db.insert_or_skip(import_runs).values(
            project_id=project_id,
            source=source,
            kind=kind,
            lines_done=0,
            bytes_done=0,
            prefix_digest="",
            stored=0,
            rejected=0,
            entities_created=0,
            created_at=now,
            updated_at=now,
        )
        await tx.execute(Query(insert.on_conflict_do_nothing(index_elements=["project_id", "source"])))
        row = await tx.fetch_one(_LOCK_RUN, params)
    assert row is not None
    return ImportRun(**row)


async def _create(
    tx: Connection,
    db: Database,
    project_id: int,
    match_on: str,
    key: str,
    *,
    rating: float,
    prior: Prior,
    now: str,
) -> tuple[int, int]:
    """A new entity named ``key`` (with ``key`` as its external id when matching on it):
    (its id, 1), or (the id, 0) when a concurrent import created it first."""
    values = new_entity_params(
        project_id=project_id,
        name=key,
        description="",
        image_urls=[],
        rating=rating,
        prior=prior,
        now=now,
        external_id=key if match_on == "external_id" else None,
        prompt=None,
    )
    if match_on == "name":
        return int(await tx.fetch_value(_NEW_ENTITY_BY_NAME, values)), 1
    new = await tx.execute(import_entity_query(db), values)
    return (await _find(tx, project_id, "external_id", [key]))[key], new
