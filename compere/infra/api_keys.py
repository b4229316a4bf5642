"""API key material: making a key, recognising one, and the only form that is stored.

A key reads ``ck_<prefix>_<secret>``: ``ck_`` says what it is (so secret scanners and
people recognise it), ``<prefix>`` (8 random hex digits) identifies it in lists, and
``<secret>`` carries 256 random bits. Only the SHA-256 of the whole key is stored: a
random key of that strength cannot be guessed from its hash, so a slow password hash
(bcrypt) would only cost every request a quarter of a second.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

KEY_MARK = "ck_"
SCOPES = ("read", "vote", "write", "admin")
_KEY_SHAPE = re.compile(r"^ck_[0-9a-f]{8}_[A-Za-z0-9_-]{43}$")


@dataclass(frozen=True, slots=True)
class NewKey:
    key: str  # shown once, never stored
    prefix: str  # shown in lists: ``ck_`` and the first 8 hex digits
    key_hash: str


def new_key() -> NewKey:
    prefix = f"{KEY_MARK}{secrets.token_hex(4)}"
    key = f"{prefix}_{secrets.token_urlsafe(32)}"
    return NewKey(key, prefix, hash_key(key))


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def looks_like_key(value: str) -> bool:
    """Whether a presented credential is an API key (rather than a JWT)."""
    return value.startswith(KEY_MARK)


def well_formed(value: str) -> bool:
    return _KEY_SHAPE.match(value) is not None
