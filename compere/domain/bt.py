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

from typing import NamedTuple

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


def _log_posterior(theta: FloatArray, pairs: PairCounts, prior: Prior, nu: float = 0.0) -> float:
    d = theta[pairs.i] - theta[pairs.j]
    # (wins_i - wins_j) d / 2 - n log Z: ties counted half on each side cancel out, so with
    # nu = 0 this is the Bradley-Terry likelihood with half wins, with nu > 0 Davidson's.
    ll = (2.0 * pairs.wins_i - pairs.n) * 0.5 * d - pairs.n * _log_z(d, nu)
    return float(ll.sum() - 0.5 * np.sum((theta - prior.mu0) ** 2) / prior.sigma0**2)


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


def _curvature(
    theta: FloatArray, pairs: PairCounts, n_entities: int, lam: float, nu: float = 0.0
) -> tuple[FloatArray, FloatArray]:
    """Per-pair Fisher weights (``n p (1 - p)`` for Bradley-Terry, ``n (P_i + P_j -
    (P_i - P_j)^2) / 4`` for Davidson) and the diagonal of the negative Hessian."""
    p_i, p_j = _outcome_probabilities(theta[pairs.i] - theta[pairs.j], nu)
    c = pairs.n * (p_i + p_j - (p_i - p_j) ** 2) / 4.0
    diag = (
        np.bincount(pairs.i, weights=c, minlength=n_entities)
        + np.bincount(pairs.j, weights=c, minlength=n_entities)
        + lam
    )
    return c, diag


def _dense_hessian(pairs: PairCounts, c: FloatArray, diag: FloatArray) -> FloatArray:
    """The negative Hessian as a dense matrix: the weighted graph Laplacian plus the prior."""
    hess = np.diag(diag)
    hess[pairs.i, pairs.j] -= c
    hess[pairs.j, pairs.i] -= c
    return hess


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
) -> BTFit:
    """MAP Bradley-Terry strengths with Laplace standard errors.

    ``start`` (optional) warm-starts Newton, e.g. from the online means. ``nu`` > 0 fits
    Davidson's tie model with that tie parameter instead (see :func:`fit_davidson`).
    """
    if n_entities < 1:
        raise ValueError("need at least one entity")
    lam = 1.0 / prior.sigma0**2
    theta = (
        np.full(n_entities, prior.mu0, dtype=np.float64)
        if start is None
        else np.array(start, dtype=np.float64)
    )
    pi, pj = pairs.i, pairs.j
    dense = n_entities <= dense_limit
    iterations = 0
    current = _log_posterior(theta, pairs, prior, nu)
    c = np.zeros(0)
    for _ in range(max_iter):
        iterations += 1
        p_i, p_j = _outcome_probabilities(theta[pi] - theta[pj], nu)
        # d/dd of the log-likelihood; with nu = 0 it is wins_i - n p
        resid = pairs.wins_i - 0.5 * pairs.n * (1.0 + p_i - p_j)
        grad = (
            np.bincount(pi, weights=resid, minlength=n_entities)
            - np.bincount(pj, weights=resid, minlength=n_entities)
            - lam * (theta - prior.mu0)
        )
        c, diag = _curvature(theta, pairs, n_entities, lam, nu)
        if dense:
            step = np.linalg.solve(_dense_hessian(pairs, c, diag), grad)
        else:
            cc = c

            def matvec(x: FloatArray, cc: FloatArray = cc, diag: FloatArray = diag) -> FloatArray:
                return (
                    diag * x
                    - np.bincount(pi, weights=cc * x[pj], minlength=n_entities)
                    - np.bincount(pj, weights=cc * x[pi], minlength=n_entities)
                )

            step = _cg(matvec, grad, diag, 1e-8, 300)  # inexact Newton is enough
        # Newton on a concave objective; halve the step if it ever overshoots.
        t = 1.0
        while True:
            candidate = theta + t * step
            value = _log_posterior(candidate, pairs, prior, nu)
            if value >= current - 1e-12 or t < 1e-4:
                break
            t *= 0.5
        theta = candidate
        improvement = value - current
        current = value
        if float(np.max(np.abs(t * step), initial=0.0)) < tol or improvement < tol * 1e-3:
            break

    c, diag = _curvature(theta, pairs, n_entities, lam, nu)
    if dense:
        cov = np.linalg.inv(_dense_hessian(pairs, c, diag))
        var = np.diag(cov).copy()
        # Var(t_i - mean t) = C_ii - 2 mean_j C_ij + mean C
        row = cov.mean(axis=1)
        relative = np.maximum(var - 2.0 * row + row.mean(), 0.0)
    else:
        relative = approximate_marginal_variance(n_entities, pi, pj, c, lam)
        # Plus the uncertainty of the overall level, which only the prior pins down.
        var = relative + 1.0 / (lam * n_entities)
    return BTFit(theta, np.sqrt(var), iterations, np.sqrt(relative))


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
) -> DavidsonFit:
    """Strengths under Davidson's tie model, ties as evidence of closeness.

    ``P(i wins) = e^(d/2) / Z``, ``P(tie) = nu / Z``, ``Z = e^(d/2) + e^(-d/2) + nu`` with
    ``d = t_i - t_j``: the same logit scale as Bradley-Terry (``nu = 0`` is exactly the
    Bradley-Terry fit), and a tie says the two are close instead of counting as half a win
    each, which a lopsided pair's tie would otherwise turn into a near-upset. ``nu`` is
    fitted by maximum likelihood, alternating with the strengths (a few rounds of
    Newton on ``log nu``). Without ties ``nu`` is 0 and this is :func:`fit_bradley_terry`.
    """
    ties = pairs.ties if pairs.ties is not None else np.zeros_like(pairs.n)
    total_ties = float(ties.sum())
    if total_ties <= 0.0:
        return DavidsonFit(
            fit_bradley_terry(n_entities, pairs, prior=prior, dense_limit=dense_limit, start=start), 0.0
        )
    # Start from the share of ties among votes between (nearly) equal sides: P(tie) = nu / (2 + nu).
    share = min(total_ties / float(pairs.n.sum()), 0.99)
    log_nu = float(np.log(2.0 * share / (1.0 - share)))
    fit = fit_bradley_terry(
        n_entities, pairs, prior=prior, dense_limit=dense_limit, start=start, nu=float(np.exp(log_nu))
    )
    for _ in range(rounds):
        d = fit.mu[pairs.i] - fit.mu[pairs.j]
        both = np.logaddexp(0.5 * d, -0.5 * d)
        for _ in range(5):  # Newton on log nu, the strengths held
            p_tie = np.exp(log_nu - np.logaddexp(both, log_nu))
            grad = total_ties - float(np.sum(pairs.n * p_tie))
            curv = float(np.sum(pairs.n * p_tie * (1.0 - p_tie)))
            log_nu += grad / max(curv, 1e-12)
        previous = fit.mu
        fit = fit_bradley_terry(
            n_entities, pairs, prior=prior, dense_limit=dense_limit, start=previous, nu=float(np.exp(log_nu))
        )
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


def fit_votes(
    entity_ids: ArrayLike,
    entity1_ids: ArrayLike,
    entity2_ids: ArrayLike,
    selected_ids: ArrayLike,
    *,
    prior: Prior = DEFAULT_PRIOR,
    dense_limit: int = 2000,
    ties: str = "davidson",
    weights: ArrayLike | None = None,
) -> dict[int, tuple[float, float]]:
    """Fit the whole log given as entity ids; returns ``{id: (score, se)}``.

    ``weights`` (optional) gives what each vote counts for.

    ``selected_ids[k]`` is the winner's id, or a negative number / NaN for a tie
    (``selected_entity_id`` null: a tie or a both-bad verdict). Votes that mention an id
    not in ``entity_ids`` (e.g. a deleted entity) are ignored. ``ties="davidson"`` (the
    default) fits ties by Davidson's model, ``"half"`` counts them as half a win each.
    """
    found = fit_votes_relative(
        entity_ids,
        entity1_ids,
        entity2_ids,
        selected_ids,
        prior=prior,
        dense_limit=dense_limit,
        ties=ties,
        weights=weights,
    )
    return {k: (score, se) for k, (score, se, _) in found.items()}


def fit_votes_relative(
    entity_ids: ArrayLike,
    entity1_ids: ArrayLike,
    entity2_ids: ArrayLike,
    selected_ids: ArrayLike,
    *,
    prior: Prior = DEFAULT_PRIOR,
    dense_limit: int = 2000,
    ties: str = "davidson",
    weights: ArrayLike | None = None,
) -> dict[int, tuple[float, float, float]]:
    """:func:`fit_votes` with the standard error relative to the board's mean as well:
    ``{id: (score, se, se_relative)}``."""
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
        fit = fit_davidson(ids.size, pairs, prior=prior, dense_limit=dense_limit).fit
    else:
        fit = fit_bradley_terry(ids.size, pairs, prior=prior, dense_limit=dense_limit)
    relative = fit.se if fit.se_relative is None else fit.se_relative
    return {
        int(k): (float(m), float(s), float(r))
        for k, m, s, r in zip(ids, fit.mu, fit.se, relative, strict=True)
    }
