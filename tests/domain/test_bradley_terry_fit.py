import numpy as np
import pytest

from compere.domain.bayes import Prior
from compere.domain.bt import aggregate_votes, fit_bradley_terry, fit_votes


def synthetic(n, votes, seed):
    rng = np.random.default_rng(seed)
    theta = rng.normal(0, 1.5, n)
    a = rng.integers(0, n, votes)
    b = (a + rng.integers(1, n, votes)) % n
    p = 1 / (1 + np.exp(theta[b] - theta[a]))
    s = (rng.random(votes) < p).astype(float)
    return theta, a, b, s


def test_aggregation_counts_pairs_both_ways_and_ties_as_half():
    pairs = aggregate_votes([0, 1, 0, 2], [1, 0, 1, 0], [1.0, 1.0, 0.5, 0.0], 3)
    assert pairs.i.tolist() == [0, 0] and pairs.j.tolist() == [1, 2]
    assert pairs.n.tolist() == [3.0, 1.0]
    # 0 beat 1, 1 beat 0, tie: 1.5 wins for 0; 2 lost to 0: 1 win for 0
    assert pairs.wins_i.tolist() == [1.5, 1.0]


def test_fit_recovers_known_strengths():
    theta, a, b, s = synthetic(30, 6000, seed=3)
    fit = fit_bradley_terry(30, aggregate_votes(a, b, s, 30))
    centred = fit.mu - fit.mu.mean()
    assert np.abs(centred - (theta - theta.mean())).max() < 0.5
    assert np.corrcoef(fit.mu, theta)[0, 1] > 0.98
    covered = np.abs(fit.mu - theta) <= 1.96 * fit.se
    assert covered.mean() >= 0.85


def test_unbeaten_and_never_compared_entities_stay_finite():
    # 0 always wins, 3 never plays
    pairs = aggregate_votes([0, 0, 0, 1], [1, 2, 1, 2], [1, 1, 1, 1], 4)
    fit = fit_bradley_terry(4, pairs, prior=Prior(0.0, 1.5))
    assert np.all(np.isfinite(fit.mu)) and np.all(np.isfinite(fit.se))
    assert fit.mu[0] == fit.mu.max()
    assert fit.mu[3] == pytest.approx(0.0, abs=1e-6)
    assert fit.se[3] == pytest.approx(1.5, rel=1e-6)


def test_matrix_free_path_agrees_with_dense():
    _theta, a, b, s = synthetic(60, 900, seed=4)
    pairs = aggregate_votes(a, b, s, 60)
    dense = fit_bradley_terry(60, pairs)
    sparse = fit_bradley_terry(60, pairs, dense_limit=10)
    assert np.abs(dense.mu - sparse.mu).max() < 1e-6
    ratio = sparse.se / dense.se
    assert ratio.min() > 0.8 and ratio.max() < 1.2


def test_fit_votes_maps_ids_ties_and_deleted_entities():
    result = fit_votes(
        entity_ids=[10, 20, 30],
        entity1_ids=[10, 10, 20, 99],
        entity2_ids=[20, 30, 30, 10],
        selected_ids=[10, np.nan, 20, 99],
    )
    assert set(result) == {10, 20, 30}
    assert result[10][0] > result[30][0]
    assert all(se > 0 for _, se in result.values())
