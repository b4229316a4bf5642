"""Access tokens: HS256 JWTs with subject, lifetime, issue time, not-before, id and the
user's token epoch (``ep``: a token works only while the user's epoch is unchanged)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt

ALGORITHM = "HS256"
REQUIRED_CLAIMS = ("sub", "exp", "iat", "nbf", "jti")
# Clock difference tolerated between the servers that issue and check tokens.
LEEWAY_SECONDS = 10


class TokenError(Exception):
    """The token is not acceptable; the message is a short reason for the log only."""


@dataclass(frozen=True, slots=True)
class TokenClaims:
    user_id: int
    token_id: str
    expires_at: int  # Unix seconds
    epoch: int = 0  # the user's token_epoch when issued; tokens from before the claim count as 0
    not_before: int = 0  # Unix seconds


# Tokens whose signature and claims this process has checked, so that a client sending
# the same token again costs a dictionary look-up instead of a JWT verification. What a
# token says never changes; its times are checked again on every use, and whether it
# still works (logout, epoch, disabled user) is read from the database every time.
VERIFIED_CACHE_SIZE = 10_000


class TokenIssuer:
    """Signs and checks access tokens with one secret key."""

    def __init__(self, secret_key: str, lifetime_minutes: int) -> None:
        self._key = secret_key
        self.lifetime_seconds = lifetime_minutes * 60
        self._verified: dict[str, TokenClaims] = {}

    def issue(self, user_id: int, epoch: int) -> tuple[str, TokenClaims]:
        now = int(time.time())
        claims = TokenClaims(user_id, uuid.uuid4().hex, now + self.lifetime_seconds, epoch, now)
        payload: dict[str, Any] = {
            "sub": str(user_id),
            "iat": now,
            "nbf": now,
            "exp": claims.expires_at,
            "jti": claims.token_id,
            "ep": epoch,
        }
        return jwt.encode(payload, self._key, algorithm=ALGORITHM), claims

    def decode(self, token: str) -> TokenClaims:
        """Check signature, algorithm, times and claims; raise :class:`TokenError`."""
        known = self._verified.get(token)
        if known is not None:
            now = time.time()
            if now > known.expires_at + LEEWAY_SECONDS:
                del self._verified[token]
                raise TokenError("expired")
            if now < known.not_before - LEEWAY_SECONDS:
                raise TokenError("not yet valid")
            return known
        claims = self._verify(token)
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            self._verified.clear()  # rarely reached: start over rather than track use
        self._verified[token] = claims
        return claims

    def _verify(self, token: str) -> TokenClaims:
        try:
            payload = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],  # pinned: "none", other HMACs and RS/HS confusion fail
                options={"require": list(REQUIRED_CLAIMS)},
                leeway=LEEWAY_SECONDS,
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("expired") from None
        except jwt.ImmatureSignatureError:
            raise TokenError("not yet valid") from None
        except jwt.PyJWTError as exc:  # InvalidKeyError is not an InvalidTokenError
            raise TokenError(type(exc).__name__) from None
        sub, jti, epoch = payload["sub"], payload["jti"], payload.get("ep", 0)
        if (
            not isinstance(sub, str)
            or not sub.isascii()
            or not sub.isdigit()
            or not 0 < int(sub) < 2**63
            or not isinstance(jti, str)
            or not 0 < len(jti) <= 64
            or type(epoch) is not int
            or not 0 <= epoch < 2**31
        ):
            raise TokenError("malformed claims")
        return TokenClaims(int(sub), jti, int(payload["exp"]), epoch, int(payload["nbf"]))

    def csrf_token(self, token_id: str) -> str:
        """The CSRF value that belongs to one cookie session (bound to the token id)."""
        digest = hmac.new(self._key.encode("utf-8"), b"csrf:" + token_id.encode("ascii"), hashlib.sha256)
        return base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode("ascii")
