import math

import pytest

from compere.domain.bayes import (
    DEFAULT_PRIOR,
    bayes_update,
    difference_posterior,
    interval95,
    win_probability,
)


def test_default_prior_is_documented_values():
    assert DEFAULT_PRIOR.mu0 == 0.0 and DEFAULT_PRIOR.sigma0 == 1.5


def test_winner_mean_rises_loser_falls_and_both_sigmas_shrink():
    new = bayes_update(0.0, 1.5, 0.0, 1.5, 1.0)
    assert new.mu1 > 0.0 > new.mu2
    assert new.sigma1 < 1.5 and new.sigma2 < 1.5


def test_upset_moves_more_than_expected_win():
    expected = bayes_update(2.0, 1.0, -2.0, 1.0, 1.0)
    upset = bayes_update(2.0, 1.0, -2.0, 1.0, 0.0)
    assert (expected.mu1 - 2.0) < (2.0 - upset.mu1)


def test_tie_between_equals_keeps_means_and_shrinks_sigmas():
    new = bayes_update(0.3, 1.0, 0.3, 1.0, 0.5)
    assert new.mu1 == pytest.approx(0.3) and new.mu2 == pytest.approx(0.3)
    assert new.sigma1 < 1.0 and new.sigma1 == pytest.approx(new.sigma2)


def test_tie_pulls_means_together_symmetrically():
    new = bayes_update(1.0, 1.0, -1.0, 1.0, 0.5)
    assert new.mu1 < 1.0 and new.mu2 > -1.0
    assert new.mu1 - 1.0 == pytest.approx(-(new.mu2 + 1.0))


def test_swapping_sides_mirrors_the_update():
    a = bayes_update(0.4, 1.2, -0.1, 0.7, 1.0)
    b = bayes_update(-0.1, 0.7, 0.4, 1.2, 0.0)
    assert a.mu1 == pytest.approx(b.mu2) and a.mu2 == pytest.approx(b.mu1)
    assert a.sigma1 == pytest.approx(b.sigma2) and a.sigma2 == pytest.approx(b.sigma1)


def test_more_certain_entity_moves_less():
    new = bayes_update(0.0, 0.3, 0.0, 1.5, 1.0)
    assert abs(new.mu1) < abs(new.mu2)


def test_sigma_never_below_floor():
    mu1, s1, mu2, s2 = 0.0, 1.5, 0.0, 1.5
    for _ in range(5000):
        mu1, s1, mu2, s2 = bayes_update(mu1, s1, mu2, s2, 0.5, min_sigma=0.1)
    assert s1 >= 0.1 and s2 >= 0.1


def test_difference_posterior_matches_numeric_integration():
    m, v = 0.5, 2.0
    step = 1e-3
    xs = [m + (k - 20000) * step for k in range(40001)]
    w = [math.exp(-((x - m) ** 2) / (2 * v)) / (1 + math.exp(-x)) for x in xs]
    z = sum(w)
    mean = sum(wi * x for wi, x in zip(w, xs, strict=True)) / z
    var = sum(wi * x * x for wi, x in zip(w, xs, strict=True)) / z - mean * mean
    got_mean, got_var = difference_posterior(m, v, 1.0)
    assert got_mean == pytest.approx(mean, abs=1e-4)
    assert got_var == pytest.approx(var, abs=1e-4)


def test_rejects_scores_outside_0_1():
    with pytest.raises(ValueError):
        bayes_update(0, 1, 0, 1, 2.0)


def test_win_probability_and_interval():
    assert win_probability(0, 1, 0, 1) == pytest.approx(0.5)
    assert win_probability(2, 0.1, 0, 0.1) > 0.85
    lo, hi = interval95(1.0, 0.5)
    assert lo == pytest.approx(1.0 - 0.98, abs=1e-3) and hi == pytest.approx(1.98, abs=1e-3)
