"""The image's recipes without a Docker engine: the entry point script and ``.env.example``.

The script runs here as the image runs it, executed directly (so its mode and ``#!`` line
count), from a folder holding only gunicorn.conf.py (the image's /app), with the installed
``gunicorn``, ``compere`` and ``python`` on PATH.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from compere import __version__
from compere.settings import load_settings, read_dotenv
from tests.servers import REPO, free_port, health_status, stop_process, wait_for

ENTRYPOINT = REPO / "docker" / "entrypoint.sh"


@pytest.fixture
def image_dir(tmp_path: Path) -> Path:
    app = tmp_path / "app"
    app.mkdir()
    shutil.copy(REPO / "gunicorn.conf.py", app)
    return app


def image_env(app: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GUNICORN_", "COMPERE_", "PROMETHEUS_"))}
    for name in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "CORS_ORIGINS", "WEB_CONCURRENCY", "LOG_FORMAT"):
        env.pop(name, None)
    env.update(
        {
            "PATH": str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", ""),
            "PYTHONPATH": str(REPO),
            "HOME": str(app.parent),
            "ENVIRONMENT": "staging",
            "DATABASE_URL": f"sqlite:///{app.parent / 'compere.db'}",
            **extra,
        }
    )
    return env


def entrypoint(app: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ENTRYPOINT), *args],
        cwd=app, env=image_env(app, **env), capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_dockerfile_header_migrate_recipe_runs_the_command_not_gunicorn(image_dir):
    # The Dockerfile's header suggests: docker run --rm --env-file .env compere python -m compere migrate
    assert "compere python -m compere migrate" in (REPO / "Dockerfile").read_text()
    result = entrypoint(image_dir, "python", "-m", "compere", "migrate")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("applied: 0001_")


def test_compere_commands_run_the_cli(image_dir):
    result = entrypoint(image_dir, "migrate")
    assert result.returncode == 0, result.stderr
    assert "applied: 0001_" in result.stdout
    result = entrypoint(image_dir, "compere", "--version")
    assert (result.returncode, result.stdout.strip()) == (0, f"compere {__version__}")


def test_options_alone_go_to_gunicorn_with_the_shipped_config(image_dir):
    result = entrypoint(image_dir, "-w", "3", "--print-config")
    assert result.returncode == 0, result.stderr
    config = {}
    for line in result.stdout.splitlines():
        name, _, value = line.partition(" = ")
        config[name.strip()] = value.strip()
    assert (config["workers"], config["wsgi_app"]) == ("3", "compere.http.app:create_app")


def test_no_arguments_serve_with_gunicorn(image_dir):
    assert entrypoint(image_dir, "migrate").returncode == 0
    port = free_port()
    env = image_env(
        image_dir, GUNICORN_BIND=f"127.0.0.1:{port}", GUNICORN_WORKERS="1", MIGRATE_ON_START="false"
    )
    log = image_dir.parent / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(ENTRYPOINT)],
            cwd=image_dir, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    try:
        assert wait_for(lambda: health_status(port), 60, "gunicorn", proc, log) == 200
    finally:
        # The script execs gunicorn, so this PID is gunicorn's master.
        assert stop_process(proc) == 0
    assert "Booting worker" in log.read_text()


def test_env_example_filled_in_passes_the_production_check(tmp_path):
    template = read_dotenv(REPO / ".env.example")
    blanks = sorted(name for name, value in template.items() if not value)
    assert blanks == ["POSTGRES_PASSWORD", "SECRET_KEY"]
    password = secrets.token_urlsafe(16)
    filled = {
        **template,
        "SECRET_KEY": secrets.token_urlsafe(32),
        "POSTGRES_PASSWORD": password,
        "DATABASE_URL": template["DATABASE_URL"].replace("CHANGE_ME", password),
    }
    assert not any(re.search("CHANGE_ME", value) for value in filled.values())
    settings = load_settings(filled, dotenv=tmp_path / "none")
    assert settings.is_production
    assert settings.auth_enabled and settings.rate_limit_enabled and settings.redis_url
    assert not settings.uses_sqlite
