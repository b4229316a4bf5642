"""Schema-driven fuzzing: schemathesis against the served ``/openapi.json``.

The service runs as a real process on loopback (``python -m compere`` on PostgreSQL).
Every operation in the document gets ``EXAMPLES`` generated requests (valid and
invalid ones); each response must not be a 5xx, must use a status code the document
lists for that operation, and must match the documented schema, content type and
headers.

Callers: ``CALLERS`` lists who sends the requests; each operation runs once per caller:
anonymously, and as the superuser (the first user, registered on the served instance),
so the operations behind the access guards are exercised past them too.
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
        "SECRET_KEY": "fuzzing-secret-key-that-is-long-enough-0123",
        "BCRYPT_ROUNDS": "10",
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
        # The superuser caller's account, made before any fuzzing can take the first-user slot.
        first = requests.post(
            f"{base}/auth/users/", json={"username": SUPERUSER[0], "password": SUPERUSER[1]}, timeout=10
        )
        assert first.status_code == 200 and first.json()["is_superuser"], first.text
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


SUPERUSER = ("fuzz-admin", "a-long-fuzzing-passphrase-42")
_tokens: dict[str, str] = {}


def superuser(base_url: str) -> dict[str, str]:
    """A bearer header for the instance's superuser, renewed when the fuzzer logs it out.

    If the fuzzer has disabled the account, the caller goes on anonymously (every
    answer must still conform).
    """
    token = _tokens.get(base_url)
    if token is not None:
        me = requests.get(
            f"{base_url}/auth/users/me", headers={"Authorization": f"Bearer {token}"}, timeout=5
        )
        if me.status_code == 200:
            return {"Authorization": f"Bearer {token}"}
    username, password = SUPERUSER
    login = requests.post(
        f"{base_url}/auth/token", data={"username": username, "password": password}, timeout=10
    )
    if login.status_code != 200:
        return {}
    _tokens[base_url] = login.json()["access_token"]
    return {"Authorization": f"Bearer {_tokens[base_url]}"}


# Who sends the requests; each operation is fuzzed once per caller.
CALLERS: dict[str, Callable[[str], dict[str, str]]] = {"anonymous": anonymous, "superuser": superuser}


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
