"""Ranking simulation: how many votes each strategy and rating model needs.

N items get hidden strengths theta ~ Normal(0, 1.5^2) (logit units); every vote
follows Bradley-Terry, P(i beats j) = 1/(1+e^(theta_j-theta_i)). After every
quarter of N votes each leaderboard is compared with the true order by Kendall tau.
The run drives the real domain code: compere.domain.selection.select_pair on the
candidate set of compere.domain.selection.CandidatePlan, the online Bayesian update,
Elo, the UCB bandit state and the offline Bradley-Terry fit.

Rating models (leaderboards):
  elo       Elo, K = 32, ordered by rating (the original);
  bayes     the online Bayesian model, ordered by mu;
  bt        the offline Bradley-Terry fit of the whole log (MAP with the same prior);
  refit     the online Bayesian model whose beliefs are replaced by the offline fit
            every so often (``--refit-every``, in units of N votes), ordered by mu.
            The selector then also sees the refined beliefs.

Strategies: active, ucb, random (compere.domain.selection), plus ``deployed``: the
original as it is deployed, UCB whose bandit state is never updated, and ``oracle``,
a yardstick no server can run: it knows the hidden strengths and pairs the
least-compared item with a uniformly chosen item within ``--oracle-width`` logits of
it (close matches carry the most information per vote, p(1-p) near 1/4).
Every row also reports the information per vote: the mean of p(1-p) under the true
strengths, what each vote adds to the precision of both items' strengths.

Scenarios: ``bt`` (clean votes), ``noisy`` (20% of votes come from an annotator who
answers at random), ``ties`` (a vote is a tie with probability 0.3 * 4p(1-p)).

Output: one JSON line per (run, model) on stdout (or ``--jsonl FILE``), then a
Markdown table of seed-averaged tau. ``--http URL`` instead drives a running server.

    python -m bench.ranking_sim                  # N = 200, 10 seeds, up to 16 N votes
    python -m bench.ranking_sim --max-budget 32  # the same up to 32 N (the docs' table)
    python -m bench.ranking_sim --full           # N = 50, 200, 1000; all scenarios; 32 N
    python -m bench.ranking_sim --n 200 --seeds 10 --strategies active random
    python -m bench.ranking_sim --http http://127.0.0.1:8080 --n 200 --strategies active --seed 0

The HTTP mode runs one N, strategy and seed per call and needs an empty database
(it ranks only the entities it created); it
reads ``GET /ratings?by=score`` (field ``score``) and ``GET /ratings`` (``rating``).
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

# Small dense solves are much slower with BLAS threads fighting over a busy machine.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

from compere.domain.bayes import DEFAULT_PRIOR, Prior, bayes_update  # noqa: E402
from compere.domain.bt import BTFit, aggregate_votes, fit_bradley_terry, fit_davidson  # noqa: E402
from compere.domain.elo import elo_update  # noqa: E402
from compere.domain.selection import (  # noqa: E402
    Candidate,
    CandidatePlan,
    SelectionContext,
    plan_candidates,
    select_pair,
)
from compere.domain.ucb import UCBParams  # noqa: E402

BUDGETS = (1, 2, 4, 8, 16, 32)
THRESHOLDS = (0.8, 0.9)
MODELS = ("elo", "bayes", "bt", "refit", "davidson", "precision@10")
RECENT_LIMIT = 5
_UCB_PARAMS = UCBParams()
ELO_K = 32.0
ELO_INITIAL = 1500.0


def kendall_tau(truth: np.ndarray, estimate: np.ndarray) -> float:
    """Kendall tau-a between two score vectors (ties in ``estimate`` count zero)."""
    n = truth.size
    total = 0.0
    for start in range(0, n, 256):  # blocks keep memory at O(256 N)
        t = np.sign(truth[start : start + 256, None] - truth[None, :])
        e = np.sign(estimate[start : start + 256, None] - estimate[None, :])
        total += float((t * e).sum())
    return total / (n * (n - 1))


@dataclass
class RunConfig:
    n: int
    seed: int
    strategy: str  # active | ucb | random | deployed | oracle
    refit: bool  # beliefs periodically replaced by the offline fit
    scenario: str = "bt"
    max_budget: int = 32
    refit_every: float = 1.0  # in units of N votes (geometric: also at 1/4, 1/2)
    plan: CandidatePlan = field(default_factory=CandidatePlan)
    prior: Prior = DEFAULT_PRIOR
    oracle_width: float = 1.0  # logits; only for the ``oracle`` strategy
    oracle_ranks: int = 0  # if > 0 the oracle pairs within this many true ranks instead
    fit_prior_sd: float | None = None  # prior sd of the offline fit (default: the online prior's)
    top_k: int = 0  # > 0: the ``top_k`` objective (find and order the best K)


def _oracle_pair(
    theta: np.ndarray, comparisons: np.ndarray, width: float, rng: random.Random, ranks: int = 0
) -> tuple[int, int]:
    """The least-compared item against a random item within ``width`` of its true strength
    (or, with ``ranks`` > 0, within ``ranks`` places of its true rank)."""
    fewest = np.flatnonzero(comparisons == comparisons.min())
    i = int(fewest[rng.randrange(fewest.size)])
    if ranks > 0:
        position = np.argsort(np.argsort(-theta))
        near = np.flatnonzero((np.abs(position - position[i]) <= ranks) & (position != position[i]))
        return i, int(near[rng.randrange(near.size)])
    gap = np.abs(theta - theta[i])
    gap[i] = np.inf
    near = np.flatnonzero(gap <= width)
    j = int(near[rng.randrange(near.size)]) if near.size else int(np.argmin(gap))
    return i, j


def _select(
    cfg: RunConfig,
    strategy: str,
    ids: list[int],
    mu: np.ndarray,
    sigma: np.ndarray,
    rating: np.ndarray,
    comparisons: np.ndarray,
    wins: np.ndarray,
    recent: dict[int, collections.deque[int]],
    rng: random.Random,
) -> tuple[int, int]:
    """One pair from the real selector, on the candidate set the server would fetch."""
    positions = plan_candidates(cfg.plan, ids, mu, sigma, rng)
    threshold = None
    if cfg.top_k:  # the top_k objective: the current top 2K join the candidates
        order = np.argsort(-mu, kind="stable")
        positions = list(dict.fromkeys([*positions, *order[: 2 * cfg.top_k].tolist()]))
        threshold = float(0.5 * (mu[order[cfg.top_k - 1]] + mu[order[cfg.top_k]]))
    if cfg.strategy == "deployed":  # the original's bandit state never moves
        cands = [Candidate(i, mu[i], sigma[i], rating[i], 0, 0.0) for i in positions]
        total = 0
    else:
        cands = [Candidate(i, mu[i], sigma[i], rating[i], int(comparisons[i]), wins[i]) for i in positions]
        total = int(comparisons.sum())
    context = SelectionContext(
        total_comparisons=total,
        recent_opponents_of=recent,
        ucb=_UCB_PARAMS,
        ucb_probability=False,  # exercised by the unit tests; costly here
        prior=cfg.prior,
        top_threshold=threshold,
    )
    sel = select_pair(strategy, cands, rng, context)
    return sel.entity1_id, sel.entity2_id


def _vote(rng: np.random.Generator, ti: float, tj: float, scenario: str) -> float:
    """Outcome for i: 1 win, 0 loss, 0.5 tie."""
    p = 1.0 / (1.0 + math.exp(tj - ti))
    if scenario == "noisy" and rng.random() < 0.2:
        return float(rng.random() < 0.5)
    if scenario == "ties" and rng.random() < 0.3 * 4.0 * p * (1.0 - p):
        return 0.5
    if scenario == "davidson":  # Davidson's model with nu = 0.5 (a third of even matches tie)
        half = math.exp(0.5 * (ti - tj))
        u = rng.random() * (half + 1.0 / half + 0.5)
        return 1.0 if u < half else (0.5 if u < half + 0.5 else 0.0)
    return float(rng.random() < p)


def simulate(cfg: RunConfig) -> dict:
    """One run; returns tau curves per model and interval coverage."""
    n = cfg.n
    nrng = np.random.default_rng(cfg.seed)
    rng = random.Random(cfg.seed)
    theta = nrng.normal(0.0, 1.5, n)
    ids = list(range(n))
    mu = np.full(n, cfg.prior.mu0)
    sigma = np.full(n, cfg.prior.sigma0)
    rating = np.full(n, ELO_INITIAL)
    comparisons = np.zeros(n, dtype=np.int64)
    wins = np.zeros(n)
    recent: dict[int, collections.deque[int]] = {i: collections.deque(maxlen=RECENT_LIMIT) for i in ids}
    first: list[int] = []
    second: list[int] = []
    scores: list[float] = []
    strategy = "ucb" if cfg.strategy == "deployed" else cfg.strategy

    total_votes = cfg.max_budget * n
    # vote count -> budget in units of N, every quarter of N (exact for any N)
    checkpoints = {round(k * n / 4): k / 4 for k in range(1, 4 * cfg.max_budget + 1)}
    refits: set[int] = set()
    if cfg.refit:
        every = max(int(cfg.refit_every * n), 1)
        refits = {max(n // 4, 1), max(n // 2, 1), *range(every, total_votes + 1, every)}
    curves: dict[str, list[tuple[float, float]]] = {m: [] for m in MODELS}
    coverage: dict[str, float] = {}
    last_fit: BTFit | None = None
    selection_seconds = 0.0
    update_seconds = 0.0
    information = 0.0

    def fit() -> BTFit:
        pairs = aggregate_votes(first, second, scores, n)
        start = None if last_fit is None else last_fit.mu
        prior = cfg.prior if cfg.fit_prior_sd is None else Prior(cfg.prior.mu0, cfg.fit_prior_sd)
        return fit_bradley_terry(n, pairs, prior=prior, start=start)

    for t in range(1, total_votes + 1):
        t0 = time.perf_counter()
        if cfg.strategy == "oracle":
            i, j = _oracle_pair(theta, comparisons, cfg.oracle_width, rng, cfg.oracle_ranks)
        else:
            i, j = _select(cfg, strategy, ids, mu, sigma, rating, comparisons, wins, recent, rng)
        t1 = time.perf_counter()
        p_true = 1.0 / (1.0 + math.exp(theta[j] - theta[i]))
        information += p_true * (1.0 - p_true)
        s = _vote(nrng, theta[i], theta[j], cfg.scenario)
        first.append(i)
        second.append(j)
        scores.append(s)
        u = bayes_update(mu[i], sigma[i], mu[j], sigma[j], s)
        mu[i], sigma[i], mu[j], sigma[j] = u
        e = elo_update(rating[i], rating[j], s, ELO_K)
        rating[i], rating[j] = e
        comparisons[i] += 1
        comparisons[j] += 1
        wins[i] += s
        wins[j] += 1.0 - s
        recent[i].appendleft(j)
        recent[j].appendleft(i)
        selection_seconds += t1 - t0
        update_seconds += time.perf_counter() - t1

        if t in refits:
            last_fit = fit()
            mu[:] = last_fit.mu
            sigma[:] = last_fit.se
        if t in checkpoints:
            budget = checkpoints[t]
            if last_fit is None or t not in refits:
                last_fit = fit()
            curves["elo"].append((budget, kendall_tau(theta, rating)))
            curves["bt"].append((budget, kendall_tau(theta, last_fit.mu)))
            top = np.argsort(-theta)[:10]
            found = np.argsort(-last_fit.mu)[:10]
            curves["precision@10"].append((budget, len(set(top.tolist()) & set(found.tolist())) / 10.0))
            if cfg.scenario in ("ties", "davidson"):  # the tie-aware fit of the same votes
                tie_fit = fit_davidson(n, aggregate_votes(first, second, scores, n), prior=cfg.prior).fit
                curves["davidson"].append((budget, kendall_tau(theta, tie_fit.mu)))
            online = kendall_tau(theta, mu)
            curves["refit" if cfg.refit else "bayes"].append((budget, online))
            if budget == 8 or t == total_votes:
                tag = f"@{budget:g}N"
                coverage["bayes" + tag] = float(np.mean(np.abs(mu - theta) <= 1.959964 * sigma))
                coverage["bt" + tag] = float(np.mean(np.abs(last_fit.mu - theta) <= 1.959964 * last_fit.se))
                if cfg.scenario in ("ties", "davidson"):
                    inside = np.abs(tie_fit.mu - theta) <= 1.959964 * tie_fit.se
                    coverage["davidson" + tag] = float(np.mean(inside))
    curves = {m: c for m, c in curves.items() if c}
    return {
        "curves": curves,
        "coverage": coverage,
        "selection_us_per_vote": 1e6 * selection_seconds / total_votes,
        "update_us_per_vote": 1e6 * update_seconds / total_votes,
        "information_per_vote": information / total_votes,
    }


def first_budget_reaching(curve: list[tuple[float, float]], level: float) -> float | None:
    """Budget (in N) where the curve first reaches ``level``, interpolated linearly."""
    previous = (0.0, 0.0)
    for budget, tau in curve:
        if tau >= level:
            b0, t0 = previous
            if tau == t0:
                return budget
            return b0 + (level - t0) * (budget - b0) / (tau - t0)
        previous = (budget, tau)
    return None


def mean_curve(curves: list[list[tuple[float, float]]]) -> list[tuple[float, float]]:
    budgets = [b for b, _ in curves[0]]
    taus = np.array([[t for _, t in c] for c in curves])
    return list(zip(budgets, taus.mean(axis=0).tolist(), strict=True))


def label(strategy: str, model: str) -> str:
    if strategy == "deployed":
        return "original as deployed (UCB, bandit never updated) + " + model
    if strategy.startswith("oracle@"):
        width, _, prior = strategy.split("@", 1)[1].partition("/prior")
        if width.endswith("ranks"):
            where = f"at most {width[:-5]} true ranks apart"
        else:
            where = f"at most {width} {'logit' if width == '1' else 'logits'} apart"
        fitted = f"; fit prior sd {prior}" if prior else ""
        return f"oracle (knows the strengths; opponents {where}{fitted}) + {model}"
    if strategy == "ucb" and model == "elo":
        return "original as designed (UCB + Elo K=32)"
    return f"{strategy} + {model}"


def summarise(rows: list[dict]) -> list[dict]:
    """Average the per-seed curves of each (scenario, N, strategy, model)."""
    groups: dict[tuple, list[dict]] = collections.defaultdict(list)
    for row in rows:
        groups[(row["scenario"], row["n"], row["strategy"], row["model"])].append(row)
    table = []
    for (scenario, n, strategy, model), group in sorted(groups.items()):
        curve = mean_curve([g["curve"] for g in group])
        at = dict(curve)
        cov_keys = sorted({k for g in group for k in g["coverage"]})
        table.append(
            {
                "scenario": scenario,
                "n": n,
                "strategy": strategy,
                "model": model,
                "label": label(strategy, model),
                "seeds": len(group),
                "tau": {b: at.get(float(b)) for b in BUDGETS},
                "reach": {lv: first_budget_reaching(curve, lv) for lv in THRESHOLDS},
                "coverage": {
                    k: float(np.mean([g["coverage"][k] for g in group if k in g["coverage"]]))
                    for k in cov_keys
                },
                "information": _mean_of(group, "information_per_vote"),
            }
        )
    return table


def _mean_of(group: list[dict], key: str) -> float | None:
    values = [g[key] for g in group if g.get(key) is not None]
    return float(np.mean(values)) if values else None


def markdown(table: list[dict]) -> str:
    def fmt(x: float | None, spec: str) -> str:
        return "-" if x is None else format(x, spec)

    lines = []
    for key in sorted({(r["scenario"], r["n"]) for r in table}):
        rows = [r for r in table if (r["scenario"], r["n"]) == key]
        rows.sort(key=lambda r: (r["reach"][0.8] is None, r["reach"][0.8] or 0.0, -(r["tau"][8] or 0)))
        lines.append(f"\n**Scenario `{key[0]}`, N = {key[1]}** ({rows[0]['seeds']} seeds; tau averaged)\n")
        head = " | ".join(f"{b}N" for b in BUDGETS)
        lines.append(
            f"| strategy + model | {head} | tau 0.8 at | tau 0.9 at | 95% coverage | p(1-p) per vote |"
        )
        lines.append("|---" * (len(BUDGETS) + 5) + "|")
        for r in rows:
            taus = " | ".join(fmt(r["tau"][b], ".3f") for b in BUDGETS)
            reach = " | ".join(
                fmt(r["reach"][lv], ".1f") + ("N" if r["reach"][lv] is not None else "") for lv in THRESHOLDS
            )
            cov = ", ".join(f"{k.split('@')[1]} {v:.2f}" for k, v in r["coverage"].items())
            info = fmt(r.get("information"), ".3f")
            lines.append(f"| {r['label']} | {taus} | {reach} | {cov or '-'} | {info} |")
    return "\n".join(lines)


def run_matrix(configs: list[RunConfig], out) -> list[dict]:
    rows = []
    for cfg in configs:
        started = time.perf_counter()
        result = simulate(cfg)
        seconds = time.perf_counter() - started
        for model, curve in result["curves"].items():
            cov = {}
            source = (
                model if model in ("bt", "davidson") else ("bayes" if model in ("bayes", "refit") else None)
            )
            if source:
                cov = {
                    k.replace(source, "cov"): v for k, v in result["coverage"].items() if k.startswith(source)
                }
            row = {
                "scenario": cfg.scenario,
                "n": cfg.n,
                "seed": cfg.seed,
                # the oracle's width is part of its name: rows of two widths stay apart
                "strategy": _strategy_name(cfg),
                "model": model,
                "curve": curve,
                "coverage": cov,
                "seconds": round(seconds, 2),
                "selection_us_per_vote": round(result["selection_us_per_vote"], 1),
                "update_us_per_vote": round(result["update_us_per_vote"], 1),
                "information_per_vote": round(result["information_per_vote"], 4),
            }
            if model == "elo" and cfg.refit:
                continue  # identical to the non-refit run's Elo; report it once
            if model == "bt" and cfg.refit and cfg.strategy != "active":
                continue
            rows.append(row)
            out.write(json.dumps(row) + "\n")
            out.flush()
    return rows


def _strategy_name(cfg: RunConfig) -> str:
    if cfg.top_k:
        return f"{cfg.strategy} top_k={cfg.top_k}"
    if cfg.strategy != "oracle":
        return cfg.strategy
    name = f"oracle@{cfg.oracle_ranks}ranks" if cfg.oracle_ranks else f"oracle@{cfg.oracle_width:g}"
    return name if cfg.fit_prior_sd is None else f"{name}/prior{cfg.fit_prior_sd:g}"


def build_configs(args: argparse.Namespace) -> list[RunConfig]:
    configs = []
    for scenario in args.scenarios:
        for n in args.n:
            seeds = args.seeds if args.seeds else (10 if n <= 200 else 3)
            for seed in range(seeds):
                for strategy in args.strategies:
                    for refit in (False, True) if strategy not in ("deployed", "oracle") else (False,):
                        if refit and strategy not in args.refit_strategies:
                            continue
                        configs.append(
                            RunConfig(
                                n=n,
                                seed=seed,
                                strategy=strategy,
                                refit=refit,
                                scenario=scenario,
                                max_budget=args.max_budget,
                                refit_every=args.refit_every,
                                oracle_width=args.oracle_width,
                                oracle_ranks=args.oracle_ranks,
                                top_k=args.top_k if strategy == "active" else 0,
                                fit_prior_sd=args.fit_prior_sd,
                            )
                        )
    return configs


# ----------------------------------------------------------------------------
# End-to-end mode: the same simulation through a running server's HTTP API.


def run_http(base_url: str, n: int, seed: int, strategy: str, max_budget: int, out) -> dict:
    """Create N entities, vote by Bradley-Terry on the pairs the server serves, read tau."""
    import asyncio

    import aiohttp

    async def main() -> dict:
        nrng = np.random.default_rng(seed)
        theta = nrng.normal(0.0, 1.5, n)
        curve_rating: list[tuple[float, float]] = []
        curve_score: list[tuple[float, float]] = []
        async with aiohttp.ClientSession(base_url) as http:
            truth: dict[int, float] = {}
            for k in range(n):
                body = {
                    "name": f"sim-{seed}-{k}",
                    "description": f"simulated item {k}",
                    "image_urls": [],
                }
                async with http.post("/entities/", json=body) as resp:
                    resp.raise_for_status()
                    truth[(await resp.json())["id"]] = float(theta[k])
            checkpoints = {round(k * n / 4): k / 4 for k in range(1, 4 * max_budget + 1)}
            started = time.perf_counter()
            for t in range(1, max_budget * n + 1):
                async with http.get("/mab/next_comparison", params={"strategy": strategy}) as resp:
                    resp.raise_for_status()
                    pair = await resp.json()
                a, b = pair["entity1"]["id"], pair["entity2"]["id"]
                if a not in truth or b not in truth:
                    raise SystemExit(
                        "the server served an entity this run did not create: use an empty database"
                    )
                s = _vote(nrng, truth[a], truth[b], "bt")
                vote = {
                    "entity1_id": a,
                    "entity2_id": b,
                    "selected_entity_id": a if s == 1.0 else b,
                }
                if "pair_token" in pair:
                    vote["pair_token"] = pair["pair_token"]
                async with http.post("/comparisons/", json=vote) as resp:
                    resp.raise_for_status()
                if t in checkpoints:
                    budget = checkpoints[t]
                    curve_score.append((budget, await leaderboard_tau(http, truth, "score")))
                    curve_rating.append((budget, await leaderboard_tau(http, truth, "rating")))
            seconds = time.perf_counter() - started
        return {"score": curve_score, "rating": curve_rating, "seconds": seconds}

    async def leaderboard_tau(http, truth: dict[int, float], by: str) -> float:
        params = {"by": by} if by == "score" else {}
        async with http.get("/ratings", params=params) as resp:
            resp.raise_for_status()
            board = await resp.json()
        ours = [e for e in board if e["id"] in truth]
        est = np.array([float(e.get(by if by == "score" else "rating", 0.0)) for e in ours])
        # the leaderboard's order is the estimate: use -position if scores are missing
        if by == "score" and not all("score" in e for e in ours):
            est = -np.arange(len(ours), dtype=float)
        real = np.array([truth[e["id"]] for e in ours])
        return kendall_tau(real, est)

    result = asyncio.run(main())
    rows = []
    for field_name in ("score", "rating"):
        row = {
            "mode": "http",
            "url": base_url,
            "scenario": "http",
            "n": n,
            "seed": seed,
            "strategy": strategy,
            "model": "server " + field_name,
            "curve": result[field_name],
            "coverage": {},
            "seconds": round(result["seconds"], 1),
        }
        out.write(json.dumps(row) + "\n")
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, nargs="+", default=[200])
    parser.add_argument("--seeds", type=int, default=0, help="seeds per N (default 10 up to N=200, else 3)")
    parser.add_argument(
        "--strategies",
        nargs="+",
        default=["active", "random", "ucb", "deployed"],
        choices=["active", "random", "ucb", "deployed", "oracle"],
    )
    parser.add_argument(
        "--oracle-width", type=float, default=1.0, help="the oracle's opponents lie within this many logits"
    )
    parser.add_argument("--top-k", type=int, default=0, help="run active with the top_k objective for this K")
    parser.add_argument(
        "--oracle-ranks", type=int, default=0, help="the oracle's opponents lie within this many true ranks"
    )
    parser.add_argument(
        "--fit-prior-sd", type=float, default=None, help="prior sd of the offline fit (default 1.5)"
    )
    parser.add_argument(
        "--refit-strategies", nargs="*", default=[], help="also run these with the refit model"
    )
    parser.add_argument("--scenarios", nargs="+", default=["bt"], choices=["bt", "noisy", "ties", "davidson"])
    parser.add_argument("--max-budget", type=int, default=16, help="votes per item at the end (--full: 32)")
    parser.add_argument("--refit-every", type=float, default=1.0, help="refit period in units of N votes")
    parser.add_argument("--full", action="store_true", help="N = 50, 200, 1000 and every scenario")
    parser.add_argument("--jsonl", type=Path, help="write JSON lines here instead of stdout")
    parser.add_argument("--markdown", type=Path, help="also write the Markdown table here")
    parser.add_argument("--http", metavar="URL", help="drive a running Compere server instead")
    parser.add_argument("--seed", type=int, default=0, help="seed of the --http run")
    parser.add_argument(
        "--from-jsonl", type=Path, nargs="+", help="only summarise earlier --jsonl output files"
    )
    args = parser.parse_args(argv)
    out = args.jsonl.open("w") if args.jsonl else sys.stdout

    if args.http:
        # One run per invocation: each run needs its own empty database.
        strategies = [s for s in args.strategies if s not in ("deployed", "oracle")]
        if len(args.n) != 1 or len(strategies) != 1:
            parser.error("--http runs one N and one strategy (restart the server on an empty database)")
        rows = run_http(args.http, args.n[0], args.seed, strategies[0], args.max_budget, out)
        text = markdown(summarise(rows))
        print(text, file=sys.stderr if out is sys.stdout else sys.stdout)
        if args.markdown:
            args.markdown.write_text(text + "\n")
        return 0

    if args.from_jsonl:
        rows = []
        for path in args.from_jsonl:
            with path.open() as f:
                rows += [r for r in map(json.loads, f) if "curve" in r]
        for r in rows:
            r["curve"] = [tuple(point) for point in r["curve"]]
        text = markdown(summarise(rows))
        print(text)
        if args.markdown:
            args.markdown.write_text(text + "\n")
        return 0

    if args.full:
        args.n = [50, 200, 1000]
        args.scenarios = ["bt", "noisy", "ties"]
        args.max_budget = 32
        args.refit_strategies = args.refit_strategies or ["active"]
    started = time.perf_counter()
    rows = run_matrix(build_configs(args), out)
    table = summarise(rows)
    text = markdown(table)
    for row in table:
        out.write(json.dumps({"summary": row}) + "\n")
    print(text, file=sys.stderr if out is sys.stdout else sys.stdout)
    if args.markdown:
        args.markdown.write_text(text + "\n")
    print(f"\n{len(rows)} result rows in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
