"""The voters report: each voter's reliability, weight and influence, and the entities
whose rating rests on a few voters (compere/domain/trust.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from compere.domain.bayes import Prior
from compere.domain.trust import FEW_VOTERS, TrustPolicy, VoterState, concentration, entity_cap, trust
from compere.services.boards import weighted_fit
from compere.storage import leaderboard, voters
from compere.storage.database import Connection


@dataclass(frozen=True, slots=True)
class VotersReport:
    total: int
    voters: list[dict[str, Any]]
    few_voter_entities: list[dict[str, Any]]


async def voters_report(
    db: Connection, project_id: int, policy: TrustPolicy, prior: Prior, *, skip: int, limit: int
) -> VotersReport:
    """Voters most active first (``skip``/``limit`` of them), and every live entity whose
    vote weight rests on fewer than ``FEW_VOTERS`` effective voters."""
    states = {row["voter"]: voters.voter_state(row) for row in await voters.all_voters(db, project_id)}
    shares = [
        (r["voter"], int(r["entity_id"]), float(r["weight"]))
        for r in await voters.live_shares(db, project_id)
    ]
    fit = (await weighted_fit(db, project_id, await leaderboard.live_ids(db, project_id), prior, policy)).fit
    entity_total: dict[int, float] = {}
    for _, entity, weight in shares:
        entity_total[entity] = entity_total.get(entity, 0.0) + weight
    influence: dict[str, tuple[float, int]] = {}
    for voter, entity, weight in shares:
        total = entity_total[entity]
        share = weight / total if total > 0 else 0.0
        if share > influence.get(voter, (-1.0, 0))[0]:
            influence[voter] = (share, entity)
    ordered = sorted(states, key=lambda v: (-states[v].votes, v))[skip : skip + limit]
    page = [
        _voter_out(v, states[v], fit.relative.get(v, 1.0), fit.evidence.get(v), influence.get(v), policy)
        for v in ordered
    ]
    few = [
        {
            "entity_id": entity,
            "effective_voters": round(c.effective_voters, 4),
            "top_voter": c.top_voter,
            "top_share": round(c.top_share, 4),
        }
        for entity, c in sorted(concentration(shares).items(), key=lambda kv: (kv[1].effective_voters, kv[0]))
        if c.effective_voters < FEW_VOTERS
    ]
    return VotersReport(len(states), page, few)


def _voter_out(
    voter: str,
    state: VoterState,
    board_weight: float,
    board_agreement: float | None,
    influence: tuple[float, int] | None,
    policy: TrustPolicy,
) -> dict[str, Any]:
    share, entity = influence if influence is not None else (0.0, None)
    return {
        "voter": voter,
        "votes": state.votes,
        "reliability": round(trust(state.evidence, policy), 6),
        "evidence": round(state.evidence, 6),
        "board_agreement": None if board_agreement is None else round(board_agreement, 6),
        "board_weight": round(board_weight, 6),
        "mean_vote_weight": round(state.weight / state.votes, 6) if state.votes else 0.0,
        "entities": state.touched,
        "entity_cap": entity_cap(state, policy) if policy.active else None,
        "max_influence": round(share, 6),
        "max_influence_entity_id": entity,
    }
