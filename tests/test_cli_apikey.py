"""``compere apikey create|list|revoke``: real subprocesses on the test's database (SQLite
and PostgreSQL); the key printed once works through HTTP until it is revoked."""

from __future__ import annotations

from tests.helpers import run_compere
from tests.test_cli_createsuperuser import PASSWORD, createsuperuser


async def test_create_list_and_revoke_a_key_from_the_command_line(database_url, tmp_path, make_auth_client):
    status, _, err = await createsuperuser(
        database_url, "--username", "operator", COMPERE_SUPERUSER_PASSWORD=PASSWORD
    )
    assert status == 0, err

    status, out, err = await run_compere(
        database_url, tmp_path, "apikey", "create", "--user", "operator", "--scope", "read", "--name", "ci"
    )
    assert status == 0, err
    key = out.strip()
    assert key.startswith("ck_") and "\n" not in key
    prefix = "_".join(key.split("_")[:2])  # the secret part may hold "_" too
    assert prefix in err and key not in err

    client = await make_auth_client()
    assert (await client.get("/entities/", headers={"X-API-Key": key})).status == 200

    status, out, err = await run_compere(database_url, tmp_path, "apikey", "list", "--user", "operator")
    assert status == 0, err
    (line,) = out.strip().splitlines()
    key_id, shown_prefix, scopes, project, _, last_used, state = line.split("\t")
    assert (shown_prefix, scopes, project, state) == (prefix, "read", "all", "active")
    assert last_used != "never" and key not in out

    status, out, err = await run_compere(database_url, tmp_path, "apikey", "revoke", key_id)
    assert status == 0, err
    assert (await client.get("/entities/", headers={"X-API-Key": key})).status == 401

    status, _, err = await run_compere(database_url, tmp_path, "apikey", "list", "--user", "nobody")
    assert status == 1 and "no user named" in err
    status, _, err = await run_compere(
        database_url,
        tmp_path,
        "apikey",
        "create",
        "--user",
        "operator",
        "--scope",
        "read",
        "--expires",
        "2000-01-01T00:00:00Z",
    )
    assert status == 1 and "future" in err
