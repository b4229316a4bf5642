"""The Bradley-Terry fit with covariates (style control), without I/O."""

from __future__ import annotations

import numpy as np
import pytest

from compere.domain.bt import fit_vote_log
from compere.domain.covariates import DesignError, check_attributes, design, parse_names


def _biased_log(seed: int, n: int = 40, votes: int = 4000, bias: float = 0.8):
    rng = np.random.default_rng(seed)
    quality = rng.normal(0.0, 1.0, n)
    length = np.exp(rng.normal(6.0, 0.5, n))
    z = design([{"length": float(x)} for x in length], ["length"]).z
    first = rng.integers(0, n, votes)
    second = (first + rng.integers(1, n, votes)) % n
    p = 1.0 / (1.0 + np.exp(-(quality[first] - quality[second] + bias * (z[first, 0] - z[second, 0]))))
    winner = np.where(rng.random(votes) < p, first, second).astype(float)
    winner[::9] = np.nan  # some ties: Davidson's model with the covariates
    return np.arange(n), first, second, winner, z


def test_the_coefficient_is_recovered_and_dense_and_matrix_free_fits_agree():
    ids, first, second, winner, z = _biased_log(seed=3)
    dense = fit_vote_log(ids, first, second, winner, covariates=z)
    sparse = fit_vote_log(ids, first, second, winner, covariates=z, dense_limit=10)
    assert dense.beta is not None and dense.beta_se is not None
    assert sparse.beta is not None and sparse.beta_se is not None
    assert abs(dense.beta[0] - 0.8) < 2 * dense.beta_se[0]
    assert np.allclose(dense.mu, sparse.mu, atol=1e-5)
    assert np.allclose(dense.beta, sparse.beta, atol=1e-5)
    assert np.allclose(dense.beta_se, sparse.beta_se, rtol=1e-3)


def test_without_covariates_the_fit_is_unchanged_and_has_no_coefficients():
    ids, first, second, winner, _ = _biased_log(seed=4)
    plain = fit_vote_log(ids, first, second, winner)
    empty = fit_vote_log(ids, first, second, winner, covariates=np.zeros((ids.size, 0)))
    assert plain.beta is None and empty.beta is None
    assert np.array_equal(plain.mu, empty.mu)


def test_design_standardises_imputes_and_refuses_what_cannot_be_fitted():
    found = design([{"length": 1.0}, {"length": 3.0}, {}], ["length"])
    assert found.z[:, 0].tolist() == [-1.0, 1.0, 0.0]
    assert found.imputed == [[], [], ["length"]]
    with pytest.raises(DesignError, match="no entity"):
        design([{"length": 1.0}], ["words"])
    with pytest.raises(DesignError, match="same value"):
        design([{"length": 1.0}, {"length": 1.0}], ["length"])


def test_names_and_values_are_checked():
    assert check_attributes({"a_1": 2, "b": 0.5}) == {"a_1": 2.0, "b": 0.5}
    assert parse_names(" length , headers,length") == ["length", "headers"]
    for bad in ({"A": 1}, {"a": float("nan")}, {"a": 10**400}, {"a": "1"}, {"a": False}):
        with pytest.raises(ValueError):
            check_attributes(bad)
