"""Password hashing (bcrypt, off the event loop) and the password policy."""

from __future__ import annotations

import asyncio
import secrets
from functools import cache
from importlib import resources

import bcrypt

# bcrypt reads at most 72 bytes of a password; longer ones are refused, never truncated.
MAX_PASSWORD_BYTES = 72


@cache
def common_passwords() -> frozenset[str]:
    """The shipped list of passwords too common to allow, lower-cased."""
    text = resources.files("compere").joinpath("data", "common_passwords.txt").read_text(encoding="utf-8")
    return frozenset(
        line.strip().lower() for line in text.splitlines() if line.strip() and not line.startswith("#")
    )


def password_problem(password: str, *, min_length: int, username: str | None = None) -> str | None:
    """Why ``password`` is not acceptable, or None when it is."""
    if len(password.encode("utf-8")) > MAX_PASSWORD_BYTES:
        return f"must be at most {MAX_PASSWORD_BYTES} bytes in UTF-8 (bcrypt ignores anything longer)"
    if len(password) < min_length:
        return f"must be at least {min_length} characters"
    if password.lower() in common_passwords():
        return "is too common; choose a less guessable password"
    if username and username.lower() in password.lower():
        return "must not contain the username"
    if len(set(password)) < 4:
        return "must use more than three different characters"
    return None


class PasswordHasher:
    """bcrypt at a fixed cost, run in the loop's default executor.

    bcrypt releases the GIL while it works, so a login storm uses the executor's
    threads and the event loop keeps answering other requests.
    """

    def __init__(self, rounds: int) -> None:
        self.rounds = rounds
        self._dummy: bytes | None = None
        self._dummy_lock = asyncio.Lock()

    def _hash(self, password: bytes) -> bytes:
        return bcrypt.hashpw(password, bcrypt.gensalt(self.rounds))

    async def hash(self, password: str) -> str:
        loop = asyncio.get_running_loop()
        hashed = await loop.run_in_executor(None, self._hash, password.encode("utf-8"))
        return hashed.decode("ascii")

    async def verify(self, password: str, hashed: str | None) -> bool:
        """Check ``password`` against ``hashed``. With ``hashed=None`` (no such user) a
        hash of the same cost is still checked, so the answer takes as long either way.
        """
        encoded = password.encode("utf-8")
        if len(encoded) > MAX_PASSWORD_BYTES:
            return False
        target = hashed.encode("ascii") if hashed is not None else await self._dummy_hash()
        loop = asyncio.get_running_loop()
        try:
            matched = await loop.run_in_executor(None, bcrypt.checkpw, encoded, target)
        except ValueError:  # a malformed stored hash never matches
            return False
        return matched and hashed is not None

    async def _dummy_hash(self) -> bytes:
        if self._dummy is None:
            async with self._dummy_lock:
                if self._dummy is None:
                    loop = asyncio.get_running_loop()
                    self._dummy = await loop.run_in_executor(
                        None, self._hash, secrets.token_urlsafe(16).encode("ascii")
                    )
        return self._dummy
