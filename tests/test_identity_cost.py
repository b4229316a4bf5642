"""What makes an authenticated request cheaper keeps every promise: a token verified
once is still refused once it expires, and a token refused by the database still spends
its client's quota while the limiter's Redis call overlaps the identity look-up."""

from __future__ import annotations

import pytest

from compere.infra import tokens as tokens_module
from compere.infra.tokens import LEEWAY_SECONDS, TokenError, TokenIssuer
from tests.helpers import ADMIN, bearer, log_in, sign_up


def test_a_remembered_token_is_refused_after_it_expires(monkeypatch):
    issuer = TokenIssuer("k" * 48, lifetime_minutes=1)
    token, claims = issuer.issue(user_id=7, epoch=0)
    assert issuer.decode(token) == issuer.decode(token)  # the second answer comes from memory
    later = claims.expires_at + LEEWAY_SECONDS + 1
    monkeypatch.setattr(tokens_module.time, "time", lambda: later)
    with pytest.raises(TokenError, match="expired"):
        issuer.decode(token)


def test_a_forged_token_is_never_remembered():
    issuer = TokenIssuer("k" * 48, lifetime_minutes=1)
    token, _ = issuer.issue(user_id=7, epoch=0)
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    for _ in range(2):
        with pytest.raises(TokenError):
            issuer.decode(forged)


async def test_a_logged_out_token_spends_its_clients_quota(
    make_auth_client, ratelimit_redis, ratelimit_redis_prefix
):
    client = await make_auth_client(
        RATE_LIMIT_ENABLED="true",
        RATE_LIMIT_REQUESTS="3",
        RATE_LIMIT_KEY_PREFIX=ratelimit_redis_prefix,
        REDIS_URL=ratelimit_redis.url,
    )
    assert (await sign_up(client, *ADMIN)).status == 200  # spends the auth quota, not this one
    token = await log_in(client, *ADMIN)
    assert (await client.post("/auth/logout", headers=bearer(token))).status == 200
    statuses = [(await client.get("/entities/", headers=bearer(token))).status for _ in range(4)]
    # Counted against the client (and the token's user): the fourth is over the limit.
    assert statuses == [401, 401, 401, 429]
