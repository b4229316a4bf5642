"""Checks of what a board says it does not know (compere.domain.honesty), in simulation.

The same world as bench/ranking_sim.py: N items with hidden strengths N(0, 1.5^2),
Bradley-Terry votes on the pairs a strategy serves (the real candidate plan and
selector), the online Bayesian model and the offline Bradley-Terry fit. It measures:

- rank-interval coverage: the share of entities whose true rank lies inside the
  95% rank interval, for the fitted and the online board, at 1, 2, 4 and 8 N votes
  (target: at least 0.90);
- the calibration of ``expected_tau``: its mean against the measured tau at the same
  checkpoints;
- the votes-needed estimate: at 2 N and 4 N the estimate of the votes still needed for
  tau 0.8 (``votes_to_tau`` with the strategy's information per vote), against the
  votes the run actually needed (its fitted board's tau first reaching 0.8, N/4
  resolution); target: within 25%. Reported as the ratio of the seed means and the
  share of seeds within 25%.

    python -m bench.honesty_sim --n 200 --seeds 20
"""

from __future__ import annotations

import argparse
import collections
import math
import os
import random
import sys
import time

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

from bench.ranking_sim import RunConfig, _select, kendall_tau  # noqa: E402
from compere.domain import honesty  # noqa: E402
from compere.domain.bayes import DEFAULT_PRIOR, bayes_update  # noqa: E402
from compere.domain.bt import aggregate_votes, fit_bradley_terry  # noqa: E402

COVERAGE_AT = (1, 2, 4, 8)
PREDICT_AT = (2, 4)
TARGET = 0.8


def true_ranks(theta: np.ndarray) -> np.ndarray:
    ranks = np.empty(theta.size, dtype=np.int64)
    ranks[np.argsort(-theta)] = np.arange(1, theta.size + 1)
    return ranks


def covered(theta: np.ndarray, mu: np.ndarray, se: np.ndarray) -> float:
    lower, upper = honesty.rank_intervals(mu, se)
    truth = true_ranks(theta)
    return float(np.mean((lower <= truth) & (truth <= upper)))


def run(n: int, seed: int, strategy: str, max_budget: int, factors: tuple[float, ...] = (1.0,)) -> dict:
    cfg = RunConfig(n=n, seed=seed, strategy=strategy, refit=False, max_budget=max_budget)
    nrng = np.random.default_rng(seed)
    rng = random.Random(seed)
    theta = nrng.normal(0.0, 1.5, n)
    ids = list(range(n))
    mu = np.full(n, DEFAULT_PRIOR.mu0)
    sigma = np.full(n, DEFAULT_PRIOR.sigma0)
    rating = np.full(n, 1500.0)
    comparisons = np.zeros(n, dtype=np.int64)
    wins = np.zeros(n)
    recent: dict[int, collections.deque[int]] = {i: collections.deque(maxlen=5) for i in ids}
    first: list[int] = []
    second: list[int] = []
    scores: list[float] = []
    information = honesty.INFORMATION_PER_VOTE[strategy]
    checkpoints = {round(k * n / 4): k / 4 for k in range(1, 4 * max_budget + 1)}
    out: dict = {"coverage_bt": {}, "coverage_online": {}, "expected": {}, "measured": {}, "predicted": {}}
    reached_at = None
    previous = (0.0, 0.0)
    start = None
    for t in range(1, max_budget * n + 1):
        i, j = _select(cfg, strategy, ids, mu, sigma, rating, comparisons, wins, recent, rng)
        p = 1.0 / (1.0 + math.exp(theta[j] - theta[i]))
        s = float(nrng.random() < p)
        first.append(i)
        second.append(j)
        scores.append(s)
        mu[i], sigma[i], mu[j], sigma[j] = bayes_update(mu[i], sigma[i], mu[j], sigma[j], s)
        comparisons[i] += 1
        comparisons[j] += 1
        wins[i] += s
        wins[j] += 1.0 - s
        recent[i].appendleft(j)
        recent[j].appendleft(i)
        if t not in checkpoints:
            continue
        budget = checkpoints[t]
        fit = fit_bradley_terry(n, aggregate_votes(first, second, scores, n), start=start)
        start = fit.mu
        tau = kendall_tau(theta, fit.mu)
        if budget in COVERAGE_AT:
            out["coverage_bt"][budget] = covered(theta, fit.mu, fit.se_relative)
            out["coverage_online"][budget] = covered(theta, mu, sigma)
            out["expected"][budget] = honesty.expected_tau(fit.mu, fit.se_relative)
            out["measured"][budget] = tau
        if budget in PREDICT_AT:
            for factor in factors:
                more = honesty.votes_to_tau(fit.mu, fit.se_relative, TARGET, information * factor)
                out["predicted"][(budget, factor)] = None if more is None else (t + more) / n
        if reached_at is None and tau >= TARGET:
            b0, t0 = previous
            reached_at = budget if tau == t0 else b0 + (TARGET - t0) * (budget - b0) / (tau - t0)
        previous = (budget, tau)
        if reached_at is not None and budget >= max(COVERAGE_AT) and budget >= max(PREDICT_AT):
            break
    out["reached"] = reached_at
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=1000, help="fresh seeds, not the ranking table's")
    parser.add_argument("--strategy", default="active", choices=sorted(honesty.INFORMATION_PER_VOTE))
    parser.add_argument("--max-budget", type=int, default=24, help="votes per item at most")
    parser.add_argument(
        "--factors",
        type=float,
        nargs="+",
        default=[1.0],
        help="also try the information per vote times these (calibration)",
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    factors = tuple(args.factors)
    runs = [
        run(args.n, seed, args.strategy, args.max_budget, factors)
        for seed in range(args.first_seed, args.first_seed + args.seeds)
    ]
    lines = [f"N = {args.n}, {args.seeds} seeds, strategy {args.strategy}", ""]
    lines.append("| votes | rank coverage (bt) | rank coverage (online) | expected tau | measured tau |")
    lines.append("|---|---|---|---|---|")
    for b in COVERAGE_AT:
        cov_bt = np.mean([r["coverage_bt"][b] for r in runs])
        cov_on = np.mean([r["coverage_online"][b] for r in runs])
        exp = np.mean([r["expected"][b] for r in runs])
        meas = np.mean([r["measured"][b] for r in runs])
        lines.append(f"| {b}N | {cov_bt:.3f} | {cov_on:.3f} | {exp:.3f} | {meas:.3f} |")
    lines.append("")
    lines.append(
        "| predicted at | information x | mean predicted total | mean actual total | ratio | seeds within 25% |"
    )
    lines.append("|---|---|---|---|---|---|")
    for b, factor in ((b, f) for b in PREDICT_AT for f in factors):
        key = (b, factor)
        pairs = [
            (r["predicted"][key], r["reached"]) for r in runs if r["predicted"].get(key) and r["reached"]
        ]
        pairs = [(p, a) for p, a in pairs if a > b]  # only runs that had not yet reached it
        if not pairs:
            continue
        pred = np.array([p for p, _ in pairs])
        act = np.array([a for _, a in pairs])
        # the error that matters is on the votes still needed, not on the total
        within = np.mean(np.abs((pred - b) - (act - b)) <= 0.25 * (act - b))
        ratio = (pred.mean() - b) / (act.mean() - b)
        lines.append(
            f"| {b}N | {factor:g} | {pred.mean():.2f}N | {act.mean():.2f}N | {ratio:.2f} (still needed) | "
            f"{within:.2f} ({len(pairs)} seeds) |"
        )
    unreached = sum(r["reached"] is None for r in runs)
    lines.append(f"\nruns that never reached tau {TARGET} within {args.max_budget}N: {unreached}")
    lines.append(f"{time.perf_counter() - started:.0f} s")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
