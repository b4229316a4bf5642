"""REDIS_KEY_PREFIX: two deployments on one Redis database share no keys.

Each test starts two apps on the same Redis database (and the same SQL database), one
prefix each, and checks through HTTP that what one stores does not reach the other.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from compere.settings import SettingsError, load_settings
from tests.helpers import ADMIN, AUTH_ENV, NO_DOTENV, RedisRole, delete_redis_keys, redis_keys, sign_up

WRONG = "not-the-right-password-00"


@pytest.fixture
def two_prefixes(auth_redis: RedisRole, idempotency_redis: RedisRole) -> Iterator[tuple[str, str]]:
    """Two prefixes unique to this test; their keys are deleted afterwards from both Redis."""
    run = uuid.uuid4().hex[:12]
    prefixes = (f"test:{run}:one:", f"test:{run}:two:")
    yield prefixes
    for role in (auth_redis, idempotency_redis):
        delete_redis_keys(role.url, *prefixes)


async def test_a_lockout_in_one_deployment_does_not_lock_the_other(make_client, auth_redis, two_prefixes):
    # The per-client login counter lives only in Redis (an account's own lockout is kept
    # on its row in the SQL database, which these two apps share on purpose).
    one_prefix, two_prefix = two_prefixes
    limits = {**AUTH_ENV, "REDIS_URL": auth_redis.url, "LOGIN_MAX_FAILURES_PER_CLIENT": "3"}
    one = await make_client(**limits, REDIS_KEY_PREFIX=one_prefix)
    two = await make_client(**limits, REDIS_KEY_PREFIX=two_prefix)
    assert (await sign_up(one, *ADMIN)).status == 200  # one SQL database: the user exists in both

    for n in range(3):
        guess = {"username": f"nobody{n}", "password": WRONG}
        assert (await one.post("/auth/token", data=guess)).status == 401
    locked = await one.post("/auth/token", data={"username": "admin", "password": ADMIN[1]})
    assert locked.status == 429

    other = await two.post("/auth/token", data={"username": "admin", "password": ADMIN[1]})
    assert other.status == 200, await other.text()
    assert redis_keys(auth_redis.url, f"{one_prefix}auth:{{login}}:fail:")
    assert not redis_keys(auth_redis.url, f"{auth_redis.key_prefix}auth:")


async def test_a_stored_idempotent_answer_is_not_replayed_to_the_other_deployment(
    make_client, idempotency_redis, two_prefixes, empty_database
):
    one_prefix, two_prefix = two_prefixes
    # Another deployment: its own database (where its answers are recorded for good),
    # sharing only the Redis server.
    other_database = empty_database()
    one = await make_client(REDIS_URL=idempotency_redis.url, REDIS_KEY_PREFIX=one_prefix)
    two = await make_client(
        REDIS_URL=idempotency_redis.url, REDIS_KEY_PREFIX=two_prefix, DATABASE_URL=other_database
    )
    headers = {"Idempotency-Key": str(uuid.uuid4())}

    first = await one.post("/entities/", json={"name": "from one"}, headers=headers)
    assert first.status == 200
    again = await one.post("/entities/", json={"name": "from one"}, headers=headers)
    assert again.headers.get("Idempotent-Replayed") == "true"

    elsewhere = await two.post("/entities/", json={"name": "from one"}, headers=headers)
    assert elsewhere.status == 200
    assert "Idempotent-Replayed" not in elsewhere.headers
    stored = await (await two.get("/entities/")).json()
    assert [e["name"] for e in stored] == ["from one"]  # applied there, not replayed
    assert redis_keys(idempotency_redis.url, f"{one_prefix}idem:")
    assert redis_keys(idempotency_redis.url, f"{two_prefix}idem:")


def test_every_key_prefix_follows_redis_key_prefix_and_the_limiter_keeps_its_own_override():
    default = load_settings({}, dotenv=NO_DOTENV)
    assert (default.redis_key_prefix, default.rate_limit_key_prefix) == ("compere:", "compere:rl:")

    shared = load_settings({"REDIS_KEY_PREFIX": "blue:"}, dotenv=NO_DOTENV)
    assert (shared.redis_key_prefix, shared.rate_limit_key_prefix) == ("blue:", "blue:rl:")

    legacy = load_settings(
        {"REDIS_KEY_PREFIX": "blue:", "RATE_LIMIT_KEY_PREFIX": "old:rl:"}, dotenv=NO_DOTENV
    )
    assert (legacy.redis_key_prefix, legacy.rate_limit_key_prefix) == ("blue:", "old:rl:")

    with pytest.raises(SettingsError, match="REDIS_KEY_PREFIX"):
        load_settings({"REDIS_KEY_PREFIX": "has space"}, dotenv=NO_DOTENV)
