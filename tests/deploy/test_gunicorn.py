"""gunicorn.conf.py: settings from the environment, CLI overrides, graceful SIGTERM."""

from __future__ import annotations

import http.client
import json
import os
import select
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psycopg2
import pytest

from tests.servers import REPO


def print_config(tmp_path: Path, env_extra: dict[str, str], *args: str) -> tuple[int, dict[str, str], str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("GUNICORN_") and k not in ("WEB_CONCURRENCY", "LOG_FORMAT")
    }
    env.update({"PYTHONPATH": str(REPO), "HOME": str(tmp_path), **env_extra})
    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", str(REPO / "gunicorn.conf.py"), "--print-config", *args],
        check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    values = {}
    for line in result.stdout.splitlines():
        name, sep, value = line.partition(" = ")
        if sep:
            values[name.strip()] = value.strip()
    return result.returncode, values, result.stdout + result.stderr


def test_defaults_serve_the_app_factory_with_aiohttp_workers(tmp_path):
    code, cfg, output = print_config(tmp_path, {})
    assert code == 0, output
    assert cfg["wsgi_app"] == "compere.http.app:create_app"
    assert cfg["worker_class"] == "aiohttp.GunicornUVLoopWebWorker"  # uvloop is a dependency
    assert cfg["workers"] == str(len(os.sched_getaffinity(0)))
    assert cfg["bind"] == "['127.0.0.1:8000']"  # never public unless asked
    assert (cfg["timeout"], cfg["graceful_timeout"], cfg["keepalive"]) == ("30", "30", "75")
    # Two instances on one machine must not fight over one control socket path.
    assert cfg["control_socket_disable"] == "True"
    assert cfg["accesslog"] == "None"
    assert cfg["logconfig_dict"] == "{}"


def test_environment_sets_values_and_command_line_wins(tmp_path):
    env = {
        "GUNICORN_BIND": "127.0.0.1:8123, 127.0.0.1:8124",
        "GUNICORN_WORKERS": "3",
        "GUNICORN_TIMEOUT": "45",
        "GUNICORN_GRACEFUL_TIMEOUT": "20",
        "GUNICORN_KEEPALIVE": "90",
        "GUNICORN_CONTROL_SOCKET": str(tmp_path / "compere.ctl"),
        "LOG_FORMAT": "json",
    }
    code, cfg, output = print_config(tmp_path, env)
    assert code == 0, output
    assert cfg["bind"] == "['127.0.0.1:8123', '127.0.0.1:8124']"
    assert (cfg["workers"], cfg["timeout"], cfg["graceful_timeout"], cfg["keepalive"]) == (
        "3",
        "45",
        "20",
        "90",
    )
    assert cfg["control_socket"] == str(tmp_path / "compere.ctl")
    assert cfg["control_socket_disable"] == "False"
    assert "compere.infra.logging.JsonFormatter" in cfg["logconfig_dict"]

    code, cfg, output = print_config(tmp_path, env, "-b", "127.0.0.1:9000", "-w", "5")
    assert code == 0, output
    assert (cfg["bind"], cfg["workers"]) == ("['127.0.0.1:9000']", "5")


def test_web_concurrency_is_honoured_when_workers_unset(tmp_path):
    code, cfg, output = print_config(tmp_path, {"WEB_CONCURRENCY": "4"})
    assert code == 0, output
    assert cfg["workers"] == "4"


@pytest.mark.parametrize("name,value", [("GUNICORN_WORKERS", "many"), ("GUNICORN_TIMEOUT", "0")])
def test_bad_value_stops_start_up_naming_the_variable(tmp_path, name, value):
    code, _, output = print_config(tmp_path, {name: value})
    assert code != 0
    assert f"{name}={value!r} is invalid" in output


def test_two_instances_run_side_by_side_without_a_control_socket(gunicorn_factory):
    first = gunicorn_factory(workers=1)
    second = gunicorn_factory(workers=1)
    for server in (first, second):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.request("GET", "/health")
        assert conn.getresponse().status == 200
        conn.close()
        assert server.proc.poll() is None
        assert not (server.tmp / ".gunicorn").exists()


def _send_post(port: int, name: str) -> socket.socket:
    body = json.dumps({"name": name}).encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(
        b"POST /entities/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    return sock


def _read_http_response(sock: socket.socket) -> tuple[int, bytes]:
    """Read one response with a Content-Length body to the end; fail if it is cut short."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "connection closed before the response (or inside its headers)"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers["content-length"])
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, f"response cut after {len(body)} of {length} body bytes"
        body += chunk
    return int(lines[0].split()[1]), body


def test_sigterm_lets_in_flight_requests_finish(gunicorn_factory):
    # DB_POOL_TIMEOUT is also SQLite's busy timeout: long enough to outwait our lock.
    server = gunicorn_factory(workers=2, GUNICORN_GRACEFUL_TIMEOUT="20", DB_POOL_TIMEOUT="30")
    database = server.tmp / "compere.db"

    # Hold the SQLite write lock, so every POST stays inside its handler (waiting on
    # the database, like a slow query) until we let go.
    blocker = sqlite3.connect(database, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        names = [f"in-flight {i}" for i in range(6)]
        socks = [_send_post(server.port, name) for name in names]
        time.sleep(0.5)  # accepted and inside the handlers

        os.kill(server.proc.pid, signal.SIGTERM)

        # Shutdown is under way: new connections are refused...
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
            except OSError:
                break
            assert time.monotonic() < deadline, "gunicorn still accepts connections after SIGTERM"
            time.sleep(0.1)
        # ...while all six requests are still unanswered and gunicorn waits for them
        # (a worker that dropped them would have exited within a second).
        time.sleep(2)
        assert select.select(socks, [], [], 0)[0] == []
        assert server.proc.poll() is None
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()

    for sock, name in zip(socks, names, strict=True):
        status, body = _read_http_response(sock)
        sock.close()
        assert status in (200, 201), body
        assert json.loads(body)["name"] == name

    assert server.proc.wait(30) == 0
    log = server.log.read_text(errors="replace")
    assert "WORKER TIMEOUT" not in log and "SIGKILL" not in log
    assert log.count("Worker exiting") == 2
    assert "Shutting down: Master" in log


def _schema_files(dialect: str) -> list[str]:
    return sorted(p.name for p in (REPO / "sql" / dialect).glob("*.sql"))


def _create_entity(port: int) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(
            "POST", "/entities/", body=json.dumps({"name": "a"}), headers={"Content-Type": "application/json"}
        )
        resp = conn.getresponse()
        return resp.status
    finally:
        conn.close()


def test_two_workers_migrating_a_fresh_sqlite_database_at_once(gunicorn_factory):
    server = gunicorn_factory(workers=2, premigrate=False)
    with sqlite3.connect(server.tmp / "compere.db") as db:
        applied = sorted(row[0] for row in db.execute("SELECT filename FROM schema_migrations"))
    assert applied == _schema_files("sqlite")
    assert _create_entity(server.port) in (200, 201)


@pytest.mark.postgres
def test_two_workers_migrating_a_fresh_postgres_database_at_once(gunicorn_factory, postgres_factory):
    postgres_database = postgres_factory()
    # Both workers run the migration runner as they start; each file is applied under a
    # transaction-scoped advisory lock and checked again once it is held, so the two may
    # share the files between them but apply each exactly once.
    server = gunicorn_factory(workers=2, premigrate=False, DATABASE_URL=postgres_database)
    with psycopg2.connect(postgres_database) as db, db.cursor() as cur:
        cur.execute("SELECT filename FROM schema_migrations ORDER BY filename")
        applied = [row[0] for row in cur.fetchall()]
    db.close()
    assert applied == _schema_files("postgresql")
    assert _create_entity(server.port) in (200, 201)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("GET", "/health/ready")
    resp = conn.getresponse()
    assert resp.status == 200, resp.read()
    conn.close()
    logs = server.log.read_text(errors="replace")
    for filename in _schema_files("postgresql"):
        assert logs.count(f"applied schema file {filename}") == 1, logs
