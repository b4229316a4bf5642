"""The next pair to show: candidates from storage, a strategy from the domain, a signed
pair token; and content pairing (the two most dissimilar texts of a random sample)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from compere.domain.projects import Project
from compere.domain.selection import Candidate, CandidatePlan, Selection, SelectionContext, select_pair
from compere.domain.text import TextEntity, most_dissimilar_pair
from compere.domain.ucb import ArmState, choose_second, draw_first, ucb_pair_probability
from compere.infra.signing import PairTokens
from compere.services.boards import Board
from compere.settings import Settings
from compere.storage import comparisons, pairing
from compere.storage.database import Connection, Row
from compere.storage.rows import EntityRow, entity_row

_rng = random.SystemRandom()
PLAN = CandidatePlan()
# TF-IDF over a sample: the cost is quadratic in the number of entities compared.
SAMPLE_SIZE = 200


@dataclass(frozen=True, slots=True)
class ServedPair:
    """Two entities to compare, how they were chosen, and the token a vote echoes."""

    entity1: EntityRow
    entity2: EntityRow
    strategy: str
    probability: float
    pair_token: str


async def _select_ucb(db: Connection, project_id: int, rows: list[Row], settings: Settings) -> Selection:
    """The original's algorithm on the candidate set, fed by the stored bandit counters."""
    arms = [
        ArmState(r["id"], float(r["rating"]), r["comparisons"], r["wins"] + 0.5 * r["ties"]) for r in rows
    ]
    # UCB1's n counts pulls; every comparison pulls two arms.
    total = 2 * await pairing.latest_comparison_id(db, project_id)
    params = settings.ucb
    first = draw_first(arms, total, params, _rng)
    # Recent opponents matter only for the entity drawn first: fetch them after the draw.
    limit = settings.recent_comparison_limit
    recent = {first.id: set(await comparisons.recent_opponents(db, first.id, limit))}
    second = choose_second(first, arms, total, recent[first.id], params, _rng)
    recent[second.id] = set(await comparisons.recent_opponents(db, second.id, limit))
    probability = ucb_pair_probability(arms, total, recent, params, (first.id, second.id))
    return Selection(first.id, second.id, probability, "ucb")


def _candidate(r: Row) -> Candidate:
    return Candidate(
        r["id"], r["mu"], r["sigma"], float(r["rating"]), r["comparisons"], r["wins"] + 0.5 * r["ties"]
    )


async def next_pair(
    db: Connection,
    project: Project,
    settings: Settings,
    tokens: PairTokens,
    strategy: str | None = None,
    focus: Board | None = None,
) -> ServedPair | None:
    """The pair ``strategy`` (default: the project's) picks from a fresh candidate set of
    the project's entities, with its pair token; None when there are fewer than two.
    ``settings`` gives what projects do not set (the UCB parameters).

    ``focus`` (a category's fitted board) makes ``active`` and ``random`` judge the
    candidates by their strengths, uncertainties and vote counts in that board instead
    of the overall ones (``ucb`` keeps the original's overall bandit state)."""
    own = project.settings
    strategy = strategy or own.strategy
    rows = await pairing.pair_candidates(db, PLAN, _rng, project.id)
    if len(rows) < 2:
        return None
    if strategy == "ucb":
        chosen = await _select_ucb(db, project.id, rows, settings)
    else:
        candidates = [
            Candidate(
                r["id"],
                r["mu"] if focus is None else focus.score.get(r["id"], own.prior.mu0),
                r["sigma"] if focus is None else focus.uncertainty.get(r["id"], own.prior.sigma0),
                float(r["rating"]),
                r["comparisons"] if focus is None else focus.votes.get(r["id"], 0),
                r["wins"] + 0.5 * r["ties"],
            )
            for r in rows
        ]
        threshold = None
        if own.ranking_objective == "top_k" and focus is None:
            # The best 2K join the candidates; the threshold lies between the K-th and the next.
            k = own.ranking_top_k
            strongest = await pairing.strongest(db, 2 * k, project.id)
            known = {r["id"] for r in rows}
            rows = rows + [r for r in strongest if r["id"] not in known]
            candidates += [_candidate(r) for r in strongest if r["id"] not in known]
            if len(strongest) > k:
                threshold = 0.5 * (float(strongest[k - 1]["mu"]) + float(strongest[k]["mu"]))
        context = SelectionContext(exploration=own.exploration, prior=own.prior, top_threshold=threshold)
        chosen = select_pair(strategy, candidates, _rng, context)
    by_id = {r["id"]: r for r in rows}
    token = tokens.issue(chosen.entity1_id, chosen.entity2_id, chosen.strategy, chosen.probability)
    return ServedPair(
        entity_row(by_id[chosen.entity1_id]),
        entity_row(by_id[chosen.entity2_id]),
        chosen.strategy,
        chosen.probability,
        token,
    )


async def most_dissimilar(db: Connection, project_id: int, seed: int | None = None) -> list[Row]:
    """The two entities of a random sample whose texts differ most (TF-IDF cosine), or
    every entity when there are fewer than two. A ``seed`` makes the sample reproducible."""
    rng = random.Random(seed) if seed is not None else random.SystemRandom()
    rows = await pairing.random_sample(db, project_id, SAMPLE_SIZE, rng)
    if len(rows) < 2:
        return rows
    pair = most_dissimilar_pair([TextEntity(r["id"], r["name"], r["description"]) for r in rows], rng)
    by_id = {r["id"]: r for r in rows}
    return [by_id[pair.entity1_id], by_id[pair.entity2_id]]
