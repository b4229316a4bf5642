"""Access tokens: forged, expired and tampered tokens are refused; logout and disabling
a user end a token at once, across app instances sharing Redis."""

from __future__ import annotations

import base64
import json
import time
import uuid
import warnings

import jwt
import sqlalchemy as sa

from compere.http.keys import DATABASE
from compere.storage.database import Query
from tests.helpers import ADMIN, ALICE, TEST_SECRET_KEY, bearer, log_in, sign_up

INVALID = "Could not validate credentials"


def claims(user_id: int = 1, **changes: object) -> dict[str, object]:
    now = int(time.time())
    payload: dict[str, object] = {
        "sub": str(user_id),
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
    }
    for name, value in changes.items():
        if value is None:
            payload.pop(name, None)
        else:
            payload[name] = value
    return payload


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(payload: dict[str, object]) -> str:
    """A token with ``alg: none`` and no signature."""
    header = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{b64(json.dumps(payload).encode())}."


def tampered(token: str, **changes: object) -> str:
    """The token with its payload changed and the original signature kept."""
    header, payload, signature = token.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data.update(changes)
    return f"{header}.{b64(json.dumps(data).encode())}.{signature}"


def signed(payload: dict[str, object], key: str = TEST_SECRET_KEY, algorithm: str = "HS256") -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyJWT warns that the key is short for HS512
        return jwt.encode(payload, key, algorithm=algorithm)


async def assert_refused(client, token: str) -> None:
    for path in ("/auth/users/me", "/entities/"):
        resp = await client.get(path, headers=bearer(token))
        assert resp.status == 401, (path, await resp.text())
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        assert (await resp.json())["detail"] == INVALID


async def test_a_valid_token_works(admin_and_alice):
    client, _, alice_token = admin_and_alice
    me = await client.get("/auth/users/me", headers=bearer(alice_token))
    assert me.status == 200
    body = await me.json()
    assert body["username"] == "alice" and body["is_superuser"] is False and "hashed_password" not in body
    assert (await client.get("/entities/", headers=bearer(alice_token))).status == 200


FORGERIES = {
    "alg-none": lambda: unsigned(claims()),
    "wrong-key": lambda: signed(claims(), key="another-key-of-sufficient-length-0123456789"),
    "other-algorithm-same-key": lambda: signed(claims(), algorithm="HS512"),
    "expired": lambda: signed(claims(exp=int(time.time()) - 3600)),
    "expired-beyond-leeway": lambda: signed(claims(exp=int(time.time()) - 60)),
    "not-yet-valid": lambda: signed(claims(nbf=int(time.time()) + 3600)),
    "missing-sub": lambda: signed(claims(sub=None)),
    "missing-exp": lambda: signed(claims(exp=None)),
    "missing-iat": lambda: signed(claims(iat=None)),
    "missing-nbf": lambda: signed(claims(nbf=None)),
    "missing-jti": lambda: signed(claims(jti=None)),
    "non-numeric-subject": lambda: signed(claims(sub="admin")),
    "subject-not-a-string": lambda: signed(claims(sub=1)),
    "subject-out-of-range": lambda: signed(claims(sub=str(2**70))),
    "user-does-not-exist": lambda: signed(claims(user_id=424242)),
    "garbage": lambda: "not-a-token",
    "signature-altered": lambda: signed(claims()) + "x",
}


async def test_forged_and_broken_tokens_get_401(admin_and_alice):
    client, _, _ = admin_and_alice
    # The same claims signed properly are accepted, so each refusal below is the forgery's.
    assert (await client.get("/auth/users/me", headers=bearer(signed(claims())))).status == 200
    for name, forge in FORGERIES.items():
        try:
            await assert_refused(client, forge())
        except AssertionError as exc:
            raise AssertionError(f"{name}: {exc}") from None


async def test_a_tampered_payload_is_refused(admin_and_alice):
    client, admin_token, alice_token = admin_and_alice
    # Alice rewrites her token to claim the superuser's id.
    admin_id = (await (await client.get("/auth/users/me", headers=bearer(admin_token))).json())["id"]
    await assert_refused(client, tampered(alice_token, sub=str(admin_id)))
    await assert_refused(client, tampered(alice_token, exp=int(time.time()) + 10**6))


async def test_clock_leeway_is_small_but_present(admin_and_alice):
    client, _, _ = admin_and_alice
    # Expired 3 seconds ago: within the 10-second leeway for clock differences.
    just_expired = signed(claims(exp=int(time.time()) - 3))
    assert (await client.get("/auth/users/me", headers=bearer(just_expired))).status == 200


async def test_other_schemes_and_empty_tokens_are_refused(admin_and_alice):
    client, _, _ = admin_and_alice
    for header in ("Bearer ", "Basic YWRtaW46YWRtaW4=", "Token abc", "Bearer"):
        resp = await client.get("/entities/", headers={"Authorization": header})
        assert resp.status == 401, header
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")


async def test_missing_token_gets_the_originals_401(admin_and_alice):
    client, _, _ = admin_and_alice
    resp = await client.get("/entities/")
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == "Bearer"
    assert (await resp.json())["detail"] == "Could not validate credentials"


async def test_token_response_shape(make_auth_client):
    client = await make_auth_client(ACCESS_TOKEN_EXPIRE_MINUTES="7")
    assert (await sign_up(client, *ADMIN)).status == 200
    resp = await client.post("/auth/token", json={"username": "ADMIN", "password": ADMIN[1]})
    assert resp.status == 200  # usernames are matched regardless of case
    body = await resp.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 7 * 60
    payload = jwt.decode(body["access_token"], TEST_SECRET_KEY, algorithms=["HS256"])
    assert set(payload) == {"sub", "exp", "iat", "nbf", "jti", "ep"}
    assert payload["exp"] - payload["iat"] == 7 * 60
    assert jwt.get_unverified_header(body["access_token"])["alg"] == "HS256"


async def test_logout_revokes_the_token_on_every_instance(make_auth_client):
    first = await make_auth_client()
    second = await make_auth_client()  # another process would share Redis and the database the same way
    assert (await sign_up(first, *ADMIN)).status == 200
    token = await log_in(first, *ADMIN)
    other_token = await log_in(second, *ADMIN)
    assert (await second.get("/auth/users/me", headers=bearer(token))).status == 200

    resp = await first.post("/auth/logout", headers=bearer(token))
    assert resp.status == 200

    for client in (first, second):
        assert (await client.get("/auth/users/me", headers=bearer(token))).status == 401
        assert (await client.post("/auth/logout", headers=bearer(token))).status == 401
    # Only that token ended: another session of the same user goes on.
    assert (await first.get("/auth/users/me", headers=bearer(other_token))).status == 200


async def test_revocation_is_kept_until_the_token_expires_then_forgotten(make_auth_client):
    from compere.storage.tables import revoked_tokens

    revoked = Query(sa.select(revoked_tokens.c.token_id, revoked_tokens.c.expires_at))
    client = await make_auth_client()
    assert (await sign_up(client, *ADMIN)).status == 200
    token = await log_in(client, *ADMIN)
    assert (await client.post("/auth/logout", headers=bearer(token))).status == 200
    payload = jwt.decode(token, TEST_SECRET_KEY, algorithms=["HS256"])
    db = client.app[DATABASE]
    assert await db.fetch_all(revoked) == [{"token_id": payload["jti"], "expires_at": payload["exp"]}]
    # Each logout forgets the revocations whose tokens have expired since.
    async with db.transaction() as tx:
        await tx.execute(Query(sa.update(revoked_tokens).values(expires_at=int(time.time()) - 1)))
    second = await log_in(client, *ADMIN)
    assert (await client.post("/auth/logout", headers=bearer(second))).status == 200
    assert [row["token_id"] for row in await db.fetch_all(revoked)] == [
        jwt.decode(second, TEST_SECRET_KEY, algorithms=["HS256"])["jti"]
    ]


async def test_logout_without_redis_uses_the_process_store(make_client):
    # Local development without REDIS_URL: revocation still works within the process.
    client = await make_client(AUTH_ENABLED="true", SECRET_KEY=TEST_SECRET_KEY, BCRYPT_ROUNDS="10")
    assert (await sign_up(client, *ADMIN)).status == 200
    token = await log_in(client, *ADMIN)
    assert (await client.post("/auth/logout", headers=bearer(token))).status == 200
    assert (await client.get("/auth/users/me", headers=bearer(token))).status == 401


async def test_a_disabled_user_is_locked_out_at_once(admin_and_alice):
    client, admin_token, alice_token = admin_and_alice
    alice_id = (await (await client.get("/auth/users/me", headers=bearer(alice_token))).json())["id"]

    resp = await client.post(f"/auth/users/{alice_id}/disable", headers=bearer(admin_token))
    assert resp.status == 200 and (await resp.json())["disabled"] is True
    # The token she already holds stops working on the next request...
    assert (await client.get("/entities/", headers=bearer(alice_token))).status == 401
    # ...and she cannot get a new one.
    resp = await client.post("/auth/token", data={"username": ALICE[0], "password": ALICE[1]})
    assert resp.status == 403

    resp = await client.post(f"/auth/users/{alice_id}/enable", headers=bearer(admin_token))
    assert resp.status == 200 and (await resp.json())["disabled"] is False
    # Enabling her again does not bring back the tokens she held: she logs in afresh.
    assert (await client.get("/entities/", headers=bearer(alice_token))).status == 401
    assert (await client.get("/entities/", headers=bearer(await log_in(client, *ALICE)))).status == 200


async def test_user_management(admin_and_alice):
    client, admin_token, alice_token = admin_and_alice
    listed = await client.get("/auth/users", headers=bearer(admin_token))
    assert listed.status == 200
    names = [u["username"] for u in await listed.json()]
    assert names == ["admin", "alice"]
    me = await (await client.get("/auth/users/me", headers=bearer(admin_token))).json()
    resp = await client.post(f"/auth/users/{me['id']}/disable", headers=bearer(admin_token))
    assert resp.status == 400  # a superuser cannot lock themselves out
    assert (await client.post("/auth/users/999/disable", headers=bearer(admin_token))).status == 404
    assert (await client.post("/auth/users/abc/disable", headers=bearer(admin_token))).status == 422
    assert (await client.get("/auth/users", headers=bearer(alice_token))).status == 403


async def test_without_redis_tokens_still_work_and_logins_fail_closed(make_client, make_auth_client):
    # Set up with Redis, then point a second instance at a Redis that is not there.
    working = await make_auth_client()
    assert (await sign_up(working, *ADMIN)).status == 200
    token = await log_in(working, *ADMIN)
    logged_out = await log_in(working, *ADMIN)
    assert (await working.post("/auth/logout", headers=bearer(logged_out))).status == 200
    broken = await make_client(
        AUTH_ENABLED="true", SECRET_KEY=TEST_SECRET_KEY, BCRYPT_ROUNDS="10", REDIS_URL="redis://127.0.0.1:1/0"
    )
    started = time.monotonic()
    # Revocations live in the database, so tokens are still checked exactly.
    assert (await broken.get("/auth/users/me", headers=bearer(token))).status == 200
    assert (await broken.get("/auth/users/me", headers=bearer(logged_out))).status == 401
    # The login throttle cannot count: no login, rather than unlimited guessing.
    resp = await broken.post("/auth/token", data={"username": ADMIN[0], "password": ADMIN[1]})
    assert resp.status == 503 and resp.headers["Retry-After"] == "1"
    assert time.monotonic() - started < 3
    # Requests without credentials to public routes are unaffected.
    assert (await broken.get("/health")).status == 200
