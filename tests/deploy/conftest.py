"""Fixtures of the deployment tests: real gunicorn and nginx processes on loopback ports
(started by the functions in ``tests/servers.py``).

Every process is stopped by its PID in the fixture's teardown. The
app runs on a throw-away SQLite file (ENVIRONMENT=staging, since production refuses
SQLite); nginx runs the shipped config with only its listen ports and the upstream
port changed, and a self-signed certificate made with openssl for the test.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import (
    Edge,
    Gunicorn,
    copy_nginx_config,
    find_nginx,
    free_port,
    start_gunicorn,
    start_nginx,
    stop_process,
)


@pytest.fixture
def gunicorn_factory(tmp_path: Path) -> Iterator:
    started: list[Gunicorn] = []

    def factory(**kwargs) -> Gunicorn:
        sub = tmp_path / f"g{len(started)}"
        sub.mkdir()
        server = start_gunicorn(sub, **kwargs)
        started.append(server)
        return server

    yield factory
    for server in started:
        stop_process(server.proc)


# --- TLS certificate and nginx -------------------------------------------------------


@pytest.fixture(scope="session")
def nginx_bin() -> str:
    path = find_nginx()
    if path is None:
        pytest.skip("nginx is not installed (apt-get install nginx)")
    return path


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory) -> tuple[Path, Path]:
    """A throw-away self-signed certificate for 127.0.0.1/localhost, valid one day."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "fullchain.pem", folder / "privkey.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


@pytest.fixture(scope="session")
def install_nginx_config():
    """``copy_nginx_config(prefix, tls, replacements=None) -> Path`` of the main nginx.conf."""
    return copy_nginx_config


@pytest.fixture(scope="module")
def edge(nginx_bin: str, tls_files, tmp_path_factory) -> Iterator[Edge]:
    app_tmp = tmp_path_factory.mktemp("app")
    # gunicorn's access log shows the forwarding headers exactly as nginx passed them.
    access = (
        "--access-logfile",
        "-",
        "--access-logformat",
        '%r %s xff="%{X-Forwarded-For}i" fwd="%{Forwarded}i"',
    )
    app = start_gunicorn(app_tmp, workers=2, extra_args=access, LOG_FORMAT="json")
    prefix = tmp_path_factory.mktemp("nginx")
    http_port, https_port = free_port(), free_port()
    conf = copy_nginx_config(
        prefix,
        tls_files,
        {
            "    listen 80 default_server;\n": f"    listen 127.0.0.1:{http_port} default_server;\n",
            "    listen [::]:80 default_server;\n": "",
            "    listen 443 ssl default_server;\n": f"    listen 127.0.0.1:{https_port} ssl default_server;\n",
            "    listen [::]:443 ssl default_server;\n": "",
            "server 127.0.0.1:8000;": f"server 127.0.0.1:{app.port};",
            "/var/log/nginx/compere.access.log": str(prefix / "compere.access.log"),
            "/var/log/nginx/compere.error.log": str(prefix / "compere.error.log"),
        },
    )
    try:
        proc = start_nginx(nginx_bin, prefix, conf, https_port)
        try:
            yield Edge(https_port, http_port, app, tls_files[0], prefix)
        finally:
            stop_process(proc, signal.SIGQUIT)
    finally:
        stop_process(app.proc)
