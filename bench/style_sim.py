"""Style control in simulation: does ``/ratings?control=length`` undo judges' taste for length?

N answers with a hidden quality ``q ~ Normal(0, 1)`` and a length (log-normal, median
400 characters, spread 0.6 in log terms). Judges vote on random pairs by Bradley-Terry
on ``q_i - q_j + bias * (z_i - z_j)``, ``z`` the length standardised over the board (so
``bias`` is in the fitted coefficient's unit: logits per standard deviation). Each run
fits the board as the server does (compere.domain.bt.fit_vote_log, Davidson's ties,
default prior) without and with the length controlled for
(compere.domain.covariates.design), and measures Kendall tau of each against ``q``
and the fitted coefficient against ``bias``.

Scenarios:

- ``biased``: quality unrelated to length, bias 0.8 (what style control is for);
- ``unbiased``: bias 0, what the control costs when there is nothing to correct;
- ``correlated``: longer answers really are better (correlation 0.5 between ``q`` and
  ``z``) and judges add the bias on top: the limitation. Attributes of an entity are
  fixed, so the vote log cannot tell a judge's taste for length from a real link
  between length and quality; the control takes out both.

    python -m bench.style_sim --n 60 --votes 20 --seeds 20
"""

from __future__ import annotations

import argparse
import os
import sys
import time

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

from bench.ranking_sim import kendall_tau  # noqa: E402
from compere.domain.bayes import Z95  # noqa: E402
from compere.domain.bt import fit_vote_log  # noqa: E402
from compere.domain.covariates import design  # noqa: E402

SCENARIOS = {  # name: (bias, correlation of quality with standardised length)
    "biased": (0.8, 0.0),
    "unbiased": (0.0, 0.0),
    "correlated": (0.8, 0.5),
}


def run(n: int, votes_per_entity: int, seed: int, bias: float, correlation: float) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    length = np.round(np.exp(rng.normal(np.log(400.0), 0.6, n)))
    z = design([{"length": float(x)} for x in length], ["length"]).z[:, 0]
    quality = correlation * z + np.sqrt(1.0 - correlation**2) * rng.normal(0.0, 1.0, n)
    m = votes_per_entity * n
    first = rng.integers(0, n, m)
    second = (first + rng.integers(1, n, m)) % n  # never the same entity
    p_first = 1.0 / (1.0 + np.exp(-(quality[first] - quality[second] + bias * (z[first] - z[second]))))
    winner = np.where(rng.random(m) < p_first, first, second).astype(np.float64)
    ids = np.arange(n)
    plain = fit_vote_log(ids, first, second, winner)
    controlled = fit_vote_log(ids, first, second, winner, covariates=z[:, None])
    assert controlled.beta is not None and controlled.beta_se is not None
    beta, se = float(controlled.beta[0]), float(controlled.beta_se[0])
    return {
        "tau_plain": kendall_tau(quality, plain.mu),
        "tau_controlled": kendall_tau(quality, controlled.mu),
        "beta": beta,
        "covered": float(beta - Z95 * se <= bias <= beta + Z95 * se),
        "se": se,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=60, help="answers on the board")
    parser.add_argument("--votes", type=int, default=20, help="votes per answer (random pairs)")
    parser.add_argument("--seeds", type=int, default=20)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    lines = [
        f"N = {args.n}, {args.votes} N random votes, {args.seeds} seeds",
        "",
        "| scenario | bias | corr(q, length) | tau unadjusted | tau controlled | controlled better "
        "| coefficient: mean (sd over seeds) | its mean standard error | 95% interval covers bias |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, (bias, correlation) in SCENARIOS.items():
        runs = [run(args.n, args.votes, seed, bias, correlation) for seed in range(args.seeds)]

        def col(key: str, runs: list[dict[str, float]] = runs) -> np.ndarray:
            return np.array([r[key] for r in runs])

        better = np.mean(col("tau_controlled") > col("tau_plain"))
        lines.append(
            f"| {name} | {bias:g} | {correlation:g} | {col('tau_plain').mean():.3f} "
            f"| {col('tau_controlled').mean():.3f} | {better:.2f} of seeds "
            f"| {col('beta').mean():.3f} ({col('beta').std():.3f}) | {col('se').mean():.3f} "
            f"| {col('covered').mean():.2f} |"
        )
    lines.append(f"\n{time.perf_counter() - started:.0f} s")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
