"""``compere createsuperuser``: a real subprocess against the test's database (SQLite and
PostgreSQL), then a login through HTTP with authentication on."""

from __future__ import annotations

import asyncio
import os
import pty
import select
import sys
import time
from pathlib import Path

from tests.helpers import bearer, log_in

REPO = Path(__file__).resolve().parents[1]
PASSWORD = "quiet-kestrel-harbour-48"


def command_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {**os.environ, "DATABASE_URL": database_url, "PYTHONPATH": str(REPO), "LOG_LEVEL": "WARNING"}
    env.pop("COMPERE_SUPERUSER_PASSWORD", None)
    env["BCRYPT_ROUNDS"] = "10"
    return {**env, **extra}


async def createsuperuser(database_url: str, *args: str, **env: str) -> tuple[int, str, str]:
    """Run the command with no terminal (standard input is an empty pipe)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "compere",
        "createsuperuser",
        *args,
        env=command_env(database_url, **env),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate(b"")
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_password_from_the_environment_then_log_in_as_superuser(make_auth_client, database_url):
    client = await make_auth_client()  # creates the schema; auth on
    status, out, err = await createsuperuser(
        database_url, "--username", "root", "--email", "root@example.org", COMPERE_SUPERUSER_PASSWORD=PASSWORD
    )
    assert status == 0, err
    assert out.startswith("created superuser root (id ")
    assert PASSWORD not in out + err
    token = await log_in(client, "root", PASSWORD)
    me = await (await client.get("/auth/users/me", headers=bearer(token))).json()
    assert me["username"] == "root" and me["is_superuser"] is True and me["email"] == "root@example.org"
    # A superuser may do what only superusers may.
    assert (await client.get("/auth/users", headers=bearer(token))).status == 200

    # Again with the same name: refused, and nothing changes.
    status, _, err = await createsuperuser(
        database_url, "--username", "ROOT", COMPERE_SUPERUSER_PASSWORD="another-long-passphrase-1"
    )
    assert status == 1
    assert "a user with this username already exists" in err
    users = await (await client.get("/auth/users", headers=bearer(token))).json()
    assert [u["username"] for u in users] == ["root"]


async def test_the_password_policy_and_username_rules_apply(make_auth_client, database_url):
    client = await make_auth_client()
    cases = [
        (("--username", "root"), "password123456", "password is too common"),
        (("--username", "root"), "short", "password must be at least 12 characters"),
        (("--username", "root"), "root-and-more-words", "password must not contain the username"),
        (("--username", "no spaces allowed"), PASSWORD, "must start with a letter or digit"),
    ]
    for args, password, message in cases:
        status, _, err = await createsuperuser(database_url, *args, COMPERE_SUPERUSER_PASSWORD=password)
        assert status == 1, (args, password)
        assert message in err, err
        assert password not in err
    # Nobody was created: the first sign-up through the API is still open.
    resp = await client.post("/auth/users/", json={"username": "first", "password": PASSWORD})
    assert resp.status == 200
    assert (await resp.json())["is_superuser"] is True


async def test_without_a_terminal_or_the_variable_it_asks_for_the_variable(make_auth_client, database_url):
    await make_auth_client()
    status, _, err = await createsuperuser(database_url, "--username", "root")
    assert status == 1
    assert "set COMPERE_SUPERUSER_PASSWORD" in err
    status, _, err = await createsuperuser(database_url, COMPERE_SUPERUSER_PASSWORD=PASSWORD)
    assert status == 1
    assert "--username is required" in err


def run_on_a_terminal(env: dict[str, str], answers: list[str], timeout: float = 60) -> tuple[int, str]:
    """Run the command on a pseudo-terminal, typing each answer after its prompt."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: the terminal is its controlling terminal, as in a shell
        os.execve(sys.executable, [sys.executable, "-m", "compere", "createsuperuser"], env)
    screen = b""
    pending = list(answers)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:  # the child closed the terminal
                    break
                if not chunk:
                    break
                screen += chunk
            if pending and screen.rstrip().endswith(b":"):
                os.write(fd, pending.pop(0).encode() + b"\n")
                screen += b"<typed>"  # so the same prompt is not answered twice
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    return os.waitstatus_to_exitcode(status), screen.decode(errors="replace")


async def test_on_a_terminal_it_prompts_and_does_not_echo_the_password(make_auth_client, database_url):
    client = await make_auth_client()
    env = command_env(database_url)
    status, screen = await asyncio.get_running_loop().run_in_executor(
        None, run_on_a_terminal, env, ["keeper", PASSWORD, PASSWORD]
    )
    assert status == 0, screen
    assert "Username:" in screen and "Password:" in screen and "Password (again):" in screen
    assert "keeper" in screen  # the username is echoed as typed...
    assert PASSWORD not in screen  # ...the password never is
    assert "created superuser keeper" in screen
    token = await log_in(client, "keeper", PASSWORD)
    me = await (await client.get("/auth/users/me", headers=bearer(token))).json()
    assert me["is_superuser"] is True

    status, screen = await asyncio.get_running_loop().run_in_executor(
        None, run_on_a_terminal, env, ["second", PASSWORD, PASSWORD + "x"]
    )
    assert status == 1
    assert "the two passwords differ" in screen
