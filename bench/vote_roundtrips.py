"""How much of the vote path's cost is database round trips: three shapes of one vote.

Runs the vote transaction through aiopg, without HTTP, with 20 concurrent tasks in one
process on a scratch database (``compere_bench_roundtrips`` by default, the service's schema, N
entities), and reports votes per second and this process's CPU time per vote for:

* ``core``: ``compere.storage.comparisons.record_comparison`` as the service runs it
  (``BEGIN; SELECT ... FOR UPDATE`` / ``WITH <both UPDATEs> INSERT ...; COMMIT``: two
  round trips, Elo and the Bayesian strengths computed in Python);
* ``pipelined``: the same statements and values sent as three round trips (``BEGIN;
  SELECT ... FOR UPDATE`` / ``UPDATE; UPDATE; INSERT ... RETURNING`` / ``COMMIT``);
* ``single``: one statement (a data-modifying CTE that locks both rows in id order,
  applies the Elo update in SQL and inserts the comparison), autocommit, one round trip.
  It writes mu and sigma with stand-in arithmetic of the same write volume: the real
  Bayesian update would have to move into SQL too. An estimate of the shape, not code
  to paste.

Every variant keeps Elo zero-sum; the script checks the sum of ratings after each.

Example::

    python -m bench.vote_roundtrips --n 1000 --duration 8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiopg

from bench.loadgen import run_loop
from bench.net import require_loopback_host
from bench.pg_ceiling.run_ceiling import create_database, drop_database, prepare
from compere.domain.bayes import bayes_update
from compere.domain.elo import elo_update
from compere.storage import comparisons
from compere.storage.connect import connect

REPO = Path(__file__).resolve().parents[1]

K = 32.0
LOCK = "SELECT id, rating, mu, sigma FROM entities WHERE id IN (%(a)s, %(b)s) AND deleted_at IS NULL ORDER BY id FOR UPDATE"
APPLY = (
    "UPDATE entities SET rating = %(r{n})s, mu = %(m{n})s, sigma = %(s{n})s,"
    " comparisons = comparisons + 1,"
    " wins = wins + %(w{n})s, losses = losses + %(l{n})s, ties = ties + %(t{n})s"
    " WHERE id = %(id{n})s"
)
INSERT = (
    "INSERT INTO comparisons (entity1_id, entity2_id, selected_entity_id, created_at)"
    " VALUES (%(a)s, %(b)s, %(sel)s, now())"
    " RETURNING id, entity1_id, entity2_id, selected_entity_id, created_at"
)
PIPELINE_FIRST = "BEGIN; " + LOCK
PIPELINE_SECOND = "; ".join([APPLY.format(n=1), APPLY.format(n=2), INSERT])
SINGLE = """
WITH pair AS (
    SELECT id, rating FROM entities
    WHERE id IN (%(a)s, %(b)s) AND deleted_at IS NULL ORDER BY id FOR UPDATE
), s AS (
    SELECT r.ra, r.rb, sc.s1, 1.0 / (1.0 + power(10.0::float8, (r.rb - r.ra) / 400.0)) AS e1
    FROM (SELECT max(rating) FILTER (WHERE id = %(a)s) AS ra,
                 max(rating) FILTER (WHERE id = %(b)s) AS rb, count(*) AS found
          FROM pair) AS r,
         (SELECT CASE WHEN %(sel)s::bigint IS NULL THEN 0.5
                      WHEN %(sel)s::bigint = %(a)s THEN 1.0 ELSE 0.0 END AS s1) AS sc
    WHERE r.found = 2
), upd AS (
    UPDATE entities e SET
        rating = CASE WHEN e.id = %(a)s THEN s.ra + %(k)s * (s.s1 - s.e1)
                      ELSE s.rb - %(k)s * (s.s1 - s.e1) END,
        mu = e.mu + CASE WHEN e.id = %(a)s THEN 0.1 ELSE -0.1 END * (s.s1 - s.e1),
        sigma = e.sigma * 0.99,
        comparisons = e.comparisons + 1,
        wins = e.wins + (CASE WHEN e.id = %(a)s THEN s.s1 ELSE 1 - s.s1 END = 1)::int,
        losses = e.losses + (CASE WHEN e.id = %(a)s THEN s.s1 ELSE 1 - s.s1 END = 0)::int,
        ties = e.ties + (s.s1 = 0.5)::int
    FROM s WHERE e.id IN (%(a)s, %(b)s)
    RETURNING e.id
)
INSERT INTO comparisons (entity1_id, entity2_id, selected_entity_id, created_at)
SELECT %(a)s, %(b)s, %(sel)s, now() FROM s
RETURNING id, entity1_id, entity2_id, selected_entity_id, created_at
"""


def _vote(n: int) -> tuple[int, int, int]:
    a, b = random.sample(range(1, n + 1), 2)
    return a, b, random.choice((a, b))


def _results(a: int, b: int, sel: int, one: tuple, two: tuple) -> dict[str, object]:
    s1 = 1.0 if sel == a else 0.0
    new = elo_update(one[0], two[0], s1, K)
    bayes = bayes_update(one[1], one[2], two[1], two[2], s1)
    return {
        "a": a, "b": b, "sel": sel,
        "id1": a, "r1": new.rating1, "m1": bayes.mu1, "s1": bayes.sigma1,
        "w1": int(s1 == 1), "l1": int(s1 == 0), "t1": 0,
        "id2": b, "r2": new.rating2, "m2": bayes.mu2, "s2": bayes.sigma2,
        "w2": int(s1 == 0), "l2": int(s1 == 1), "t2": 0,
    }  # fmt: skip


async def run_variant(name: str, url: str, n: int, clients: int, duration: float) -> dict[str, object]:
    votes = 0
    deadline = 0.0
    pool = await aiopg.create_pool(url, minsize=clients, maxsize=clients, enable_hstore=False)
    database = await connect(url, pool_min=clients, pool_max=clients)

    async def core() -> None:
        a, b, sel = _vote(n)
        await comparisons.record_comparison(
            database, entity1_id=a, entity2_id=b, selected_entity_id=sel, k_factor=K
        )

    async def pipelined() -> None:
        a, b, sel = _vote(n)
        async with pool.acquire() as conn, conn.cursor() as cur:
            try:
                await cur.execute(PIPELINE_FIRST, {"a": a, "b": b})
                locked = {row[0]: row[1:] for row in await cur.fetchall()}
                await cur.execute(PIPELINE_SECOND, _results(a, b, sel, locked[a], locked[b]))
                await cur.fetchall()
                await cur.execute("COMMIT")
            except BaseException:
                await cur.execute("ROLLBACK")
                raise

    async def single() -> None:
        a, b, sel = _vote(n)
        async with pool.acquire() as conn, conn.cursor() as cur:
            await cur.execute(SINGLE, {"a": a, "b": b, "sel": sel, "k": K})
            if len(await cur.fetchall()) != 1:
                raise RuntimeError("vote not recorded")

    step: Callable[[], Awaitable[None]] = {"core": core, "pipelined": pipelined, "single": single}[name]

    async def client() -> None:
        nonlocal votes
        while time.perf_counter() < deadline:
            await step()
            votes += 1

    try:
        for _ in range(50):  # warm up connections and caches
            await step()
        cpu, wall = time.process_time(), time.perf_counter()
        deadline = wall + duration
        await asyncio.gather(*(client() for _ in range(clients)))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        async with pool.acquire() as conn, conn.cursor() as cur:
            await cur.execute("SELECT sum(rating), count(*) FROM entities")
            total, count = await cur.fetchone()
    finally:
        pool.close()
        await pool.wait_closed()
        await database.close()
    if abs(total - 1500.0 * count) > 1e-6 * count:
        raise RuntimeError(f"{name}: ratings no longer sum to N * 1500 ({total})")
    return {
        "kind": "vote_roundtrips",
        "variant": name,
        "n": n,
        "clients": clients,
        "votes_per_s": round(votes / wall, 1),
        "client_cpu_us_per_vote": round(cpu / max(votes, 1) * 1e6, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--variant", action="append", choices=["core", "pipelined", "single"])
    parser.add_argument("--db-prefix", default="compere_bench", help="prefix of the scratch database")
    args = parser.parse_args(argv)
    require_loopback_host(urlsplit(args.pg_url).hostname)
    if not 0 < args.duration <= 60:
        parser.error("--duration must be in (0, 60]")
    name = f"{args.db_prefix}_roundtrips"
    url = urlunsplit(urlsplit(args.pg_url)._replace(path="/" + name))
    create_database(args.pg_url, name)
    try:
        prepare(url, args.n, REPO / "sql" / "postgresql")
        for variant in args.variant or ["core", "pipelined", "single"]:
            record = run_loop(run_variant(variant, url, args.n, args.clients, args.duration))
            print(json.dumps(record), flush=True)
    finally:
        drop_database(args.pg_url, name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
