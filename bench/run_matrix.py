"""Run the benchmark matrix: Compere (and optionally the original Compere) on PostgreSQL.

For every N (entities) and every worker count it creates a fresh database
``compere_bench_<target>_<n>_w<workers>``, gives it the target's schema, seeds N entities,
starts the server on a free loopback port, runs the scenarios of ``loadgen.py`` against
it, stops the server and drops the database. Per N it also measures the PostgreSQL
ceiling for the vote transaction (``pg_ceiling/run_ceiling.py``). Compere runs under
gunicorn with the aiohttp uvloop worker; the original runs under uvicorn with the same
number of worker processes, from its own source tree and its own Python (virtual
environment), on the same PostgreSQL server, in the same run: cells of both targets
alternate, so machine noise hits both alike.

Results go to ``bench/results/`` (JSON lines and a Markdown report) and to stdout.

Examples::

    # quick look (about 2 minutes): N = 100 and 1,000, 2 workers, 3 scenarios, 4 s each
    python -m bench.run_matrix --quick

    # the full matrix with the original in the same run
    python -m bench.run_matrix --original-src ../compere-original \\
        --original-python ../compere-original/.venv/bin/python
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg2

from bench import loadgen, wrk_compare
from bench.net import free_port, require_loopback_host
from bench.pg_ceiling.run_ceiling import measure_ceiling
from bench.seed_sql import seed_entities

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

DEFAULT_NS = (100, 1_000, 10_000, 100_000)
DEFAULT_WORKERS = (1, 2)
# `create` last so the others see exactly N entities; `next@1` is `next` with one client
# (the latency figure: p99 at N = 100,000); `compare@wrk` is `compare` driven by wrk (C),
# which leaves the cores to the server as pgbench's client does for the ceiling (opt-in).
DEFAULT_SCENARIOS = (
    "compare",
    "leaderboard",
    "next",
    "next@1",
    "vote-loop",
    "mixed",
    "create",
)
EXTRA_SCENARIOS = ("next@1", "compare@wrk")
NEEDS_PAIRS = ("next", "next@1", "vote-loop", "mixed")
# Scenarios in which the original can stall on its own connection pool (see run_cell).
STALLS_ORIGINAL = ("compare", "compare@wrk", "vote-loop", "mixed")


def with_database(admin_url: str, name: str) -> str:
    return urlunsplit(urlsplit(admin_url)._replace(path="/" + name))


def admin_execute(admin_url: str, statement: str) -> None:
    connection = psycopg2.connect(admin_url)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement)
    finally:
        connection.close()


# --------------------------------------------------------------------------- servers


@dataclass
class Server:
    """A server process under test, started in its own session so it can be stopped whole."""

    name: str
    workers: int
    database_url: str
    log_dir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        return {**os.environ, "DATABASE_URL": self.database_url}

    def cwd(self) -> Path:
        return REPO

    def prepare_schema(self) -> None:
        raise NotImplementedError

    def start(self, ready_timeout: float = 60.0) -> None:
        log = open(self.log_dir / f"{self.name}-w{self.workers}.log", "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            self.command(),
            cwd=self.cwd(),
            env=self.environment(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}; see its log")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{self.name} not ready after {ready_timeout:.0f} s")

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM the server (it finishes in-flight requests), SIGKILL its group if it hangs."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        # Worker processes of a killed master may linger for a moment; end only our group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.port = free_port()
        self.start()


@dataclass
class CompereServer(Server):
    """This repository's service under gunicorn with the aiohttp uvloop worker."""

    python: str = sys.executable
    extra_env: dict[str, str] = field(default_factory=dict)

    def command(self) -> list[str]:
        return [
            self.python, "-m", "gunicorn", "compere.http.app:create_app",
            "--worker-class", "aiohttp.GunicornUVLoopWebWorker",
            "--workers", str(self.workers),
            "--bind", f"127.0.0.1:{self.port}",
            "--no-control-socket",
        ]  # fmt: skip

    def environment(self) -> dict[str, str]:
        env = super().environment()
        env.setdefault("PYTHONPATH", str(REPO))
        # Staging: production-like, but production insists on auth and rate limiting,
        # which would measure something else (tokens; a limiter capping the very
        # throughput under test). Their cost is measured by middleware_overhead.py.
        # Request logging stays on, as in the original's default configuration.
        env.update(
            ENVIRONMENT="staging",
            SECRET_KEY=secrets.token_urlsafe(48),
            CORS_ORIGINS="https://bench.invalid",
            AUTH_ENABLED="false",
            RATE_LIMIT_ENABLED="false",
        )
        env.update(self.extra_env)
        return env

    def prepare_schema(self) -> None:
        subprocess.run(
            [self.python, "-m", "compere", "migrate"],
            cwd=REPO, env=self.environment(), check=True, capture_output=True,
        )  # fmt: skip


@dataclass
class OriginalServer(Server):
    """The original Compere (FastAPI) under uvicorn, from its own tree and Python."""

    source: Path = Path()
    python: str = "python"

    def cwd(self) -> Path:
        return self.source

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        env["DATABASE_URL"] = self.database_url
        return env

    def command(self) -> list[str]:
        return [
            self.python, "-m", "uvicorn", "compere.main:app",
            "--host", "127.0.0.1", "--port", str(self.port),
            "--workers", str(self.workers), "--log-level", "warning",
        ]  # fmt: skip

    def prepare_schema(self) -> None:
        # Importing the app creates its tables; done once here so that several workers
        # starting together do not race on CREATE TABLE.
        subprocess.run(
            [self.python, "-c", "import compere.main"],
            cwd=self.source, env=self.environment(), check=True, capture_output=True,
        )  # fmt: skip


# --------------------------------------------------------------------------- matrix


@dataclass
class Plan:
    ns: list[int]
    workers: list[int]
    scenarios: list[str]
    options: loadgen.LoadOptions
    admin_url: str
    seed_api_max: int
    ceiling_duration: int
    budget_s: float
    out: Path
    original_src: Path | None
    original_python: str | None
    original_fallback_concurrency: int = 10
    compere_env: dict[str, str] = field(default_factory=dict)
    restart_original_each_scenario: bool = True
    db_prefix: str = "compere_bench"


class Matrix:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.records: list[dict[str, object]] = []
        self.started = time.monotonic()
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        plan.out.mkdir(parents=True, exist_ok=True)
        self.jsonl = plan.out / f"matrix-{stamp}.jsonl"
        self.report_path = plan.out / f"matrix-{stamp}.md"
        self.original_timeout_from: int | None = None

    def emit(self, record: dict[str, object]) -> None:
        record.setdefault("at", datetime.now(UTC).isoformat(timespec="seconds"))
        self.records.append(record)
        line = json.dumps(record, sort_keys=True)
        print(line, flush=True)
        with open(self.jsonl, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")

    def over_budget(self) -> bool:
        return time.monotonic() - self.started > self.plan.budget_s

    def run(self) -> None:
        plan = self.plan
        for n in plan.ns:
            if plan.ceiling_duration and not self.over_budget():
                try:
                    record = measure_ceiling(
                        plan.admin_url, n, duration=plan.ceiling_duration, db_prefix=plan.db_prefix
                    )
                except Exception as exc:  # the matrix is still worth having without it
                    record = {"kind": "error", "n": n, "error": f"ceiling: {exc}"[:500]}
                self.emit(record)
            for workers in plan.workers:
                targets = ["compere"] + (["original"] if plan.original_src else [])
                for target in targets:
                    self.run_cell(target, n, workers)

    def skip_cell(self, target: str, n: int, workers: int, status: str, why: str) -> None:
        for scenario in self.plan.scenarios:
            self.emit({"target": target, "n": n, "workers": workers, "scenario": scenario,
                           "status": status, "note": why, "throughput_rps": 0.0})  # fmt: skip

    def make_server(self, target: str, workers: int, database_url: str) -> Server:
        log_dir = self.plan.out / "logs"
        log_dir.mkdir(exist_ok=True)
        if target == "compere":
            return CompereServer(f"compere-{urlsplit(database_url).path[1:]}", workers,
                                 database_url, log_dir, extra_env=self.plan.compere_env)  # fmt: skip
        assert self.plan.original_src and self.plan.original_python
        return OriginalServer(
            f"original-{urlsplit(database_url).path[1:]}", workers, database_url, log_dir,
            source=self.plan.original_src, python=self.plan.original_python,
        )  # fmt: skip

    def run_cell(self, target: str, n: int, workers: int) -> None:
        plan = self.plan
        if self.over_budget():
            self.skip_cell(target, n, workers, "skipped", "time budget spent")
            return
        if target == "original" and self.original_timeout_from is not None:
            self.skip_cell(target, n, workers, "timeout",
                           f"original timed out already at N={self.original_timeout_from}")  # fmt: skip
            return
        name = f"{plan.db_prefix}_{target}_{n}_w{workers}"
        database_url = with_database(plan.admin_url, name)
        admin_execute(plan.admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin_execute(plan.admin_url, f'CREATE DATABASE "{name}"')
        server = self.make_server(target, workers, database_url)
        labels: dict[str, object] = {"target": target, "n": n, "workers": workers}
        try:
            server.prepare_schema()
            entity_ids: list[int] = []
            if n > plan.seed_api_max:
                started = time.perf_counter()
                entity_ids = seed_entities(database_url, n, target)
                self.emit({**labels, "kind": "seed", "method": "sql",
                           "seconds": round(time.perf_counter() - started, 2)})  # fmt: skip
            server.start()
            if not entity_ids:
                started = time.perf_counter()
                entity_ids = loadgen.run_loop(loadgen.seed(server.url, n, plan.options))
                took = time.perf_counter() - started
                self.emit({**labels, "kind": "seed", "method": "api", "seconds": round(took, 2),
                           "creates_per_s": round(n / took, 1)})  # fmt: skip
                # As after the SQL seeding (and as autovacuum would within a minute): without
                # statistics the planner takes the fresh table for empty and picks plans
                # that made N = 1,000 look slower than N = 100,000.
                admin_execute(database_url, "ANALYZE")
            # One pair request before measuring: the original creates its bandit rows on
            # the first one (and 20 concurrent first calls collide on its unique key).
            loadgen.run_loop(
                loadgen.measure(server.url, ["next"], _one_request(plan.options), entity_ids=entity_ids)
            )
            first = True
            next_timed_out = False
            for scenario in plan.scenarios:
                if target == "original" and next_timed_out and scenario in NEEDS_PAIRS:
                    self.emit({**labels, "scenario": scenario, "status": "timeout",
                               "note": "next timed out", "throughput_rps": 0.0})  # fmt: skip
                    continue
                if target == "original" and plan.restart_original_each_scenario and not first:
                    # A wedged original (its pool deadlock) must not leak into the next run.
                    server.restart()
                first = False
                record = self.measure(server, scenario, entity_ids, labels)
                self.emit(record)
                fallback = plan.original_fallback_concurrency
                if (
                    target == "original"
                    and record["status"] == "timeout"
                    and scenario in STALLS_ORIGINAL
                    and fallback
                    and fallback < plan.options.concurrency
                ):
                    # Its POST /comparisons/ is an `async def` doing blocking database
                    # work; with more clients than its 15 pooled connections the pool
                    # checkout blocks the event loop for its 30 s timeout. Measure its best
                    # case too, so ratios are not taken against a stall.
                    server.restart()
                    retry = self.measure(server, scenario, entity_ids, labels, fallback)
                    retry["note"] = f"retried with {fallback} clients after a stall"
                    self.emit(retry)
                if scenario in ("next", "next@1") and record["status"] == "timeout":
                    next_timed_out = True
            if target == "original" and next_timed_out:
                self.original_timeout_from = n
        except Exception as exc:  # one broken cell must not lose the rest of the run
            self.emit({**labels, "kind": "error", "error": f"{type(exc).__name__}: {exc}"})
        finally:
            server.stop()
            admin_execute(plan.admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def measure(
        self,
        server: Server,
        scenario: str,
        entity_ids: list[int],
        labels: dict[str, object],
        concurrency: int | None = None,
    ) -> dict[str, object]:
        options = self.plan.options
        base = scenario
        if scenario == "next@1":
            base, concurrency = "next", 1
        if scenario == "compare@wrk":
            record = wrk_compare.run_compare(
                server.url,
                entity_ids,
                concurrency=concurrency or options.concurrency,
                duration=options.duration,
                request_timeout=options.request_timeout,
                labels=labels,
            )
            record["scenario"] = scenario
            return record
        if concurrency is not None:
            options = loadgen.LoadOptions(**{**vars(options), "concurrency": concurrency})
        records = loadgen.run_loop(
            loadgen.measure(server.url, [base], options, entity_ids=entity_ids, labels=labels)
        )
        record = records[0]
        record["scenario"] = scenario
        return record


def _one_request(options: loadgen.LoadOptions) -> loadgen.LoadOptions:
    return loadgen.LoadOptions(concurrency=1, duration=1.0, max_requests=1, request_timeout=60.0)


# --------------------------------------------------------------------------- report


def machine_description(admin_url: str) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    connection = psycopg2.connect(admin_url)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            pg_version = cursor.fetchone()[0]
    finally:
        connection.close()
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return (
        f"{os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, "
        f"PostgreSQL {pg_version} on loopback, load average at the end: {load}"
    )


def _get(records, **where):
    for record in records:
        if all(record.get(k) == v for k, v in where.items()) and "scenario" in record:
            return record
    return None


def _fallback(records, **where):
    for record in records:
        if all(record.get(k) == v for k, v in where.items()) and "retried" in str(record.get("note", "")):
            return record
    return None


def _fmt_rate(record, fallback=None) -> str:
    if record is None:
        return "-"
    if record.get("status") in ("timeout", "skipped"):
        text = str(record["status"])
        if fallback is not None and fallback.get("status") != "timeout":
            text += f"; {_fmt_rate(fallback)} with {fallback['concurrency']} clients"
        return text
    rate = record["throughput_rps"]
    text = f"{rate:.0f}" if rate >= 10 else f"{rate:.2f}"
    if record.get("p50_ms") is not None:
        text += f" (p50 {record['p50_ms']:.1f} / p99 {record['p99_ms']:.1f} ms)"
    if record.get("status") == "errors":
        text += f" [{record['errors']} errors]"
    return text


def _ratio(ours, theirs, fallback=None) -> str:
    if ours is None or theirs is None or ours.get("status") in ("timeout", "skipped"):
        return "-"
    if theirs.get("status") == "timeout" and fallback is not None and fallback.get("ok"):
        return f"{ours['throughput_rps'] / fallback['throughput_rps']:.1f}x (vs its best case)"
    if theirs.get("status") == "timeout" or not theirs.get("throughput_rps"):
        return "original timed out"
    return f"{ours['throughput_rps'] / theirs['throughput_rps']:.1f}x"


def render_report(records: list[dict[str, object]], plan: Plan, machine: str) -> str:
    lines = [
        f"Run at {datetime.now(UTC).isoformat(timespec='minutes')} on {machine}.",
        (
            f"{plan.options.concurrency} concurrent clients, {plan.options.duration:g} s per scenario; "
            "throughput is successful requests per second (a vote loop is two requests)."
        ),
        "",
        "| N | workers | scenario | Compere req/s (p50 / p99) | original req/s (p50 / p99) | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for n in plan.ns:
        for workers in plan.workers:
            for scenario in plan.scenarios:
                key = {"n": n, "workers": workers, "scenario": scenario}
                ours = _get(records, target="compere", **key)
                theirs = _get(records, target="original", **key)
                fallback = _fallback(records, target="original", **key)
                if ours is None and theirs is None:
                    continue
                lines.append(
                    f"| {n:,} | {workers} | {scenario} | {_fmt_rate(ours)} | "
                    f"{_fmt_rate(theirs, fallback) if plan.original_src else '-'} | "
                    f"{_ratio(ours, theirs, fallback) if plan.original_src else '-'} |"
                )
    ceilings = [r for r in records if r.get("kind") == "pg_ceiling"]
    if ceilings:
        lines += [
            "",
            (
                "PostgreSQL ceiling for the vote transaction (pgbench, same clients) and the vote "
                "path as a fraction of it (POST /comparisons/ per second; vote loops per second):"
            ),
            "",
            "| N | ceiling tps | workers | compare / ceiling | compare (wrk) / ceiling | vote loops / ceiling |",
            "|---|---|---|---|---|---|",
        ]
        for ceiling in ceilings:
            n = ceiling["n"]
            for workers in plan.workers:
                compare = _get(records, target="compere", n=n, workers=workers, scenario="compare")
                compare_wrk = _get(records, target="compere", n=n, workers=workers, scenario="compare@wrk")
                loop = _get(
                    records,
                    target="compere",
                    n=n,
                    workers=workers,
                    scenario="vote-loop",
                )
                frac_compare = (
                    f"{compare['throughput_rps'] / ceiling['tps']:.2f}"
                    if compare and compare.get("ok")
                    else "-"
                )
                frac_wrk = (
                    f"{compare_wrk['throughput_rps'] / ceiling['tps']:.2f}"
                    if compare_wrk and compare_wrk.get("ok")
                    else "-"
                )
                frac_loop = (
                    f"{loop['loops_per_s'] / ceiling['tps']:.2f}" if loop and loop.get("loops_per_s") else "-"
                )
                lines.append(
                    f"| {n:,} | {ceiling['tps']:.0f} | {workers} | {frac_compare} | {frac_wrk} | {frac_loop} |"
                )
    errors = [r for r in records if r.get("kind") == "error"]
    for record in errors:
        lines.append(f"\nCell failed: {record}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, action="append", help="entities (repeatable)")
    parser.add_argument("--workers", type=int, action="append", help="gunicorn workers (repeatable)")
    parser.add_argument(
        "--scenario",
        action="append",
        choices=[*loadgen.SCENARIOS, *EXTRA_SCENARIOS],
        help="scenario (repeatable)",
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per scenario")
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--request-timeout", type=float, default=30.0)
    parser.add_argument(
        "--pg-url",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="loopback PostgreSQL server (a database to connect to for admin)",
    )
    parser.add_argument(
        "--seed-api-max",
        type=int,
        default=1_000,
        help="seed through POST /entities/ up to this N, by SQL COPY above",
    )
    parser.add_argument(
        "--ceiling-duration",
        type=int,
        default=10,
        help="seconds of pgbench per N (0: skip the ceiling)",
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=3 * 3600,
        help="stop starting new cells after this many seconds",
    )
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument(
        "--db-prefix",
        default="compere_bench",
        help="prefix of the scratch databases the run creates and drops (default %(default)s)",
    )
    parser.add_argument(
        "--original-src",
        type=Path,
        help="checkout of the original Compere (its compere/ package inside)",
    )
    parser.add_argument("--original-python", help="Python of the original's virtualenv")
    parser.add_argument("--original-only", action="store_true", help="skip Compere's cells")
    parser.add_argument(
        "--original-fallback-concurrency",
        type=int,
        default=10,
        help="re-measure an original scenario that stalled, with this many clients (0: don't)",
    )
    parser.add_argument(
        "--compere-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for Compere's server, e.g. DB_POOL_MAX=20 (repeatable)",
    )
    parser.add_argument(
        "--report-from",
        type=Path,
        nargs="+",
        metavar="JSONL",
        help="only render a report from earlier results files",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="N=100 and 1,000, 2 workers, compare/next/vote-loop, 4 s each",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    require_loopback_host(urlsplit(args.pg_url).hostname)
    if bool(args.original_src) != bool(args.original_python):
        raise SystemExit("--original-src and --original-python go together")
    if args.quick:
        args.n = args.n or [100, 1_000]
        args.workers = args.workers or [2]
        args.scenario = args.scenario or ["compare", "next", "vote-loop"]
        args.duration = min(args.duration, 4.0)
        args.ceiling_duration = min(args.ceiling_duration, 4)
    options = loadgen.LoadOptions(
        concurrency=args.concurrency,
        duration=min(args.duration, loadgen.MAX_DURATION_S),
        request_timeout=args.request_timeout,
    )
    plan = Plan(
        ns=args.n or list(DEFAULT_NS),
        workers=args.workers or list(DEFAULT_WORKERS),
        scenarios=args.scenario or list(DEFAULT_SCENARIOS),
        options=options,
        admin_url=args.pg_url,
        seed_api_max=args.seed_api_max,
        ceiling_duration=args.ceiling_duration,
        budget_s=args.budget,
        out=args.out,
        original_src=args.original_src.resolve() if args.original_src else None,
        original_python=args.original_python,
        original_fallback_concurrency=args.original_fallback_concurrency,
        compere_env=dict(item.split("=", 1) for item in args.compere_env),
        db_prefix=args.db_prefix,
    )
    if not plan.db_prefix.replace("_", "").isalnum():
        raise SystemExit("--db-prefix: letters, digits and underscores only")
    if "compare@wrk" in plan.scenarios and not wrk_compare.available():
        raise SystemExit("compare@wrk needs wrk on PATH (Debian: apt-get install wrk)")
    if args.report_from:
        records = [
            json.loads(line)
            for path in args.report_from
            for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()
        ]
        plan.ns = sorted({r["n"] for r in records if "n" in r})
        plan.workers = sorted({r["workers"] for r in records if "workers" in r})
        seen = [r["scenario"] for r in records if "scenario" in r]
        plan.scenarios = [s for s in (*DEFAULT_SCENARIOS, "compare@wrk") if s in seen]
        if any(r.get("target") == "original" for r in records):
            plan.original_src = plan.original_src or Path("original")
        print(render_report(records, plan, machine_description(plan.admin_url)))
        return 0
    matrix = Matrix(plan)
    # SIGTERM ends the run like Ctrl-C does: servers stopped, databases dropped, report.
    signal.signal(signal.SIGTERM, _interrupt)
    if args.original_only:
        if not plan.original_src:
            raise SystemExit("--original-only needs --original-src")
        matrix.run_cell = _only_original(matrix.run_cell)  # type: ignore[method-assign]
    try:
        matrix.run()
    finally:
        report = render_report(matrix.records, plan, machine_description(plan.admin_url))
        matrix.report_path.write_text(report, encoding="utf-8")
        print(report)
        print(
            f"# results: {matrix.jsonl}\n# report: {matrix.report_path}",
            file=sys.stderr,
        )
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _only_original(run_cell):
    def run(target: str, n: int, workers: int) -> None:
        if target == "original":
            run_cell(target, n, workers)

    return run


if __name__ == "__main__":
    sys.exit(main())
