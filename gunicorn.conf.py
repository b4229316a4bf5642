"""Gunicorn settings for serving Compere in production.

Start with ``gunicorn -c gunicorn.conf.py``. Every value below can be changed through the
environment without editing this file; command-line options still win over it
(``gunicorn -c gunicorn.conf.py -b 127.0.0.1:9000 -w 4``).

| Variable                   | Default                        | Meaning                                   |
|----------------------------|--------------------------------|-------------------------------------------|
| GUNICORN_BIND              | 127.0.0.1:8000                 | comma-separated addresses to listen on    |
| GUNICORN_WORKERS           | WEB_CONCURRENCY, else CPUs     | worker processes (one event loop each)    |
| GUNICORN_TIMEOUT           | 30                             | seconds a silent worker lives before kill |
| GUNICORN_GRACEFUL_TIMEOUT  | 30                             | seconds in-flight requests get on SIGTERM |
| GUNICORN_KEEPALIVE         | 75                             | idle keep-alive seconds (> nginx's 60)    |
| GUNICORN_ACCESS_LOG        | unset (the app logs requests)  | ``-`` for gunicorn's own access log       |
| GUNICORN_CONTROL_SOCKET    | unset (control socket off)     | a path to enable gunicorn's control socket|
| LOG_LEVEL, LOG_FORMAT      | INFO, text                     | shared with the app; ``json`` for JSON    |
| PROMETHEUS_MULTIPROC_DIR   | a private folder per master    | with METRICS_ENABLED (docs/metrics.md)    |

The app's settings are checked once in the master before it listens: a configuration the
app would refuse (production's checks) stops gunicorn with each problem on one line.

Schema: run ``python -m compere migrate`` before starting and set MIGRATE_ON_START=false
in production. With MIGRATE_ON_START=true (the app's default) every worker runs the
migration runner as it starts; its lock (a PostgreSQL advisory lock, SQLite's write lock)
lets one apply the files while the others wait, so workers starting at once are safe.
"""

import atexit
import os
import shutil
import sys
import tempfile

# The async app factory; aiohttp's worker awaits it once in every worker process.
wsgi_app = "compere.http.app:create_app"


def _env_int(name, default, low=1, high=100_000):
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise ValueError(f"{name}={raw!r} is invalid: expected an integer from {low} to {high}")
    return value


def _cpu_count():
    # sched_getaffinity honours a container's cpuset; cpu_count() would not.
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def _default_worker_class():
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "aiohttp.GunicornWebWorker"
    return "aiohttp.GunicornUVLoopWebWorker"


worker_class = _default_worker_class()
# Each worker is one event loop: BLAS threads (numpy, used by the model fits) would only
# fight the other workers for the same cores. Measured: 55 ms -> 3 ms for a 200x200 solve
# on a busy 2-core machine. An explicit setting in the environment still wins.
for _blas in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_blas, "1")

# Loopback by default: the app is never public (nginx in front). A container sets
# GUNICORN_BIND=0.0.0.0:8000 (the Dockerfile does), since its loopback is unreachable.
bind = [b.strip() for b in os.environ.get("GUNICORN_BIND", "127.0.0.1:8000").split(",") if b.strip()]
# Each worker runs one event loop, so one per CPU uses the machine; more only adds
# memory and connection-pool size (DB_POOL_MAX is per worker).
workers = _env_int("GUNICORN_WORKERS", _env_int("WEB_CONCURRENCY", _cpu_count()))
timeout = _env_int("GUNICORN_TIMEOUT", 30)
# On SIGTERM the master stops accepting, each worker finishes its in-flight requests
# (aiohttp gets 95% of this) and runs the app's cleanup; stragglers are then killed.
graceful_timeout = _env_int("GUNICORN_GRACEFUL_TIMEOUT", 30)
# Longer than nginx's upstream keep-alive (60 s by default), so nginx, not the app,
# closes idle upstream connections and never sends a request into a closing socket.
keepalive = _env_int("GUNICORN_KEEPALIVE", 75)
proc_name = "compere"

# The heartbeat file lives in memory: a slow container filesystem would make busy
# workers look hung.
if os.path.isdir("/dev/shm"):
    worker_tmp_dir = "/dev/shm"

# gunicorn's default control socket is one fixed path per user, so a second instance on
# the same machine collides with the first. Off unless a path is given.
_control_socket = os.environ.get("GUNICORN_CONTROL_SOCKET", "").strip()
if _control_socket:
    control_socket = _control_socket
else:
    control_socket_disable = True

# The aiohttp worker ignores gunicorn's limit_request_* settings: the app enforces
# MAX_BODY_SIZE itself and nginx's client_max_body_size guards the edge.

loglevel = os.environ.get("LOG_LEVEL", "info").strip().lower() or "info"
errorlog = "-"
accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "").strip() or None

if os.environ.get("LOG_FORMAT", "").strip().lower() == "json":
    # gunicorn's own lines (boot, worker exits, access log) in the same JSON shape as
    # the app's; the app's configure_logging() recognises this handler and replaces it.
    logconfig_dict = {
        "version": 1,
        "disable_existing_loggers": False,
        "root": {"level": loglevel.upper(), "handlers": ["service"]},
        "loggers": {
            "gunicorn.error": {"level": loglevel.upper(), "handlers": [], "propagate": True},
            "gunicorn.access": {"level": "INFO", "handlers": [], "propagate": True},
        },
        "handlers": {
            "service": {
                "class": "compere.infra.logging.ServiceLogHandler",
                "formatter": "json",
            },
        },
        "formatters": {"json": {"()": "compere.infra.logging.JsonFormatter"}},
    }


# Before anything listens: a configuration the app would refuse stops the master here,
# printing each problem once, instead of "Listening at" and a traceback per worker.
def on_starting(server):
    from compere.settings import load_settings_or_report

    settings = load_settings_or_report()
    if settings is None:
        _exit_before_listening(server, 2)
    _prepare_metrics_folder(server, settings.metrics_enabled)


# Metrics from several workers (docs/metrics.md): every worker keeps its values in files
# under PROMETHEUS_MULTIPROC_DIR and /metrics sums them. Without the variable, each scrape
# would show whichever worker answered, so with METRICS_ENABLED this master makes a
# private folder of its own and removes it on exit. A given folder is emptied of stale
# files from an earlier run. Either way it is set before any worker imports
# prometheus_client (workers inherit the environment when they are forked).
_OWN_METRICS_FOLDER = "COMPERE_OWN_METRICS_FOLDER"  # the folder a master made for itself


def _prepare_metrics_folder(server, metrics_enabled):
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "").strip()
    if folder and folder != os.environ.get(_OWN_METRICS_FOLDER):
        os.makedirs(folder, exist_ok=True)
        for name in os.listdir(folder):
            if name.endswith(".db"):
                os.remove(os.path.join(folder, name))
        return
    # None given, or the one an earlier master made for itself (USR2): start afresh.
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    os.environ.pop(_OWN_METRICS_FOLDER, None)
    if not metrics_enabled:
        return
    if "prometheus_client" in sys.modules:  # --preload: the app was imported without the folder
        print(
            "compere: configuration error: METRICS_ENABLED with --preload needs "
            "PROMETHEUS_MULTIPROC_DIR set before gunicorn starts",
            file=sys.stderr,
        )
        _exit_before_listening(server, 2)
    folder = tempfile.mkdtemp(prefix="compere-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = os.environ[_OWN_METRICS_FOLDER] = folder
    atexit.register(_remove_own_folder, folder, os.getpid())
    server.log.info("metrics of every worker are summed through %s", folder)


def _remove_own_folder(folder, master_pid):
    # Forked workers inherit this exit handler; only the master that made the folder acts.
    if os.getpid() == master_pid:
        shutil.rmtree(folder, ignore_errors=True)


def _exit_before_listening(server, status):
    if server.pidfile is not None:
        server.pidfile.unlink()
    raise SystemExit(status)


def child_exit(server, worker):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR", "").strip():
        from compere.infra import metrics

        metrics.worker_exited(worker.pid)
