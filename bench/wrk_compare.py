"""The ``compare`` scenario driven by ``wrk`` (C) instead of the Python load generator.

On a small machine the Python client competes for the same cores as the server it
measures (about a quarter of a core at 500 requests per second on 2 cores); ``wrk``
costs a tenth of that, as pgbench's C client does for the PostgreSQL ceiling. The
request mix is ``loadgen.py``'s ``compare``: ``POST /comparisons/`` for a random pair of
distinct entities with a random winner (``wrk/compare.lua``).

Example::

    python -m bench.wrk_compare --url http://127.0.0.1:8080 --ids-from-api --duration 10

Debian: ``apt-get install wrk``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bench import loadgen
from bench.net import require_loopback_url

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "wrk" / "compare.lua"

MARKER = "WRK_JSON "


def available() -> bool:
    return shutil.which("wrk") is not None


def run_compare(
    base_url: str,
    entity_ids: Sequence[int],
    *,
    concurrency: int = 20,
    duration: float = 10.0,
    threads: int = 2,
    request_timeout: float = 30.0,
    labels: dict[str, object] | None = None,
) -> dict[str, object]:
    """Run wrk against ``base_url`` and return a record shaped like ``loadgen``'s."""
    base_url = require_loopback_url(base_url)
    if not 0 < duration <= loadgen.MAX_DURATION_S:
        raise ValueError(f"duration must be in (0, {loadgen.MAX_DURATION_S:g}]")
    if not 0 < concurrency <= loadgen.MAX_CONCURRENCY:
        raise ValueError(f"concurrency must be in (0, {loadgen.MAX_CONCURRENCY}]")
    if len(entity_ids) < 2:
        raise ValueError("the compare scenario needs at least two entities")
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk not found (Debian: apt-get install wrk)")
    with tempfile.NamedTemporaryFile("w", suffix=".ids", delete=False, encoding="ascii") as handle:
        handle.write("\n".join(str(int(i)) for i in entity_ids) + "\n")
        ids_file = handle.name
    try:
        command = [
            wrk,
            f"--threads={max(1, min(threads, concurrency))}",
            f"--connections={concurrency}",
            f"--duration={max(1, round(duration))}s",
            f"--timeout={max(1, round(request_timeout))}s",
            f"--script={SCRIPT}",
            base_url + "/",
        ]
        completed = subprocess.run(
            command,
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "COMPERE_WRK_IDS": ids_file},
            timeout=duration + request_timeout + 30,
        )
    finally:
        os.unlink(ids_file)
    line = next((ln for ln in completed.stdout.splitlines() if ln.startswith(MARKER)), None)
    if completed.returncode != 0 or line is None:
        raise RuntimeError(
            f"wrk failed ({completed.returncode}): {(completed.stderr or completed.stdout)[-1000:]}"
        )
    return wrk_record(json.loads(line[len(MARKER) :]), concurrency, labels or {})


def wrk_record(raw: dict[str, int], concurrency: int, labels: dict[str, object]) -> dict[str, object]:
    """Turn the script's counters into a ``loadgen``-style record.

    wrk's latency percentiles include every answered request, failed ones too; with
    errors present they are an approximation of the successful requests' latencies.
    """
    elapsed = raw["duration_us"] / 1e6
    failed = raw["failed"]
    ok = max(raw["requests"] - raw["status_errors"], 0)
    record: dict[str, object] = dict(labels)
    record.update(
        scenario="compare",
        load_generator="wrk",
        concurrency=concurrency,
        status="timeout" if ok == 0 or raw["timeouts"] > ok else ("ok" if failed == 0 else "errors"),
        duration_s=round(elapsed, 3),
        requests=raw["requests"],
        ok=ok,
        errors=failed,
        error_kinds={key: raw[key] for key in ("status_errors", "socket_errors", "timeouts") if raw.get(key)},
        throughput_rps=round(ok / elapsed, 2) if elapsed > 0 else 0.0,
        p50_ms=raw["p50_us"] / 1000,
        p90_ms=raw["p90_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
    )
    return record


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="base URL on loopback, e.g. http://127.0.0.1:8080")
    parser.add_argument("--concurrency", type=int, default=20, help="open connections")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--request-timeout", type=float, default=30.0)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--ids-file", type=Path, help="entity ids, one per line")
    source.add_argument("--ids-from-api", action="store_true", help="read the ids through GET /entities/")
    args = parser.parse_args(argv)
    if args.ids_file:
        ids = [int(line) for line in args.ids_file.read_text(encoding="ascii").split()]
    else:
        ids = loadgen.run_loop(_ids_from_api(args.url))
    record = run_compare(
        args.url,
        ids,
        concurrency=args.concurrency,
        duration=args.duration,
        threads=args.threads,
        request_timeout=args.request_timeout,
    )
    print(json.dumps(record, sort_keys=True), flush=True)
    return 0


async def _ids_from_api(url: str) -> list[int]:
    async with loadgen.open_target(url, loadgen.LoadOptions(concurrency=1)) as target:
        await target.load_entity_ids()
        return list(target.entity_ids)


if __name__ == "__main__":
    sys.exit(main())
