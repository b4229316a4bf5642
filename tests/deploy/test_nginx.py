"""The shipped nginx config in front of gunicorn (two workers), checked over real HTTPS."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import subprocess
import time
import uuid
import warnings
from pathlib import Path

import pytest

from compere.http.openapi import DOCS_CONTENT_SECURITY_POLICY
from compere.http.webapp import CONTENT_SECURITY_POLICY

REPO = Path(__file__).resolve().parents[2]

SECURITY_HEADERS = {
    "Strict-Transport-Security": "max-age=63072000; includeSubDomains",
    "X-Frame-Options": "SAMEORIGIN",
    "X-Content-Type-Options": "nosniff",
    "X-XSS-Protection": "1; mode=block",
    "Referrer-Policy": "strict-origin-when-cross-origin",
}
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
# The web app's policy, as the app itself builds it (nginx must send the same one).
APP_CSP = CONTENT_SECURITY_POLICY
DOCS_CSP = DOCS_CONTENT_SECURITY_POLICY


def test_shipped_config_passes_nginx_t(nginx_bin, tls_files, install_nginx_config, tmp_path: Path):
    # The files exactly as shipped (ports 80/443, upstream 127.0.0.1:8000, relative
    # snippet and certificate paths), under a stock-style main nginx.conf.
    conf = install_nginx_config(tmp_path, tls_files)
    result = subprocess.run(
        [nginx_bin, "-t", "-p", str(tmp_path), "-c", str(conf)], check=False, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr and "test is successful" in result.stderr
    assert "[warn]" not in result.stderr, result.stderr


def test_client_max_body_size_matches_app_default():
    from compere.settings import Settings

    shipped = (REPO / "nginx" / "conf.d" / "compere.conf").read_text()
    assert "client_max_body_size 1m;" in shipped
    assert Settings().max_body_size == 1024 * 1024


def test_health_answers_through_nginx(edge):
    status, headers, body = edge.json("GET", "/health")
    assert status == 200
    assert body["status"] in ("ok", "healthy")
    assert headers["Content-Type"].startswith("application/json")
    assert "nginx/" not in headers.get("Server", "")  # server_tokens off


@pytest.mark.parametrize(
    "path,status,csp",
    [
        ("/health", 200, API_CSP),
        ("/no/such/path", 404, API_CSP),
        ("/openapi.json", 200, API_CSP),
        ("/docs", 200, DOCS_CSP),
        ("/docs/static/init.js", 200, DOCS_CSP),
        ("/docs/swagger-ui/swagger-ui-bundle.js", 200, DOCS_CSP),
        ("/docs/swagger-ui/index.html", 404, DOCS_CSP),
        ("/redoc", 200, DOCS_CSP),
        ("/docs/redoc/redoc.standalone.js", 200, DOCS_CSP),
        ("/docsX", 404, API_CSP),
        ("/", 200, APP_CSP),
        ("/leaderboard", 200, APP_CSP),
        ("/app/config.json", 200, APP_CSP),
    ],
)
def test_security_headers_hsts_and_csp_on_every_response(edge, path, status, csp):
    got, headers, _ = edge.request("GET", path)
    assert got == status
    for name, value in SECURITY_HEADERS.items():
        assert headers.get_all(name) == [value], name
    assert headers.get_all("Content-Security-Policy") == [csp]


def test_nginx_access_log_never_records_query_strings(edge):
    status, _, _ = edge.request("POST", "/auth/token?username=alice&password=hunter2-secret")
    assert status == 400  # the app refuses credentials in the URL
    log = edge.prefix / "compere.access.log"
    deadline = time.monotonic() + 5
    while "/auth/token" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    text = log.read_text()
    assert "/auth/token" in text
    assert "hunter2" not in text and "password" not in text


def test_metrics_are_not_reachable_through_nginx(edge):
    got, _, _ = edge.request("GET", "/metrics")
    assert got == 404


def test_plain_http_redirects_to_https(edge):
    conn = http.client.HTTPConnection("127.0.0.1", edge.http_port, timeout=10)
    conn.request("POST", "/entities/?skip=5", body=b"{}", headers={"Host": "ranking.example.com"})
    resp = conn.getresponse()
    resp.read()
    conn.close()
    assert resp.status == 301
    assert resp.headers["Location"] == "https://ranking.example.com/entities/?skip=5"
    # Nothing is proxied over plain HTTP, so no response carries data or HSTS there.
    assert resp.headers.get("Strict-Transport-Security") is None


def test_tls_only_modern_protocols_and_ciphers(edge):
    def handshake(ctx: ssl.SSLContext) -> tuple[str, str] | None:
        ctx.load_verify_locations(cafile=str(edge.cafile))
        try:
            with (
                socket.create_connection(("127.0.0.1", edge.https_port), timeout=5) as raw,
                ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
            ):
                return tls.version(), tls.cipher()[0]
        except (ssl.SSLError, ConnectionResetError):
            return None

    version, _ = handshake(ssl.create_default_context())
    assert version == "TLSv1.3"

    tls12 = ssl.create_default_context()
    tls12.maximum_version = ssl.TLSVersion.TLSv1_2
    version, cipher = handshake(tls12)
    assert version == "TLSv1.2" and cipher.startswith("ECDHE-") and ("GCM" in cipher or "CHACHA20" in cipher)

    # A client willing to use TLS 1.0/1.1 only is refused by the server (this client
    # does complete such handshakes with a server that allows them).
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old.minimum_version = ssl.TLSVersion.TLSv1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    assert handshake(old) is None

    # TLS 1.2 with a CBC, non-forward-secret cipher (nginx's default list allows it).
    weak = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    weak.maximum_version = ssl.TLSVersion.TLSv1_2
    weak.set_ciphers("AES128-SHA:@SECLEVEL=0")
    assert handshake(weak) is None


def test_body_over_the_limit_gets_413_json(edge):
    too_big = b'{"name": "' + b"x" * (1024 * 1024) + b'"}'
    status, headers, body = edge.request(
        "POST", "/entities/", body=too_big, headers={"Content-Type": "application/json"}
    )
    assert status == 413
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"detail": "Request body too large"}
    assert headers["X-Content-Type-Options"] == "nosniff"


def test_body_under_the_limit_reaches_the_app(edge):
    # Just under 1 MiB passes nginx; the app rejects the over-long name itself (4xx JSON
    # from the app, not nginx's 413).
    body = b'{"name": "' + b"x" * (1024 * 1024 - 100) + b'"}'
    status, _, payload = edge.request(
        "POST", "/entities/", body=body, headers={"Content-Type": "application/json"}
    )
    assert status in (400, 422), status
    assert "detail" in json.loads(payload)


def _log_entries_for(edge, path: str, timeout: float = 10) -> tuple[list[dict], list[dict]]:
    """(gunicorn access-log entries, app request-log entries) for requests to ``path``."""
    deadline = time.monotonic() + timeout
    while True:
        entries = [json.loads(line) for line in edge.app.log_lines() if path in line]
        access = [e for e in entries if e["logger"] == "gunicorn.access"]
        requests = [e for e in entries if e["logger"] == "compere.request"]
        if (access and requests) or time.monotonic() > deadline:
            return access, requests
        time.sleep(0.05)


FORGED = {"X-Forwarded-For": "203.0.113.9", "X-Real-IP": "203.0.113.9", "Forwarded": "for=203.0.113.9"}


def _request_with_forged_headers(edge) -> str:
    """GET a unique path from 127.0.0.3 with forged forwarding headers; return the path."""
    path = f"/entities/{uuid.uuid4().int % 10**12 + 10**12}"
    # The client connects from 127.0.0.3; nginx connects to gunicorn from 127.0.0.1.
    status, _, _ = edge.request("GET", path, headers=FORGED, source="127.0.0.3")
    assert status == 404
    return path


def test_nginx_replaces_forged_forwarding_headers_with_the_real_client(edge):
    path = _request_with_forged_headers(edge)
    access, requests = _log_entries_for(edge, path)
    # gunicorn's access log records the headers exactly as the app received them.
    assert len(access) == 1, access
    assert access[0]["request_header"] == {"X-Forwarded-For": "127.0.0.3", "Forwarded": "-"}
    assert "203.0.113.9" not in json.dumps(access + requests)


def test_app_logs_the_real_client_address_behind_nginx(edge):
    path = _request_with_forged_headers(edge)
    _, requests = _log_entries_for(edge, path)
    assert len(requests) == 1, requests
    assert requests[0]["client"] == "127.0.0.3"


def test_every_log_line_is_json_with_log_format_json(edge):
    edge.request("GET", "/health")
    lines = [line for line in edge.app.log_lines() if line.strip()]
    assert lines
    entries = [json.loads(line) for line in lines]
    assert {"time", "level", "logger", "message"} <= set(entries[0])
    assert any("Booting worker" in e["message"] for e in entries)


def test_nginx_rate_limit_answers_429_json_but_never_limits_health(edge):
    # Its own source address, so the limit does not spill over into other tests.
    source = "127.0.0.4"
    conn = edge.https(source)
    statuses = []
    started = time.monotonic()
    try:
        for _ in range(400):
            conn.request("GET", "/entities/?limit=1")
            resp = conn.getresponse()
            body = resp.read()
            statuses.append(resp.status)
            if resp.status == 429:
                assert json.loads(body) == {"detail": "Too many requests"}
                assert resp.headers["Strict-Transport-Security"]
                break
    finally:
        conn.close()
    elapsed = time.monotonic() - started
    assert statuses[-1] == 429, statuses
    assert set(statuses[:-1]) == {200}
    # Shipped: 20 r/s with a burst of 40 (nodelay), so 41 pass at once, plus what
    # refilled while they ran.
    allowed = len(statuses) - 1
    assert 41 <= allowed <= 41 + 20 * elapsed + 1, (allowed, elapsed)
    status, _, _ = edge.request("GET", "/health", source=source)
    assert status == 200
