"""Voter records (compere/domain/trust.py): the statements a vote runs for its voter, the
voters report, and writing a rebuilt ledger. Every row here is derived from the vote log."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import bindparam as param

from compere.domain.trust import Share, VoterState
from compere.storage.database import Connection, Database, Query, Row
from compere.storage.tables import LIVE, entities, voter_entities, voters


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
    """Create the voter's row if new and lock it, returning its record."""
    stmt = db.insert_or_skip(voters).values(
        project_id=param("project_id"), voter=param("voter"), votes=0, evidence=0.0, touched=0, weight=0.0
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[voters.c.project_id, voters.c.voter], set_={"voter": stmt.excluded.voter}
    )
    return Query(stmt.returning(*_STATE), prepare=True)


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


# --- rebuilding ----------------------------------------------------------------------

_CLEAR_SHARES = Query(sa.delete(voter_entities).where(voter_entities.c.project_id == param("project_id")))
_CLEAR_VOTERS = Query(sa.delete(voters).where(voters.c.project_id == param("project_id")))
_INSERT_VOTER = Query(
    sa.insert(voters).values(
        project_id=param("project_id"),
        voter=param("voter"),
        votes=param("votes"),
        evidence=param("evidence"),
        touched=param("touched"),
        weight=param("weight"),
    )
)
_INSERT_SHARE = Query(
    sa.insert(voter_entities).values(
        voter=param("voter"),
        entity_id=param("entity_id"),
        project_id=param("project_id"),
        votes=param("votes"),
        weight=param("weight"),
    )
)


async def replace_all(
    tx: Connection, project_id: int, records: dict[Any, VoterState], shares: dict[tuple[Any, int], Share]
) -> None:
    """Replace a project's voter records and shares with a rebuilt ledger's (inside its
    transaction)."""
    await tx.execute(_CLEAR_SHARES, {"project_id": project_id})
    await tx.execute(_CLEAR_VOTERS, {"project_id": project_id})
    for voter, state in records.items():
        await tx.execute(_INSERT_VOTER, {"project_id": project_id, "voter": voter, **state._asdict()})
    for (voter, entity_id), share in shares.items():
        params = {"project_id": project_id, "voter": voter, "entity_id": entity_id, **share._asdict()}
        await tx.execute(_INSERT_SHARE, params)


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
