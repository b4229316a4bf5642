"""Prometheus metrics: the counters other modules increment, and how they are rendered.

The metric objects live at module level so any layer can count what it sees
(``metrics.RATE_LIMIT_REFUSALS.labels(policy="auth").inc()``); counting is cheap and
happens whether or not ``/metrics`` is served (``METRICS_ENABLED``).

Under gunicorn every worker is its own process. prometheus-client's multiprocess mode
handles that: when ``PROMETHEUS_MULTIPROC_DIR`` names a writable, initially empty
folder before the first metric is created, every process writes its values to files
there and :func:`render` sums them, so any worker answers ``/metrics`` with the totals
of all of them. gunicorn's ``child_exit`` hook must call :func:`worker_exited` so a
dead worker's live gauges disappear (its counters are kept, as Prometheus expects).
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

__all__ = [
    "AUTH_FAILURES",
    "CONTENT_TYPE_LATEST",
    "DB_POOL_IN_USE",
    "DB_POOL_TIMEOUTS",
    "DB_POOL_WAITS",
    "DB_POOL_WAIT_SECONDS",
    "DB_REPLICA_IN_USE",
    "DB_REPLICA_LAG_SECONDS",
    "RATE_LIMIT_REFUSALS",
    "REDIS_ERRORS",
    "REQUESTS",
    "REQUEST_SECONDS",
    "VOTES",
    "VOTES_WAITING",
    "VOTE_BATCHES",
    "observe_request",
    "render",
    "worker_exited",
]

_MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

REQUESTS = Counter(
    "compere_http_requests_total",
    "HTTP requests answered, by method, route template and status",
    ["method", "route", "status"],
)
REQUEST_SECONDS = Histogram(
    "compere_http_request_duration_seconds",
    "Time to answer an HTTP request, by method and route template",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
VOTES = Counter(
    "compere_votes_recorded_total",
    "Comparisons stored, by outcome (win or tie)",
    ["outcome"],
)
RATE_LIMIT_REFUSALS = Counter(
    "compere_rate_limit_refusals_total",
    "Requests refused with 429 by the rate limiter, by policy",
    ["policy"],
)
AUTH_FAILURES = Counter(
    "compere_auth_failures_total",
    "Failed authentications (bad credentials, bad or expired tokens, lockouts), by reason",
    ["reason"],
)
DB_POOL_IN_USE = Gauge(
    "compere_db_pool_connections_in_use",
    "PostgreSQL connections currently checked out of the pool (summed over live workers)",
    multiprocess_mode="livesum",
)
VOTES_WAITING = Gauge(
    "compere_votes_waiting",
    "Votes submitted to the group commit and not yet answered (summed over live workers)",
    multiprocess_mode="livesum",
)
VOTE_BATCHES = Counter(
    "compere_vote_batches_total",
    "Group-commit transactions of votes (compere_votes_total over this is the mean batch size)",
)
DB_POOL_WAITS = Counter(
    "compere_db_pool_waits_total",
    "Connection requests that found the pool exhausted and had to wait",
)
DB_POOL_WAIT_SECONDS = Histogram(
    "compere_db_pool_wait_seconds",
    "Time spent waiting for a pooled connection, when one had to wait",
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0),
)
DB_POOL_TIMEOUTS = Counter(
    "compere_db_pool_timeouts_total",
    "Connection requests that gave up waiting (answered 503)",
)
DB_REPLICA_LAG_SECONDS = Gauge(
    "compere_db_replica_lag_seconds",
    "Age of the newest primary WAL position the read replica has replayed, at the last check "
    "(the largest of the live workers' measurements)",
    multiprocess_mode="livemax",
)
DB_REPLICA_IN_USE = Gauge(
    "compere_db_replica_in_use",
    "1 while reads that may be stale go to the replica, 0 while they fall back to the primary "
    "(the smallest of the live workers' values)",
    multiprocess_mode="livemin",
)
REDIS_ERRORS = Counter(
    "compere_redis_errors_total",
    "Redis commands that failed (connection, timeout or server error), by operation",
    ["operation"],
)


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    """Count one answered request. ``route`` must be a template, never a raw path."""
    method = method if method in _METHODS else "OTHER"  # keep label values bounded
    REQUESTS.labels(method, route, str(status)).inc()
    REQUEST_SECONDS.labels(method, route).observe(seconds)


def multiprocess_dir() -> str | None:
    return os.environ.get(_MULTIPROCESS_ENV) or None


def render() -> bytes:
    """The exposition text: this process's registry, or every worker's files summed."""
    path = multiprocess_dir()
    if path is None:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=path)
    return generate_latest(registry)


def worker_exited(pid: int) -> None:
    """Call from gunicorn's ``child_exit`` hook: drop a dead worker's live gauges."""
    if multiprocess_dir() is not None:
        multiprocess.mark_process_dead(pid)
