"""Set-up mistakes on the command line end in one clear line and a non-zero status.

Real subprocesses, as a user types them, from a folder that holds no database.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def compere(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("COMPERE_")}
    for name in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "CORS_ORIGINS", "ENVIRONMENT"):
        base.pop(name, None)
    base.update({"PYTHONPATH": str(REPO), "LOG_LEVEL": "WARNING", **env})
    return subprocess.run(
        [sys.executable, "-m", "compere", *args],
        cwd=cwd, env=base, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120,
    )  # fmt: skip


def test_a_busy_port_is_one_line_naming_it(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = compere(tmp_path, "--port", str(port), DATABASE_URL=f"sqlite:///{tmp_path / 'c.db'}")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert result.stdout == ""  # no "listening" banner for a server that never listened
    assert result.stderr.strip().splitlines() == [
        f"compere: cannot listen on 127.0.0.1:{port}: address already in use (choose another with --port)"
    ]


@pytest.mark.parametrize(
    "args", [("export", "entities"), ("export", "comparisons", "--format", "csv"), ("rebuild-ratings",)]
)
def test_reading_commands_refuse_a_sqlite_file_that_does_not_exist(tmp_path, args):
    result = compere(tmp_path, *args)
    assert result.returncode == 1
    assert result.stdout == ""
    expected = tmp_path.resolve() / "compere.db"  # the default DATABASE_URL, sqlite:///./compere.db
    assert result.stderr.splitlines() == [
        f"compere: {args[0]}: no database at sqlite:///{expected}; run it where the database is, "
        "set DATABASE_URL, or create one with `compere migrate`"
    ]
    assert list(tmp_path.iterdir()) == []


def test_commands_that_may_set_up_a_database_say_where(tmp_path):
    result = compere(
        tmp_path,
        "createsuperuser",
        "--username",
        "root",
        COMPERE_SUPERUSER_PASSWORD="quiet-kestrel-harbour-48",
        BCRYPT_ROUNDS="10",
    )
    assert result.returncode == 0, result.stderr
    assert f"compere: database sqlite:///{tmp_path.resolve() / 'compere.db'}" in result.stderr.splitlines()


def test_data_commands_say_which_database_they_use(tmp_path):
    database = tmp_path / "data" / "compere.db"
    database.parent.mkdir()
    url = f"sqlite:///{database}"
    # migrate may create the file; then export reads it and names it.
    assert compere(tmp_path, "migrate", DATABASE_URL=url).returncode == 0
    result = compere(tmp_path, "export", "entities", DATABASE_URL=url)
    assert result.returncode == 0, result.stderr
    assert f"compere: database sqlite:///{database}" in result.stderr.splitlines()


def test_a_schema_folder_without_schema_files_stops_serve_in_one_line(tmp_path):
    empty = tmp_path / "schema"
    empty.mkdir()
    result = compere(
        tmp_path, "--port", "0", COMPERE_SQL_DIR=str(empty), DATABASE_URL=f"sqlite:///{tmp_path / 'c.db'}"
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == ["compere: cannot start: no schema files in sql/sqlite/"]


def test_a_schema_override_that_is_not_a_folder_is_refused_not_ignored(tmp_path):
    missing = tmp_path / "nowhere"
    result = compere(
        tmp_path, "migrate", COMPERE_SQL_DIR=str(missing), DATABASE_URL=f"sqlite:///{tmp_path / 'c.db'}"
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"compere: migration failed: COMPERE_SQL_DIR={missing} is not a folder"
    ]
