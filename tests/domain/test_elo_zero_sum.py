import random

import pytest

from compere.domain.elo import elo_update, expected_score, score_of


def test_equal_ratings_expect_half():
    assert expected_score(1500, 1500) == pytest.approx(0.5)


def test_winner_gains_what_loser_loses():
    new = elo_update(1500, 1600, 1.0, 32)
    assert new.rating1 > 1500 and new.rating2 < 1600
    assert new.rating1 + new.rating2 == pytest.approx(3100)


def test_many_random_votes_keep_the_sum():
    rng = random.Random(7)
    ratings = [1500.0] * 10
    for _ in range(2000):
        i, j = rng.sample(range(10), 2)
        outcome = rng.choice((None, i, j))
        r = elo_update(ratings[i], ratings[j], score_of(i, outcome), 32)
        ratings[i], ratings[j] = r
    assert sum(ratings) == pytest.approx(15000, abs=1e-6)


def test_tie_between_equals_changes_nothing():
    assert elo_update(1500, 1500, score_of(1, None), 32) == (1500, 1500)
