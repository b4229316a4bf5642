"""The benchmark's load generator: loopback only, capped, and its scenarios really work.

The scenarios run for a fraction of a second against the real service (SQLite and
PostgreSQL), so a change in the API that breaks the benchmark shows up here, not in the
middle of a half-hour benchmark run. No timing is asserted.
"""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bench import loadgen
from bench.net import LoopbackOnlyError, require_loopback_host, require_loopback_url


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost"])
def test_loopback_hosts_are_accepted(host: str) -> None:
    require_loopback_host(host)


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1:8080",
        "http://192.168.1.20",
        "http://0.0.0.0:8080",
        "http://[::2]:80",
        "http://example.com/",
        "http://127.0.0.1.example.com/",
        "ftp://127.0.0.1/",
    ],
)
def test_other_targets_are_refused(url: str) -> None:
    with pytest.raises(LoopbackOnlyError):
        require_loopback_url(url)


def test_command_line_refuses_a_remote_target_before_sending_anything(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert loadgen.main(["--url", "http://203.0.113.5:8080", "--scenario", "next"]) == 2
    assert "non-loopback" in capsys.readouterr().err


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert loadgen.percentile(values, 50) == 50.0
    assert loadgen.percentile(values, 99) == 99.0
    assert loadgen.percentile(values, 100) == 100.0
    assert loadgen.percentile([], 50) is None


async def test_every_scenario_runs_against_the_service(make_client) -> None:
    client = await make_client()
    base_url = str(client.make_url("")).rstrip("/")
    options = loadgen.LoadOptions(concurrency=4, duration=0.4, request_timeout=10)

    entity_ids = await loadgen.seed(base_url, 12, options)
    assert len(entity_ids) == 12
    records = await loadgen.measure(base_url, list(loadgen.DEFAULT_ORDER), options, entity_ids=entity_ids)

    assert [r["scenario"] for r in records] == list(loadgen.DEFAULT_ORDER)
    for record in records:
        assert record["status"] == "ok", record
        assert record["errors"] == 0 and record["ok"] > 0, record
        assert record["p50_ms"] <= record["p99_ms"] <= record["max_ms"]
    loop = next(r for r in records if r["scenario"] == "vote-loop")
    assert loop["loops_per_s"] > 0

    # The votes were really recorded, and Elo stayed zero-sum.
    ratings = await (await client.get("/ratings")).json()
    assert abs(sum(e["rating"] for e in ratings) - 1500.0 * len(ratings)) < 1e-6
    assert any(e["rating"] != 1500.0 for e in ratings)


async def test_request_cap_holds_whatever_the_concurrency(make_client) -> None:
    client = await make_client()
    base_url = str(client.make_url("")).rstrip("/")
    entity_ids = await loadgen.seed(base_url, 4, loadgen.LoadOptions(concurrency=2))
    options = loadgen.LoadOptions(concurrency=8, duration=30, max_requests=7)

    records = await loadgen.measure(base_url, ["compare", "vote-loop"], options, entity_ids=entity_ids)

    assert records[0]["requests"] == 7
    assert records[1]["requests"] == 6  # three loops of two requests fit under seven


async def test_a_server_that_never_answers_is_a_timeout() -> None:
    async def hang(request: web.Request) -> web.Response:
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    app = web.Application()
    app.router.add_get("/mab/next_comparison", hang)
    async with TestServer(app, host="127.0.0.1") as server:
        options = loadgen.LoadOptions(concurrency=3, duration=0.2, request_timeout=0.5)
        (record,) = await loadgen.measure(str(server.make_url("")).rstrip("/"), ["next"], options)

    assert record["status"] == "timeout"
    assert record["ok"] == 0
    assert record["error_kinds"] == {"client_timeout": 3}
