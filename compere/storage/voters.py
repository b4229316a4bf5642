"""Voter records (compere/domain/trust.py): the statements a vote runs for its voter, the
voters report, and writing a rebuilt ledger. Every row here is derived from the vote log."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import bindparam as param

from compere.domain.trust import POLICIES, Ledger, Share, TrustPolicy, VoterState
from compere.storage.database import Connection, Database, Query, Row
from compere.storage.tables import LIVE, entities, projects, voter_entities, voters


def _per_dialect(build: Callable[[Database], Query]) -> Callable[[Database], Query]:
    cache: dict[str, Query] = {}

    def get(db: Database) -> Query:
        query = cache.get(db.name)
        if query is None:
            query = cache[db.name] = build(db)
        return query

    return get


_STATE = (voters.c.votes, voters.c.evidence, voters.c.touched, voters.c.weight)


def _lock_voter(db: Database) -> Query:
    """Create the voter's row if new and lock it, returning its record and the project's
    stored trust mode (read here, with the lock held, not from a cache: a change of mode
    replays the project with these tables locked, so every vote after it is weighed by
    the new mode)."""
    stmt = db.insert_or_skip(voters).values(
        project_id=param("project_id"), voter=param("voter"), votes=0, evidence=0.0, touched=0, weight=0.0
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[voters.c.project_id, voters.c.voter], set_={"voter": stmt.excluded.voter}
    )
    mode = (
        sa.select(projects.c.trust_mode)
        .where(projects.c.id == param("project_id"))
        .scalar_subquery()
        .label("trust_mode")
    )
    return Query(stmt.returning(*_STATE, mode), prepare=True)


def trust_in_force(record: Row, deployment: TrustPolicy) -> TrustPolicy:
    """The trust policy of a vote: its project's stored mode (``record`` from the voter
    lock), or the deployment's where the project sets none."""
    mode = record["trust_mode"]
    return deployment if mode is None else POLICIES[mode]


lock_voter = _per_dialect(_lock_voter)
# A record the vote that created it did not store a vote for (a batch's refused vote).
DELETE_IDLE_VOTER = Query(
    sa.delete(voters).where(
        voters.c.project_id == param("project_id"), voters.c.voter == param("voter"), voters.c.votes == 0
    )
)


def update_voter_statement() -> Any:
    return (
        sa.update(voters)
        .where(voters.c.project_id == param("project_id"), voters.c.voter == param("voter"))
        .values(
            votes=param("v_votes"),
            evidence=param("v_evidence"),
            touched=param("v_touched"),
            weight=param("v_weight"),
        )
    )


def upsert_share_statement(db: Database, suffix: str) -> Any:
    """The voter's share of one entity (parameters ``entity{suffix}``, ``votes{suffix}``...)."""
    stmt = db.insert_or_skip(voter_entities).values(
        voter=param("voter"),
        project_id=param("project_id"),
        entity_id=param(f"share_entity{suffix}"),
        votes=param(f"share_votes{suffix}"),
        weight=param(f"share_weight{suffix}"),
    )
    return stmt.on_conflict_do_update(
        index_elements=[voter_entities.c.voter, voter_entities.c.entity_id],
        set_={"votes": stmt.excluded.votes, "weight": stmt.excluded.weight},
    )


_UPDATE_VOTER = Query(update_voter_statement())
upsert_share = _per_dialect(lambda db: Query(upsert_share_statement(db, "")))


def voter_state(row: Row) -> VoterState:
    return VoterState(int(row["votes"]), float(row["evidence"]), int(row["touched"]), float(row["weight"]))


def share_params(
    project_id: int, voter: str, state: VoterState, shares: dict[str, tuple[int, Share]]
) -> dict[str, Any]:
    """Parameters of the voter's writes: its new record and its two new shares."""
    params: dict[str, Any] = {
        "project_id": project_id,
        "voter": voter,
        "v_votes": state.votes,
        "v_evidence": state.evidence,
        "v_touched": state.touched,
        "v_weight": state.weight,
    }
    for suffix, (entity_id, share) in shares.items():
        params[f"share_entity{suffix}"] = entity_id
        params[f"share_votes{suffix}"] = share.votes
        params[f"share_weight{suffix}"] = share.weight
    return params


async def write_voter(tx: Connection, db: Database, params: dict[str, Any]) -> None:
    """The voter's writes as separate statements (backends without one-statement votes)."""
    await tx.execute(_UPDATE_VOTER, params)
    for suffix in ("1", "2"):
        await tx.execute(
            upsert_share(db),
            {
                "project_id": params["project_id"],
                "voter": params["voter"],
                "share_entity": params[f"share_entity{suffix}"],
                "share_votes": params[f"share_votes{suffix}"],
                "share_weight": params[f"share_weight{suffix}"],
            },
        )


async def shares_of(
    tx: Connection, names: Sequence[str], entity_ids: Sequence[int], project_id: int | None = None
) -> Sequence[Row]:
    """The shares of ``entity_ids`` that the voters ``names`` hold (in ``project_id``, or in
    whichever projects those entities belong to)."""
    query = sa.select(
        voter_entities.c.voter, voter_entities.c.entity_id, voter_entities.c.votes, voter_entities.c.weight
    ).where(voter_entities.c.voter.in_(list(names)), voter_entities.c.entity_id.in_(list(entity_ids)))
    if project_id is not None:
        query = query.where(voter_entities.c.project_id == project_id)
    return await tx.fetch_all(Query(query))


async def load_ledger(
    tx: Connection,
    db: Database,
    project_id: int,
    ledger: Ledger,
    names: Sequence[str],
    entity_ids: Sequence[int],
) -> dict[tuple[Any, int], Share]:
    """Lock the voters ``names`` (sorted, and before the entities, as every vote path locks them)
    and load their records and their shares of ``entity_ids`` into ``ledger``; returns the
    shares as loaded (for :func:`write_ledger` to skip those the votes left alone)."""
    for name in sorted(names):
        record = await tx.fetch_one(lock_voter(db), {"project_id": project_id, "voter": name})
        assert record is not None
        ledger.voters[name] = voter_state(record)
        ledger.policy = trust_in_force(record, ledger.policy)
    if not names or not entity_ids:
        return {}
    for row in await shares_of(tx, names, entity_ids, project_id):
        ledger.shares[(row["voter"], row["entity_id"])] = Share(int(row["votes"]), float(row["weight"]))
    return dict(ledger.shares)


async def write_ledger(
    tx: Connection,
    db: Database,
    project_id: int,
    ledger: Ledger,
    loaded: Mapping[tuple[Any, int], Share] | None = None,
) -> None:
    """Each voter's record and shares as ``ledger`` left them (loaded by :func:`load_ledger`);
    a share still as ``loaded`` has it is not written again, and a record no stored vote
    moved from new is deleted again (as a lone vote's rollback leaves none)."""
    for name, record in ledger.voters.items():
        if record.votes == 0:
            await tx.execute(DELETE_IDLE_VOTER, {"project_id": project_id, "voter": str(name)})
        else:
            await tx.execute(_UPDATE_VOTER, share_params(project_id, str(name), record, {}))
    for (name, entity_id), share in ledger.shares.items():
        if loaded is not None and loaded.get((name, entity_id)) == share:
            continue
        await tx.execute(
            upsert_share(db),
            {
                "project_id": project_id,
                "voter": name,
                "share_entity": entity_id,
                "share_votes": share.votes,
                "share_weight": share.weight,
            },
        )


# --- rebuilding ----------------------------------------------------------------------

_CLEAR_SHARES = Query(sa.delete(voter_entities).where(voter_entities.c.project_id == param("project_id")))
_CLEAR_VOTERS = Query(sa.delete(voters).where(voters.c.project_id == param("project_id")))


async def replace_all(
    tx: Connection, project_id: int, records: dict[Any, VoterState], shares: dict[tuple[Any, int], Share]
) -> None:
    """Replace a project's voter records and shares with a rebuilt ledger's (inside its
    transaction)."""
    await tx.execute(_CLEAR_SHARES, {"project_id": project_id})
    await tx.execute(_CLEAR_VOTERS, {"project_id": project_id})
    await _insert_rows(
        tx,
        voters,
        [{"project_id": project_id, "voter": voter, **state._asdict()} for voter, state in records.items()],
    )
    await _insert_rows(
        tx,
        voter_entities,
        [
            {"project_id": project_id, "voter": voter, "entity_id": entity_id, **share._asdict()}
            for (voter, entity_id), share in shares.items()
        ],
    )


_ROWS_PER_INSERT = 500  # a voter per vote and entity can mean many rows: not one round trip each


async def _insert_rows(tx: Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    for start in range(0, len(rows), _ROWS_PER_INSERT):
        await tx.execute(Query(sa.insert(table).values(rows[start : start + _ROWS_PER_INSERT])))


# --- reading -------------------------------------------------------------------------

_ALL_VOTERS = Query(
    sa.select(voters.c.voter, *_STATE)
    .where(voters.c.project_id == param("project_id"))
    .order_by(voters.c.voter)
)
_LIVE_SHARES = Query(
    sa.select(
        voter_entities.c.voter, voter_entities.c.entity_id, voter_entities.c.votes, voter_entities.c.weight
    )
    .select_from(voter_entities.join(entities, entities.c.id == voter_entities.c.entity_id))
    .where(LIVE, voter_entities.c.project_id == param("project_id"))
)


async def all_voters(db: Connection, project_id: int) -> list[Row]:
    return await db.fetch_all(_ALL_VOTERS, {"project_id": project_id})


async def evidence_by_voter(db: Connection, project_id: int) -> dict[str, float]:
    rows = await db.fetch_all(_ALL_VOTERS, {"project_id": project_id})
    return {row["voter"]: float(row["evidence"]) for row in rows}


async def live_shares(db: Connection, project_id: int) -> Sequence[Row]:
    """Every voter's share of every live entity of the project."""
    return await db.fetch_all(_LIVE_SHARES, {"project_id": project_id})
