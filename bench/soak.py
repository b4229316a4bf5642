"""Soak run: mixed load on 2 gunicorn workers while PostgreSQL and Redis restart.

Starts its own PostgreSQL and Redis (temporary folders, free ports on 127.0.0.1; the
shared servers are never touched), serves Compere with gunicorn and the aiohttp worker,
and drives a mix of keyed votes, bandit-picked votes, entity creation, replays of
finished keys and reads for ``--duration`` seconds. Every ``--fault-every`` seconds it
stops one of the two servers for ``--outage`` seconds (PostgreSQL alternately with a
fast shutdown and a crash-like immediate one). Clients behave like careful annotation
tools: a write that gets 503 or 409 is retried with the same Idempotency-Key.

At the end it checks the invariants on the database itself and prints a report:
ratings still sum to ``N * 1500``, the stored comparisons are exactly the acknowledged
ones (none lost, none doubled by a retried key), replays returned the original bytes,
and the resident memory of each worker at the start, middle and end.

    python -m bench.soak --duration 600
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import psycopg2

from bench.net import free_port
from tests.servers import PostgresInstance, RedisInstance

REPO = Path(__file__).resolve().parent.parent

SEED_ENTITIES = 30
WRITE_RETRY_STATUSES = {409, 503}


@dataclass
class Tally:
    statuses: collections.Counter[tuple[str, int]] = field(default_factory=collections.Counter)
    acknowledged_votes: dict[str, dict] = field(default_factory=dict)  # key -> first response
    vote_bodies: dict[str, dict] = field(default_factory=dict)
    vote_raw: dict[str, bytes] = field(default_factory=dict)
    created_entities: dict[str, int] = field(default_factory=dict)
    replays: int = 0
    replay_mismatches: int = 0
    retries: int = 0
    unexpected: list[str] = field(default_factory=list)
    abandoned: int = 0  # writes still unanswered when the run ended


class Load:
    def __init__(
        self, base: str, ids: list[int], tally: Tally, deadline: float, seed: int, create_share: float
    ) -> None:
        self.base, self.ids, self.tally, self.deadline = base, ids, tally, deadline
        self.create_share = create_share  # part of the requests that create entities (the rest: reads)
        self.rng = random.Random(seed)

    async def keyed_write(
        self, session: aiohttp.ClientSession, kind: str, path: str, body: dict, key: str
    ) -> tuple[int, bytes, bool] | None:
        """POST until answered with something other than 409/503; None if time ran out."""
        delay = 0.05
        while True:
            try:
                async with session.post(
                    f"{self.base}{path}", json=body, headers={"Idempotency-Key": key}
                ) as resp:
                    raw = await resp.read()
                    self.tally.statuses[(kind, resp.status)] += 1
                    if resp.status not in WRITE_RETRY_STATUSES:
                        return resp.status, raw, resp.headers.get("Idempotent-Replayed") == "true"
            except aiohttp.ClientError as exc:
                self.tally.statuses[(kind, 0)] += 1
                self.tally.unexpected.append(f"{kind}: connection error {type(exc).__name__}")
            if time.monotonic() > self.deadline + 30:
                self.tally.abandoned += 1
                return None
            self.tally.retries += 1
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def vote(self, session: aiohttp.ClientSession, pair: tuple[int, int] | None = None) -> None:
        a, b = pair or tuple(self.rng.sample(self.ids, 2))
        body = {"entity1_id": a, "entity2_id": b, "selected_entity_id": self.rng.choice([a, b, None])}
        key = str(uuid.uuid4())
        answer = await self.keyed_write(session, "vote", "/comparisons/", body, key)
        if answer is None:
            return
        status, raw, replayed = answer
        if status == 200 and not replayed:
            self.tally.acknowledged_votes[key] = json.loads(raw)
            self.tally.vote_bodies[key] = body
            self.tally.vote_raw[key] = raw
        elif status != 200:
            self.tally.unexpected.append(f"vote answered {status}: {raw[:200]!r}")

    async def bandit_vote(self, session: aiohttp.ClientSession) -> None:
        try:
            async with session.get(f"{self.base}/mab/next_comparison") as resp:
                self.tally.statuses[("pair", resp.status)] += 1
                if resp.status != 200:
                    return
                pair = await resp.json()
        except aiohttp.ClientError:
            self.tally.statuses[("pair", 0)] += 1
            return
        await self.vote(session, (pair["entity1"]["id"], pair["entity2"]["id"]))

    async def create_entity(self, session: aiohttp.ClientSession) -> None:
        key = str(uuid.uuid4())
        answer = await self.keyed_write(session, "create", "/entities/", {"name": f"soak {key[:8]}"}, key)
        if answer is not None and answer[0] == 200 and not answer[2]:
            self.tally.created_entities[key] = json.loads(answer[1])["id"]

    async def replay(self, session: aiohttp.ClientSession) -> None:
        if not self.tally.acknowledged_votes:
            return
        key = self.rng.choice(list(self.tally.acknowledged_votes))
        answer = await self.keyed_write(session, "replay", "/comparisons/", self.tally.vote_bodies[key], key)
        if answer is None:
            return
        self.tally.replays += 1
        status, raw, replayed = answer
        if status != 200 or not replayed or raw != self.tally.vote_raw[key]:
            self.tally.replay_mismatches += 1

    async def read(self, session: aiohttp.ClientSession) -> None:
        path = self.rng.choice(["/ratings", "/entities/?limit=20", "/comparisons/?limit=20", "/health/ready"])
        try:
            async with session.get(f"{self.base}{path}") as resp:
                await resp.read()
                self.tally.statuses[("read", resp.status)] += 1
                if resp.status not in (200, 503):
                    self.tally.unexpected.append(f"GET {path} answered {resp.status}")
        except aiohttp.ClientError as exc:
            self.tally.statuses[("read", 0)] += 1
            self.tally.unexpected.append(f"read: connection error {type(exc).__name__}")

    async def client(self, think: float, reconnect_every: int) -> None:
        while time.monotonic() < self.deadline:
            # A new session now and then: fresh connections spread over the workers
            # (a kept-alive connection stays with the worker that accepted it).
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
                for _ in range(reconnect_every):
                    if time.monotonic() >= self.deadline:
                        break
                    roll = self.rng.random()
                    if roll < 0.50:
                        await self.vote(session)
                    elif roll < 0.65:
                        await self.bandit_vote(session)
                    elif roll < 0.65 + self.create_share:
                        await self.create_entity(session)
                    elif roll < 0.78:
                        await self.replay(session)
                    else:
                        await self.read(session)
                    await asyncio.sleep(think)


def worker_pids(master: int) -> list[int]:
    try:
        text = Path(f"/proc/{master}/task/{master}/children").read_text()
    except OSError:
        return []
    return sorted(int(p) for p in text.split())


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


async def faults(
    pg: PostgresInstance, redis: RedisInstance, every: float, outage: float, deadline: float, log
):
    n = 0
    while time.monotonic() + every < deadline:
        await asyncio.sleep(every)
        n += 1
        if n % 2 == 1:
            mode = "fast" if (n // 2) % 2 == 0 else "immediate"
            started = time.monotonic()
            await asyncio.to_thread(pg.stop, mode)
            await asyncio.sleep(outage)
            await asyncio.to_thread(pg.start)
            log.append(f"PostgreSQL stopped ({mode}) for {time.monotonic() - started:.1f} s")
        else:
            started = time.monotonic()
            await asyncio.to_thread(redis.stop)
            await asyncio.sleep(outage)
            await asyncio.to_thread(redis.start)
            log.append(f"Redis stopped for {time.monotonic() - started:.1f} s")


async def sample_memory(
    master: int, samples: list[tuple[float, dict[int, float]]], started: float, deadline: float
):
    interval = max(5.0, (deadline - started) / 20)
    while time.monotonic() < deadline:
        samples.append((time.monotonic() - started, {p: rss_mib(p) or 0.0 for p in worker_pids(master)}))
        await asyncio.sleep(min(interval, max(0.1, deadline - time.monotonic())))
    samples.append((time.monotonic() - started, {p: rss_mib(p) or 0.0 for p in worker_pids(master)}))


def check_database(url: str, tally: Tally, seeded: int) -> list[str]:
    problems = []
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT id FROM comparisons ORDER BY id")
        stored = [r[0] for r in cur.fetchall()]
        cur.execute("SELECT count(*), sum(rating), sum(comparisons), sum(wins), sum(ties) FROM entities")
        entities, rating_sum, counters, wins, ties = cur.fetchone()
        cur.execute("SELECT count(*) FROM comparisons WHERE selected_entity_id IS NULL")
        (tie_votes,) = cur.fetchone()
    conn.close()
    acked = sorted(v["id"] for v in tally.acknowledged_votes.values())
    if len(set(acked)) != len(acked):
        problems.append("two acknowledged votes share an id")
    missing = sorted(set(acked) - set(stored))
    extra = sorted(set(stored) - set(acked))
    if missing:
        problems.append(f"{len(missing)} acknowledged votes are not stored: {missing[:10]}")
    if extra:
        problems.append(f"{len(extra)} stored votes were never acknowledged: {extra[:10]}")
    if abs(float(rating_sum) - entities * 1500.0) > 1e-6:
        problems.append(f"ratings sum to {rating_sum}, expected {entities * 1500.0}")
    if counters != 2 * len(stored):
        problems.append(f"entity comparison counters {counters} != 2 x {len(stored)} stored votes")
    if wins != len(stored) - tie_votes or ties != 2 * tie_votes:
        problems.append("win/tie counters disagree with the vote log")
    if entities != seeded + len(tally.created_entities):
        problems.append(f"{entities} entities stored, {seeded + len(tally.created_entities)} acknowledged")
    return problems


def start_gunicorn(port: int, workers: int, env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [
                sys.executable, "-m", "gunicorn", "compere.http.app:create_app",
                "--worker-class", "aiohttp.GunicornWebWorker",
                "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
                "--graceful-timeout", "10", "--no-control-socket",
            ],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip


async def soak(args: argparse.Namespace) -> int:
    pg = PostgresInstance()
    redis = RedisInstance(persistent=True)
    gunicorn: subprocess.Popen[bytes] | None = None
    log_path = Path(pg.base) / "gunicorn.log"
    try:
        pg.start()
        redis.start()
        url = pg.create_database("compere")
        port = free_port()
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "DATABASE_URL": url,
            "REDIS_URL": redis.url(),
            "LOG_REQUESTS": "false",
            "LOG_LEVEL": "ERROR",
            "DB_POOL_MAX": "8",
            "DB_POOL_TIMEOUT": "1",
            "DB_STATEMENT_TIMEOUT_MS": "3000",
            "IDEMPOTENCY_LOCK_TTL": "10",
        }
        gunicorn = start_gunicorn(port, args.workers, env, log_path)
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as session:
            for _ in range(300):
                try:
                    async with session.get(f"{base}/health/ready") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
            else:
                print(log_path.read_text(), file=sys.stderr)
                return 2
            ids = []
            for i in range(SEED_ENTITIES):
                async with session.post(f"{base}/entities/", json={"name": f"seed {i}"}) as resp:
                    ids.append((await resp.json())["id"])

        tally = Tally()
        fault_log: list[str] = []
        samples: list[tuple[float, dict[int, float]]] = []
        started = time.monotonic()
        deadline = started + args.duration
        print(
            f"soak: {args.duration:.0f} s, {args.workers} workers, {args.clients} clients on {base}",
            flush=True,
        )
        load = Load(base, ids, tally, deadline, seed=args.seed, create_share=args.create_share)
        await asyncio.gather(
            *(load.client(args.think, args.reconnect_every) for _ in range(args.clients)),
            faults(pg, redis, args.fault_every, args.outage, deadline, fault_log),
            sample_memory(gunicorn.pid, samples, started, deadline),
        )
        elapsed = time.monotonic() - started
        problems = check_database(url, tally, SEED_ENTITIES)
        problems += [f"replay mismatches: {tally.replay_mismatches}"] if tally.replay_mismatches else []
        problems += [f"{tally.abandoned} writes never answered"] if tally.abandoned else []
        unexpected = collections.Counter(tally.unexpected)
        report(args, tally, fault_log, samples, elapsed, problems, unexpected)
        return 1 if problems or unexpected else 0
    finally:
        if gunicorn is not None and gunicorn.poll() is None:
            gunicorn.send_signal(signal.SIGTERM)
            try:
                gunicorn.wait(timeout=30)
            except subprocess.TimeoutExpired:
                gunicorn.kill()
                gunicorn.wait()
        redis.destroy()
        pg.destroy()


def report(args, tally: Tally, fault_log, samples, elapsed, problems, unexpected) -> None:
    total = sum(tally.statuses.values())
    print(f"\n## Soak report ({elapsed:.0f} s, {args.workers} gunicorn workers, {args.clients} clients)\n")
    print(f"- requests: {total} ({total / elapsed:.0f}/s); write retries after 409/503: {tally.retries}")
    by_kind: dict[str, collections.Counter[int]] = collections.defaultdict(collections.Counter)
    for (kind, status), count in tally.statuses.items():
        by_kind[kind][status] += count
    for kind in sorted(by_kind):
        statuses = ", ".join(f"{s}: {c}" for s, c in sorted(by_kind[kind].items()))
        print(f"- {kind}: {statuses}")
    print(
        f"- acknowledged votes: {len(tally.acknowledged_votes)}; entities created: {len(tally.created_entities)}"
    )
    print(f"- replays of finished keys: {tally.replays}, mismatched: {tally.replay_mismatches}")
    print(f"- faults injected: {len(fault_log)}")
    for line in fault_log:
        print(f"  - {line}")
    if samples:
        points = [samples[0], samples[len(samples) // 2], samples[-1]]
        print("- worker RSS (MiB) at start / middle / end:")
        pids = sorted({p for _, s in points for p in s})
        for pid in pids:
            values = " / ".join(f"{s.get(pid, 0.0):.1f}" for _, s in points)
            print(f"  - worker {pid}: {values}  (t = {' / '.join(f'{t:.0f}' for t, _ in points)} s)")
        print(f"- worker RSS (MiB) every {samples[1][0] - samples[0][0] if len(samples) > 1 else 0:.0f} s:")
        for pid in pids:
            print(f"  - worker {pid}: " + " ".join(f"{s.get(pid, 0.0):.1f}" for _, s in samples))
    print(f"- invariants: {'all hold' if not problems else 'VIOLATED'}")
    for p in problems:
        print(f"  - {p}")
    if unexpected:
        print("- unexpected answers:")
        for text, count in unexpected.most_common(10):
            print(f"  - {count} x {text}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=600, help="seconds of load (default 600)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_argument("--think", type=float, default=0.005, help="pause between a client's requests (s)")
    parser.add_argument("--fault-every", type=float, default=30, help="seconds between injected outages")
    parser.add_argument("--outage", type=float, default=3, help="seconds a stopped server stays down")
    parser.add_argument("--reconnect-every", type=int, default=100, help="requests per client connection")
    parser.add_argument(
        "--create-share", type=float, default=0.03, help="share of requests creating entities (0 to 0.13)"
    )
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    return asyncio.run(soak(args))


if __name__ == "__main__":
    sys.exit(main())
