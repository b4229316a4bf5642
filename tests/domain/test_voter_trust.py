"""compere.domain.trust: what a vote counts for, and the weighted updates it feeds."""

from __future__ import annotations

import numpy as np
import pytest

from compere.domain.bayes import DEFAULT_PRIOR, bayes_update
from compere.domain.bt import aggregate_votes
from compere.domain.elo import elo_update
from compere.domain.trust import (
    NEW_VOTER,
    NO_SHARE,
    POLICIES,
    Ledger,
    Share,
    Side,
    VoterState,
    board_weights,
    concentration,
    entity_cap,
    trust,
    vote_evidence,
    weigh_vote,
)

DEFAULT = POLICIES["default"]


def test_a_weight_of_one_is_the_unweighted_update_and_zero_changes_nothing():
    assert bayes_update(0.3, 1.2, -0.1, 0.8, 1.0, weight=1.0) == bayes_update(0.3, 1.2, -0.1, 0.8, 1.0)
    assert bayes_update(0.3, 1.2, -0.1, 0.8, 1.0, weight=0.0) == (0.3, 1.2, -0.1, 0.8)
    half = bayes_update(0.0, 1.5, 0.0, 1.5, 1.0, weight=0.5)
    full = bayes_update(0.0, 1.5, 0.0, 1.5, 1.0)
    assert 0.0 < half.mu1 < full.mu1 and half.sigma1 > full.sigma1
    assert elo_update(1500, 1500, 1.0, 32, 0.25).rating1 == pytest.approx(1504.0)


def test_trust_starts_low_and_grows_with_agreement():
    assert trust(0.0, DEFAULT) == pytest.approx(0.02)
    assert trust(5.0, DEFAULT) > 0.7 > trust(2.0, DEFAULT) > 0.02
    assert trust(-50.0, POLICIES["off"]) == 1.0


def test_only_served_pairs_build_trust():
    agree = vote_evidence(1.0, 0.3, -1.0, 0.3, 1.0, served=True)
    assert agree > 0.0
    assert vote_evidence(1.0, 0.3, -1.0, 0.3, 1.0, served=False) == 0.0
    disagree = vote_evidence(1.0, 0.3, -1.0, 0.3, 0.0, served=False)
    assert disagree == vote_evidence(1.0, 0.3, -1.0, 0.3, 0.0, served=True) == -1.0  # the floor
    assert vote_evidence(0.0, 1.5, 0.0, 1.5, 1.0, served=True) == pytest.approx(0.0)  # no consensus


def test_a_new_voter_counts_fully_on_unknown_entities_and_little_on_measured_ones():
    unknown = Side(DEFAULT_PRIOR.sigma0, 0.0)
    measured = Side(0.3, 40.0)
    assert weigh_vote(NEW_VOTER, NO_SHARE, NO_SHARE, unknown, unknown, DEFAULT, DEFAULT_PRIOR) == 1.0
    w = weigh_vote(NEW_VOTER, NO_SHARE, NO_SHARE, measured, measured, DEFAULT, DEFAULT_PRIOR)
    assert 0.02 <= w < 0.03
    # An entity measured only by this voter's own votes: nothing of others' to protect.
    mine = Share(10, 8.0)
    assert (
        weigh_vote(
            VoterState(10, 0.0, 2, 8.0), mine, mine, Side(0.3, 8.0), Side(0.3, 8.0), DEFAULT, DEFAULT_PRIOR
        )
        == 1.0
    )


def test_the_cap_stops_piling_onto_one_entity():
    piling = VoterState(votes=20, evidence=20.0, touched=21, weight=20.0)  # 20 votes, one entity in all
    assert entity_cap(piling, DEFAULT) == pytest.approx(4.0 * 2 * 20 / 21)  # 4 x its mean per entity
    side = Side(0.3, 40.0)
    assert weigh_vote(piling, Share(8, 8.0), NO_SHARE, side, side, DEFAULT, DEFAULT_PRIOR) == 0.0
    assert weigh_vote(piling, Share(7, 7.0), NO_SHARE, side, side, DEFAULT, DEFAULT_PRIOR) > 0.99
    spread = VoterState(votes=300, evidence=20.0, touched=3, weight=300.0)  # the only voter of 3 entities
    assert entity_cap(spread, DEFAULT) == 800.0


def test_the_ledger_replays_votes_as_weigh_vote_applies_them():
    ledger = Ledger(DEFAULT, DEFAULT_PRIOR)
    w1 = ledger.vote("u:1", 1, 2, (0.0, 1.5), (0.0, 1.5), 1.0, served=True)
    w2 = ledger.vote(None, 1, 2, (0.5, 1.0), (-0.5, 1.0), 0.0, served=False)
    assert (w1, w2) == (1.0, 1.0)
    assert ledger.voters["u:1"] == VoterState(1, 0.0, 2, 1.0)
    assert ledger.shares[("u:1", 1)] == Share(1, 1.0)
    assert ledger.entity_weight == {1: 2.0, 2: 2.0}


def test_board_weights_leave_an_honest_board_unweighted_and_drop_an_outlier():
    voters = ["a", "b", "c", "x"] * 5
    first = [1, 2, 3, 4, 5] * 4
    second = [6, 7, 8, 9, 10] * 4
    evidence = {"a": 9.0, "b": 7.0, "c": 8.0, "x": -2.0}
    w = board_weights(voters, first, second, evidence, DEFAULT)
    by_voter = {v: w[k] for k, v in enumerate(voters)}
    assert by_voter["a"] == by_voter["b"] == by_voter["c"] == 1.0
    # The typical vote's voter is the vote-weighted (lower) median: b, at 7.
    assert by_voter["x"] == pytest.approx(np.exp(-2.0 - 7.0 + 5.0))
    assert (board_weights(voters, first, second, evidence, POLICIES["off"]) == 1.0).all()
    assert (board_weights([None] * 3, [1, 2, 3], [2, 3, 1], {}, DEFAULT) == 1.0).all()


def test_weighted_aggregation_counts_votes_by_weight():
    pairs = aggregate_votes([0, 0, 1], [1, 1, 0], [1.0, 1.0, 1.0], 2, [1.0, 0.5, 0.25])
    assert pairs.n.tolist() == [1.75] and pairs.wins_i.tolist() == [1.5]


def test_concentration_flags_an_entity_resting_on_one_voter():
    spread = concentration([("a", 1, 5.0), ("b", 1, 5.0), ("c", 1, 5.0), ("a", 2, 9.0), ("b", 2, 1.0)])
    assert spread[1].effective_voters == pytest.approx(3.0)
    assert spread[2].top_voter == "a" and spread[2].top_share == pytest.approx(0.9)
    assert spread[2].effective_voters < 2.0


def test_an_anonymous_voters_first_vote_counts_fully():
    from compere.domain.trust import unweighed

    assert unweighed("a:abc", NEW_VOTER) and not unweighed("a:abc", VoterState(1, 0.0, 2, 1.0))
    assert not unweighed("u:1", NEW_VOTER) and not unweighed("k:1", NEW_VOTER)
    ledger = Ledger(DEFAULT, DEFAULT_PRIOR)
    assert ledger.vote("a:x", 1, 2, (0.0, 0.3), (0.0, 0.3), 1.0, served=False) == 1.0
    assert ledger.vote("u:1", 1, 2, (0.0, 0.3), (0.0, 0.3), 1.0, served=False) < 0.1
