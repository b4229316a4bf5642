"""Online Bayesian strength model: one Gaussian belief per entity, in logit units.

Each entity has a strength ``theta`` with belief ``Normal(mu, sigma^2)``. A vote
between entities 1 and 2 follows Bradley-Terry: ``P(1 beats 2) = 1/(1+e^(t2-t1))``.
A tie counts as half a win for each side, i.e. its likelihood is
``sqrt(P(1 beats 2) * P(2 beats 1))``.

``bayes_update`` is assumed density filtering (ADF): it multiplies the two
independent Gaussian beliefs by the exact Bradley-Terry likelihood of the vote and
projects the result back onto two independent Gaussians by matching the first two
moments. The likelihood depends only on ``d = t1 - t2``, so the moments are
one-dimensional integrals, computed with Gauss-Hermite quadrature. This is the
TrueSkill/Glicko family of updates, but without their linearisation error.

The prior of a new entity is ``Normal(mu0, sigma0^2)``, by default
``mu0 = 0`` and ``sigma0 = 1.5`` (:data:`DEFAULT_PRIOR`): a Bradley-Terry spread where
the strongest of a few hundred items beats the median one about 98 times in 100.

Everything here works on plain floats so the storage layer can run the update inside
the vote's transaction: lock both rows, read ``mu``/``sigma``, write the new values.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

Z95 = 1.959963984540054  # two-sided 95% normal quantile


class Prior(NamedTuple):
    """Belief about a brand-new entity's strength (logit units)."""

    mu0: float = 0.0
    sigma0: float = 1.5


DEFAULT_PRIOR = Prior()

# Gauss-Hermite rule (weight e^(-x^2)). 32 nodes give the posterior moments of the
# difference to ~1e-5 while both sigmas are at most 1.5 (the default prior) and to
# about 1% even when both are 5.
_GH_NODES, _GH_WEIGHTS = np.polynomial.hermite.hermgauss(32)
_NODES = [float(x) for x in _GH_NODES]
_WEIGHTS = [float(w / math.sqrt(math.pi)) for w in _GH_WEIGHTS]


class BayesUpdate(NamedTuple):
    """New beliefs of both entities after one comparison."""

    mu1: float
    sigma1: float
    mu2: float
    sigma2: float


def win_probability(mu1: float, sigma1: float, mu2: float, sigma2: float) -> float:
    """Predictive ``P(1 beats 2)``, averaging Bradley-Terry over both beliefs.

    Uses the probit approximation ``sigmoid(m / sqrt(1 + pi v / 8))``, accurate to
    about 0.02, which is plenty for choosing pairs.
    """
    m = mu1 - mu2
    v = sigma1 * sigma1 + sigma2 * sigma2
    z = m / math.sqrt(1.0 + math.pi * v / 8.0)
    return 1.0 / (1.0 + math.exp(-z)) if z >= -700 else 0.0


def difference_posterior(m: float, v: float, score1: float, weight: float = 1.0) -> tuple[float, float]:
    """Mean and variance of ``d = t1 - t2`` after observing ``score1`` (1, 0.5, 0).

    ``d`` has prior ``Normal(m, v)``; the likelihood is
    ``sigmoid(d)^score1 * sigmoid(-d)^(1-score1)``, raised to ``weight`` (a vote that
    counts as a fraction of one, :mod:`compere.domain.trust`).
    """
    sd = math.sqrt(2.0 * v)
    s0 = (1.0 - score1) * weight
    score1 = score1 * weight
    exp = math.exp
    log1p = math.log1p
    points = [m + sd * x for x in _NODES]
    # log sigmoid(d) = -log1p(e^-d) for d >= 0, d - log1p(e^d) otherwise; the log1p term
    # is computed once per node (the same value, so the same result, at half the cost).
    logs = []
    for d in points:
        if d >= 0.0:
            tail = log1p(exp(-d))
            logs.append(-score1 * tail + s0 * (-d - tail))
        else:
            tail = log1p(exp(d))
            logs.append(score1 * (d - tail) - s0 * tail)
    top = max(logs)
    z = m1 = m2 = 0.0
    for w, d, lg in zip(_WEIGHTS, points, logs, strict=True):
        q = w * exp(lg - top)
        z += q
        m1 += q * d
        m2 += q * d * d
    mean = m1 / z
    var = max(m2 / z - mean * mean, 1e-12 * v)
    return mean, min(var, v)


def bayes_update(
    mu1: float,
    sigma1: float,
    mu2: float,
    sigma2: float,
    score1: float,
    *,
    min_sigma: float = 0.05,
    weight: float = 1.0,
) -> BayesUpdate:
    """Beliefs after one vote where entity 1 scored ``score1`` (1 win, 0.5 tie, 0 loss).

    A winner's mean never falls and a loser's never rises; both sigmas shrink (never
    below ``min_sigma``, which keeps a long-running entity able to move). A tie moves
    the two means towards each other by equal amounts when the sigmas are equal.
    Swapping the entities and using ``1 - score1`` gives the mirrored result.
    ``weight`` (0 to 1) tempers the likelihood: the vote counts as that fraction of one
    vote, and a weight of 0 leaves both beliefs unchanged.
    """
    if not 0.0 <= score1 <= 1.0:
        raise ValueError("score1 must be between 0 and 1")
    if weight <= 0.0:
        return BayesUpdate(mu1, sigma1, mu2, sigma2)
    var1 = sigma1 * sigma1
    var2 = sigma2 * sigma2
    m = mu1 - mu2
    v = var1 + var2
    post_mean, post_var = difference_posterior(m, v, score1, weight)
    # Joint Gaussian prior with a likelihood in d only: the posterior moves each
    # entity along its covariance with d (var1 for entity 1, -var2 for entity 2).
    shift = (post_mean - m) / v
    shrink = (v - post_var) / (v * v)
    new_var1 = max(var1 - var1 * var1 * shrink, min_sigma * min_sigma)
    new_var2 = max(var2 - var2 * var2 * shrink, min_sigma * min_sigma)
    return BayesUpdate(
        mu1 + var1 * shift,
        math.sqrt(new_var1),
        mu2 - var2 * shift,
        math.sqrt(new_var2),
    )


def interval95(mu: float, sigma: float) -> tuple[float, float]:
    """Central 95% credible interval of a strength."""
    return mu - Z95 * sigma, mu + Z95 * sigma
