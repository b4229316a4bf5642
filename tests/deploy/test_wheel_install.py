"""A plain install (not editable) works from any folder: the schema ships inside the package.

Builds the sdist and, from it, the wheel (``python -m build``, as a release would), installs
the wheel into a fresh virtual environment outside the checkout, then migrates and serves
from an unrelated folder with no ``COMPERE_SQL_DIR`` and no path into the checkout.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.servers import REPO, free_port, health_status, stop_process, wait_for

SCHEMA_FILES = sorted(
    f"{dialect}/{f.name}"
    for dialect in ("postgresql", "sqlite")
    for f in (REPO / "sql" / dialect).glob("*.sql")
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path]:
    """(sdist, wheel), the wheel built from the sdist."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(REPO)],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    return next(out.glob("*.tar.gz")), next(out.glob("*.whl"))


def test_wheel_and_sdist_carry_every_schema_file(built):
    sdist, wheel = built
    with zipfile.ZipFile(wheel) as archive:
        in_wheel = sorted(n.split("compere/sql/", 1)[1] for n in archive.namelist() if "compere/sql/" in n)
    with tarfile.open(sdist) as archive:
        in_sdist = sorted(n.split("/sql/", 1)[1] for n in archive.getnames() if n.endswith(".sql"))
    assert SCHEMA_FILES
    assert in_wheel == SCHEMA_FILES
    assert in_sdist == SCHEMA_FILES


def test_installed_wheel_migrates_and_serves_from_another_folder(built, tmp_path):
    _, wheel = built
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(wheel)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPERE_", "PYTHON", "GUNICORN_"))}
    for name in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "CORS_ORIGINS", "ENVIRONMENT", "VIRTUAL_ENV"):
        env.pop(name, None)
    env["DATABASE_URL"] = f"sqlite:///{elsewhere / 'compere.db'}"

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(python), *argv], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120
        )

    where = run("-c", "import compere; print(compere.__file__)")
    assert Path(where.stdout.strip()).is_relative_to(venv), where.stdout + where.stderr

    migrated = run("-m", "compere", "migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert "applied: 0001_" in migrated.stdout

    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [str(venv / "bin" / "compere"), "serve", "--port", str(port)],
            cwd=elsewhere, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    try:
        status = wait_for(lambda: health_status(port), 60, "compere serve", server, log)
        assert status == 200
    finally:
        stop_process(server)
