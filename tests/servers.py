"""Every process the tests (or the soak run) start and own: throw-away PostgreSQL and
Redis servers, Compere itself (``python -m compere serve`` or gunicorn), and the
gunicorn and nginx of the deployment tests.

Outage tests stop and restart servers; they must never touch the shared ones. Each
instance here lives in its own temporary folder, listens on its own free port on
127.0.0.1 (and its own socket folder), and is stopped only through its own data folder
or process id.

PostgreSQL refuses to run as root, so when we are root the server commands run as the
``postgres`` system user through ``runuser``.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
import redis

REPO = Path(__file__).resolve().parents[1]
NGINX_DIR = REPO / "nginx"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pg_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not candidates:
        raise RuntimeError(f"PostgreSQL's {name} was not found (install the PostgreSQL server)")
    return candidates[-1]


def stop_process(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 30) -> int:
    """Signal the process we started (by PID) and wait; kill it if it will not go."""
    if proc.poll() is None:
        os.kill(proc.pid, sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
    return proc.returncode


class PostgresInstance:
    """A PostgreSQL server in a temporary folder, on its own port.

    ``settings`` are passed to the server as ``-c name=value`` at every start;
    ``replica_of`` makes a streaming replica of that (running) instance with
    ``pg_basebackup -R`` instead of initialising an empty one.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        settings: dict[str, str] | None = None,
        replica_of: PostgresInstance | None = None,
    ) -> None:
        self.port = port or free_port()
        self.settings = dict(settings or {})
        self.base = Path(tempfile.mkdtemp(prefix="compere-pg-"))
        self.data = self.base / "data"
        self.log = self.base / "server.log"
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.base, "postgres", "postgres")
        if replica_of is not None:
            # A hot standby needs at least the primary's max_connections and the like.
            self.settings = {**replica_of.settings, **self.settings}
            # initdb's default pg_hba.conf trusts replication connections from loopback.
            self._run(
                _pg_bin("pg_basebackup"),
                "-h", "127.0.0.1", "-p", str(replica_of.port), "-U", "postgres",
                "-D", str(self.data), "-R", "--checkpoint=fast", "--no-sync",
            )  # fmt: skip
            return
        self._run(
            _pg_bin("initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        )

    def _run(self, *argv: str, timeout: float = 60) -> None:
        cmd = ["runuser", "-u", "postgres", "--", *argv] if self._as_postgres else list(argv)
        subprocess.run(cmd, check=True, capture_output=True, timeout=timeout)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        # fsync off is safe here: only the server process dies in these tests, never the
        # machine. synchronous_commit stays on: a crash must not lose acknowledged commits.
        options = (
            f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c full_page_writes=off"
        ) + "".join(f" -c {name}={value}" for name, value in self.settings.items())
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        """``fast``: like a maintenance restart; ``immediate``: like a crash."""
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def create_database(self, name: str) -> str:
        conn = psycopg2.connect(self.url(), connect_timeout=5)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        conn.close()
        return self.url(name)

    def sql(self, statement: str, database: str = "postgres") -> list[tuple[object, ...]]:
        """Run one statement in autocommit and return its rows (none for a command)."""
        conn = psycopg2.connect(self.url(database), connect_timeout=5)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(statement)
                return cur.fetchall() if cur.description is not None else []
        finally:
            conn.close()

    def destroy(self) -> None:
        if self.pid() is not None:
            with contextlib.suppress(subprocess.SubprocessError):
                self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)


class PgBouncer:
    """PgBouncer in front of one PostgreSQL instance, ``pool_mode = transaction`` by default.

    It forwards every database name to the server, trusts every user (a throw-away setup
    on loopback) and ignores the start-up options psycopg2 may send, as a typical
    deployment does. Runs in the foreground under our PID (as ``postgres`` when we are
    root: PgBouncer refuses to run as root).
    """

    def __init__(
        self, server: PostgresInstance, *, pool_mode: str = "transaction", pool_size: int = 20
    ) -> None:
        self.server = server
        self.port = free_port()
        self.base = Path(tempfile.mkdtemp(prefix="compere-pgbouncer-"))
        self.log = self.base / "pgbouncer.log"
        (self.base / "users.txt").write_text('"postgres" ""\n')
        self.ini = self.base / "pgbouncer.ini"
        self.ini.write_text(
            f"""[databases]
* = host=127.0.0.1 port={server.port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir =
auth_type = trust
auth_file = {self.base / "users.txt"}
pool_mode = {pool_mode}
default_pool_size = {pool_size}
max_client_conn = 1000
ignore_startup_parameters = extra_float_digits,options
server_reset_query =
logfile = {self.log}
"""
        )
        if os.geteuid() == 0:
            for path in (self.base, *self.base.iterdir()):
                shutil.chown(path, "postgres", "postgres")
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self, timeout: float = 20) -> None:
        binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
        user = ["-u", "postgres"] if os.geteuid() == 0 else []
        self.process = subprocess.Popen(
            [binary, *user, str(self.ini)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        )  # fmt: skip

        def answers() -> bool:
            try:
                psycopg2.connect(self.url(), connect_timeout=2).close()
                return True
            except psycopg2.OperationalError:
                return False

        wait_for(answers, timeout, "pgbouncer", self.process, self.log)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, signal.SIGTERM)  # immediate shutdown
        self.process = None

    def destroy(self) -> None:
        if self.process is not None:
            stop_process(self.process, signal.SIGKILL)
        self.process = None
        shutil.rmtree(self.base, ignore_errors=True)


class FullStack:
    """The back ends of a scaled-out deployment, for running the HTTP tests against: a
    PostgreSQL primary behind PgBouncer in transaction mode, a streaming replica made
    with ``pg_basebackup`` that every commit waits for (``synchronous_commit =
    remote_apply``), so reads routed to the replica see what a test just wrote, as they
    would on one database; and a Redis Cluster of three masters for every Redis the
    tests use.
    """

    def __init__(self) -> None:
        self.primary = PostgresInstance(settings={"max_connections": "300"})
        self.replica: PostgresInstance | None = None
        self.bouncer: PgBouncer | None = None
        # No replicas: nothing here fails over, and three processes are enough to spread
        # the keys over three masters (the slot rules a cluster imposes).
        self.redis = RedisClusterSet(masters=3, replicas=0)

    def start(self) -> FullStack:
        try:
            self.redis.start()
            self.primary.start()
            self.replica = PostgresInstance(replica_of=self.primary)
            self.replica.start()
            self.primary.sql("ALTER SYSTEM SET synchronous_standby_names = '*'")
            self.primary.sql("ALTER SYSTEM SET synchronous_commit = 'remote_apply'")
            self.primary.sql("SELECT pg_reload_conf()")
            self.bouncer = PgBouncer(self.primary, pool_size=30)
            self.bouncer.start()
        except BaseException:
            self.destroy()
            raise
        return self

    def admin_url(self) -> str:
        return self.primary.url()

    def url(self, database: str) -> str:
        """``database`` through PgBouncer."""
        assert self.bouncer is not None
        return self.bouncer.url(database)

    def replica_url(self, database: str) -> str:
        assert self.replica is not None
        return self.replica.url(database)

    def redis_url(self) -> str:
        """``redis+cluster://`` with every master as a seed."""
        return self.redis.url(seeds=self.redis.masters)

    def app_env(self, database_url: str) -> dict[str, str]:
        """The settings that route an app on ``database_url`` (one of ours) through the stack."""
        if not database_url.startswith("postgresql://"):
            return {}
        database = database_url.rsplit("/", 1)[1]
        return {"DB_POOLER": "pgbouncer", "DATABASE_REPLICA_URL": self.replica_url(database)}

    def destroy(self) -> None:
        if self.bouncer is not None:
            self.bouncer.destroy()
        if self.replica is not None:
            self.replica.destroy()
        self.primary.destroy()
        self.redis.destroy()


@contextlib.contextmanager
def pooled_backends(pool_size: int = 20) -> Iterator[tuple[PostgresInstance, PgBouncer, RedisInstance]]:
    """A PostgreSQL instance, PgBouncer (transaction mode) in front of it and a Redis
    without persistence: what several app hosts share. Stopped and removed on exit."""
    server = PostgresInstance(settings={"max_connections": "200"})
    server.start()
    bouncer = PgBouncer(server, pool_size=pool_size)
    redis_server = RedisInstance(persistent=False)
    try:
        bouncer.start()
        redis_server.start()
        yield server, bouncer, redis_server
    finally:
        redis_server.destroy()
        bouncer.destroy()
        server.destroy()


class RedisInstance:
    """A redis-server on its own port; ``persistent`` keeps data across restarts (AOF)."""

    def __init__(self, port: int | None = None, *, persistent: bool = True) -> None:
        self.port = port or free_port()
        self.base = Path(tempfile.mkdtemp(prefix="compere-redis-"))
        self.persistent = persistent
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self, timeout: float = 10) -> None:
        persistence = (
            ["--appendonly", "yes", "--appendfsync", "always"] if self.persistent else ["--appendonly", "no"]
        )
        self.process = subprocess.Popen(
            [
                shutil.which("redis-server") or "redis-server",
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--dir", str(self.base),
                "--logfile", str(self.base / "server.log"),
                *persistence,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.ping()
                break
            except redis.exceptions.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.05)
        client.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # SIGTERM: redis-server shuts down cleanly
            self.process.wait(timeout=10)
        self.process = None

    def destroy(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None
        shutil.rmtree(self.base, ignore_errors=True)


class CompereProcess:
    """``python -m compere serve`` (or gunicorn) as a real process on its own loopback port.

    Stopped only through its own PID. ``restart`` starts it again on the same port with the
    same environment (database, Redis), as a deploy or a crash-and-restart would. Its log is
    JSON lines (``LOG_FORMAT=json``) so tests can count the requests it saw.
    """

    def __init__(self, env: dict[str, str], log_path: Path, *, kind: str = "python") -> None:
        self.port = free_port()
        self.log_path = log_path
        self.kind = kind
        repo = str(REPO)
        base = {k: v for k, v in os.environ.items() if not k.startswith("COMPERE_")}
        for name in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "AUTH_ENABLED", "RATE_LIMIT_ENABLED"):
            base.pop(name, None)
        self.env = {
            **base,
            "PYTHONPATH": repo + os.pathsep + base.get("PYTHONPATH", ""),
            "LOG_FORMAT": "json",
            "LOG_REQUESTS": "true",
            **env,
        }
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _argv(self) -> list[str]:
        if self.kind == "gunicorn":
            return [
                sys.executable, "-m", "gunicorn", "compere.http.app:create_app",
                "--worker-class", "aiohttp.GunicornWebWorker", "--bind", f"127.0.0.1:{self.port}",
                "--workers", "1", "--graceful-timeout", "20", "--no-control-socket",
            ]  # fmt: skip
        return [sys.executable, "-m", "compere", "serve", "--port", str(self.port)]

    def start(self, timeout: float = 60) -> None:
        assert self.process is None or self.process.poll() is not None
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self._argv(), env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        deadline = time.monotonic() + timeout
        while not self._healthy():
            if self.process.poll() is not None or time.monotonic() > deadline:
                tail = self.log_path.read_text(errors="replace")[-3000:]
                self.stop()
                raise RuntimeError(f"the server did not start on port {self.port}:\n{tail}")
            time.sleep(0.05)

    def _healthy(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"GET /health HTTP/1.0\r\n\r\n")
                return sock.recv(16).split(b" ")[1:2] == [b"200"]
        except OSError:
            return False

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int | None:
        """Signal our process and wait for it to exit (SIGKILL if it will not)."""
        return None if self.process is None else stop_process(self.process, sig, timeout)

    def restart(self, sig: int = signal.SIGTERM) -> None:
        self.stop(sig)
        self.start()

    def request_log(self) -> list[dict[str, object]]:
        """The request lines the server logged (method, path, status, time, duration_ms)."""
        entries = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if not line.startswith("{"):
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and "status" in entry and "path" in entry:
                entries.append(entry)
        return entries


class AnswerDroppingProxy:
    """A loopback HTTP proxy that loses some answers after the server has sent them.

    It forwards each request whole to the server, reads the server's whole answer, and for
    the requests ``drop`` picks (it gets the request line and body) closes the client's
    connection instead of relaying it: the
    server did the work, the client never hears so (a crash after the commit, a cut cable).
    Requests are forwarded with ``Connection: close``; one client connection may carry many.
    """

    def __init__(self, upstream_port: int, drop: Callable[[str, bytes], bool]) -> None:
        self.upstream_port = upstream_port
        self.drop = drop
        self.seen = 0
        self.dropped = 0
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> AnswerDroppingProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                length = 0
                kept = [lines[0]]
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                    if line and name.lower() != "connection":
                        kept.append(line)
                body = await reader.readexactly(length) if length else b""
                request = ("\r\n".join([*kept, "Connection: close"]) + "\r\n\r\n").encode("latin-1") + body
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
                up_writer.write(request)
                await up_writer.drain()
                answer = await up_reader.read()  # the server closes after answering
                up_writer.close()
                self.seen += 1
                if self.drop(lines[0], body):
                    self.dropped += 1
                    return
                writer.write(answer)
                await writer.drain()
                return  # the answer says Connection: close
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()


# --- gunicorn and nginx (the deployment tests) --------------------------------------


def find_nginx() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )


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


def start_nginx(nginx_bin: str, prefix: Path, conf: Path, port: int) -> subprocess.Popen:
    """nginx in the foreground with ``conf``; returns once it listens on ``port``."""
    proc = subprocess.Popen(
        [nginx_bin, "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
    )  # fmt: skip

    def listening() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False

    try:
        wait_for(listening, 20, "nginx", proc, prefix / "error.log")
    except BaseException:
        stop_process(proc, signal.SIGQUIT)
        raise
    return proc


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


# --- Redis Cluster and Sentinel ------------------------------------------------------------


def free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free and valid too."""
    for _ in range(200):
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a Redis Cluster node")


# Deadlines (not delays: every wait below polls and returns as soon as it may) for
# starting and stopping the Redis sets. A 2-core machine running several test sessions
# can take tens of seconds where an idle one takes one.
NODE_START = 30.0
SET_START = 120.0
NODE_STOP = 30.0


def _wait(check: Callable[[], bool], what: str, timeout: float, log: Callable[[], str] | None = None) -> None:
    """Poll ``check`` every 0.1 s until it is true; Redis or socket errors count as "not yet"."""
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        try:
            if check():
                return
        except (redis.exceptions.RedisError, OSError) as exc:
            last = f" (last: {type(exc).__name__}: {exc})"
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"timed out after {timeout:.0f} s waiting for {what}{last}\n{log() if log else ''}"
            )
        time.sleep(0.1)


class _RedisNode:
    """One redis-server (data node or Sentinel) of a set: its own folder, port and process."""

    def __init__(self, base: Path, port: int, *args: str, sentinel: bool = False) -> None:
        self.port = port
        self.folder = base / str(port)
        self.folder.mkdir()
        argv = [shutil.which("redis-server") or "redis-server"]
        if sentinel:
            # A Sentinel rewrites its configuration file, so it must have one of its own.
            conf = self.folder / "sentinel.conf"
            conf.write_text("\n".join(args) + "\n")
            argv += [str(conf), "--sentinel"]
            args = ()
        argv += [
            "--port", str(port), "--bind", "127.0.0.1", "--dir", str(self.folder),
            "--logfile", str(self.folder / "server.log"), *args,
        ]  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def client(self) -> redis.Redis:
        return redis.Redis(
            port=self.port, socket_connect_timeout=0.5, socket_timeout=2, decode_responses=True
        )

    def exited(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def wait_ready(self, timeout: float = NODE_START) -> None:
        def answers() -> bool:
            if self.exited():
                raise NodeExited(f"redis-server on port {self.port} exited: {self.log()}")
            with self.client() as conn:
                return bool(conn.ping())

        _wait(answers, f"redis-server on port {self.port}", timeout, self.log)

    def log(self) -> str:
        try:
            return (self.folder / "server.log").read_text()[-2000:]
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL by PID: a crash, no chance to hand over."""
        if self.process is not None and self.process.poll() is None:
            stop_process(self.process, signal.SIGKILL, timeout=10)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, signal.SIGTERM, timeout=NODE_STOP)
        self.process = None


class NodeExited(RuntimeError):
    """A redis-server of a set exited while starting (e.g. another process took its port)."""


def _start_node(base: Path, pick_port: Callable[[], int], *args: str, sentinel: bool = False) -> _RedisNode:
    """A node that answers PING; started again on another port if the first one exits
    (the free port was taken by someone else between choosing it and binding it)."""
    attempts = 3
    for attempt in range(1, attempts + 1):
        node = _RedisNode(base, pick_port(), *args, sentinel=sentinel)
        try:
            node.wait_ready()
            return node
        except BaseException as exc:
            node.stop()  # it belongs to no set yet: nobody else would stop it
            if not isinstance(exc, NodeExited) or attempt == attempts:
                raise
    raise AssertionError("unreachable")


def _tail_logs(nodes: list[_RedisNode]) -> str:
    """The end of every node's log, for the message of a set that did not come up."""
    return "\n".join(f"--- redis-server on port {node.port}\n{node.log()[-600:]}" for node in nodes)


def _stop_nodes(nodes: list[_RedisNode]) -> None:
    """SIGTERM to every node at once, then wait for each (SIGKILL after NODE_STOP)."""
    running = [n for n in nodes if n.process is not None and n.process.poll() is None]
    for node in running:
        assert node.process is not None
        with contextlib.suppress(ProcessLookupError):
            node.process.send_signal(signal.SIGTERM)
    for node in nodes:
        node.stop()  # waits for one that is still going, kills it past the deadline


# No persistence; a new replica syncs at once (Redis waits 5 s by default, and a replica
# that never synced cannot take over).
_DATA_NODE = ("--save", "", "--appendonly", "no", "--repl-diskless-sync-delay", "0")


def _replica_synced(node: _RedisNode) -> bool:
    with node.client() as conn:
        info = conn.info("replication")
    return info["role"] == "master" or info.get("master_link_status") == "up"


class RedisClusterSet:
    """A Redis Cluster of ``masters`` masters with ``replicas`` replicas each, on free
    loopback ports (``redis-cli --cluster create``), every node stopped by its PID.

    ``node_timeout_ms`` is cluster-node-timeout: how long a master may be silent before
    its replica takes over (a failover takes about twice that).
    """

    def __init__(self, masters: int = 3, replicas: int = 1, *, node_timeout_ms: int = 1000) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="compere-rcluster-"))
        self.node_timeout_ms = node_timeout_ms
        self.size = masters * (1 + replicas)
        self.masters = masters
        self.replicas = replicas
        self.nodes: list[_RedisNode] = []

    def start(self, timeout: float = SET_START) -> None:
        for _ in range(self.size):
            self.nodes.append(
                _start_node(
                    self.base, free_cluster_port, *_DATA_NODE,
                    "--cluster-enabled", "yes",
                    "--cluster-config-file", "nodes.conf",
                    "--cluster-node-timeout", str(self.node_timeout_ms),
                )
            )  # fmt: skip
        # redis-cli assigns the slots, then polls until every node agrees on the layout.
        created = subprocess.run(
            [
                shutil.which("redis-cli") or "redis-cli", "--cluster", "create",
                *(f"127.0.0.1:{node.port}" for node in self.nodes),
                "--cluster-replicas", str(self.replicas), "--cluster-yes",
            ],
            capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        if created.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed:\n{created.stdout}{created.stderr}")
        self.wait_healthy(timeout)

    def url(self, seeds: int = 2) -> str:
        """``redis+cluster://`` with the first ``seeds`` nodes as seeds."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{node.port}" for node in self.nodes[:seeds])

    def alive(self) -> list[_RedisNode]:
        return [n for n in self.nodes if n.process is not None and n.process.poll() is None]

    def wait_healthy(self, timeout: float = SET_START) -> None:
        """Every live node says cluster_state:ok and names only live masters for the
        slots, and every live replica is in sync with its master (so it could take over)."""

        def healthy() -> bool:
            alive = {n.port for n in self.alive()}
            for node in self.alive():
                with node.client() as conn:
                    info = conn.execute_command("CLUSTER", "INFO")
                    if "cluster_state:ok" not in str(info):
                        return False
                    # Every node must have learnt of the failover: a client that reloads
                    # its slot map from a node still naming the dead master fails again.
                    masters = {int(entry[2][1]) for entry in conn.execute_command("CLUSTER", "SLOTS")}
                    if not masters <= alive or len(masters) != self.masters:
                        return False
                if not _replica_synced(node):
                    return False
            return True

        _wait(healthy, "the cluster to be healthy", timeout, self._logs)

    def master_ports(self) -> set[int]:
        """Ports of the live masters, as the live nodes see them."""
        alive = {n.port for n in self.alive()}
        with self.alive()[0].client() as conn:
            slots = conn.execute_command("CLUSTER", "SLOTS")
        return {int(entry[2][1]) for entry in slots} & alive

    def master_for(self, key: str) -> _RedisNode:
        """The node that serves ``key`` now."""
        with self.alive()[0].client() as conn:
            slot = int(conn.execute_command("CLUSTER", "KEYSLOT", key))
            for start, end, master, *_ in conn.execute_command("CLUSTER", "SLOTS"):
                if start <= slot <= end:
                    return next(n for n in self.nodes if n.port == int(master[1]))
        raise RuntimeError(f"no master serves {key!r}")

    def client(self) -> redis.RedisCluster:
        node = self.alive()[0]
        return redis.RedisCluster(host="127.0.0.1", port=node.port, decode_responses=True, socket_timeout=5)

    def _logs(self) -> str:
        return _tail_logs(self.nodes)

    def destroy(self) -> None:
        _stop_nodes(self.nodes)
        shutil.rmtree(self.base, ignore_errors=True)


class RedisSentinelSet:
    """A master, ``replicas`` replicas and ``sentinels`` Sentinels (quorum: a majority)
    watching it as ``service``, on free loopback ports, every process stopped by PID."""

    def __init__(
        self,
        service: str = "compere",
        *,
        replicas: int = 1,
        sentinels: int = 3,
        down_after_ms: int = 1000,
    ) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="compere-rsentinel-"))
        self.service = service
        self.down_after_ms = down_after_ms
        self.replica_count = replicas
        self.sentinel_count = sentinels
        self.data: list[_RedisNode] = []
        self.sentinels: list[_RedisNode] = []

    def start(self, timeout: float = SET_START) -> None:
        master = _start_node(self.base, free_port, *_DATA_NODE)
        self.data.append(master)
        for _ in range(self.replica_count):
            replica = _start_node(
                self.base, free_port, *_DATA_NODE, "--replicaof", "127.0.0.1", str(master.port)
            )
            self.data.append(replica)
        quorum = self.sentinel_count // 2 + 1
        for _ in range(self.sentinel_count):
            self.sentinels.append(
                _start_node(
                    self.base,
                    free_port,
                    f"sentinel monitor {self.service} 127.0.0.1 {master.port} {quorum}",
                    f"sentinel down-after-milliseconds {self.service} {self.down_after_ms}",
                    f"sentinel failover-timeout {self.service} {max(3000, 3 * self.down_after_ms)}",
                    f"sentinel parallel-syncs {self.service} 1",
                    sentinel=True,
                )
            )

        def watching() -> bool:
            # Failover needs synced replicas, known with the other Sentinels to every Sentinel.
            if not all(_replica_synced(node) for node in self.data):
                return False
            for sentinel in self.sentinels:
                with sentinel.client() as conn:
                    state = conn.execute_command("SENTINEL", "MASTER", self.service)
                    state = (
                        dict(zip(state[::2], state[1::2], strict=True)) if isinstance(state, list) else state
                    )
                    if int(state["num-slaves"]) < self.replica_count:
                        return False
                    if int(state["num-other-sentinels"]) < self.sentinel_count - 1:
                        return False
            return True

        _wait(watching, "the Sentinels to see the replicas and each other", timeout, self._logs)

    def url(self, db: int = 0) -> str:
        hosts = ",".join(f"127.0.0.1:{node.port}" for node in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.service}/{db}"

    def master_port(self) -> int:
        """The master's port as the first live Sentinel reports it."""
        for sentinel in self.sentinels:
            if sentinel.process is None or sentinel.process.poll() is not None:
                continue
            with sentinel.client() as conn:
                _host, port = conn.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)
                return int(port)
        raise RuntimeError("no Sentinel answers")

    def master(self) -> _RedisNode:
        port = self.master_port()
        return next(node for node in self.data if node.port == port)

    def wait_promoted(self, old_port: int, timeout: float = 60) -> int:
        """Wait until the Sentinels name another master, and it accepts writes; its port."""

        def promoted() -> bool:
            port = self.master_port()
            if port == old_port:
                return False
            with redis.Redis(port=port, socket_timeout=1) as conn:
                return conn.info("replication")["role"] == "master"

        _wait(promoted, "a Sentinel failover", timeout)
        return self.master_port()

    def _logs(self) -> str:
        return _tail_logs(self.data + self.sentinels)

    def destroy(self) -> None:
        _stop_nodes(self.sentinels + self.data)
        shutil.rmtree(self.base, ignore_errors=True)
