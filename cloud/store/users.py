"""People's accounts, their lock-outs and password resets, refresh tokens and web sessions.

Only SHA-256 digests of refresh tokens and session tokens are stored: a copy of the
database does not let anyone act as a user. Passwords are stored as Argon2id hashes (made
by :mod:`cloud.auth.passwords`); this module never sees a password. The rules for
usernames, passwords and roles are in :mod:`cloud.store.credentials`.
"""

from __future__ import annotations

import builtins
import sqlite3
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ..auth.principal import Principal, Role
from ..errors import ApiError, not_found
from .base import Store
from .credentials import validate_email, validate_role, validate_username


@dataclass(frozen=True, slots=True)
class User:
    """One account row."""

    id: int
    """Row id; the ``sub`` of access tokens."""
    username: str
    """Lower-case, unique."""
    email: str | None
    """Optional contact address."""
    role: Role
    """admin, official, racer or spectator."""
    password_hash: str
    """Encoded Argon2id hash."""
    disabled: bool
    """Disabled accounts cannot log in, refresh or use a session."""
    created_ms: int
    """Creation time, UTC milliseconds."""
    failed_logins: int
    """Failed logins in the current window."""
    last_failed_ms: int | None
    """When the last failed login happened."""
    locked_until_ms: int | None
    """Logins are refused until then (after too many failures)."""

    @property
    def principal(self) -> Principal:
        """The user as a request's caller."""
        return Principal(self.id, self.username, self.role)

    def public(self) -> dict[str, Any]:
        """What the API shows about the account (never the hash)."""
        return {
            "id": self.id,
            "username": self.username,
            "email": self.email,
            "role": self.role.value,
            "disabled": self.disabled,
            "created_ms": self.created_ms,
        }

    def admin_view(self) -> dict[str, Any]:
        """What admins see: the public view plus the lock-out state."""
        return {
            **self.public(),
            "failed_logins": self.failed_logins,
            "locked_until_ms": self.locked_until_ms,
        }


class Refresh(StrEnum):
    """Outcome of presenting a refresh token."""

    ROTATED = "rotated"
    UNKNOWN = "unknown"
    EXPIRED = "expired"
    REUSED = "reused"
    DISABLED = "disabled"


def _user(row: dict[str, Any]) -> User:
    return User(**{**row, "role": Role(row["role"]), "disabled": bool(row["disabled"])})


class UserStore(Store):
    """Accounts, refresh tokens (rotated on use) and web sessions."""

    SCHEMA = """
    CREATE TABLE IF NOT EXISTS users (
        id INTEGER PRIMARY KEY,
        username TEXT NOT NULL UNIQUE COLLATE NOCASE,
        email TEXT,
        role TEXT NOT NULL CHECK (role IN ('admin', 'official', 'racer', 'spectator')),
        password_hash TEXT NOT NULL,
        disabled INTEGER NOT NULL DEFAULT 0,
        created_ms INTEGER NOT NULL,
        failed_logins INTEGER NOT NULL DEFAULT 0,
        last_failed_ms INTEGER,
        locked_until_ms INTEGER
    );
    CREATE TABLE IF NOT EXISTS refresh_tokens (
        token_sha256 TEXT PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        created_ms INTEGER NOT NULL,
        expires_ms INTEGER NOT NULL,
        revoked_ms INTEGER
    );
    CREATE INDEX IF NOT EXISTS refresh_tokens_user ON refresh_tokens(user_id);
    CREATE INDEX IF NOT EXISTS refresh_tokens_expiry ON refresh_tokens(expires_ms);
    CREATE TABLE IF NOT EXISTS web_sessions (
        token_sha256 TEXT PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        csrf_token TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        expires_ms INTEGER NOT NULL,
        revoked_ms INTEGER
    );
    CREATE INDEX IF NOT EXISTS web_sessions_user ON web_sessions(user_id);
    CREATE INDEX IF NOT EXISTS web_sessions_expiry ON web_sessions(expires_ms);
    CREATE TABLE IF NOT EXISTS password_resets (
        user_id INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
        created_ms INTEGER NOT NULL,
        expires_ms INTEGER NOT NULL
    );
    """

    # accounts

    def create(
        self, username: str, password_hash: str, role: Role, now_ms: int, email: str | None = None
    ) -> User:
        """Insert an account; 409 ``username-taken`` when the name exists in any case."""
        name = validate_username(username)
        role = validate_role(role)
        try:
            with self.transaction() as conn:
                cur = conn.execute(
                    "INSERT INTO users (username, email, role, password_hash, created_ms)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (name, validate_email(email), role.value, password_hash, now_ms),
                )
                user_id = int(cur.lastrowid or 0)
        except sqlite3.IntegrityError:
            raise ApiError(
                409, "username-taken", f"the username {name} is taken", {"username": "taken"}
            ) from None
        return self._must(user_id)

    def get(self, user_id: int) -> User | None:
        """An account by id."""
        row = self.one("SELECT * FROM users WHERE id = ?", (user_id,))
        return None if row is None else _user(row)

    def by_username(self, username: str) -> User | None:
        """An account by name, in any case."""
        row = self.one("SELECT * FROM users WHERE username = ?", (username.lower(),))
        return None if row is None else _user(row)

    def list(self, role: Role | None = None) -> builtins.list[User]:
        """All accounts (optionally of one role), oldest first."""
        if role is None:
            rows = self.query("SELECT * FROM users ORDER BY id")
        else:
            sql = "SELECT * FROM users WHERE role = ? ORDER BY id"
            rows = self.query(sql, (role.value,))
        return [_user(r) for r in rows]

    def enabled_admins(self) -> int:
        """How many admin accounts can still log in."""
        row = self.one("SELECT count(*) AS n FROM users WHERE role = 'admin' AND disabled = 0")
        return int(row["n"]) if row else 0

    def set_role(self, user_id: int, role: Role) -> User:
        """Change an account's role (sessions and refreshes pick it up at once)."""
        role = validate_role(role)
        with self.transaction() as conn:
            conn.execute("UPDATE users SET role = ? WHERE id = ?", (role.value, user_id))
        return self._must(user_id)

    def set_disabled(self, user_id: int, disabled: bool, now_ms: int) -> User:
        """Disable (revoking every refresh token and session) or re-enable an account."""
        with self.transaction() as conn:
            conn.execute("UPDATE users SET disabled = ? WHERE id = ?", (int(disabled), user_id))
            if disabled:
                self.revoke_all(user_id, now_ms)
        return self._must(user_id)

    def set_password_hash(self, user_id: int, password_hash: str) -> None:
        """Store a new hash (a password change, or a rehash with newer parameters).

        A pending reset ends: the password is no longer a temporary one.
        """
        with self.transaction() as conn:
            conn.execute(
                "UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, user_id)
            )
            conn.execute("DELETE FROM password_resets WHERE user_id = ?", (user_id,))

    def reset_password(
        self, user_id: int, password_hash: str, now_ms: int, expires_ms: int
    ) -> User:
        """An admin's reset: a temporary password, no lock-out, every session ended.

        The hash is of a temporary password that only :meth:`pending_reset` until
        ``expires_ms`` lets the user replace (it never logs in by itself).
        """
        with self.transaction() as conn:
            conn.execute(
                "UPDATE users SET password_hash = ?, failed_logins = 0, last_failed_ms = NULL,"
                " locked_until_ms = NULL WHERE id = ?",
                (password_hash, user_id),
            )
            conn.execute(
                "INSERT INTO password_resets (user_id, created_ms, expires_ms) VALUES (?, ?, ?)"
                " ON CONFLICT (user_id) DO UPDATE SET created_ms = excluded.created_ms,"
                " expires_ms = excluded.expires_ms",
                (user_id, now_ms, expires_ms),
            )
            self.revoke_all(user_id, now_ms)
        return self._must(user_id)

    def pending_reset(self, user_id: int) -> int | None:
        """When the user's temporary password expires (UTC ms), or None without a reset."""
        row = self.one("SELECT expires_ms FROM password_resets WHERE user_id = ?", (user_id,))
        return None if row is None else int(row["expires_ms"])

    def pending_resets(self) -> dict[int, int]:
        """Every pending reset: user id -> when its temporary password expires."""
        rows = self.query("SELECT user_id, expires_ms FROM password_resets")
        return {int(r["user_id"]): int(r["expires_ms"]) for r in rows}

    def unlock(self, user_id: int) -> User:
        """End a lock-out and forget the failed logins that count towards one."""
        with self.transaction() as conn:
            conn.execute(
                "UPDATE users SET failed_logins = 0, last_failed_ms = NULL, locked_until_ms = NULL"
                " WHERE id = ?",
                (user_id,),
            )
        return self._must(user_id)

    def record_failed_login(
        self, user_id: int, now_ms: int, attempts: int, window_ms: int, lockout_ms: int
    ) -> int | None:
        """Count a failure; after ``attempts`` within ``window_ms``, lock for ``lockout_ms``.

        Returns the lock's end (UTC ms) when this failure locked the account. The count
        starts again when the previous failure is older than the window.
        """
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT failed_logins, last_failed_ms FROM users WHERE id = ?", (user_id,)
            ).fetchone()
            if row is None:
                return None
            count, last = row
            count = 1 if last is None or last <= now_ms - window_ms else count + 1
            locked_until = now_ms + lockout_ms if count >= attempts else None
            conn.execute(
                "UPDATE users SET failed_logins = ?, last_failed_ms = ?,"
                " locked_until_ms = coalesce(?, locked_until_ms) WHERE id = ?",
                (0 if locked_until else count, now_ms, locked_until, user_id),
            )
        return locked_until

    def record_successful_login(self, user_id: int) -> None:
        """Clear the failure count and any expired lock."""
        with self.transaction() as conn:
            conn.execute(
                "UPDATE users SET failed_logins = 0, last_failed_ms = NULL, locked_until_ms = NULL"
                " WHERE id = ?",
                (user_id,),
            )

    # refresh tokens

    def create_refresh_token(
        self, user_id: int, token_sha256: str, now_ms: int, expires_ms: int
    ) -> None:
        """Store a new refresh token's digest (and forget long-expired ones)."""
        with self.transaction() as conn:
            conn.execute("DELETE FROM refresh_tokens WHERE expires_ms < ?", (now_ms,))
            conn.execute(
                "INSERT INTO refresh_tokens (token_sha256, user_id, created_ms, expires_ms)"
                " VALUES (?, ?, ?, ?)",
                (token_sha256, user_id, now_ms, expires_ms),
            )

    def rotate_refresh_token(
        self, old_sha256: str, new_sha256: str, now_ms: int, expires_ms: int
    ) -> tuple[Refresh, User | None]:
        """Swap a live refresh token for a new one, atomically.

        A revoked token presented again means it was copied: every refresh token of its
        user is revoked (``REUSED``) and the caller must log in again.
        """
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT user_id, expires_ms, revoked_ms FROM refresh_tokens WHERE token_sha256 = ?",
                (old_sha256,),
            ).fetchone()
            if row is None:
                return Refresh.UNKNOWN, None
            user_id, expires, revoked = row
            user = self.get(user_id)
            if revoked is not None:
                conn.execute(
                    "UPDATE refresh_tokens SET revoked_ms = ?"
                    " WHERE user_id = ? AND revoked_ms IS NULL",
                    (now_ms, user_id),
                )
                return Refresh.REUSED, user
            if expires <= now_ms:
                return Refresh.EXPIRED, user
            if user is None or user.disabled:
                return Refresh.DISABLED, user
            conn.execute(
                "UPDATE refresh_tokens SET revoked_ms = ? WHERE token_sha256 = ?",
                (now_ms, old_sha256),
            )
            self.create_refresh_token(user_id, new_sha256, now_ms, expires_ms)
        return Refresh.ROTATED, user

    def revoke_refresh_token(self, token_sha256: str, now_ms: int) -> None:
        """Revoke one refresh token (logout); unknown tokens are ignored."""
        with self.transaction() as conn:
            conn.execute(
                "UPDATE refresh_tokens SET revoked_ms = ?"
                " WHERE token_sha256 = ? AND revoked_ms IS NULL",
                (now_ms, token_sha256),
            )

    def revoke_all(self, user_id: int, now_ms: int, keep_session_sha256: str | None = None) -> None:
        """Revoke every refresh token and web session of a user (but ``keep_session_sha256``)."""
        with self.transaction() as conn:
            conn.execute(
                "UPDATE refresh_tokens SET revoked_ms = ? WHERE user_id = ? AND revoked_ms IS NULL",
                (now_ms, user_id),
            )
            conn.execute(
                "UPDATE web_sessions SET revoked_ms = ?"
                " WHERE user_id = ? AND revoked_ms IS NULL AND token_sha256 IS NOT ?",
                (now_ms, user_id, keep_session_sha256),
            )

    # web sessions

    def create_session(
        self, user_id: int, token_sha256: str, csrf_token: str, now_ms: int, expires_ms: int
    ) -> None:
        """Store a new web session's digest and its CSRF token."""
        with self.transaction() as conn:
            conn.execute("DELETE FROM web_sessions WHERE expires_ms < ?", (now_ms,))
            conn.execute(
                "INSERT INTO web_sessions (token_sha256, user_id, csrf_token, created_ms,"
                " expires_ms) VALUES (?, ?, ?, ?, ?)",
                (token_sha256, user_id, csrf_token, now_ms, expires_ms),
            )

    def session(self, token_sha256: str, now_ms: int) -> tuple[User, str] | None:
        """The live session's user (not disabled) and CSRF token, or None."""
        row = self.one(
            "SELECT user_id, csrf_token FROM web_sessions"
            " WHERE token_sha256 = ? AND revoked_ms IS NULL AND expires_ms > ?",
            (token_sha256, now_ms),
        )
        if row is None:
            return None
        user = self.get(row["user_id"])
        if user is None or user.disabled:
            return None
        return user, row["csrf_token"]

    def revoke_session(self, token_sha256: str, now_ms: int) -> None:
        """End one web session (logout); unknown sessions are ignored."""
        with self.transaction() as conn:
            conn.execute(
                "UPDATE web_sessions SET revoked_ms = ?"
                " WHERE token_sha256 = ? AND revoked_ms IS NULL",
                (now_ms, token_sha256),
            )

    def _must(self, user_id: int) -> User:
        user = self.get(user_id)
        if user is None:
            raise not_found(f"user {user_id}")
        return user
