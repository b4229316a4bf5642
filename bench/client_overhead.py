"""What compere.client costs per vote, against plain aiohttp, at the same concurrency.

Loopback only; a bounded number of votes per round. Rounds alternate between the two so a
busy machine slows both alike::

    python -m compere serve --port 8091 &          # any server, no rate limit
    python -m bench.client_overhead --url http://127.0.0.1:8091 --votes 2000 --concurrency 100

Both send the same random votes (no pair token) with an ``Idempotency-Key`` each, so the
server does the same work; the client adds its pacing gate, retry loop and response models.
Throughput is mostly the server's; the CPU time this process spends per vote (measured
with ``time.process_time``) is the client's own cost and holds up on a busy machine.

Keep ``--concurrency`` at or below 64: above that, one server process answers some keyed
writes with 503 (its Redis pool holds 64 connections); compere.client retries those, plain
aiohttp here does not.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import random
import statistics
import time
import uuid
from urllib.parse import urlsplit

import aiohttp

from compere.client import AsyncClient


def loopback(url: str) -> str:
    host = urlsplit(url).hostname or ""
    if host != "localhost" and not ipaddress.ip_address(host).is_loopback:
        raise SystemExit("loopback targets only")
    return url.rstrip("/")


async def plain(url: str, votes: list[tuple[int, int, int]], concurrency: int) -> None:
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        slots = asyncio.Semaphore(concurrency)

        async def vote(a: int, b: int, w: int) -> None:
            async with slots:
                body = {"entity1_id": a, "entity2_id": b, "selected_entity_id": w}
                headers = {"Idempotency-Key": str(uuid.uuid4())}
                async with session.post(f"{url}/comparisons/", json=body, headers=headers) as resp:
                    assert resp.status == 200, await resp.text()
                    await resp.json()

        await asyncio.gather(*(vote(*v) for v in votes))


async def client(url: str, votes: list[tuple[int, int, int]], concurrency: int) -> None:
    async with AsyncClient(url, concurrency=concurrency) as compere:
        await asyncio.gather(*(compere.vote(*v) for v in votes))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--votes", type=int, default=2000, help="votes per round (at most 20,000)")
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3, help="rounds per contender (at most 10)")
    args = parser.parse_args()
    url = loopback(args.url)
    votes_per_round, rounds = min(args.votes, 20_000), min(args.rounds, 10)
    async with AsyncClient(url) as compere:
        ids = [(await compere.create_entity(f"bench {i}")).id for i in range(50)]
    rng = random.Random(1)
    rates: dict[str, list[float]] = {"aiohttp": [], "compere.client": []}
    cpu: dict[str, list[float]] = {"aiohttp": [], "compere.client": []}
    for _ in range(rounds):
        for name, run in (("aiohttp", plain), ("compere.client", client)):
            votes = []
            for _ in range(votes_per_round):
                a, b = rng.sample(ids, 2)
                votes.append((a, b, rng.choice((a, b))))
            wall, used = time.perf_counter(), time.process_time()
            await run(url, votes, args.concurrency)
            rates[name].append(len(votes) / (time.perf_counter() - wall))
            cpu[name].append((time.process_time() - used) / len(votes) * 1e6)
    print(f"| contender | votes/s (median of {rounds}) | client CPU µs per vote (median) | rounds, votes/s |")
    print("|---|---|---|---|")
    for name in rates:
        shown = ", ".join(f"{r:.0f}" for r in rates[name])
        print(
            f"| {name} | {statistics.median(rates[name]):.0f} | {statistics.median(cpu[name]):.0f} | {shown} |"
        )


if __name__ == "__main__":
    asyncio.run(main())
