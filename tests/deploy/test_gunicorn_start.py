"""What gunicorn.conf.py does as the master starts: refuse a bad configuration before
listening, and give METRICS_ENABLED a private multiprocess folder when none is set."""

from __future__ import annotations

import http.client
import re
import subprocess
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.servers import REPO, app_environment, free_port, health_status, stop_process

PROBLEM = "compere: configuration error: "


def test_a_refused_production_configuration_stops_the_master_before_it_listens(tmp_path):
    env = app_environment(tmp_path, ENVIRONMENT="production")
    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", str(REPO / "gunicorn.conf.py"),
         "-b", f"127.0.0.1:{free_port()}", "-w", "2"],
        cwd=tmp_path, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    for never in ("Listening at", "Booting worker", "Traceback"):
        assert never not in output
    problems = [line.removeprefix(PROBLEM) for line in output.splitlines() if line.startswith(PROBLEM)]
    assert len(problems) == len(set(problems)), "each problem once"
    refused = "SECRET_KEY AUTH_ENABLED CORS_ORIGINS DATABASE_URL RATE_LIMIT_ENABLED REDIS_URL"
    assert {p.split()[0] for p in problems} == set(refused.split())
    # Nothing but gunicorn's own start line and the problems.
    others = [line for line in output.splitlines() if line and not line.startswith(PROBLEM)]
    assert len(others) == 1 and "Starting gunicorn" in others[0], others


def _served_by(log: str, path: str) -> dict[int, int]:
    """Requests for ``path`` per worker PID, from the app's request log lines."""
    counts: dict[int, int] = {}
    for pid in re.findall(rf"\[(\d+)\] compere\.request: GET {re.escape(path)} \d{{3}} ", log):
        counts[int(pid)] = counts.get(int(pid), 0) + 1
    return counts


def _scrape_health_count(port: int) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)  # a fresh connection each time
    try:
        conn.request("GET", "/metrics")
        resp = conn.getresponse()
        assert resp.status == 200
        text = resp.read().decode()
    finally:
        conn.close()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "compere_http_requests_total" and sample.labels.get("route") == "/health"
    )


def test_metrics_of_two_workers_are_summed_without_a_folder_being_set(gunicorn_factory):
    server = gunicorn_factory(workers=2, METRICS_ENABLED="true")
    found = re.search(r"metrics of every worker are summed through (\S+)", server.log.read_text())
    assert found, server.log.read_text()
    folder = Path(found.group(1))
    assert folder.is_dir() and not folder.is_relative_to(REPO)

    # Fresh connections until the kernel has handed some to each worker (bounded).
    for _ in range(500):
        assert health_status(server.port) == 200
        if len(_served_by(server.log.read_text(), "/health")) == 2:
            break
    assert len(_served_by(server.log.read_text(), "/health")) == 2

    # Scrape until each worker has answered some scrapes: all must show the same sum.
    scrapes = []
    for _ in range(500):
        scrapes.append(_scrape_health_count(server.port))
        if len(scrapes) >= 6 and len(_served_by(server.log.read_text(), "/metrics")) == 2:
            break
    assert len(_served_by(server.log.read_text(), "/metrics")) == 2
    served = sum(_served_by(server.log.read_text(), "/health").values())
    assert set(scrapes) == {served}

    assert stop_process(server.proc) == 0
    assert not folder.exists(), "the master removes the folder it made"
