import collections
import random

import numpy as np
import pytest

from compere.domain.bayes import Prior
from compere.domain.selection import (
    STRATEGIES,
    Candidate,
    CandidatePlan,
    SelectionContext,
    expected_shrinkage,
    plan_candidates,
    select_pair,
)
from compere.domain.ucb import ArmState, UCBParams, select_pair_ucb


def candidates(n, seed=0):
    rng = random.Random(seed)
    return [
        Candidate(
            id=100 + k,
            mu=rng.uniform(-2, 2),
            sigma=rng.uniform(0.2, 1.5),
            rating=1500 + rng.uniform(-150, 150),
            comparisons=rng.randint(0, 6),
            wins=0.0,
        )
        for k in range(n)
    ]


def frequencies(strategy, cands, draws, context=None, seed=1):
    rng = random.Random(seed)
    counts = collections.Counter()
    reported = {}
    for _ in range(draws):
        sel = select_pair(strategy, cands, rng, context)
        assert sel.entity1_id != sel.entity2_id
        key = frozenset((sel.entity1_id, sel.entity2_id))
        counts[key] += 1
        assert reported.setdefault(key, sel.probability) == pytest.approx(sel.probability)
    return counts, reported


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_same_seed_same_pairs(strategy):
    cands = candidates(12)
    a = [select_pair(strategy, cands, random.Random(5)) for _ in range(3)]
    b = [select_pair(strategy, cands, random.Random(5)) for _ in range(3)]
    assert a == b


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_reported_probabilities_match_frequencies_and_sum_to_one(strategy):
    cands = candidates(5, seed=2)
    context = SelectionContext(exploration=0.5)
    counts, reported = frequencies(strategy, cands, 3000, context)
    for key, p in reported.items():
        assert counts[key] / 3000 == pytest.approx(p, abs=0.03)
    if len(reported) == 10:  # every pair of 5 seen
        assert sum(reported.values()) == pytest.approx(1.0, abs=1e-6)


def test_random_probability_is_uniform():
    sel = select_pair("random", candidates(8), random.Random(0))
    assert sel.probability == pytest.approx(2 / (8 * 7))


def test_active_prefers_the_informative_pair_but_explores_everyone():
    known = [Candidate(id=k, mu=k * 0.8 - 4, sigma=0.2) for k in range(10)]
    newcomer = Candidate(id=99, mu=0.0, sigma=1.5)
    cands = [*known, newcomer]
    counts, reported = frequencies("active", cands, 1500)
    best, n_best = counts.most_common(1)[0]
    assert 99 in best and n_best / 1500 > 0.85
    assert reported[best] > 0.9
    shown = {i for pair in counts for i in pair}
    assert shown == {c.id for c in cands}


def test_ucb_strategy_is_the_original_algorithm():
    cands = candidates(9, seed=3)
    recent = {c.id: [cands[0].id] for c in cands}
    context = SelectionContext(total_comparisons=40, recent_opponents_of=recent)
    sel = select_pair("ucb", cands, random.Random(11), context)
    arms = [ArmState(c.id, c.rating, c.comparisons, c.wins) for c in cands]
    first, second = select_pair_ucb(arms, 40, recent, UCBParams(), random.Random(11))
    assert (sel.entity1_id, sel.entity2_id) == (first.id, second.id)


def test_bad_input_is_rejected():
    with pytest.raises(ValueError):
        select_pair("thompson", candidates(3), random.Random(0))
    with pytest.raises(ValueError):
        select_pair("active", candidates(1), random.Random(0))
    dup = candidates(2)
    with pytest.raises(ValueError):
        select_pair("random", [dup[0], dup[0]], random.Random(0))


def test_candidate_plan_takes_uncertain_random_and_neighbours():
    n = 1000
    ids = list(range(n))
    mu = [k / 100 for k in range(n)]
    sigma = [0.1] * n
    sigma[500] = 2.0  # the most uncertain anchor
    sigma[7] = 1.9
    plan = CandidatePlan(most_uncertain=4, random=10, anchors=1, neighbours=6)
    chosen = plan_candidates(plan, ids, mu, sigma, random.Random(0))
    assert len(chosen) == len(set(chosen))
    assert {500, 7} <= set(chosen)
    assert {497, 498, 499, 501, 502, 503} <= set(chosen)
    assert len(chosen) <= 4 + 10 + 7


def test_candidate_plan_passes_everything_when_small():
    chosen = plan_candidates(CandidatePlan(), [1, 2, 3], [0, 0, 0], [1, 1, 1], random.Random(0))
    assert chosen == [0, 1, 2]


def test_every_entity_reachable_through_plan_and_exploration():
    n = 80
    rng = random.Random(4)
    ids = list(range(n))
    mu = [rng.gauss(0, 1.5) for _ in ids]
    sigma = [0.3] * n
    shown = set()
    for _ in range(1500):
        positions = plan_candidates(CandidatePlan(), ids, mu, sigma, rng)
        cands = [Candidate(ids[p], mu[p], sigma[p]) for p in positions]
        sel = select_pair("active", cands, rng, SelectionContext(exploration=0.5))
        shown.update((sel.entity1_id, sel.entity2_id))
    assert len(shown) == n


def test_ucb_probability_can_be_skipped():
    context = SelectionContext(total_comparisons=10, ucb_probability=False)
    sel = select_pair("ucb", candidates(6), random.Random(0), context)
    assert sel.probability != sel.probability  # NaN


def test_active_spends_votes_where_the_board_is_crowded():
    # Two equally uncertain newcomers, each with an equally close well-known opponent:
    # one pair in the middle of the board, one far out in the tail. A mis-ordering
    # in the middle costs more (many entities have similar strengths), so the middle
    # pair wins; without the population prior the two pairs are worth the same.
    cands = [
        Candidate(id=1, mu=0.0, sigma=1.0),
        Candidate(id=2, mu=0.1, sigma=0.2),
        Candidate(id=3, mu=3.5, sigma=1.0),
        Candidate(id=4, mu=3.6, sigma=0.2),
    ]
    mu = np.array([c.mu for c in cands])
    sigma = np.array([c.sigma for c in cands])
    plain = expected_shrinkage(mu[[0, 2]], sigma[[0, 2]], mu[[1, 3]], sigma[[1, 3]])
    assert plain[0] == pytest.approx(plain[1])
    weighted = expected_shrinkage(mu[[0, 2]], sigma[[0, 2]], mu[[1, 3]], sigma[[1, 3]], Prior(0.0, 1.5))
    assert weighted[0] > 2 * weighted[1]
    context = SelectionContext(exploration=0.0)
    chosen = select_pair("active", cands, random.Random(0), context)
    assert {chosen.entity1_id, chosen.entity2_id} == {1, 2}
