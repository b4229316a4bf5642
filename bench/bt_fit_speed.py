"""How long the offline Bradley-Terry fit takes on a large vote log.

Generates ``--votes`` random Bradley-Terry votes among N entities (theta ~ Normal(0,
1.5^2)), then times the two steps the server runs: aggregating the log into pair
counts and fitting (Newton + Laplace standard errors). Prints one JSON line per N.

    python -m bench.bt_fit_speed                       # 1,000,000 votes, N = 1000, 10000, 100000
    python -m bench.bt_fit_speed --votes 200000 --n 500
"""

from __future__ import annotations

import argparse
import json
import os
import time

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

from compere.domain.bt import aggregate_votes, fit_bradley_terry  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--votes", type=int, default=1_000_000)
    parser.add_argument("--n", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for n in args.n:
        rng = np.random.default_rng(args.seed)
        theta = rng.normal(0.0, 1.5, n)
        a = rng.integers(0, n, args.votes)
        b = (a + rng.integers(1, n, args.votes)) % n
        score = (rng.random(args.votes) < 1.0 / (1.0 + np.exp(theta[b] - theta[a]))).astype(float)
        t0 = time.perf_counter()
        pairs = aggregate_votes(a, b, score, n)
        t1 = time.perf_counter()
        fit = fit_bradley_terry(n, pairs)
        t2 = time.perf_counter()
        covered = float(np.mean(np.abs(fit.mu - theta) <= 1.959964 * fit.se))
        row = {
            "n": n,
            "votes": args.votes,
            "distinct_pairs": int(pairs.n.size),
            "aggregate_s": round(t1 - t0, 3),
            "fit_s": round(t2 - t1, 3),
            "newton_iterations": fit.iterations,
            "method": "dense" if n <= 2000 else "matrix-free CG",
            "coverage95": round(covered, 3),
            "corr_with_truth": round(float(np.corrcoef(fit.mu, theta)[0, 1]), 4),
        }
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
