"""Short-lived signed pair tokens: proof that a pair was served, and how it was chosen.

A token is ``base64url(json claims) "." base64url(HMAC-SHA256)``. The key is derived
from ``SECRET_KEY`` (so every worker and host accepts every other's tokens); without
one, a random per-process key is used, which is fine for a single development server.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass


class InvalidPairToken(ValueError):
    """The token is malformed, forged or expired; the message says which."""


@dataclass(frozen=True, slots=True)
class PairClaims:
    entity1_id: int
    entity2_id: int
    strategy: str
    probability: float
    token_id: str
    expires_at: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class PairTokens:
    def __init__(self, secret_key: str | None, ttl_seconds: int) -> None:
        base = secret_key.encode("utf-8") if secret_key else secrets.token_bytes(32)
        # A key of its own, so a pair token can never pass as a JWT or the other way round.
        self._key = hmac.new(base, b"compere pair token v1", hashlib.sha256).digest()
        self._ttl = ttl_seconds

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode("ascii"), hashlib.sha256).digest())

    def issue(self, entity1_id: int, entity2_id: int, strategy: str, probability: float) -> str:
        claims = {
            "a": entity1_id,
            "b": entity2_id,
            "s": strategy,
            "p": probability,
            "exp": int(time.time()) + self._ttl,
            "jti": secrets.token_hex(12),
        }
        payload = _b64(json.dumps(claims, separators=(",", ":")).encode("utf-8"))
        return f"{payload}.{self._sign(payload)}"

    def verify(self, token: str) -> PairClaims:
        payload, _, signature = token.partition(".")
        if not payload or not signature or not payload.isascii() or not signature.isascii():
            raise InvalidPairToken("pair_token is malformed")
        if not hmac.compare_digest(self._sign(payload), signature):
            raise InvalidPairToken("pair_token signature is not valid")
        try:
            data = json.loads(_unb64(payload))
            claims = PairClaims(
                int(data["a"]),
                int(data["b"]),
                str(data["s"]),
                float(data["p"]),
                str(data["jti"]),
                int(data["exp"]),
            )
        except (ValueError, KeyError, TypeError):
            raise InvalidPairToken("pair_token is malformed") from None
        if claims.expires_at < time.time():
            raise InvalidPairToken("pair_token has expired; fetch a new pair")
        return claims
