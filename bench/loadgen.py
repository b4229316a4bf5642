"""Bounded HTTP load generator for Compere and API-compatible servers.

Loopback only: it refuses any target that is not 127.0.0.0/8, ::1 or ``localhost``.
Every run is capped both in duration and in request count.

Scenarios (one request = one HTTP round trip):

* ``create``      POST /entities/
* ``next``        GET /mab/next_comparison
* ``compare``     POST /comparisons/ with a random pair and a random winner
* ``vote-loop``   GET /mab/next_comparison, then POST /comparisons/ for that pair (with
  its ``pair_token`` when the server hands one out)
* ``leaderboard`` GET /ratings
* ``mixed``       45% next, 35% compare, 15% GET /entities/{id}, 5% leaderboard

Seeding N entities is either through the API (concurrent POST /entities/) or, for large
N, by SQL ``COPY`` straight into the target's database (see ``seed_sql``): the API path
measures nothing we care about at N = 100,000 and would take minutes on the original.

Results are printed as one JSON object per scenario (``--json-out`` appends them to a
file too) and as a Markdown table.

Example::

    python -m bench.loadgen --url http://127.0.0.1:8080 --seed 1000 \
        --scenario next --scenario vote-loop --duration 10 --concurrency 20
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import random
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import aiohttp

from bench.net import LoopbackOnlyError, require_loopback_url

SCENARIOS = ("create", "next", "compare", "vote-loop", "leaderboard", "mixed")
# Default order: `create` last, so the other scenarios see exactly N entities.
DEFAULT_ORDER = ("compare", "leaderboard", "next", "vote-loop", "mixed", "create")

# Hard caps: a mistyped flag must not turn into an hour-long load on a shared machine.
MAX_DURATION_S = 300.0
MAX_REQUESTS = 2_000_000
MAX_CONCURRENCY = 256
MAX_SEED = 1_000_000

T = TypeVar("T")


# --------------------------------------------------------------------------- results


@dataclass
class ScenarioResult:
    """Counts and latencies of one scenario run."""

    scenario: str
    concurrency: int
    latencies: list[float] = field(default_factory=list)  # seconds, successful requests
    errors: Counter[str] = field(default_factory=Counter)
    loops: int = 0  # completed vote loops (vote-loop only)
    elapsed: float = 0.0
    timed_out: bool = False

    @property
    def ok(self) -> int:
        return len(self.latencies)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def summary(self, **labels: object) -> dict[str, object]:
        """A flat, JSON-serialisable record of this run."""
        lat = sorted(self.latencies)
        elapsed = self.elapsed or float("nan")
        record: dict[str, object] = dict(labels)
        record.update(
            scenario=self.scenario,
            concurrency=self.concurrency,
            status="timeout" if self.timed_out else ("ok" if self.error_count == 0 else "errors"),
            duration_s=round(self.elapsed, 3),
            requests=self.ok + self.error_count,
            ok=self.ok,
            errors=self.error_count,
            error_kinds=dict(self.errors),
            throughput_rps=round(self.ok / elapsed, 2) if self.ok else 0.0,
            p50_ms=_ms(percentile(lat, 50)),
            p90_ms=_ms(percentile(lat, 90)),
            p99_ms=_ms(percentile(lat, 99)),
            max_ms=_ms(lat[-1] if lat else None),
        )
        if self.scenario == "vote-loop":
            record["loops_per_s"] = round(self.loops / elapsed, 2) if self.loops else 0.0
        return record


def percentile(sorted_values: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile of already sorted values (None when empty)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(pct / 100.0 * len(sorted_values)))
    return sorted_values[rank - 1]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 2)


# --------------------------------------------------------------------------- client


class Target:
    """A server under test plus the entity ids the scenarios draw from."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, headers: dict[str, str]):
        self.session = session
        self.base_url = base_url
        self.headers = headers
        self.entity_ids: list[int] = []
        self._created = 0

    async def request(self, method: str, path: str, payload: object | None = None) -> object:
        """One round trip; raises ``RequestFailed`` on a non-2xx status."""
        async with self.session.request(
            method, self.base_url + path, json=payload, headers=self.headers
        ) as response:
            body = await response.read()
            if response.status >= 400:
                raise RequestFailed(f"http_{response.status}")
            if not body:
                return None
            return json.loads(body)

    def new_entity_payload(self) -> dict[str, object]:
        self._created += 1
        n = self._created
        return {
            "name": f"bench entity {n} {random.getrandbits(32):08x}",
            "description": f"seeded for the benchmark, item {n}",
            "image_urls": [f"https://img.example/{n}.png"],
        }

    def random_pair(self) -> tuple[int, int]:
        a, b = random.sample(self.entity_ids, 2)
        return a, b

    async def load_entity_ids(self, page: int = 1000) -> None:
        """Collect all entity ids through GET /entities/ (for a server seeded elsewhere)."""
        ids: list[int] = []
        skip = 0
        while True:
            rows = await self.request("GET", f"/entities/?skip={skip}&limit={page}")
            assert isinstance(rows, list)
            ids.extend(int(row["id"]) for row in rows)
            if len(rows) < page:
                break
            skip += page
        self.entity_ids = ids


class RequestFailed(Exception):
    """A request that reached the server and came back with an error status."""


Step = Callable[[Target, ScenarioResult], Awaitable[None]]


async def _timed(result: ScenarioResult, call: Awaitable[object]) -> object | None:
    start = time.perf_counter()
    try:
        value = await call
    except RequestFailed as exc:
        result.errors[str(exc)] += 1
        return None
    except TimeoutError:
        result.errors["client_timeout"] += 1
        return None
    except aiohttp.ClientError as exc:
        result.errors[type(exc).__name__] += 1
        return None
    result.latencies.append(time.perf_counter() - start)
    return value if value is not None else True


async def step_create(target: Target, result: ScenarioResult) -> None:
    await _timed(result, target.request("POST", "/entities/", target.new_entity_payload()))


async def step_next(target: Target, result: ScenarioResult) -> None:
    await _timed(result, target.request("GET", "/mab/next_comparison"))


async def step_compare(target: Target, result: ScenarioResult) -> None:
    a, b = target.random_pair()
    body = {
        "entity1_id": a,
        "entity2_id": b,
        "selected_entity_id": random.choice((a, b)),
    }
    await _timed(result, target.request("POST", "/comparisons/", body))


async def step_vote_loop(target: Target, result: ScenarioResult) -> None:
    pair = await _timed(result, target.request("GET", "/mab/next_comparison"))
    if not isinstance(pair, dict):
        return
    a, b = int(pair["entity1"]["id"]), int(pair["entity2"]["id"])
    body = {
        "entity1_id": a,
        "entity2_id": b,
        "selected_entity_id": random.choice((a, b)),
    }
    if pair.get("pair_token"):  # a client of the newer API links its vote to the served pair
        body["pair_token"] = pair["pair_token"]
    if await _timed(result, target.request("POST", "/comparisons/", body)) is not None:
        result.loops += 1


async def step_leaderboard(target: Target, result: ScenarioResult) -> None:
    await _timed(result, target.request("GET", "/ratings"))


async def step_entity(target: Target, result: ScenarioResult) -> None:
    entity_id = random.choice(target.entity_ids)
    await _timed(result, target.request("GET", f"/entities/{entity_id}"))


_MIXED: tuple[tuple[Step, float], ...] = (
    (step_next, 0.45),
    (step_compare, 0.35),
    (step_entity, 0.15),
    (step_leaderboard, 0.05),
)


async def step_mixed(target: Target, result: ScenarioResult) -> None:
    steps, weights = zip(*_MIXED, strict=True)
    await random.choices(steps, weights=weights)[0](target, result)


# Requests one step of a scenario sends (for the request cap).
STEP_REQUESTS = {"vote-loop": 2}

STEPS: dict[str, Step] = {
    "create": step_create,
    "next": step_next,
    "compare": step_compare,
    "vote-loop": step_vote_loop,
    "leaderboard": step_leaderboard,
    "mixed": step_mixed,
}


async def run_scenario(
    target: Target,
    scenario: str,
    *,
    concurrency: int,
    duration: float,
    max_requests: int,
    grace: float,
) -> ScenarioResult:
    """Run ``concurrency`` closed-loop clients until the duration or request cap is hit.

    No request starts after the deadline; requests still in flight ``grace`` seconds
    after it are abandoned and counted as errors. A run in which nothing succeeded, or
    more requests timed out than succeeded, is marked as a timeout.
    """
    step = STEPS[scenario]
    result = ScenarioResult(scenario=scenario, concurrency=concurrency)
    started = time.perf_counter()
    deadline = started + duration

    # The cap counts requests as they are sent, so it holds exactly whatever the
    # concurrency (a vote loop sends two).
    per_step = STEP_REQUESTS.get(scenario, 1)
    sent = 0

    async def client() -> None:
        nonlocal sent
        while time.perf_counter() < deadline and sent + per_step <= max_requests:
            sent += per_step
            await step(target, result)

    tasks = [asyncio.ensure_future(client()) for _ in range(concurrency)]
    done, pending = await asyncio.wait(tasks, timeout=duration + grace)
    for task in pending:
        task.cancel()
    for task in pending:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    for task in done:
        task.result()  # surface programming errors instead of hiding them
    result.elapsed = min(time.perf_counter(), deadline + grace) - started
    if pending:
        result.errors["abandoned_in_flight"] += len(pending)
    # "timeout": nothing came back, or more requests timed out (client timeout, or still
    # in flight at the end) than succeeded. Failures with a status are "errors" instead.
    stuck = result.errors["client_timeout"] + result.errors["abandoned_in_flight"]
    result.timed_out = result.ok == 0 or stuck > result.ok
    return result


async def seed_api(target: Target, count: int, concurrency: int, deadline_s: float) -> float:
    """Create ``count`` entities through POST /entities/; returns the seconds it took."""
    started = time.perf_counter()
    remaining = count
    lock = asyncio.Lock()

    async def worker() -> None:
        nonlocal remaining
        while True:
            async with lock:
                if remaining <= 0:
                    return
                remaining -= 1
            if time.perf_counter() - started > deadline_s:
                raise TimeoutError(f"seeding {count} entities took over {deadline_s:.0f} s")
            entity = await target.request("POST", "/entities/", target.new_entity_payload())
            assert isinstance(entity, dict)
            target.entity_ids.append(int(entity["id"]))

    await asyncio.gather(*(worker() for _ in range(max(1, concurrency))))
    return time.perf_counter() - started


# --------------------------------------------------------------------------- output


def markdown_table(records: Iterable[dict[str, object]], extra_columns: Sequence[str] = ()) -> str:
    """Render result records as a Markdown table."""
    columns = [*extra_columns, "scenario", "concurrency", "status", "throughput_rps"]
    columns += ["p50_ms", "p90_ms", "p99_ms", "max_ms", "ok", "errors"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for record in records:
        cells = []
        for column in columns:
            value = record.get(column)
            if column == "throughput_rps" and record.get("loops_per_s") is not None:
                value = f"{value} ({record['loops_per_s']} loops/s)"
            cells.append("-" if value is None else str(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def emit(record: dict[str, object], json_out: str | None) -> None:
    line = json.dumps(record, sort_keys=True)
    print(line, flush=True)
    if json_out:
        with open(json_out, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")


# --------------------------------------------------------------------------- CLI


def positive(kind: type, cap: float) -> Callable[[str], float | int]:
    def parse(text: str) -> float | int:
        value = kind(text)
        if not 0 < value <= cap:
            raise argparse.ArgumentTypeError(f"must be in (0, {cap}]")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="base URL on loopback, e.g. http://127.0.0.1:8080")
    parser.add_argument(
        "--scenario",
        action="append",
        choices=[*SCENARIOS, "all"],
        help="scenario to run (repeatable; default: all, create last)",
    )
    parser.add_argument("--concurrency", type=positive(int, MAX_CONCURRENCY), default=20)
    parser.add_argument(
        "--duration",
        type=positive(float, MAX_DURATION_S),
        default=10.0,
        help="seconds per scenario (default %(default)s, at most 300)",
    )
    parser.add_argument(
        "--max-requests",
        type=positive(int, MAX_REQUESTS),
        default=200_000,
        help="request cap per scenario",
    )
    parser.add_argument("--request-timeout", type=positive(float, 120), default=30.0)
    parser.add_argument("--seed", type=int, default=0, help="create this many entities first")
    parser.add_argument("--seed-method", choices=["api", "sql"], default="api")
    parser.add_argument(
        "--seed-profile",
        choices=["compere", "original"],
        default="compere",
        help="table layout for --seed-method sql",
    )
    parser.add_argument("--database-url", help="postgresql://... on loopback, for --seed-method sql")
    parser.add_argument("--seed-timeout", type=positive(float, 3600), default=600.0)
    parser.add_argument("--token", help="bearer token sent with every request")
    parser.add_argument(
        "--label",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra field added to every JSON record (repeatable)",
    )
    parser.add_argument("--json-out", help="append JSON lines to this file")
    return parser


@dataclass
class LoadOptions:
    """How hard and how long to push one target."""

    concurrency: int = 20
    duration: float = 10.0
    max_requests: int = 200_000
    request_timeout: float = 30.0
    token: str | None = None


@contextlib.asynccontextmanager
async def open_target(base_url: str, options: LoadOptions) -> AsyncIterator[Target]:
    """A keep-alive client session on a loopback target."""
    base_url = require_loopback_url(base_url)
    headers = {"Authorization": f"Bearer {options.token}"} if options.token else {}
    timeout = aiohttp.ClientTimeout(total=options.request_timeout)
    connector = aiohttp.TCPConnector(limit=max(options.concurrency, 20))
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        yield Target(session, base_url, headers)


async def measure(
    base_url: str,
    scenarios: Sequence[str],
    options: LoadOptions,
    *,
    entity_ids: Sequence[int] = (),
    labels: dict[str, object] | None = None,
) -> list[dict[str, object]]:
    """Run ``scenarios`` one after the other and return one record per scenario."""
    records = []
    async with open_target(base_url, options) as target:
        target.entity_ids = list(entity_ids)
        if not target.entity_ids and any(s in ("compare", "mixed") for s in scenarios):
            await target.load_entity_ids()
        for scenario in scenarios:
            result = await run_scenario(
                target,
                scenario,
                concurrency=options.concurrency,
                duration=options.duration,
                max_requests=options.max_requests,
                grace=options.request_timeout,
            )
            records.append(result.summary(**(labels or {})))
    return records


async def seed(base_url: str, count: int, options: LoadOptions, timeout_s: float = 600.0) -> list[int]:
    """Create ``count`` entities through the API and return their ids."""
    async with open_target(base_url, options) as target:
        await seed_api(target, count, options.concurrency, timeout_s)
        return sorted(target.entity_ids)


def run_loop(coroutine: Awaitable[T]) -> T:
    """Run a coroutine on uvloop when it is installed, else on the default loop.

    A faster client leaves more of a small machine's CPU to the server under test.
    """
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)  # type: ignore[arg-type]
    return uvloop.run(coroutine)  # type: ignore[arg-type]


async def run(args: argparse.Namespace) -> list[dict[str, object]]:
    scenarios = args.scenario or ["all"]
    if "all" in scenarios:
        scenarios = list(DEFAULT_ORDER)
    labels: dict[str, object] = {}
    for item in args.label:
        key, _, value = item.partition("=")
        labels[key] = value
    options = LoadOptions(
        concurrency=args.concurrency,
        duration=args.duration,
        max_requests=args.max_requests,
        request_timeout=args.request_timeout,
        token=args.token,
    )
    entity_ids: list[int] = []
    if args.seed:
        if not 0 < args.seed <= MAX_SEED:
            raise SystemExit(f"--seed must be in (0, {MAX_SEED}]")
        started = time.perf_counter()
        if args.seed_method == "api":
            entity_ids = await seed(args.url, args.seed, options, args.seed_timeout)
        else:
            from bench.seed_sql import seed_entities  # only needed for SQL seeding

            if not args.database_url:
                raise SystemExit("--seed-method sql needs --database-url")
            entity_ids = seed_entities(args.database_url, args.seed, args.seed_profile)
        took = time.perf_counter() - started
        print(
            f"# seeded {args.seed} entities via {args.seed_method} in {took:.1f} s",
            file=sys.stderr,
            flush=True,
        )
    records = await measure(args.url, scenarios, options, entity_ids=entity_ids, labels=labels)
    for record in records:
        emit(record, args.json_out)
    return records


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        require_loopback_url(args.url)
    except LoopbackOnlyError as exc:
        print(f"loadgen: {exc}", file=sys.stderr)
        return 2
    records = run_loop(run(args))
    print(
        markdown_table(
            records,
            extra_columns=list(dict.fromkeys(key for item in args.label for key in [item.partition("=")[0]])),
        )
    )
    return 1 if any(r["status"] == "timeout" for r in records) else 0


if __name__ == "__main__":
    sys.exit(main())
