"""Voter-aware weights: how much one vote counts, derived from the vote log.

The model is a two-type version of Crowd-BT: a voter is either *reliable* (answers by
Bradley-Terry) or *unreliable* (answers independently of the strengths: careless, or
voting for a side whatever it faces). A new voter is reliable with the low prior
probability ``prior_trust``; every vote is evidence, the log-likelihood ratio of the
answer under the two types given the consensus before the vote,
``log(p_chosen / 0.5)``, where ``p_chosen`` is the predictive probability (online
beliefs, :func:`compere.domain.bayes.win_probability`) that the chosen side wins. A
voter's *trust* is the posterior probability of being reliable,
``sigmoid(logit(prior_trust) + evidence)``: it starts low and grows as the voter agrees
with the consensus. While the consensus is unsure (``p`` near 1/2) a vote is no evidence
either way.

Only pairs the voter did not choose (served with a pair token) can build trust; on a
pair the voter picked, only disagreement counts (nobody earns trust by voting obvious
pairs of their choosing, or by agreeing with a consensus they rigged themselves, but a
rigged vote still costs trust). One vote's
evidence is at least ``EVIDENCE_FLOOR`` (a single surprise is never decisive, and
honest voters, who are surprised now and then, stay close together).

What a vote counts for (:func:`weigh_vote`, the online score and ``rebuild-ratings``,
as of the vote, from the log before it):

- ``trust + (1 - trust) * g``: ``g`` is what there is no consensus of others to protect,
  the larger of ``u^2`` (``u``: the share of the prior variance the pair still has) and
  the smaller of the voter's own shares of the two entities' vote weight. While the two
  entities are unknown, or known only from this voter's votes, every vote counts fully
  (a board's first voters, and the only voter of a board, are not slowed down); once
  others have measured them a new voter's vote counts about its trust;
- zero once the voter has already voted on either entity ``cap`` times, where ``cap`` is
  ``max(cap_floor, cap_multiple * the voter's mean votes per entity touched)``: no one
  voter piles onto one entity (a voter who spreads votes evenly, including the only
  voter of a board, never meets the cap).

The Bradley-Terry board (:func:`board_weights`) applies the same rules with the whole
log known: each voter's current evidence, relative to that of the typical vote's voter
(so an honest board is fitted as unweighted), and the same cap.

Votes with no known voter count fully (there is nothing to weigh them by). Everything
is derived: the vote log is never changed, and changing the mode and rebuilding is exact.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np

from compere.domain.bayes import Prior, win_probability

TrustMode = Literal["off", "default", "strict"]
TRUST_MODES: tuple[TrustMode, ...] = ("off", "default", "strict")
# One vote's evidence is bounded: a single surprising answer is never decisive.
EVIDENCE_FLOOR = -1.0
# A board entry rests on few voters when fewer than this many (effective) voters carry it.
FEW_VOTERS = 3.0


@dataclass(frozen=True, slots=True)
class TrustPolicy:
    """How strongly votes are weighed (``TRUST_MODE``)."""

    mode: TrustMode
    prior_trust: float  # P(reliable) of a voter with no record
    cap_floor: float  # votes on one entity that always count
    cap_multiple: float  # times the voter's mean votes per entity touched
    tolerance: float  # board weights: evidence this far (nats) below the typical voter's counts fully

    @property
    def active(self) -> bool:
        return self.mode != "off"


POLICIES: dict[TrustMode, TrustPolicy] = {
    "off": TrustPolicy("off", 1.0, math.inf, math.inf, math.inf),
    "default": TrustPolicy("default", 0.02, 4.0, 4.0, 5.0),
    "strict": TrustPolicy("strict", 0.005, 2.0, 2.0, 3.0),
}


class VoterState(NamedTuple):
    """A voter's record as of some point of the log."""

    votes: int = 0
    evidence: float = 0.0  # sum of the votes' evidence (log-likelihood ratios)
    touched: int = 0  # distinct entities voted on
    weight: float = 0.0  # what the votes counted for, summed


class Share(NamedTuple):
    """One voter's votes on one entity and what they counted for."""

    votes: int = 0
    weight: float = 0.0


NEW_VOTER = VoterState()
NO_SHARE = Share()


def trust(evidence: float, policy: TrustPolicy) -> float:
    """Posterior probability that the voter is reliable."""
    if not policy.active:
        return 1.0
    z = math.log(policy.prior_trust / (1.0 - policy.prior_trust)) + evidence
    return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0


def vote_evidence(
    mu1: float, sigma1: float, mu2: float, sigma2: float, score1: float, *, served: bool
) -> float:
    """Evidence that the voter is reliable from one vote, given the beliefs before it."""
    p = win_probability(mu1, sigma1, mu2, sigma2)
    p = min(max(p, 1e-12), 1.0 - 1e-12)
    if score1 == 0.5:  # a tie: sqrt(p (1 - p)) against a coin's 1/2
        ev = 0.5 * math.log(4.0 * p * (1.0 - p))
    else:
        ev = math.log(2.0 * (p if score1 == 1.0 else 1.0 - p))
    ev = max(ev, EVIDENCE_FLOOR)
    return ev if served else min(ev, 0.0)


def unweighed(voter: Hashable, state: VoterState) -> bool:
    """An anonymous voter's first vote counts fully: its cookie was issued with this very
    vote, and a client that keeps no cookies (as every client of the original API) would
    otherwise be a new voter on every vote. Identity is what the weights need; a project
    that wants them to hold against anonymous voters turns anonymous votes off."""
    return isinstance(voter, str) and voter.startswith("a:") and state.votes == 0


def entity_cap(state: VoterState, policy: TrustPolicy) -> float:
    """How many of the voter's votes on one entity can count."""
    mean = 2.0 * state.votes / state.touched if state.touched else 0.0
    return max(policy.cap_floor, policy.cap_multiple * mean)


class Side(NamedTuple):
    """What a vote's weight needs of one entity: its sigma and its votes' total weight."""

    sigma: float
    weight: float


def weigh_vote(
    state: VoterState,
    share1: Share,
    share2: Share,
    side1: Side,
    side2: Side,
    policy: TrustPolicy,
    prior: Prior,
) -> float:
    """What a vote counts for (0 to 1), from the voter's record before it."""
    if not policy.active:
        return 1.0
    cap = entity_cap(state, policy)
    if share1.votes >= cap or share2.votes >= cap:
        return 0.0
    t = trust(state.evidence, policy)
    unknown = min((side1.sigma**2 + side2.sigma**2) / (2.0 * prior.sigma0**2), 1.0)
    own = min(_own(share1, side1), _own(share2, side2))
    return t + (1.0 - t) * max(unknown * unknown, own)


def _own(share: Share, side: Side) -> float:
    return 1.0 if side.weight <= 0.0 else min(share.weight / side.weight, 1.0)


def after_vote(
    state: VoterState, share1: Share, share2: Share, weight: float, evidence: float
) -> tuple[VoterState, Share, Share]:
    """The voter's record and both shares after one vote."""
    new = VoterState(
        state.votes + 1,
        state.evidence + evidence,
        state.touched + (share1.votes == 0) + (share2.votes == 0),
        state.weight + weight,
    )
    return (
        new,
        Share(share1.votes + 1, share1.weight + weight),
        Share(share2.votes + 1, share2.weight + weight),
    )


class Ledger:
    """Every voter's record while a log is replayed in id order (rebuilds, simulations).

    ``vote`` returns the vote's weight; the caller applies it with the beliefs it passed.
    ``entity_weight`` is every entity's votes' total weight (votes without a voter count 1).
    """

    def __init__(self, policy: TrustPolicy, prior: Prior) -> None:
        self.policy = policy
        self.prior = prior
        self.voters: dict[Hashable, VoterState] = {}
        self.shares: dict[tuple[Hashable, int], Share] = {}
        self.entity_weight: dict[int, float] = {}

    def vote(
        self,
        voter: Hashable | None,
        entity1: int,
        entity2: int,
        before1: tuple[float, float],
        before2: tuple[float, float],
        score1: float,
        *,
        served: bool,
    ) -> float:
        total1 = self.entity_weight.get(entity1, 0.0)
        total2 = self.entity_weight.get(entity2, 0.0)
        if voter is None:
            weight = 1.0
        else:
            state = self.voters.get(voter, NEW_VOTER)
            share1 = self.shares.get((voter, entity1), NO_SHARE)
            share2 = self.shares.get((voter, entity2), NO_SHARE)
            side1, side2 = Side(before1[1], total1), Side(before2[1], total2)
            weight = (
                1.0
                if unweighed(voter, state)
                else weigh_vote(state, share1, share2, side1, side2, self.policy, self.prior)
            )
            evidence = vote_evidence(*before1, *before2, score1, served=served)
            state, share1, share2 = after_vote(state, share1, share2, weight, evidence)
            self.voters[voter] = state
            self.shares[(voter, entity1)] = share1
            self.shares[(voter, entity2)] = share2
        self.entity_weight[entity1] = total1 + weight
        self.entity_weight[entity2] = total2 + weight
        return weight


def board_weights(
    voter_of_vote: Sequence[Hashable | None],
    first: Sequence[int],
    second: Sequence[int],
    evidence: Mapping[Any, float],
    policy: TrustPolicy,
) -> np.ndarray:
    """Per-vote weights for the Bradley-Terry board, with the whole log known.

    ``evidence`` is each voter's current evidence (the ledger's). A voter's votes count
    ``min(1, exp(evidence - typical + tolerance))``, where ``typical`` is the evidence of
    the typical vote's voter (the vote-weighted median over known voters): trust relative
    to the board's own voters, so on a board of honest voters, who all agree about as
    well, every vote counts fully and the fit is the unweighted one. That times
    ``min(1, cap / votes on the entity)`` for the more heavily voted of the two entities
    (the same cap as online, with the whole log counted).
    """
    n = len(voter_of_vote)
    weights = np.ones(n)
    if not policy.active or n == 0:
        return weights
    codes: dict[Hashable, int] = {}
    code = np.full(n, -1, dtype=np.int64)
    for k, voter in enumerate(voter_of_vote):
        if voter is not None:
            code[k] = codes.setdefault(voter, len(codes))
    known = code >= 0
    if not known.any():
        return weights
    voters = list(codes)
    votes = np.bincount(code[known], minlength=len(voters)).astype(np.float64)
    relative = relative_weights(np.array([evidence.get(v, 0.0) for v in voters]), votes, policy)
    # The cap: votes per (voter, entity) against the voter's mean votes per entity touched.
    a = np.asarray(first, dtype=np.int64)[known]
    b = np.asarray(second, dtype=np.int64)[known]
    c = code[known]
    both = np.stack([np.concatenate([c, c]), np.concatenate([a, b])], axis=1)
    keys, inverse = np.unique(both, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    per_key = np.bincount(inverse).astype(np.float64)
    touched = np.bincount(keys[:, 0], minlength=len(voters)).astype(np.float64)
    cap = np.maximum(policy.cap_floor, policy.cap_multiple * 2.0 * votes / np.maximum(touched, 1.0))
    m = c.size
    n1 = per_key[inverse[:m]]
    n2 = per_key[inverse[m:]]
    factor = np.minimum(1.0, cap[c] / np.maximum(n1, n2))
    weights[known] = relative[c] * factor
    return weights


def relative_weights(evidence: np.ndarray, votes: np.ndarray, policy: TrustPolicy) -> np.ndarray:
    """Each voter's board weight from its evidence, against the typical vote's voter's."""
    if not policy.active or evidence.size == 0:
        return np.ones(evidence.size)
    order = np.argsort(evidence, kind="stable")
    cumulative = np.cumsum(votes[order])
    typical = float(evidence[order][np.searchsorted(cumulative, cumulative[-1] / 2.0)])
    return np.exp(np.minimum(0.0, evidence - typical + policy.tolerance))


class Concentration(NamedTuple):
    """How many voters an entity's rating rests on."""

    effective_voters: float  # (sum w)^2 / sum w^2 over the voters' weights on it
    top_voter: Hashable
    top_share: float  # the largest share one voter holds


def concentration(shares: Sequence[tuple[Hashable, int, float]]) -> dict[int, Concentration]:
    """Per entity, from ``(voter, entity, weight)`` rows (each voter's weight on each entity)."""
    by_entity: dict[int, list[tuple[Hashable, float]]] = {}
    for voter, entity, weight in shares:
        if weight > 0.0:
            by_entity.setdefault(entity, []).append((voter, weight))
    out = {}
    for entity, rows in by_entity.items():
        total = sum(w for _, w in rows)
        top_voter, top = max(rows, key=lambda r: (r[1], str(r[0])))
        out[entity] = Concentration(effective_voters([w for _, w in rows]), top_voter, top / total)
    return out


def effective_voters(weights_by_voter: Sequence[float]) -> float:
    """``(sum w)^2 / sum w^2``: how many equal voters the weights are worth."""
    w = np.asarray(weights_by_voter, dtype=np.float64)
    total = float(w.sum())
    squares = float((w * w).sum())
    return total * total / squares if squares > 0.0 else 0.0


class BoardFit(NamedTuple):
    """The weighted Bradley-Terry board and the voter weights it used."""

    fitted: dict[int, tuple[float, float, float]]  # entity id -> (score, se, se relative to the mean)
    vote_weights: np.ndarray
    evidence: dict[Hashable, float]  # each voter's agreement with the board's consensus
    relative: dict[Hashable, float]  # each voter's weight before the cap


def fit_evidence(
    voter_of_vote: Sequence[Hashable | None],
    first: Sequence[int],
    second: Sequence[int],
    score_first: np.ndarray,
    served: Sequence[bool],
    strength: Mapping[int, float],
) -> dict[Hashable, float]:
    """Each voter's evidence (as :func:`vote_evidence`) against fitted strengths."""
    n = len(voter_of_vote)
    if n == 0 or not strength:
        return {}
    keys = np.fromiter(strength.keys(), dtype=np.int64, count=len(strength))
    values = np.fromiter(strength.values(), dtype=np.float64, count=len(strength))
    order = np.argsort(keys)
    keys, values = keys[order], values[order]

    def lookup(entity: Sequence[int]) -> np.ndarray:
        e = np.asarray(entity, dtype=np.int64)
        pos = np.clip(np.searchsorted(keys, e), 0, keys.size - 1)
        return np.where(keys[pos] == e, values[pos], np.nan)

    t1, t2 = lookup(first), lookup(second)
    known = ~(np.isnan(t1) | np.isnan(t2))
    p = 1.0 / (1.0 + np.exp(-np.where(known, t1 - t2, 0.0)))
    p = np.clip(p, 1e-12, 1.0 - 1e-12)
    with np.errstate(divide="ignore"):
        ev = np.where(
            score_first == 1.0,
            np.log(2.0 * p),
            np.where(score_first == 0.0, np.log(2.0 * (1.0 - p)), 0.5 * np.log(4.0 * p * (1.0 - p))),
        )
    ev = np.maximum(ev, EVIDENCE_FLOOR)
    ev = np.where(np.asarray(served, dtype=bool), ev, np.minimum(ev, 0.0))
    ev = np.where(known, ev, 0.0)
    codes: dict[Hashable, int] = {}
    code = np.fromiter(
        (-1 if v is None else codes.setdefault(v, len(codes)) for v in voter_of_vote), dtype=np.int64, count=n
    )
    mine = code >= 0
    sums = np.bincount(code[mine], weights=ev[mine], minlength=len(codes))
    return dict(zip(codes, sums.tolist(), strict=True))


def board_fit(
    entity_ids: Sequence[int],
    voter_of_vote: Sequence[Hashable | None],
    first: Sequence[int],
    second: Sequence[int],
    winner: Sequence[float],
    served: Sequence[bool],
    online_evidence: Mapping[Any, float],
    policy: TrustPolicy,
    prior: Prior,
) -> BoardFit:
    """The Bradley-Terry board with voter weights, Crowd-BT style: a first fit weighs each
    voter by its online record (agreement with the consensus as of each vote); then every
    voter's agreement is measured again against that fitted consensus of the whole log
    (so a voter who voted while the board was still unsure is not held back by it) and
    the board is fitted with those weights. With ``off`` it is the unweighted fit."""
    from compere.domain.bt import fit_vote_log

    def fit(weights: np.ndarray | None) -> dict[int, tuple[float, float, float]]:
        if len(entity_ids) == 0:
            return {}
        found = fit_vote_log(entity_ids, first, second, winner, prior=prior, weights=weights)
        relative = found.se if found.se_relative is None else found.se_relative
        return {
            int(k): (float(m), float(s), float(r))
            for k, m, s, r in zip(entity_ids, found.mu, found.se, relative, strict=True)
        }

    if not policy.active:
        return BoardFit(fit(None), np.ones(len(first)), {}, {})
    first_pass = fit(board_weights(voter_of_vote, first, second, online_evidence, policy))
    sel = np.asarray(winner, dtype=np.float64)
    e1 = np.asarray(first, dtype=np.float64)
    e2 = np.asarray(second, dtype=np.float64)
    score = np.where(sel == e1, 1.0, np.where(sel == e2, 0.0, 0.5))
    strength = {k: v[0] for k, v in first_pass.items()}
    evidence = fit_evidence(voter_of_vote, first, second, score, served, strength)
    weights = board_weights(voter_of_vote, first, second, evidence, policy)
    counts = Counter(v for v in voter_of_vote if v is not None)
    names = list(evidence)
    votes = np.array([float(counts[name]) for name in names])
    relative = relative_weights(np.array([evidence[v] for v in names]), votes, policy)
    return BoardFit(fit(weights), weights, evidence, dict(zip(names, relative.tolist(), strict=True)))
