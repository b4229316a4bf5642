"""Offline Bradley-Terry fit of the whole vote log, with 95% intervals.

The model: ``P(i beats j) = 1/(1+e^(t_j-t_i))``, ties count half a win for each
(:func:`fit_davidson` and :func:`fit_votes` by default fit Davidson's tie model instead),
and a Gaussian prior ``t_i ~ Normal(mu0, sigma0^2)`` on every strength (the same
prior as the online model, :data:`compere.domain.bayes.DEFAULT_PRIOR`). The prior
keeps disconnected, unbeaten or never-compared entities finite (they sit at or near
``mu0`` with a wide interval) and makes the fit the posterior mode (MAP).

Steps:
1. :func:`aggregate_votes` turns the log into one row per unordered pair:
   ``(i, j, n_ij, wins of i)``. This is the only step that scales with the number
   of votes; the rest scales with the number of distinct pairs.
2. :func:`fit_bradley_terry` runs Newton's method on the log posterior. The
   Hessian is the comparison graph's weighted Laplacian plus ``1/sigma0^2`` on the
   diagonal: dense Cholesky up to ``dense_limit`` entities, matrix-free conjugate
   gradients beyond.
3. Standard errors come from the Laplace approximation, the diagonal of the
   inverse Hessian at the mode: exact (dense) up to ``dense_limit`` entities;
   beyond that, an approximation that treats each opponent's own uncertainty as
   noise on the link (``prec_i = 1/sigma0^2 + sum_j c_ij / (1 + c_ij var_j)``,
   iterated, plus the level term ``sigma0^2 / N``), which is exact on trees and
   close on sparse graphs.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from compere.domain.bayes import DEFAULT_PRIOR, Z95, Prior

# numpy's dtype-level typing fights ordinary arithmetic; the dtypes are documented instead.
FloatArray = np.ndarray  # float64
IntArray = np.ndarray  # int64


class PairCounts(NamedTuple):
    """Votes aggregated per unordered pair ``i < j`` (indices, not entity ids)."""

    i: IntArray
    j: IntArray
    n: FloatArray  # comparisons between i and j
    wins_i: FloatArray  # i's wins, ties counting half
    ties: FloatArray | None = None  # ties between i and j (None: not counted apart)


class BTFit(NamedTuple):
    """Posterior mode and Laplace standard error per entity (logit units)."""

    mu: FloatArray
    se: FloatArray
    iterations: int
    # Standard error of each strength relative to the board's mean: the marginal without
    # the uncertainty of the overall level, which only the prior pins down and which
    # shifts every strength together (ranks do not see it).
    se_relative: FloatArray | None = None
    # With covariates: each one's coefficient (logits per unit of the covariate) and its
    # Laplace standard error; ``mu`` is then each strength with the covariates taken out.
    beta: FloatArray | None = None
    beta_se: FloatArray | None = None

    def lower95(self) -> FloatArray:
        return self.mu - Z95 * self.se

    def upper95(self) -> FloatArray:
        return self.mu + Z95 * self.se


def aggregate_votes(
    first: ArrayLike,
    second: ArrayLike,
    score_first: ArrayLike,
    n_entities: int,
    weights: ArrayLike | None = None,
) -> PairCounts:
    """Aggregate votes given as index arrays into per-pair counts.

    ``first[k]`` and ``second[k]`` are entity indices in ``range(n_entities)``;
    ``score_first[k]`` is 1 if ``first`` won, 0 if ``second`` won, 0.5 for a tie.
    ``weights[k]`` (optional, default 1) is what vote ``k`` counts for
    (:func:`compere.domain.trust.board_weights`).
    """
    a = np.asarray(first, dtype=np.int64)
    b = np.asarray(second, dtype=np.int64)
    s = np.asarray(score_first, dtype=np.float64)
    if not (a.shape == b.shape == s.shape):
        raise ValueError("first, second and score_first must have the same length")
    if a.size and (min(a.min(), b.min()) < 0 or max(a.max(), b.max()) >= n_entities):
        raise ValueError("entity index out of range")
    if np.any(a == b):
        raise ValueError("an entity cannot be compared with itself")
    lo = np.minimum(a, b)
    hi = np.maximum(a, b)
    lo_score = np.where(a == lo, s, 1.0 - s)
    key = lo * n_entities + hi
    keys, inverse = np.unique(key, return_inverse=True)
    tied = (s == 0.5).astype(np.float64)
    if weights is None:
        n: FloatArray = np.bincount(inverse, minlength=keys.size).astype(np.float64)
        wins = np.bincount(inverse, weights=lo_score, minlength=keys.size)
        ties = np.bincount(inverse, weights=tied, minlength=keys.size)
    else:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != a.shape:
            raise ValueError("weights must have one entry per vote")
        n = np.bincount(inverse, weights=w, minlength=keys.size)
        wins = np.bincount(inverse, weights=lo_score * w, minlength=keys.size)
        ties = np.bincount(inverse, weights=tied * w, minlength=keys.size)
    return PairCounts(keys // n_entities, keys % n_entities, n, wins, ties)


def _log_z(d: FloatArray, nu: float) -> FloatArray:
    """``log(e^(d/2) + e^(-d/2) + nu)``: the normaliser of Davidson's model (nu 0: Bradley-Terry)."""
    both = np.logaddexp(0.5 * d, -0.5 * d)
    return both if nu <= 0.0 else np.logaddexp(both, np.log(nu))


def _outcome_probabilities(d: FloatArray, nu: float) -> tuple[FloatArray, FloatArray]:
    """``P(i wins)`` and ``P(j wins)`` for strength differences ``d`` (the rest is a tie)."""
    log_z = _log_z(d, nu)
    return np.exp(0.5 * d - log_z), np.exp(-0.5 * d - log_z)


class _Model(NamedTuple):
    """The pairs and, with covariates, each pair's covariate difference ``z_i - z_j``."""

    pairs: PairCounts
    n_entities: int
    diff: FloatArray  # (pairs, covariates); no columns without covariates
    lam: float  # prior precision of the strengths
    lam_beta: float  # prior precision of the coefficients

    def split(self, x: FloatArray) -> tuple[FloatArray, FloatArray]:
        return x[: self.n_entities], x[self.n_entities :]

    def differences(self, x: FloatArray) -> FloatArray:
        """Per pair, the linear predictor ``t_i - t_j + beta . (z_i - z_j)``."""
        theta, beta = self.split(x)
        d = theta[self.pairs.i] - theta[self.pairs.j]
        return d + self.diff @ beta if beta.size else d

    def spread(self, per_pair: FloatArray) -> FloatArray:
        """The transpose of :meth:`differences`: pair quantities back onto the parameters."""
        n, pairs = self.n_entities, self.pairs
        by_entity = np.bincount(pairs.i, weights=per_pair, minlength=n) - np.bincount(
            pairs.j, weights=per_pair, minlength=n
        )
        return np.concatenate([by_entity, self.diff.T @ per_pair]) if self.diff.shape[1] else by_entity

    def prior_precision(self) -> FloatArray:
        return np.concatenate(
            [np.full(self.n_entities, self.lam), np.full(self.diff.shape[1], self.lam_beta)]
        )


def _log_posterior(x: FloatArray, model: _Model, prior: Prior, nu: float = 0.0) -> float:
    pairs = model.pairs
    d = model.differences(x)
    theta, beta = model.split(x)
    # (wins_i - wins_j) d / 2 - n log Z: ties counted half on each side cancel out, so with
    # nu = 0 this is the Bradley-Terry likelihood with half wins, with nu > 0 Davidson's.
    ll = (2.0 * pairs.wins_i - pairs.n) * 0.5 * d - pairs.n * _log_z(d, nu)
    return float(
        ll.sum()
        - 0.5 * np.sum((theta - prior.mu0) ** 2) / prior.sigma0**2
        - 0.5 * model.lam_beta * float(beta @ beta)
    )


def _cg(matvec, rhs: FloatArray, diag: FloatArray, tol: float, max_iter: int) -> FloatArray:
    """Diagonally preconditioned conjugate gradients for a positive definite system."""
    x = np.zeros_like(rhs)
    r = rhs.copy()
    z = r / diag
    p = z.copy()
    rz = float(r @ z)
    stop = tol * float(np.linalg.norm(rhs))
    for _ in range(max_iter):
        hp = matvec(p)
        alpha = rz / float(p @ hp)
        x += alpha * p
        r -= alpha * hp
        if float(np.linalg.norm(r)) <= stop:
            break
        z = r / diag
        rz_new = float(r @ z)
        p = z + (rz_new / rz) * p
        rz = rz_new
    return x


def _curvature(x: FloatArray, model: _Model, nu: float = 0.0) -> tuple[FloatArray, FloatArray]:
    """Per-pair Fisher weights (``n p (1 - p)`` for Bradley-Terry, ``n (P_i + P_j -
    (P_i - P_j)^2) / 4`` for Davidson) and the diagonal of the negative Hessian."""
    pairs, n = model.pairs, model.n_entities
    p_i, p_j = _outcome_probabilities(model.differences(x), nu)
    c = pairs.n * (p_i + p_j - (p_i - p_j) ** 2) / 4.0
    diag = np.concatenate(
        [
            np.bincount(pairs.i, weights=c, minlength=n) + np.bincount(pairs.j, weights=c, minlength=n),
            (c[:, None] * model.diff**2).sum(axis=0),
        ]
    )
    return c, diag + model.prior_precision()


def _dense_hessian(model: _Model, c: FloatArray, diag: FloatArray) -> FloatArray:
    """The negative Hessian as a dense matrix: the weighted graph Laplacian plus the
    prior, bordered by the covariate blocks when there are covariates."""
    pairs, n = model.pairs, model.n_entities
    hess = np.diag(diag)
    hess[pairs.i, pairs.j] -= c
    hess[pairs.j, pairs.i] -= c
    k = model.diff.shape[1]
    if k:
        weighted = c[:, None] * model.diff
        cross = np.zeros((n, k))
        np.add.at(cross, pairs.i, weighted)
        np.subtract.at(cross, pairs.j, weighted)
        hess[:n, n:] = cross
        hess[n:, :n] = cross.T
        hess[n:, n:] = model.diff.T @ weighted + model.lam_beta * np.eye(k)
    return hess


def _hessian_product(model: _Model, c: FloatArray, x: FloatArray) -> FloatArray:
    """The negative Hessian times ``x`` without forming it (``J^T C J x`` plus the prior)."""
    return model.spread(c * model.differences(x)) + model.prior_precision() * x


# The coefficients' prior: Normal(0, 10^2) per standard deviation of a covariate, next to
# nothing against the data, so the coefficients take what the covariates explain.
BETA_PRIOR_SD = 10.0


def fit_bradley_terry(
    n_entities: int,
    pairs: PairCounts,
    *,
    prior: Prior = DEFAULT_PRIOR,
    tol: float = 1e-7,
    max_iter: int = 50,
    dense_limit: int = 2000,
    start: ArrayLike | None = None,
    nu: float = 0.0,
    covariates: ArrayLike | None = None,
) -> BTFit:
    """MAP Bradley-Terry strengths with Laplace standard errors.

    ``start`` (optional) warm-starts Newton, e.g. from the online means. ``nu`` > 0 fits
    Davidson's tie model with that tie parameter instead (see :func:`fit_davidson`).
    ``covariates`` (optional, ``(n_entities, k)``) adds ``beta . (z_i - z_j)`` to every
    strength difference and fits ``beta`` with the strengths (style control,
    :mod:`compere.domain.covariates`); the strengths are then what the covariates do not
    explain.
    """
    if n_entities < 1:
        raise ValueError("need at least one entity")
    z = np.zeros((n_entities, 0)) if covariates is None else np.asarray(covariates, dtype=np.float64)
    if z.shape[0] != n_entities:
        raise ValueError("covariates need one row per entity")
    k = z.shape[1]
    model = _Model(pairs, n_entities, z[pairs.i] - z[pairs.j], 1.0 / prior.sigma0**2, 1.0 / BETA_PRIOR_SD**2)
    x = np.zeros(n_entities + k)
    x[:n_entities] = prior.mu0 if start is None else np.asarray(start, dtype=np.float64)
    dense = n_entities <= dense_limit
    iterations = 0
    current = _log_posterior(x, model, prior, nu)
    for _ in range(max_iter):
        iterations += 1
        p_i, p_j = _outcome_probabilities(model.differences(x), nu)
        # d/dd of the log-likelihood; with nu = 0 it is wins_i - n p
        resid = pairs.wins_i - 0.5 * pairs.n * (1.0 + p_i - p_j)
        prior_pull = model.prior_precision() * (
            x - np.concatenate([np.full(n_entities, prior.mu0), np.zeros(k)])
        )
        grad = model.spread(resid) - prior_pull
        c, diag = _curvature(x, model, nu)
        if dense:
            step = np.linalg.solve(_dense_hessian(model, c, diag), grad)
        else:

            def matvec(v: FloatArray, c: FloatArray = c) -> FloatArray:
                return _hessian_product(model, c, v)

            step = _cg(matvec, grad, diag, 1e-8, 300)  # inexact Newton is enough
        # Newton on a concave objective; halve the step if it ever overshoots.
        t = 1.0
        while True:
            candidate = x + t * step
            value = _log_posterior(candidate, model, prior, nu)
            if value >= current - 1e-12 or t < 1e-4:
                break
            t *= 0.5
        x = candidate
        improvement = value - current
        current = value
        if float(np.max(np.abs(t * step), initial=0.0)) < tol or improvement < tol * 1e-3:
            break

    c, diag = _curvature(x, model, nu)
    theta, beta = model.split(x)
    lam = model.lam
    beta_var = np.zeros(k)
    if dense:
        full = np.linalg.inv(_dense_hessian(model, c, diag))
        cov = full[:n_entities, :n_entities]
        var = np.diag(cov).copy()
        beta_var = np.diag(full)[n_entities:].copy()
        # Var(t_i - mean t) = C_ii - 2 mean_j C_ij + mean C
        row = cov.mean(axis=1)
        relative = np.maximum(var - 2.0 * row + row.mean(), 0.0)
    else:
        relative = approximate_marginal_variance(n_entities, pairs.i, pairs.j, c, lam)
        # Plus the uncertainty of the overall level, which only the prior pins down.
        var = relative + 1.0 / (lam * n_entities)
        if k:
            beta_var = _coefficient_variance(model, c, diag)
    if not k:
        return BTFit(theta, np.sqrt(var), iterations, np.sqrt(relative))
    return BTFit(theta, np.sqrt(var), iterations, np.sqrt(relative), beta, np.sqrt(beta_var))


def _coefficient_variance(model: _Model, c: FloatArray, diag: FloatArray) -> FloatArray:
    """The coefficients' marginal variances on a board too large for a dense inverse:
    the inverse of the Schur complement ``H_bb - H_bt H_tt^-1 H_tb``, one conjugate
    gradient solve of the strengths' block per covariate."""
    n, k = model.n_entities, model.diff.shape[1]
    weighted = c[:, None] * model.diff
    cross = np.zeros((n, k))
    np.add.at(cross, model.pairs.i, weighted)
    np.subtract.at(cross, model.pairs.j, weighted)
    strengths_only = model._replace(diff=np.zeros((model.diff.shape[0], 0)))

    def matvec(v: FloatArray) -> FloatArray:
        return _hessian_product(strengths_only, c, v)

    solved = np.column_stack([_cg(matvec, cross[:, col], diag[:n], 1e-10, 1000) for col in range(k)])
    schur = model.diff.T @ weighted + model.lam_beta * np.eye(k) - cross.T @ solved
    return np.diag(np.linalg.inv(schur)).copy()


class DavidsonFit(NamedTuple):
    """A Davidson fit: strengths as in :class:`BTFit` plus the tie parameter ``nu``."""

    fit: BTFit
    nu: float


def fit_davidson(
    n_entities: int,
    pairs: PairCounts,
    *,
    prior: Prior = DEFAULT_PRIOR,
    dense_limit: int = 2000,
    start: ArrayLike | None = None,
    rounds: int = 20,
    covariates: ArrayLike | None = None,
) -> DavidsonFit:
    """Strengths under Davidson's tie model, ties as evidence of closeness.

    ``P(i wins) = e^(d/2) / Z``, ``P(tie) = nu / Z``, ``Z = e^(d/2) + e^(-d/2) + nu`` with
    ``d = t_i - t_j``: the same logit scale as Bradley-Terry (``nu = 0`` is exactly the
    Bradley-Terry fit), and a tie says the two are close instead of counting as half a win
    each, which a lopsided pair's tie would otherwise turn into a near-upset. ``nu`` is
    fitted by maximum likelihood, alternating with the strengths (a few rounds of
    Newton on ``log nu``). Without ties ``nu`` is 0 and this is :func:`fit_bradley_terry`.
    ``covariates`` as for :func:`fit_bradley_terry`.
    """

    def refit(begin: ArrayLike | None, nu: float) -> BTFit:
        return fit_bradley_terry(
            n_entities, pairs, prior=prior, dense_limit=dense_limit, start=begin, nu=nu, covariates=covariates
        )

    ties = pairs.ties if pairs.ties is not None else np.zeros_like(pairs.n)
    total_ties = float(ties.sum())
    if total_ties <= 0.0:
        return DavidsonFit(refit(start, 0.0), 0.0)
    # Start from the share of ties among votes between (nearly) equal sides: P(tie) = nu / (2 + nu).
    share = min(total_ties / float(pairs.n.sum()), 0.99)
    log_nu = float(np.log(2.0 * share / (1.0 - share)))
    fit = refit(start, float(np.exp(log_nu)))
    diff = None if covariates is None else np.asarray(covariates, dtype=np.float64)
    for _ in range(rounds):
        d = fit.mu[pairs.i] - fit.mu[pairs.j]
        if diff is not None and fit.beta is not None:
            d = d + (diff[pairs.i] - diff[pairs.j]) @ fit.beta
        both = np.logaddexp(0.5 * d, -0.5 * d)
        for _ in range(5):  # Newton on log nu, the strengths held
            p_tie = np.exp(log_nu - np.logaddexp(both, log_nu))
            grad = total_ties - float(np.sum(pairs.n * p_tie))
            curv = float(np.sum(pairs.n * p_tie * (1.0 - p_tie)))
            log_nu += grad / max(curv, 1e-12)
        previous = fit.mu
        fit = refit(previous, float(np.exp(log_nu)))
        if float(np.max(np.abs(fit.mu - previous), initial=0.0)) < 1e-6:
            break
    return DavidsonFit(fit, float(np.exp(log_nu)))


def approximate_marginal_variance(
    n_entities: int,
    pi: IntArray,
    pj: IntArray,
    c: FloatArray,
    lam: float,
    sweeps: int = 20,
) -> FloatArray:
    """Marginal variances without inverting the Hessian (see the module docstring)."""
    var = 1.0 / (
        np.bincount(pi, weights=c, minlength=n_entities)
        + np.bincount(pj, weights=c, minlength=n_entities)
        + lam
    )
    for _ in range(sweeps):
        prec = (
            lam
            + np.bincount(pi, weights=c / (1.0 + c * var[pj]), minlength=n_entities)
            + np.bincount(pj, weights=c / (1.0 + c * var[pi]), minlength=n_entities)
        )
        new = 1.0 / prec
        if np.max(np.abs(new - var)) < 1e-9:
            var = new
            break
        var = new
    return var


def fit_vote_log(
    entity_ids: ArrayLike,
    entity1_ids: ArrayLike,
    entity2_ids: ArrayLike,
    selected_ids: ArrayLike,
    *,
    prior: Prior = DEFAULT_PRIOR,
    dense_limit: int = 2000,
    ties: str = "davidson",
    weights: ArrayLike | None = None,
    covariates: ArrayLike | None = None,
) -> BTFit:
    """Fit the whole log given as entity ids; the fit's arrays follow ``entity_ids``.

    ``selected_ids[k]`` is the winner's id, or a negative number / NaN for a tie
    (``selected_entity_id`` null: a tie or a both-bad verdict). Votes that mention an id
    not in ``entity_ids`` (e.g. a deleted entity) are ignored. ``ties="davidson"`` (the
    default) fits ties by Davidson's model, ``"half"`` counts them as half a win each.
    ``weights`` (optional) gives what each vote counts for; ``covariates`` (optional, one
    row per entity) are controlled for (:func:`fit_bradley_terry`).
    """
    ids = np.asarray(entity_ids, dtype=np.int64)
    order = np.argsort(ids)
    sorted_ids = ids[order]
    e1 = np.asarray(entity1_ids, dtype=np.int64)
    e2 = np.asarray(entity2_ids, dtype=np.int64)
    sel = np.asarray(selected_ids, dtype=np.float64)

    def index_of(x: IntArray) -> tuple[IntArray, NDArray[np.bool_]]:
        pos = np.searchsorted(sorted_ids, x)
        pos = np.clip(pos, 0, max(sorted_ids.size - 1, 0))
        found = sorted_ids[pos] == x if sorted_ids.size else np.zeros(x.shape, bool)
        return order[pos], found

    a, ok1 = index_of(e1)
    b, ok2 = index_of(e2)
    keep = ok1 & ok2 & (e1 != e2)
    score = np.where(sel == e1, 1.0, np.where(sel == e2, 0.0, 0.5))
    w = None if weights is None else np.asarray(weights, dtype=np.float64)[keep]
    pairs = aggregate_votes(a[keep], b[keep], score[keep], ids.size, w)
    if ties == "davidson":
        return fit_davidson(ids.size, pairs, prior=prior, dense_limit=dense_limit, covariates=covariates).fit
    return fit_bradley_terry(ids.size, pairs, prior=prior, dense_limit=dense_limit, covariates=covariates)


def fit_votes(
    entity_ids: ArrayLike,
    entity1_ids: ArrayLike,
    entity2_ids: ArrayLike,
    selected_ids: ArrayLike,
    **options: Any,
) -> dict[int, tuple[float, float]]:
    """:func:`fit_vote_log` (same arguments) as ``{id: (score, se)}``."""
    fit = fit_vote_log(entity_ids, entity1_ids, entity2_ids, selected_ids, **options)
    return {
        int(k): (float(m), float(s)) for k, m, s in zip(np.asarray(entity_ids), fit.mu, fit.se, strict=True)
    }
