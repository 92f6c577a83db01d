"""Password hashing: Argon2id (argon2-cffi's RFC 9106 profile), rehashed on login when stale."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError


class Passwords:
    """Hash and verify passwords; ``needs_rehash`` says when the parameters have moved on."""

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self.hasher = hasher or PasswordHasher()
        """Argon2id with argon2-cffi's defaults (RFC 9106 low-memory: t=3, m=64 MiB, p=4)."""
        self._dummy: str | None = None

    def hash(self, password: str) -> str:
        """An encoded Argon2id hash (parameters and salt included)."""
        return self.hasher.hash(password)

    def verify(self, encoded: str, password: str) -> bool:
        """Whether ``password`` matches; a malformed stored hash never matches."""
        try:
            return self.hasher.verify(encoded, password)
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, encoded: str) -> bool:
        """The hash was made with other parameters than the current ones."""
        try:
            return self.hasher.check_needs_rehash(encoded)
        except InvalidHashError:
            return True

    def waste_time(self, password: str) -> None:
        """Verify against a dummy hash, so an unknown username costs as much as a known one."""
        if self._dummy is None:
            self._dummy = self.hasher.hash("not-a-real-password-0123456789")
        self.verify(self._dummy, password)
