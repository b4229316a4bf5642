"""Users: the first one is a superuser (race-free), then superusers create users;
duplicates and weak passwords are refused; votes record who made them."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from compere.http.keys import DATABASE, PASSWORDS
from compere.storage import users
from tests.helpers import ADMIN, ALICE, bearer, log_in, sign_up


@pytest.mark.parametrize("auth_enabled", ["true", "false"])
async def test_twenty_simultaneous_sign_ups_make_exactly_one_superuser(make_auth_client, auth_enabled):
    client = await make_auth_client(AUTH_ENABLED=auth_enabled)
    answers = await asyncio.gather(
        *(sign_up(client, f"founder{i:02d}", f"amber-kestrel-window-{i:02d}") for i in range(20))
    )
    statuses = sorted(r.status for r in answers)
    # One wins the race; everyone else arrived when sign-up was already closed to them.
    assert statuses == [200] + [401] * 19
    winner = next(r for r in answers if r.status == 200)
    body = await winner.json()
    assert body["is_superuser"] is True
    token = await log_in(client, body["username"], f"amber-kestrel-window-{body['username'][-2:]}")
    listed = await (await client.get("/auth/users", headers=bearer(token))).json()
    assert [(u["username"], u["is_superuser"]) for u in listed] == [(body["username"], True)]


async def test_after_the_first_user_only_a_superuser_creates_users(admin_and_alice):
    client, admin_token, alice_token = admin_and_alice
    anonymous = await sign_up(client, "mallory", "quiet-lagoon-harbour-55")
    assert anonymous.status == 401 and anonymous.headers["WWW-Authenticate"] == "Bearer"
    by_user = await sign_up(client, "mallory", "quiet-lagoon-harbour-55", token=alice_token)
    assert by_user.status == 403
    made = await sign_up(
        client, "bob", "quiet-lagoon-harbour-55", token=admin_token, email="bob@example.com", full_name="Bob"
    )
    assert made.status == 200
    bob = await made.json()
    assert bob["is_superuser"] is False and bob["disabled"] is False
    assert (bob["email"], bob["full_name"]) == ("bob@example.com", "Bob")
    # Alice's own view of herself says she is an ordinary user.
    me = await (await client.get("/auth/users/me", headers=bearer(alice_token))).json()
    assert me["username"] == "alice" and me["is_superuser"] is False
    # A superuser may make another superuser on purpose.
    second = await sign_up(client, "carol", "marble-finch-orchard-08", token=admin_token, is_superuser=True)
    assert (await second.json())["is_superuser"] is True


async def test_open_signup_lets_anyone_create_an_ordinary_account(make_auth_client):
    client = await make_auth_client(OPEN_SIGNUP="true")
    assert (await (await sign_up(client, *ADMIN)).json())["is_superuser"] is True  # development
    resp = await sign_up(client, "mallory", "quiet-lagoon-harbour-55", is_superuser=True)
    assert resp.status == 200
    assert (await resp.json())["is_superuser"] is False


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # production refuses SQLite
@pytest.mark.parametrize("open_signup", ["true", "false"])
async def test_a_fresh_production_deployment_is_owned_by_createsuperuser_not_the_first_caller(
    make_auth_client, open_signup
):
    client = await make_auth_client(
        ENVIRONMENT="production",
        SECRET_KEY="q7Rk-2vLx_9TmZ4pWc8nHs1bYd6FjG3a",
        CORS_ORIGINS="https://app.example.com",
        RATE_LIMIT_ENABLED="true",
        RATE_LIMIT_KEY_PREFIX=f"compere:test:{uuid.uuid4().hex}:",
        OPEN_SIGNUP=open_signup,
    )
    first = await sign_up(client, *ADMIN)
    assert first.status == 403
    assert "compere createsuperuser" in (await first.json())["detail"]
    assert not await users.any_user(client.app[DATABASE])

    # What `compere createsuperuser` does on the server.
    await users.create_user(
        client.app[DATABASE],
        username=ADMIN[0],
        email=None,
        full_name=None,
        hashed_password=await client.app[PASSWORDS].hash(ADMIN[1]),
        creator_is_superuser=True,
        make_superuser=True,
    )
    anonymous = await sign_up(client, *ALICE)
    if open_signup == "true":
        assert anonymous.status == 200 and (await anonymous.json())["is_superuser"] is False
    else:
        assert anonymous.status == 401
    admin = await log_in(client, *ADMIN)
    assert (await sign_up(client, "bob", "quiet-lagoon-harbour-55", token=admin)).status == 200


async def test_duplicate_usernames_and_emails_get_400_in_the_originals_words(admin_and_alice):
    client, admin_token, _ = admin_and_alice
    assert (
        await sign_up(client, "bob", "quiet-lagoon-harbour-55", token=admin_token, email="b@x.org")
    ).status == 200
    for username, email, detail in (
        ("bob", None, "Username already registered"),
        ("BOB", None, "Username already registered"),
        ("Alice", None, "Username already registered"),
        ("robert", "B@X.ORG", "Email already registered"),
    ):
        extra = {"email": email} if email else {}
        resp = await sign_up(client, username, "quiet-lagoon-harbour-55", token=admin_token, **extra)
        assert resp.status == 400, (username, email)
        assert (await resp.json())["detail"] == detail


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("short-pw-1", "at least 12 characters"),
        ("é" * 40, "72 bytes"),  # 40 characters but 80 bytes: never silently truncated
        ("password1234", "too common"),
        ("qwertyuiop123", "too common"),
        ("founder-is-Newcomer-77", "username"),
        ("abababababababab", "different characters"),
    ],
)
async def test_weak_passwords_are_refused_with_422(make_auth_client, password, reason):
    client = await make_auth_client()
    resp = await sign_up(client, "newcomer", password)
    assert resp.status == 422
    body = await resp.json()
    assert body["detail"][0]["loc"] == ["body", "password"]
    assert reason in body["detail"][0]["msg"]
    assert password not in await resp.text()


async def test_password_length_limits_follow_the_settings(make_auth_client):
    client = await make_auth_client(PASSWORD_MIN_LENGTH="20")
    assert (await sign_up(client, "newcomer", "violet-otter-27")).status == 422
    seventy_two = ("àéîõü" * 7)[:34] + "wxyz"  # 38 characters, exactly 72 bytes
    assert len(seventy_two.encode()) == 72
    assert (await sign_up(client, "newcomer", seventy_two)).status == 200
    assert await log_in(client, "newcomer", seventy_two)
    # One byte more is refused, not truncated to the same hash.
    assert (
        await sign_up(client, "other", seventy_two + "!", token=await log_in(client, "newcomer", seventy_two))
    ).status == 422


@pytest.mark.parametrize(
    "body",
    [
        {"username": "ab", "password": ALICE[1]},
        {"username": "has space", "password": ALICE[1]},
        {"username": "x" * 51, "password": ALICE[1]},
        {"username": "valid", "password": ALICE[1], "email": "not-an-email"},
        {"username": "valid"},
        {"password": ALICE[1]},
    ],
)
async def test_bad_user_fields_get_422(make_auth_client, body):
    client = await make_auth_client()
    resp = await client.post("/auth/users/", json=body)
    assert resp.status == 422


async def test_votes_record_who_made_them(admin_and_alice):
    client, admin_token, alice_token = admin_and_alice
    ids = []
    for name in ("red", "blue"):
        resp = await client.post("/entities/", json={"name": name}, headers=bearer(alice_token))
        assert resp.status == 200
        ids.append((await resp.json())["id"])
    alice = await (await client.get("/auth/users/me", headers=bearer(alice_token))).json()
    vote = await client.post(
        "/comparisons/",
        json={"entity1_id": ids[0], "entity2_id": ids[1], "selected_entity_id": ids[0]},
        headers=bearer(alice_token),
    )
    assert vote.status == 200
    recorded = await vote.json()
    assert recorded["user_id"] == alice["id"]
    again = await client.get(f"/comparisons/{recorded['id']}", headers=bearer(admin_token))
    assert (await again.json())["user_id"] == alice["id"]
    # Deleting needs a superuser.
    assert (await client.delete(f"/entities/{ids[0]}", headers=bearer(alice_token))).status == 403
    assert (await client.delete(f"/entities/{ids[0]}", headers=bearer(admin_token))).status == 200


async def test_with_auth_off_votes_are_anonymous(client, create_entities):
    a, b = await create_entities(2)
    vote = await client.post(
        "/comparisons/", json={"entity1_id": a["id"], "entity2_id": b["id"], "selected_entity_id": None}
    )
    assert vote.status == 200 and (await vote.json())["user_id"] is None


async def test_with_auth_off_a_token_still_names_the_voter(make_auth_client):
    client = await make_auth_client(AUTH_ENABLED="false")
    assert (await sign_up(client, *ADMIN)).status == 200
    token = await log_in(client, *ADMIN)
    ids = [(await (await client.post("/entities/", json={"name": n})).json())["id"] for n in ("x", "y")]
    vote = await client.post(
        "/comparisons/",
        json={"entity1_id": ids[0], "entity2_id": ids[1], "selected_entity_id": ids[1]},
        headers=bearer(token),
    )
    assert (await vote.json())["user_id"] == 1
