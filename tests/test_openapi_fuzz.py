"""Schema-driven fuzzing: schemathesis against the served ``/openapi.json``.

The service runs as a real process on loopback (``python -m compere`` on PostgreSQL).
Every operation in the document gets ``EXAMPLES`` generated requests (valid and
invalid ones); each response must not be a 5xx, must use a status code the document
lists for that operation, and must match the documented schema, content type and
headers.

Callers: ``CALLERS`` lists who sends the requests; each operation runs once per caller.
It holds the anonymous caller now; with authentication, add one that registers a user
and returns its ``Authorization`` header (and serve with ``AUTH_ENABLED=true``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from compere.http.openapi import build_openapi
from compere.http.routes import ROUTES
from tests.servers import free_port

EXAMPLES = 30
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


@pytest.fixture(scope="module")
def served_api(postgres_factory, tmp_path_factory) -> Iterator[str]:
    port = free_port()
    log_path = tmp_path_factory.mktemp("fuzz") / "server.log"
    env = {
        **os.environ,
        "PYTHONPATH": os.getcwd(),
        "DATABASE_URL": postgres_factory(),
        "LOG_REQUESTS": "false",
        "ENVIRONMENT": "staging",  # production-like error bodies without production's guards
    }
    env.pop("REDIS_URL", None)
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "compere", "serve", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                pytest.fail(f"the server did not start:\n{log_path.read_text()}")
            time.sleep(0.1)
        # A few entities, so that reads and votes on small ids sometimes succeed.
        for name in ("alpha", "beta", "gamma"):
            requests.post(f"{base}/entities/", json={"name": name}, timeout=5).raise_for_status()
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)


# Generated from the same route table the server serves it from; the test checks that
# the served document is this one, so fuzzing it is fuzzing the served document.
DOCUMENT = build_openapi(ROUTES)
schema = schemathesis.openapi.from_dict(DOCUMENT)


@pytest.fixture(scope="module")
def served_document(served_api: str) -> dict:
    return requests.get(f"{served_api}/openapi.json", timeout=5).json()


def anonymous(base_url: str) -> dict[str, str]:
    return {}


# Who sends the requests. With authentication merged, add a caller that registers a
# user once and returns {"Authorization": "Bearer ..."}.
CALLERS: dict[str, Callable[[str], dict[str, str]]] = {"anonymous": anonymous}


@pytest.mark.parametrize("caller", sorted(CALLERS))
@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,  # the same examples on every run: CI failures reproduce
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_conforms_to_the_served_document(case, caller, served_api, served_document):
    assert served_document == DOCUMENT
    case.call_and_validate(
        base_url=served_api, headers=CALLERS[caller](served_api), checks=CHECKS, timeout=10
    )
