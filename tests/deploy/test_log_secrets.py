"""Nothing a client sends reaches a log unredacted: the app's, nginx's access or error log.

Secret-bearing requests, malformed on purpose: a bearer token followed by a control
byte, a request line over 8,190 bytes with ``?password=`` in it, a header line over the
limit carrying the token, and requests with ``?password=`` that nginx's rate limit
refuses. They go through the shipped nginx config to gunicorn (JSON logs), and straight
to a gunicorn with text logs; then every log is searched for the secrets.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

TOKEN = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0LXRva2VuLXBheWxvYWQ.c2lnbmF0dXJlLXNlY3JldA"
PASSWORD = "hunter2-never-in-a-log"
SECRETS = (TOKEN, PASSWORD, "password=")


def malformed_requests(host: str) -> list[bytes]:
    return [
        f"GET /entities/ HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nAuthorization: Bearer {TOKEN}\x01\r\n\r\n".encode(),
        f"GET /entities/?password={PASSWORD}&pad={'a' * 8200} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode(),
        f"GET /entities/?password={PASSWORD}&pad={'a' * 8100} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode(),
        f"GET /entities/ HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nX-Note: {TOKEN}{'b' * 8200}\r\n\r\n".encode(),
        f"GET /entities/?password={PASSWORD} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode(),
    ]


def exchange(sock: socket.socket, data: bytes) -> bytes:
    """Send one request (each asks for ``Connection: close``); the answer up to the close."""
    sock.settimeout(10)
    sock.sendall(data)
    answer = b""
    try:
        while chunk := sock.recv(65536):
            answer += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return answer


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0


def send_plain(port: int, data: bytes) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        return status_of(exchange(sock, data))


def send_tls(edge, data: bytes, source: str = "127.0.0.1") -> int:
    context = edge.ssl_context()
    with (
        socket.create_connection(
            ("127.0.0.1", edge.https_port), timeout=10, source_address=(source, 0)
        ) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as sock,
    ):
        return status_of(exchange(sock, data))


def assert_no_secret(*logs: Path) -> None:
    for log in logs:
        text = log.read_text(errors="replace") if log.exists() else ""
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} found in {log.name}:\n" + "\n".join(
                line[:300] for line in text.splitlines() if secret in line
            )


def nginx_logs(edge) -> list[Path]:
    return sorted(edge.prefix.glob("*.log"))


def test_malformed_requests_through_nginx_leave_no_secret_in_any_log(edge):
    statuses = [send_tls(edge, data) for data in malformed_requests("localhost")]
    assert all(400 <= s < 500 for s in statuses[:4]), statuses
    # nginx's rate limit refuses a flood (its own source address): the refusals carry
    # the query string in their request lines.
    refused = 0
    for _ in range(200):
        status = send_tls(
            edge,
            f"GET /entities/?password={PASSWORD} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode(),
            "127.0.0.6",
        )
        if status == 429:
            refused += 1
            if refused >= 3:
                break
    assert refused >= 3
    time.sleep(0.5)  # nginx writes its logs as it goes; let the app's catch up
    logs = nginx_logs(edge)
    assert {p.name for p in logs} >= {"compere.access.log", "error.log"}
    assert "429" in (edge.prefix / "compere.access.log").read_text()
    assert_no_secret(edge.app.log, *logs)


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_malformed_requests_straight_to_gunicorn_leave_no_secret_in_its_log(gunicorn_factory, log_format):
    app = gunicorn_factory(workers=1, LOG_FORMAT=log_format)
    statuses = [send_plain(app.port, data) for data in malformed_requests("127.0.0.1")]
    assert statuses[:4] == [400, 400, 400, 400], statuses
    time.sleep(0.3)
    text = app.log.read_text(errors="replace")
    assert "Traceback" not in text
    assert "malformed request from 127.0.0.1 refused" in text
    assert_no_secret(app.log)
