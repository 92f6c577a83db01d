"""What admins do to accounts: list, create, change role or disable, unlock, reset a password.

Every change is written with its audit entry in one transaction (``user.create``,
``user.update``, ``user.unlock``, ``user.password-reset``); the audit never holds a
password. A reset gives the account a random temporary password, shown to the admin
once, that only serves to choose a new one (:meth:`~cloud.auth.accounts.Accounts.
complete_reset`) before ``Settings.temporary_password_ttl_s`` runs out; it also ends the
lock-out and revokes every refresh token and web session of the account at once.
Access tokens already issued lapse within their lifetime (relays verify them offline).
"""

from __future__ import annotations

import secrets
from typing import Any

from ..errors import ApiError, bad_request, not_found
from ..store.audit import AuditLog
from ..store.credentials import PEOPLE, validate_role
from ..store.users import User
from .accounts import Accounts, flag
from .principal import Principal, Role

USER_FIELDS = frozenset({"role", "disabled"})
"""What ``PATCH /api/users/{id}`` may change."""
TEMPORARY_PASSWORD_BYTES = 12
"""Randomness of a temporary password (16 URL-safe characters)."""


class UserAdmin:
    """The admins' account management, audited."""

    def __init__(self, accounts: Accounts, audit: AuditLog) -> None:
        self.accounts = accounts
        self.users = accounts.users
        self.audit = audit

    def view(self, user: User, reset_expires_ms: int | None = None) -> dict[str, Any]:
        """What admins see of an account: lock-out state and any pending password reset."""
        return {**user.admin_view(), "password_reset_expires_ms": reset_expires_ms}

    def list_users(self, role: str | None) -> list[dict[str, Any]]:
        """All accounts, optionally of one role."""
        users = self.users.list(None if role is None else validate_role(role))
        resets = self.users.pending_resets()
        return [self.view(u, resets.get(u.id)) for u in users]

    def create_user(self, who: Principal, data: dict[str, Any]) -> dict[str, Any]:
        """Create (invite) an account with any person's role and an initial password."""
        account = self.accounts.new_account(data, PEOPLE)
        now = self.accounts.now_ms()
        with self.users.transaction() as conn:
            user = self.users.create(
                account.username, account.password_hash, account.role, now, account.email
            )
            self.audit.record(
                conn, now, who.id, who.name, "user.create", "user", user.id, role=user.role.value
            )
        return self.view(user)

    def update_user(self, who: Principal, user_id: int, data: dict[str, Any]) -> dict[str, Any]:
        """Change a role or (dis)able an account; the last admin who can log in stays."""
        unknown = sorted(set(data) - USER_FIELDS)
        if unknown:
            fields = {name: "unknown field (role, disabled)" for name in unknown}
            raise bad_request(f"cannot change {', '.join(unknown)}", **fields)
        now = self.accounts.now_ms()
        with self.users.transaction() as conn:
            user = self._get(user_id)
            role = validate_role(data["role"]) if "role" in data else user.role
            disabled = flag(data, "disabled", user.disabled)
            demoted = role is not Role.ADMIN or disabled
            active_admin = user.role is Role.ADMIN and not user.disabled
            if demoted and active_admin and self.users.enabled_admins() <= 1:
                raise ApiError(
                    409,
                    "last-admin",
                    f"{user.username} is the last admin who can log in: make another first",
                )
            changes: dict[str, Any] = {}
            if role is not user.role:
                changes["role"] = [user.role.value, role.value]
                user = self.users.set_role(user_id, role)
            if disabled != user.disabled:
                changes["disabled"] = [user.disabled, disabled]
                user = self.users.set_disabled(user_id, disabled, now)
            if changes:
                self.audit.record(
                    conn, now, who.id, who.name, "user.update", "user", user_id, **changes
                )
        return self.view(user, self.users.pending_reset(user_id))

    def unlock(self, who: Principal, user_id: int) -> dict[str, Any]:
        """End a lock-out now (and forget the failed logins counting towards the next)."""
        now = self.accounts.now_ms()
        with self.users.transaction() as conn:
            before = self._get(user_id)
            user = self.users.unlock(user_id)
            self.audit.record(
                conn,
                now,
                who.id,
                who.name,
                "user.unlock",
                "user",
                user_id,
                locked_until_ms=before.locked_until_ms,
                failed_logins=before.failed_logins,
            )
        return self.view(user, self.users.pending_reset(user_id))

    def reset_password(self, who: Principal, user_id: int) -> dict[str, Any]:
        """A temporary password for the account, returned this once; sessions end."""
        self._get(user_id)  # 404 before spending a hash on a missing account
        temporary = secrets.token_urlsafe(TEMPORARY_PASSWORD_BYTES)
        password_hash = self.accounts.passwords.hash(temporary)
        now = self.accounts.now_ms()
        expires_ms = now + self.accounts.settings.temporary_password_ttl_s * 1000
        with self.users.transaction() as conn:
            self._get(user_id)
            user = self.users.reset_password(user_id, password_hash, now, expires_ms)
            self.audit.record(
                conn,
                now,
                who.id,
                who.name,
                "user.password-reset",
                "user",
                user_id,
                expires_ms=expires_ms,
            )
        return {
            "user": self.view(user, expires_ms),
            "temporary_password": temporary,
            "expires_ms": expires_ms,
        }

    def _get(self, user_id: int) -> User:
        user = self.users.get(user_id)
        if user is None:
            raise not_found(f"user {user_id}")
        return user
