"""Davidson's tie model in the offline fit: the same scale as Bradley-Terry, nu recovered."""

from __future__ import annotations

import numpy as np
import pytest

from compere.domain.bt import aggregate_votes, fit_bradley_terry, fit_davidson, fit_votes


def _davidson_votes(n: int, votes: int, nu: float, seed: int):
    rng = np.random.default_rng(seed)
    theta = rng.normal(0.0, 1.5, n)
    a = rng.integers(0, n, votes)
    b = rng.integers(0, n, votes)
    keep = a != b
    a, b = a[keep], b[keep]
    half = np.exp(0.5 * (theta[a] - theta[b]))
    u = rng.random(a.size) * (half + 1.0 / half + nu)
    score = np.where(u < half, 1.0, np.where(u < half + nu, 0.5, 0.0))
    return theta, a, b, score


def test_without_ties_davidson_is_exactly_bradley_terry():
    _, a, b, score = _davidson_votes(30, 2000, 0.0, seed=1)
    pairs = aggregate_votes(a, b, score, 30)
    assert pairs.ties is not None and pairs.ties.sum() == 0
    davidson = fit_davidson(30, pairs)
    plain = fit_bradley_terry(30, pairs)
    assert davidson.nu == 0.0
    np.testing.assert_allclose(davidson.fit.mu, plain.mu)


def test_davidson_recovers_the_tie_parameter_and_the_scale_half_wins_squeeze():
    theta, a, b, score = _davidson_votes(50, 6000, 0.8, seed=2)
    pairs = aggregate_votes(a, b, score, 50)
    davidson = fit_davidson(50, pairs)
    half = fit_bradley_terry(50, pairs)
    assert davidson.nu == pytest.approx(0.8, rel=0.15)
    # Half a win per tie shrinks every difference; Davidson keeps the true scale.
    slope_davidson = np.polyfit(theta, davidson.fit.mu, 1)[0]
    slope_half = np.polyfit(theta, half.mu, 1)[0]
    assert 0.85 < slope_davidson < 1.1
    assert slope_half < slope_davidson - 0.2
    assert np.std(davidson.fit.mu - theta) < np.std(half.mu - theta)


def test_fit_votes_uses_davidson_by_default_and_half_wins_on_request():
    ids = [10, 20, 30]
    first = [10, 10, 20, 10, 20]
    second = [20, 30, 30, 20, 30]
    winner = [10, 10, 20, float("nan"), float("nan")]
    davidson = fit_votes(ids, first, second, winner)
    half = fit_votes(ids, first, second, winner, ties="half")
    assert davidson.keys() == half.keys() == set(ids)
    assert davidson != half
    assert davidson[10][0] > davidson[20][0] > davidson[30][0]
