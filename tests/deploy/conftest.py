"""Real gunicorn and nginx processes on loopback ports for the deployment tests.

Every process is started here and stopped by its PID in the fixture's teardown. The
app runs on a throw-away SQLite file (ENVIRONMENT=staging, since production refuses
SQLite); nginx runs the shipped config with only its listen ports and the upstream
port changed, and a self-signed certificate made with openssl for the test.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.servers import stop_process

REPO = Path(__file__).resolve().parents[2]
NGINX_DIR = REPO / "nginx"


def find_nginx() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(
    predicate, timeout: float, what: str, proc: subprocess.Popen | None = None, log: Path | None = None
):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"{what}: process exited with {proc.returncode}\n{tail}")
        result = predicate()
        if result:
            return result
        time.sleep(0.1)
    tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
    raise TimeoutError(f"{what} not ready after {timeout}s\n{tail}")


def health_status(port: int, host: str = "127.0.0.1") -> int | None:
    """The status of ``GET /health``, or None while nothing answers."""
    conn = http.client.HTTPConnection(host, port, timeout=2)
    try:
        conn.request("GET", "/health")
        return conn.getresponse().status
    except OSError:
        return None
    finally:
        conn.close()


def app_environment(tmp: Path, **extra: str) -> dict[str, str]:
    """Environment for the app under gunicorn: SQLite in ``tmp``, nginx trusted on loopback."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GUNICORN_", "COMPERE_", "PROMETHEUS_"))}
    for name in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "CORS_ORIGINS", "WEB_CONCURRENCY"):
        env.pop(name, None)
    env.update(
        {
            "PYTHONPATH": str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
            "HOME": str(tmp),  # a control socket, if one were made, would land here
            "ENVIRONMENT": "staging",
            "DATABASE_URL": f"sqlite:///{tmp / 'compere.db'}",
            "AUTH_ENABLED": "false",
            "RATE_LIMIT_ENABLED": "false",
            "TRUSTED_PROXIES": "127.0.0.1",
            "LOG_LEVEL": "INFO",
            "LOG_REQUESTS": "true",
        }
    )
    env.update(extra)
    return env


def migrate(env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "-m", "compere", "migrate"],
        cwd=REPO,
        env=env,
        check=True,
        timeout=120,
        capture_output=True,
    )


@dataclass
class Gunicorn:
    proc: subprocess.Popen
    port: int
    log: Path
    tmp: Path
    env: dict[str, str] = field(repr=False)

    def log_lines(self) -> list[str]:
        return self.log.read_text(errors="replace").splitlines()


def start_gunicorn(
    tmp: Path, workers: int = 2, extra_args: tuple[str, ...] = (), premigrate: bool = True, **env_extra: str
) -> Gunicorn:
    """gunicorn from gunicorn.conf.py on a free port; returns once every worker has its database.

    ``premigrate`` runs ``python -m compere migrate`` first and starts the workers with
    MIGRATE_ON_START=false, as docs/deployment.md recommends; without it the workers
    migrate as they start.
    """
    env = app_environment(tmp, MIGRATE_ON_START="false" if premigrate else "true", **env_extra)
    if premigrate:
        migrate(env)
    port = free_port()
    log = tmp / "gunicorn.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(REPO / "gunicorn.conf.py"),
             "-b", f"127.0.0.1:{port}", "-w", str(workers), *extra_args],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    server = Gunicorn(proc, port, log, tmp, env)

    try:
        wait_for(lambda: health_status(port) == 200, 60, "gunicorn", proc, log)
        # Every worker has finished the app factory (each logs "database ready").
        wait_for(
            lambda: log.read_text(errors="replace").count("database ready") >= workers,
            60,
            "workers",
            proc,
            log,
        )
    except BaseException:
        stop_process(proc)
        raise
    return server


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


def nginx_main_conf(prefix: Path) -> str:
    """A minimal main nginx.conf that includes the site files exactly as a distro's does."""
    user = "user root root;\n" if os.geteuid() == 0 else ""
    temp = "\n".join(
        f"    {name}_temp_path {prefix / ('tmp_' + name)};"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""{user}worker_processes 1;
pid {prefix / "nginx.pid"};
error_log {prefix / "error.log"} info;
events {{ worker_connections 256; }}
http {{
    default_type application/octet-stream;
    access_log {prefix / "access.log"};
{temp}
    include conf.d/*.conf;
}}
"""


def copy_nginx_config(
    prefix: Path, tls: tuple[Path, Path], replacements: dict[str, str] | None = None
) -> Path:
    """Copy the shipped nginx/ files into ``prefix`` as /etc/nginx would hold them.

    ``replacements`` maps exact shipped text to test text (listen ports, upstream port);
    each must occur in the shipped files, so a changed config cannot silently escape.
    """
    (prefix / "conf.d").mkdir(parents=True)
    shutil.copytree(NGINX_DIR / "snippets", prefix / "snippets")
    (prefix / "tls").mkdir()
    shutil.copy(tls[0], prefix / "tls" / "fullchain.pem")
    shutil.copy(tls[1], prefix / "tls" / "privkey.pem")
    pending = dict(replacements or {})
    for source in sorted((NGINX_DIR / "conf.d").glob("*.conf")):
        text = source.read_text()
        for old, new in list(pending.items()):
            if old in text:
                text = text.replace(old, new)
                del pending[old]
        (prefix / "conf.d" / source.name).write_text(text)
    assert not pending, f"shipped nginx config no longer contains {sorted(pending)}"
    for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (prefix / f"tmp_{name}").mkdir()
    conf = prefix / "nginx.conf"
    conf.write_text(nginx_main_conf(prefix))
    return conf


@pytest.fixture(scope="session")
def install_nginx_config():
    """``copy_nginx_config(prefix, tls, replacements=None) -> Path`` of the main nginx.conf."""
    return copy_nginx_config


@dataclass
class Edge:
    """nginx in front of gunicorn, both on loopback."""

    https_port: int
    http_port: int
    app: Gunicorn
    cafile: Path
    prefix: Path

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cafile))

    def https(self, source: str = "127.0.0.1", timeout: float = 10) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(
            "127.0.0.1",
            self.https_port,
            context=self.ssl_context(),
            timeout=timeout,
            source_address=(source, 0),
        )

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
                source: str = "127.0.0.1") -> tuple[int, http.client.HTTPMessage, bytes]:  # fmt: skip
        conn = self.https(source)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.headers, resp.read()
        finally:
            conn.close()

    def json(self, method: str, path: str, **kwargs):
        status, headers, body = self.request(method, path, **kwargs)
        return status, headers, json.loads(body)


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
    proc = subprocess.Popen(
        [nginx_bin, "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
    )  # fmt: skip

    def listening() -> bool:
        try:
            socket.create_connection(("127.0.0.1", https_port), timeout=1).close()
            return True
        except OSError:
            return False

    try:
        wait_for(listening, 20, "nginx", proc, prefix / "error.log")
        yield Edge(https_port, http_port, app, tls_files[0], prefix)
    finally:
        stop_process(proc, signal.SIGQUIT)
        stop_process(app.proc)
