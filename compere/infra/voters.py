"""Who cast a vote, as stored in ``comparisons.voter``.

``u:<user id>`` for a user's token, ``k:<key id>`` for an API key, and ``a:<hash>`` for
an anonymous voter (the id in the signed voter cookie), for an end user a key votes
for (its ``voter`` field) and for the judge of an imported vote log (the key's namespace
when a key sends the file, else one of imports). A client-supplied id is stored only as a keyed hash
(HMAC-SHA256 under a key derived from ``SECRET_KEY``, namespaced by the key that passed
it), so the database never holds what a survey tool calls its respondents, and one
key's "alice" is not another key's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

VOTER_COOKIE = "compere_voter"
COOKIE_MAX_AGE = 365 * 24 * 3600


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class VoterIds:
    """Signs and checks voter cookies and turns client-supplied ids into keyed hashes."""

    def __init__(self, secret_key: str | None) -> None:
        base = secret_key.encode("utf-8") if secret_key else secrets.token_bytes(32)
        # Keys of their own, so neither value can pass for a token or for the other.
        self._cookie_key = hmac.new(base, b"compere voter cookie v1", hashlib.sha256).digest()
        self._hash_key = hmac.new(base, b"compere voter id v1", hashlib.sha256).digest()

    def new_cookie(self) -> tuple[str, str]:
        """A fresh anonymous voter id and its signed cookie value."""
        voter_id = secrets.token_urlsafe(18)
        return voter_id, f"{voter_id}.{self._sign(voter_id)}"

    def read_cookie(self, value: str | None) -> str | None:
        """The voter id in a cookie value, or None when absent, malformed or forged."""
        if not value or value.count(".") != 1:
            return None
        voter_id, signature = value.split(".")
        if not (0 < len(voter_id) <= 64) or not hmac.compare_digest(signature, self._sign(voter_id)):
            return None
        return voter_id

    def anonymous(self, voter_id: str) -> str:
        return "a:" + self._hash(f"cookie:{voter_id}")

    def on_behalf_of(self, key_id: int, voter: str) -> str:
        return "a:" + self._hash(f"key:{key_id}:{voter}")

    def judge(self, judge: str) -> str:
        """The judge of an imported vote log sent by no API key (the CLI, a signed-in
        user): hashed as a key's end user is, in a namespace of its own."""
        return "a:" + self._hash(f"import:{judge}")

    def _sign(self, voter_id: str) -> str:
        return _b64(hmac.new(self._cookie_key, voter_id.encode("utf-8"), hashlib.sha256).digest()[:18])

    def _hash(self, text: str) -> str:
        return hmac.new(self._hash_key, text.encode("utf-8"), hashlib.sha256).hexdigest()[:40]


def of_user(user_id: int) -> str:
    return f"u:{user_id}"


def of_key(key_id: int) -> str:
    return f"k:{key_id}"
