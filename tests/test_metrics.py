"""``/metrics``: off by default, address-restricted, labelled by route template, summed across workers."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families

from compere.http.routes import ROUTE_TABLE
from tests.helpers import ADMIN, ALICE, TEST_SECRET_KEY, bearer, empty_postgres, log_in, sign_up
from tests.servers import free_port

REPO = Path(__file__).resolve().parents[1]


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Every sample of metric ``name`` as {sorted labels: value}."""
    found: dict[tuple[tuple[str, str], ...], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def total(text: str, name: str, **labels: str) -> float:
    return sum(
        value for key, value in samples(text, name).items() if all((k, v) in key for k, v in labels.items())
    )


async def scrape(client) -> str:
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.content_type == "text/plain"
    return await resp.text()


async def test_metrics_come_from_the_route_table_but_stay_out_of_the_api_document(make_client):
    (route,) = [r for r in ROUTE_TABLE if r.path == "/metrics"]
    assert route.method == "GET" and not route.documented
    client = await make_client(METRICS_ENABLED="true")
    assert (await client.get("/metrics")).status == 200  # loopback
    assert (await client.head("/metrics")).status == 200
    assert (await client.get("/metrics/", allow_redirects=False)).status == 307
    doc = await (await client.get("/openapi.json")).json()
    assert "/metrics" not in doc["paths"]


async def test_metrics_are_off_by_default(client):
    assert (await client.get("/metrics")).status == 404


async def test_requests_are_counted_by_route_template_and_status(make_client, create_entities):
    client = await make_client(METRICS_ENABLED="true")
    before = await scrape(client)
    a, b = await create_entities(2)  # uses the default client: counted elsewhere
    for entity in (a, b, a):
        assert (await client.get(f"/entities/{entity['id']}")).status == 200
    assert (await client.get("/entities/999999")).status == 404
    assert (await client.get("/no/such/page")).status == 404
    vote = {"entity1_id": a["id"], "entity2_id": b["id"], "selected_entity_id": None}
    assert (await client.post("/comparisons/", json=vote)).status == 200
    vote["selected_entity_id"] = a["id"]
    assert (await client.post("/comparisons/", json=vote)).status == 200
    after = await scrape(client)

    def delta(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    route = "/entities/{entity_id}"
    assert delta("compere_http_requests_total", route=route, status="200", method="GET") == 3
    assert delta("compere_http_requests_total", route=route, status="404") == 1
    assert delta("compere_http_requests_total", route="unmatched", status="404") == 1
    assert delta("compere_http_request_duration_seconds_count", route=route) == 4
    assert delta("compere_votes_recorded_total", outcome="tie") == 1
    assert delta("compere_votes_recorded_total", outcome="win") == 1
    routes = {dict(k)["route"] for k in samples(after, "compere_http_requests_total")}
    assert not any(str(a["id"]) in r or "999999" in r or "/no/such" in r for r in routes), routes
    for name in (
        "compere_rate_limit_refusals_total",
        "compere_auth_failures_total",
        "compere_redis_errors_total",
    ):
        assert f"# TYPE {name} counter" in after


async def test_a_missing_static_file_is_counted_with_the_status_it_got(make_client):
    client = await make_client(METRICS_ENABLED="true")
    before = await scrape(client)
    assert (await client.get("/app/no-such-file.js")).status == 404
    assert (await client.get("/app/api.js")).status == 200
    after = await scrape(client)

    def static(text: str, status: str) -> float:
        counts = samples(text, "compere_http_requests_total")
        return sum(
            v
            for k, v in counts.items()
            if dict(k)["route"].startswith("/app") and dict(k)["status"] == status
        )

    assert static(after, "404") - static(before, "404") == 1
    assert static(after, "200") - static(before, "200") == 1


async def test_only_allowed_addresses_may_read_metrics(make_client):
    client = await make_client(METRICS_ENABLED="true", METRICS_ALLOWED_IPS="10.0.0.0/8, 192.0.2.7")
    resp = await client.get("/metrics")
    assert resp.status == 403
    assert (await resp.json())["detail"] == "Metrics are not available to this client"


async def test_a_superuser_token_opens_metrics_from_any_address(make_auth_client):
    client = await make_auth_client(METRICS_ENABLED="true", METRICS_ALLOWED_IPS="10.0.0.0/8")
    assert (await sign_up(client, *ADMIN)).status == 200  # the first user is a superuser
    admin = await log_in(client, *ADMIN)
    assert (await sign_up(client, *ALICE, token=admin)).status == 200
    alice = await log_in(client, *ALICE)

    assert (await client.get("/metrics")).status == 403
    assert (await client.get("/metrics", headers=bearer(alice))).status == 403
    assert (await client.get("/metrics", headers=bearer("not-a-token"))).status == 403
    resp = await client.get("/metrics", headers=bearer(admin))
    assert resp.status == 200
    assert "compere_http_requests_total" in await resp.text()
    # A logged-out token no longer opens it.
    assert (await client.post("/auth/logout", headers=bearer(admin))).status == 200
    assert (await client.get("/metrics", headers=bearer(admin))).status == 403


async def test_with_auth_off_only_the_address_list_opens_metrics(make_client, auth_redis):
    # Users and tokens exist (the /auth/ endpoints work with auth off) but are not checked.
    client = await make_client(
        METRICS_ENABLED="true",
        METRICS_ALLOWED_IPS="10.0.0.0/8",
        SECRET_KEY=TEST_SECRET_KEY,
        BCRYPT_ROUNDS="10",
        **auth_redis.env(),
    )
    assert (await sign_up(client, *ADMIN)).status == 200
    admin = await log_in(client, *ADMIN)
    assert (await client.get("/metrics", headers=bearer(admin))).status == 403


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_pool_use_and_waits_are_measured(make_client, create_entities):
    client = await make_client(METRICS_ENABLED="true", DB_POOL_MAX="1", DB_POOL_MIN="1")
    entity = (await create_entities(1))[0]
    before = await scrape(client)
    statuses = await asyncio.gather(*(client.get(f"/entities/{entity['id']}") for _ in range(20)))
    assert {r.status for r in statuses} == {200}
    after = await scrape(client)
    assert total(after, "compere_db_pool_waits_total") > total(before, "compere_db_pool_waits_total")
    assert total(after, "compere_db_pool_wait_seconds_count") > total(
        before, "compere_db_pool_wait_seconds_count"
    )
    assert "compere_db_pool_connections_in_use" in after


# --- two gunicorn workers ------------------------------------------------------------


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _requests_counted_by(folder: Path, pid: int) -> float:
    """What one worker alone wrote to its counter file for HTTP requests."""
    path = folder / f"counter_{pid}.db"
    if not path.exists():
        return 0.0
    return sum(
        value
        for key, value, _timestamp, _pos in MmapedDict.read_all_values_from_file(str(path))
        if '"compere_http_requests_total"' in key
    )


async def test_two_gunicorn_workers_report_summed_counts(shared_postgres_url, tmp_path):
    empty_postgres(shared_postgres_url)
    folder = tmp_path / "prometheus"
    folder.mkdir()
    stale = folder / "counter_999999.db"  # left by an earlier run: gunicorn.conf.py clears it
    stale.write_bytes(b"stale")
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "DATABASE_URL": shared_postgres_url,
        "METRICS_ENABLED": "true",
        "PROMETHEUS_MULTIPROC_DIR": str(folder),
        "LOG_REQUESTS": "false",
        "LOG_LEVEL": "WARNING",
    }
    log_path = tmp_path / "gunicorn.log"
    log_file = log_path.open("wb")
    server = await asyncio.create_subprocess_exec(
        *[
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            str(REPO / "gunicorn.conf.py"),
            "compere.http.app:create_app",
            "--worker-class",
            "aiohttp.GunicornWebWorker",
            "-w",
            "2",
            "--bind",
            f"127.0.0.1:{port}",
            "--no-control-socket",
        ],
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=log_file,
    )
    base = f"http://127.0.0.1:{port}"
    # A fresh connection per request, so the kernel spreads them over both workers.
    connector = aiohttp.TCPConnector(force_close=True, limit=20)
    try:
        async with aiohttp.ClientSession(connector=connector) as session:
            deadline = time.monotonic() + 30
            while True:
                try:
                    async with session.get(f"{base}/health") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                assert server.returncode is None, log_path.read_text()
                assert time.monotonic() < deadline, "gunicorn did not start"
                await asyncio.sleep(0.2)
            health_calls = 1
            ids = []
            for name in ("left", "right"):
                async with session.post(f"{base}/entities/", json={"name": name}) as resp:
                    ids.append((await resp.json())["id"])

            async def get_health() -> None:
                async with session.get(f"{base}/health") as resp:
                    assert resp.status == 200

            async def vote(i: int) -> None:
                body = {"entity1_id": ids[0], "entity2_id": ids[1], "selected_entity_id": ids[i % 2]}
                async with session.post(f"{base}/comparisons/", json=body) as resp:
                    assert resp.status == 200

            assert not stale.exists()
            workers = _children(server.pid)
            assert len(workers) == 2, workers
            for _ in range(10):  # until both workers have answered some requests
                await asyncio.gather(*(get_health() for _ in range(40)))
                health_calls += 40
                if all(_requests_counted_by(folder, pid) > 0 for pid in workers):
                    break
            per_worker = [_requests_counted_by(folder, pid) for pid in workers]
            assert all(n > 0 for n in per_worker), per_worker
            await asyncio.gather(*(vote(i) for i in range(12)))

            # Whichever worker answers the scrape, it reports the sum over both.
            for _ in range(4):
                async with session.get(f"{base}/metrics") as resp:
                    assert resp.status == 200
                    text = await resp.text()
                assert total(text, "compere_http_requests_total", route="/health") == health_calls
                assert total(text, "compere_votes_recorded_total", outcome="win") == 12
                assert total(text, "compere_http_request_duration_seconds_count", route="/comparisons/") == 12
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(server.wait(), 20)
        except TimeoutError:
            server.kill()
            await server.wait()
        log_file.close()
