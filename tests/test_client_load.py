"""The client under load against a real server process, on SQLite and PostgreSQL.

- 100 votes in flight at once through one client, with a Redis-backed rate limit low
  enough that the server refuses some: every vote is stored exactly once, and the server's
  own request log shows the client never sent more than one window's quota beyond the limit
  in any window (it waited as told instead of hammering).
- The server is stopped by its PID and started again on the same port and database in the
  middle of a run: every vote is stored exactly once (idempotency keys, kept in Redis
  across the restart, make the retried ones replays); after a crash (SIGKILL) too, for
  votes on served pairs.
- Answers lost after the server stored the vote: the retry is answered from the
  idempotency store, not stored again.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import signal
from collections import Counter
from datetime import datetime, timedelta

import aiohttp
import pytest

from compere.client import AsyncClient, Conflict, RetryPolicy
from tests.helpers import TEST_SECRET_KEY, stored_votes
from tests.servers import AnswerDroppingProxy, CompereProcess

pytestmark = pytest.mark.slow

LIMIT = 30
WINDOW = 2.0


def planned_votes(entity_ids: list[int], count: int, seed: int) -> list[tuple[int, int, int]]:
    """``count`` different votes (no pair and winner twice), so each stored row names its vote."""
    rng = random.Random(seed)
    options = [(a, b, w) for a, b in itertools.combinations(entity_ids, 2) for w in (a, b)]
    return rng.sample(options, count)


def arrivals(server: CompereProcess, exclude_path: str) -> list[tuple[float, int]]:
    """(arrival time in seconds, status) of each logged request, from the server's log."""
    found = []
    for entry in server.request_log():
        if entry["path"] == exclude_path:
            continue
        ended = datetime.fromisoformat(str(entry["time"]))
        started = ended - timedelta(milliseconds=float(str(entry["duration_ms"])))
        found.append((started.timestamp(), int(str(entry["status"]))))
    return sorted(found)


def busiest_window(times: list[float], window: float) -> int:
    """The most requests that arrived within any ``window`` seconds."""
    most = 0
    start = 0
    for end, at in enumerate(times):
        while times[start] <= at - window:
            start += 1
        most = max(most, end - start + 1)
    return most


async def test_hundred_votes_in_flight_under_a_rate_limit_are_stored_once_without_hammering(
    start_server, database_url
):
    server = start_server(
        RATE_LIMIT_ENABLED="true", RATE_LIMIT_REQUESTS=str(LIMIT), RATE_LIMIT_WINDOW=str(int(WINDOW))
    )
    async with AsyncClient(server.url, concurrency=100) as compere:
        entities = [await compere.create_entity(f"item {i}") for i in range(12)]
        # Someone else spends the rest of the quota, so the client meets 429s at once.
        async with aiohttp.ClientSession() as other:
            for _ in range(LIMIT + 1):
                async with other.get(f"{server.url}/ratings", params={"limit": "1"}) as resp:
                    if resp.status == 429:
                        break
            assert resp.status == 429
        plan = planned_votes([e.id for e in entities], 100, seed=1)
        results = await asyncio.gather(*(compere.vote(a, b, w) for a, b, w in plan))
        refusals_seen = compere.rate_limit.refusals

    assert len({r.id for r in results}) == 100
    stored, rating_sum = stored_votes(database_url)
    assert stored == Counter(plan)  # each vote exactly once, nothing else
    assert rating_sum == pytest.approx(12 * 1500.0)

    log = arrivals(server, exclude_path="/ratings")
    refused = [at for at, status in log if status == 429]
    assert refused, "the limit was never reached: the test proves nothing"
    assert refusals_seen == len(refused)
    assert len(refused) <= LIMIT  # it waited as told instead of retrying at once
    # Never more than one window's quota beyond the limit in any window.
    assert busiest_window([at for at, _ in log], WINDOW) <= 2 * LIMIT


async def test_a_server_restart_mid_run_loses_no_vote_and_stores_none_twice(start_server, database_url):
    server = start_server()
    retry = RetryPolicy(attempts=20, base_delay=0.1, max_delay=1.0)
    async with AsyncClient(server.url, concurrency=20, retry=retry) as compere:
        entities = [await compere.create_entity(f"item {i}") for i in range(16)]
        plan = planned_votes([e.id for e in entities], 200, seed=2)
        done = 0
        halfway = asyncio.Event()

        async def vote(a: int, b: int, winner: int) -> int:
            nonlocal done
            comparison = await compere.vote(a, b, winner)
            done += 1
            if done == 50:
                halfway.set()
            return comparison.id

        votes = asyncio.gather(*(vote(a, b, w) for a, b, w in plan))
        await halfway.wait()
        first_pid = server.process.pid if server.process else None
        await asyncio.to_thread(server.restart)  # SIGTERM by PID, then the same port and database
        ids = await votes

    assert server.process is not None and server.process.pid != first_pid
    assert len(set(ids)) == 200
    stored, rating_sum = stored_votes(database_url)
    assert stored == Counter(plan)
    assert rating_sum == pytest.approx(16 * 1500.0)
    # Both processes recorded votes: the restart really happened in the middle of the run.
    writers = {e["pid"] for e in server.request_log() if e["path"] == "/comparisons/" and e["status"] == 200}
    assert len(writers) == 2


async def test_votes_whose_answers_were_lost_are_sent_again_and_stored_once(start_server, database_url):
    server = start_server()
    first_tries: set[bytes] = set()

    def lose_first_answer(request_line: str, body: bytes) -> bool:
        if not request_line.startswith("POST /comparisons/") or body in first_tries:
            return False
        first_tries.add(body)
        return True

    async with AsyncClient(server.url) as direct:
        entities = [await direct.create_entity(f"item {i}") for i in range(8)]
    plan = planned_votes([e.id for e in entities], 40, seed=3)
    retry = RetryPolicy(attempts=3, base_delay=0.05, max_delay=0.2)
    async with (
        AnswerDroppingProxy(server.port, lose_first_answer) as proxy,
        AsyncClient(proxy.url, concurrency=10, retry=retry) as compere,
    ):
        results = await asyncio.gather(*(compere.vote(a, b, w) for a, b, w in plan))

    assert proxy.dropped == 40  # every vote's first answer was lost after the server stored it
    assert len({r.id for r in results}) == 40
    stored, rating_sum = stored_votes(database_url)
    assert stored == Counter(plan)
    assert rating_sum == pytest.approx(8 * 1500.0)


async def test_a_server_crash_mid_run_loses_no_vote_on_a_served_pair(start_server, database_url):
    # A crash (SIGKILL) can land between a vote's commit and the idempotency record: the
    # key stays locked (409 with Retry-After) until IDEMPOTENCY_LOCK_TTL, then the retry
    # runs again, and only the pair_token's single use keeps it from being stored twice.
    # SECRET_KEY signs pair tokens: without one, each process draws its own and the pairs
    # served before the crash could not be voted on after it.
    server = start_server(IDEMPOTENCY_LOCK_TTL="2", SECRET_KEY=TEST_SECRET_KEY)
    retry = RetryPolicy(attempts=40, base_delay=0.1, max_delay=1.0)
    async with AsyncClient(server.url, concurrency=20, retry=retry) as compere:
        for i in range(20):
            await compere.create_entity(f"item {i}")
        done = 0
        halfway = asyncio.Event()

        async def vote() -> str:
            nonlocal done
            pair = await compere.next_pair()
            try:
                await compere.vote_on(pair, pair.entity1)
                outcome = "stored"
            except Conflict as exc:
                assert "pair_token" in str(exc.detail)  # an earlier attempt was stored
                outcome = "stored by an earlier attempt"
            done += 1
            if done == 50:
                halfway.set()
            return outcome

        votes = asyncio.gather(*(vote() for _ in range(150)))
        await halfway.wait()
        await asyncio.to_thread(server.restart, signal.SIGKILL)
        outcomes = await votes

    assert len(outcomes) == 150
    stored, rating_sum = stored_votes(database_url)
    assert sum(stored.values()) == 150
    assert rating_sum == pytest.approx(20 * 1500.0)
