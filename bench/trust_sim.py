"""Rigged and careless voters: how far the voter weights (compere.domain.trust) hold.

A board of 50 entities with hidden strengths theta ~ Normal(0, 1.5^2); 20 honest voters
answer served random pairs by Bradley-Terry. Scenarios:

  rig       1,000 honest votes; attackers with ``accounts`` accounts cast ``share`` (of
            the 1,000) rigged votes for the mid-table entity (true rank 25): it beats a
            random opponent, on pairs they choose. With ``--reputation`` every account
            first casts as many served, honest-looking votes (answered by the true
            strengths) to build trust. Attack votes are spread at random through the
            honest stream (each account's reputation votes before its rigged ones).
            Reported: places the target moves up on the Bradley-Terry board against
            the same honest votes without the attack, per trust mode.
  careless  20% of the honest pool (4 of 20 voters) answers at random; votes to
            Kendall tau 0.8 (fits every N/2 votes, seed-averaged curve) against the
            clean case, and tau at 8 N with and without weights on the clean board.

Every run replays the votes through the real domain code: the online Bayesian update
with each vote's weight as of the vote (compere.domain.trust.Ledger, as the server and
``rebuild-ratings`` do) and the Bradley-Terry fit with compere.domain.trust.board_weights.

    python -m bench.trust_sim                      # everything, 40 seeds
    python -m bench.trust_sim --seeds 5 --only rig
    python -m bench.trust_sim --http http://127.0.0.1:8080 --seed 0   # one rig run over HTTP

The HTTP mode needs a fresh server with AUTH_ENABLED=true and an empty database (its
first user becomes the superuser that signs up the others); it casts the votes (honest
ones on pairs served by ``GET /mab/next_comparison?strategy=random``, echoing the
pair_token) and compares the server's ``model=bt`` board with its own unweighted fit of
the same votes and with the fit of the honest votes alone.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

from bench.ranking_sim import first_budget_reaching, kendall_tau, mean_curve  # noqa: E402
from compere.domain.bayes import DEFAULT_PRIOR, bayes_update  # noqa: E402
from compere.domain.bt import aggregate_votes, fit_bradley_terry  # noqa: E402
from compere.domain.trust import POLICIES, TRUST_MODES, Ledger, TrustMode, board_fit  # noqa: E402

N = 50
HONEST_VOTERS = 20
HONEST_VOTES = 1000
TARGET_RANK = 25  # 1 = strongest


@dataclass(frozen=True)
class Vote:
    voter: str
    first: int
    second: int
    score1: float
    served: bool


def _bt_vote(rng: np.random.Generator, ti: float, tj: float) -> float:
    return float(rng.random() < 1.0 / (1.0 + math.exp(tj - ti)))


def _random_pair(rng: np.random.Generator, n: int) -> tuple[int, int]:
    i, j = rng.choice(n, 2, replace=False)
    return int(i), int(j)


def honest_votes(rng: np.random.Generator, theta: np.ndarray, count: int, careless: int = 0) -> list[Vote]:
    """``count`` votes on served random pairs; voters ``h0..`` of which the first ``careless`` guess."""
    out = []
    for _ in range(count):
        v = int(rng.integers(HONEST_VOTERS))
        i, j = _random_pair(rng, theta.size)
        s = float(rng.random() < 0.5) if v < careless else _bt_vote(rng, theta[i], theta[j])
        out.append(Vote(f"h{v}", i, j, s, True))
    return out


def attack_votes(
    rng: np.random.Generator, theta: np.ndarray, target: int, accounts: int, rigged: int, reputation: bool
) -> list[list[Vote]]:
    """Per account, its votes in order (reputation first)."""
    per: list[list[Vote]] = [[] for _ in range(accounts)]
    for k in range(rigged):
        a = k % accounts
        if reputation:
            i, j = _random_pair(rng, theta.size)
            per[a].append(Vote(f"x{a}", i, j, _bt_vote(rng, theta[i], theta[j]), True))
        opponent = int(rng.integers(theta.size - 1))
        opponent += opponent >= target
        per[a].append(Vote(f"x{a}", target, opponent, 1.0, False))
    for a, votes in enumerate(per):  # reputation votes before the rigged ones
        per[a] = sorted(votes, key=lambda v: not v.served)
    return per


def interleave(rng: np.random.Generator, honest: list[Vote], per_account: list[list[Vote]]) -> list[Vote]:
    tagged = [(float(k), v) for k, v in enumerate(honest)]
    for votes in per_account:
        slots = np.sort(rng.uniform(0, len(honest), len(votes)))
        tagged += list(zip(slots.tolist(), votes, strict=True))
    tagged.sort(key=lambda kv: kv[0])
    return [v for _, v in tagged]


class Replay:
    """The online state and the ledger after each vote, as the server keeps them."""

    def __init__(self, mode: TrustMode) -> None:
        self.policy = POLICIES[mode]
        self.ledger = Ledger(self.policy, DEFAULT_PRIOR)
        self.mu = np.full(N, DEFAULT_PRIOR.mu0)
        self.sigma = np.full(N, DEFAULT_PRIOR.sigma0)
        self.votes: list[Vote] = []

    def add(self, v: Vote) -> None:
        i, j = v.first, v.second
        w = self.ledger.vote(
            v.voter, i, j, (self.mu[i], self.sigma[i]), (self.mu[j], self.sigma[j]), v.score1, served=v.served
        )
        self.mu[i], self.sigma[i], self.mu[j], self.sigma[j] = bayes_update(
            self.mu[i], self.sigma[i], self.mu[j], self.sigma[j], v.score1, weight=w
        )
        self.votes.append(v)

    def fit(self) -> np.ndarray:
        """The model=bt board as the server fits it (compere.domain.trust.board_fit)."""
        evidence = {voter: s.evidence for voter, s in self.ledger.voters.items()}
        first = [v.first for v in self.votes]
        second = [v.second for v in self.votes]
        winner = [float(v.first if v.score1 == 1.0 else v.second) for v in self.votes]
        board = board_fit(
            list(range(N)),
            [v.voter for v in self.votes],
            first,
            second,
            winner,
            [v.served for v in self.votes],
            evidence,
            self.policy,
            DEFAULT_PRIOR,
        )
        return np.array([board.fitted[k][0] for k in range(N)])


def rank_of(scores: np.ndarray, entity: int) -> int:
    return 1 + int(np.sum(scores > scores[entity]))


_CLEAN: dict[tuple[int, str], tuple[int, int]] = {}  # (seed, mode) -> the target's ranks without attack


def rig_run(seed: int, share: float, accounts: int, reputation: bool, modes: tuple[TrustMode, ...]) -> dict:
    rng = np.random.default_rng(seed)
    theta = rng.normal(0.0, 1.5, N)
    target = int(np.argsort(-theta)[TARGET_RANK - 1])
    honest = honest_votes(rng, theta, HONEST_VOTES)
    rigged = round(share * HONEST_VOTES)
    stream = interleave(rng, honest, attack_votes(rng, theta, target, accounts, rigged, reputation))
    out: dict = {"seed": seed, "share": share, "accounts": accounts, "reputation": reputation}
    for mode in modes:
        if (seed, mode) not in _CLEAN:  # the honest votes of a seed are the same in every scenario
            clean = Replay(mode)
            for v in honest:
                clean.add(v)
            _CLEAN[(seed, mode)] = (rank_of(clean.fit(), target), rank_of(clean.mu, target))
        base_bt, base_on = _CLEAN[(seed, mode)]
        attacked = Replay(mode)
        for v in stream:
            attacked.add(v)
        bt, on = rank_of(attacked.fit(), target), rank_of(attacked.mu, target)
        out[mode] = {"bt_moved": base_bt - bt, "online_moved": base_on - on}
    return out


def careless_run(seed: int, careless: int, modes: tuple[TrustMode, ...], max_budget: int = 32) -> dict:
    rng = np.random.default_rng(10_000 + seed)
    theta = rng.normal(0.0, 1.5, N)
    votes = honest_votes(rng, theta, max_budget * N, careless)
    checkpoints = {round(k * N / 2): k / 2 for k in range(1, 2 * max_budget + 1)}
    out: dict = {"seed": seed, "careless": careless}
    for mode in modes:
        replay = Replay(mode)
        curve = []
        for t, v in enumerate(votes, 1):
            replay.add(v)
            if t in checkpoints:
                curve.append((checkpoints[t], kendall_tau(theta, replay.fit())))
        out[mode] = curve
    return out


def _mean(xs: list[float]) -> float:
    return float(np.mean(xs)) if xs else float("nan")


def run_rig(seeds: int, modes: tuple[TrustMode, ...], out) -> list[dict]:
    rows = []
    for reputation in (False, True):
        for accounts in (1, 5, 20):
            for share in (0.01, 0.02, 0.05):
                runs = [rig_run(s, share, accounts, reputation, modes) for s in range(seeds)]
                for r in runs:
                    print(json.dumps(r), file=out)
                row = {"reputation": reputation, "accounts": accounts, "share": share}
                for mode in modes:
                    row[f"bt_{mode}"] = _mean([r[mode]["bt_moved"] for r in runs])
                    row[f"online_{mode}"] = _mean([r[mode]["online_moved"] for r in runs])
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    return rows


def run_careless(seeds: int, modes: tuple[TrustMode, ...], out) -> dict:
    result: dict = {}
    for careless in (0, 4):
        runs = [careless_run(s, careless, modes) for s in range(seeds)]
        for r in runs:
            print(json.dumps(r), file=out)
        for mode in modes:
            curve = mean_curve([r[mode] for r in runs])
            at8 = [dict(r[mode])[8.0] for r in runs]
            result[(careless, mode)] = {
                "votes_to_0.8_in_N": first_budget_reaching(curve, 0.8),
                "tau_at_8N": _mean(at8),
                "tau_at_8N_se": float(np.std(at8) / math.sqrt(len(at8))),
            }
            print(
                json.dumps({"careless": careless, "mode": mode, **result[(careless, mode)]}), file=sys.stderr
            )
        if careless == 0 and "off" in modes and "default" in modes:
            diffs = [dict(r["default"])[8.0] - dict(r["off"])[8.0] for r in runs]
            result["paired_diff_at_8N"] = (_mean(diffs), float(np.std(diffs) / math.sqrt(len(diffs))))
    return result


def markdown(rig: list[dict], careless: dict, modes: tuple[TrustMode, ...]) -> str:
    lines = []
    if rig:
        head = "| votes | accounts | rigged | " + " | ".join(f"BT {m}" for m in modes)
        head += " | " + " | ".join(f"online {m}" for m in modes) + " |"
        lines += [head, "|" + "---|" * (3 + 2 * len(modes))]
        for r in rig:
            kind = "rigged + reputation" if r["reputation"] else "rigged only"
            cells = [f"{r[f'bt_{m}']:+.1f}" for m in modes] + [f"{r[f'online_{m}']:+.1f}" for m in modes]
            lines.append(f"| {kind} | {r['accounts']} | {r['share']:.0%} | " + " | ".join(cells) + " |")
        lines.append("")
    if careless:
        lines += ["| voters | mode | votes to tau 0.8 (N) | tau at 8 N |", "|---|---|---|---|"]
        for key, v in careless.items():
            if key == "paired_diff_at_8N":
                continue
            c, m = key
            who = "20% careless" if c else "clean"
            reach = v["votes_to_0.8_in_N"]
            reach_text = "not reached" if reach is None else f"{reach:.2f}"
            lines.append(f"| {who} | {m} | {reach_text} | {v['tau_at_8N']:.4f} ± {v['tau_at_8N_se']:.4f} |")
        if "paired_diff_at_8N" in careless:
            d, se = careless["paired_diff_at_8N"]
            lines.append(f"\nclean board, tau at 8 N, default minus off (paired): {d:+.4f} ± {se:.4f}")
    return "\n".join(lines)


# --- one rig run over HTTP ------------------------------------------------------------


def run_http(base_url: str, seed: int, share: float, accounts: int) -> dict:
    import requests

    rng = np.random.default_rng(seed)
    theta = rng.normal(0.0, 1.5, N)
    target = int(np.argsort(-theta)[TARGET_RANK - 1])
    session = requests.Session()
    tag = f"{seed}{int(time.time()) % 100000}"

    def token(name: str, admin: str | None = None) -> str:
        body = {"username": f"{name}_{tag}", "password": "lantern-heron-quartz-9"}
        auth = {"Authorization": f"Bearer {admin}"} if admin else {}
        r = session.post(f"{base_url}/auth/users/", json=body, headers=auth, timeout=30)
        r.raise_for_status()
        if name.startswith("x"):
            attacker_keys.add(f"u:{r.json()['id']}")
        r = session.post(f"{base_url}/auth/token", data=body, timeout=30)
        r.raise_for_status()
        return str(r.json()["access_token"])

    attacker_keys: set[str] = set()
    admin = token("admin")  # the first user of a fresh server is its superuser
    tokens = {f"h{v}": token(f"h{v}", admin) for v in range(HONEST_VOTERS)}
    tokens.update({f"x{a}": token(f"x{a}", admin) for a in range(accounts)})
    headers = {k: {"Authorization": f"Bearer {t}"} for k, t in tokens.items()}
    any_header = headers["h0"]
    ids = []
    for k in range(N):
        r = session.post(
            f"{base_url}/entities/",
            json={"name": f"item {k}", "description": "sim"},
            headers=any_header,
            timeout=30,
        )
        r.raise_for_status()
        ids.append(r.json()["id"])
    index = {e: k for k, e in enumerate(ids)}
    honest_count = HONEST_VOTES
    stream = interleave(
        rng,
        [Vote(f"h{int(rng.integers(HONEST_VOTERS))}", -1, -1, 0.0, True) for _ in range(honest_count)],
        attack_votes(rng, theta, target, accounts, round(share * honest_count), True),
    )
    cast: list[Vote] = []
    started = time.perf_counter()
    for v in stream:
        h = headers[v.voter]
        body: dict
        if v.served:  # a served random pair, answered by the true strengths
            r = session.get(
                f"{base_url}/mab/next_comparison", params={"strategy": "random"}, headers=h, timeout=30
            )
            r.raise_for_status()
            pair = r.json()
            i, j = index[pair["entity1"]["id"]], index[pair["entity2"]["id"]]
            s = _bt_vote(rng, theta[i], theta[j])
            body = {
                "entity1_id": ids[i],
                "entity2_id": ids[j],
                "selected_entity_id": ids[i] if s == 1.0 else ids[j],
                "pair_token": pair["pair_token"],
            }
        else:
            i, j, s = v.first, v.second, v.score1
            body = {"entity1_id": ids[i], "entity2_id": ids[j], "selected_entity_id": ids[i]}
        r = session.post(f"{base_url}/comparisons/", json=body, headers=h, timeout=30)
        r.raise_for_status()
        cast.append(Vote(v.voter, i, j, s, v.served))
    seconds = time.perf_counter() - started
    r = session.get(
        f"{base_url}/ratings", params={"model": "bt", "limit": 1000}, headers=any_header, timeout=60
    )
    r.raise_for_status()
    board = {index[e["id"]]: e["score"] for e in r.json()}
    r = session.get(
        f"{base_url}/voters", params={"limit": 100}, headers={"Authorization": f"Bearer {admin}"}, timeout=60
    )
    r.raise_for_status()
    report = r.json()
    server = np.array([board[k] for k in range(N)])
    honest_only = [v for v in cast if v.voter.startswith("h")]
    fits = {}
    for name, votes in (("unweighted_with_attack", cast), ("honest_only", honest_only)):
        pairs = aggregate_votes(
            [v.first for v in votes], [v.second for v in votes], [v.score1 for v in votes], N
        )
        fits[name] = rank_of(fit_bradley_terry(N, pairs, prior=DEFAULT_PRIOR).mu, target)
    return {
        "seed": seed,
        "share": share,
        "accounts": accounts,
        "votes": len(cast),
        "seconds": round(seconds, 1),
        "target_rank_server_bt": rank_of(server, target),
        "target_rank_unweighted_bt": fits["unweighted_with_attack"],
        "target_rank_honest_votes_only": fits["honest_only"],
        "attacker_board_weight_max": max(
            (v["board_weight"] for v in report["voters"] if v["voter"] in attacker_keys), default=None
        ),
        "honest_board_weight_min": min(
            (v["board_weight"] for v in report["voters"] if v["voter"] not in attacker_keys), default=None
        ),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=40)
    parser.add_argument("--only", choices=("rig", "careless"))
    parser.add_argument("--modes", nargs="+", default=list(TRUST_MODES), choices=TRUST_MODES)
    parser.add_argument("--jsonl", type=argparse.FileType("w"), default=None)
    parser.add_argument("--http", metavar="URL")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--share", type=float, default=0.05)
    parser.add_argument("--accounts", type=int, default=20)
    args = parser.parse_args(argv)
    if args.http:
        print(json.dumps(run_http(args.http.rstrip("/"), args.seed, args.share, args.accounts)))
        return 0
    modes = tuple(args.modes)
    with args.jsonl or open(os.devnull, "w") as out:
        rig = run_rig(args.seeds, modes, out) if args.only != "careless" else []
        careless = run_careless(args.seeds, modes, out) if args.only != "rig" else {}
    print(markdown(rig, careless, modes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
