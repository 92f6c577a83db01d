"""What the account endpoints do: register, log in (with lock-out), refresh, log out,
change a password, and replace a temporary password. Endpoints only parse and respond;
the admins' user management is :mod:`cloud.auth.user_admin`.

Lock-out (all numbers are :class:`~cloud.settings.Settings`): after ``login_attempts``
failed logins for one account within ``login_window_s``, that account's logins are
refused with **429** ``account-locked`` (and ``Retry-After``) for ``lockout_s``, even with
the right password, unless an admin unlocks it. The lock is kept in the database (it
survives restarts). Unknown usernames are locked the same way in memory, so the answer
does not tell which accounts exist. One client address may fail ``address_login_failures``
times per ``login_window_s`` (an event's riders often share one NAT address) before 429
``rate-limited``; registrations are limited to ``registrations_per_address`` per
``registration_window_s``.

After an admin's password reset the account has a temporary password that logs in to
nothing: login answers 403 ``password-change-required`` until the user replaces it with
:meth:`Accounts.complete_reset`, within ``temporary_password_ttl_s``.
"""

from __future__ import annotations

import datetime
import math
from dataclasses import dataclass
from typing import Any

from ..errors import ApiError, bad_request
from ..keys import CloudKey
from ..settings import Settings
from ..store.credentials import (
    USERNAME,
    validate_email,
    validate_password,
    validate_role,
    validate_username,
)
from ..store.users import User, UserStore
from .passwords import Passwords
from .principal import Principal, Role
from .ratelimit import Clock, FailureLocks, RateLimiter
from .tokens import AccessTokens, RefreshTokens, WallClock, WebSession, WebSessions

SELF_SERVICE = (Role.RACER, Role.SPECTATOR)
"""Roles anyone may register for; admins and officials are created by an admin."""


def string(data: dict[str, Any], name: str) -> str:
    """A required string field, as sent (passwords are not stripped)."""
    value = data.get(name)
    if value is None:
        raise bad_request(f"{name} is required", **{name: "required"})
    if not isinstance(value, str):
        raise bad_request(f"{name} must be a string", **{name: "must be a string"})
    return value


def flag(data: dict[str, Any], name: str, default: bool) -> bool:
    """An optional true/false field."""
    value = data.get(name, default)
    if not isinstance(value, bool):
        raise bad_request(f"{name} must be true or false", **{name: "must be true or false"})
    return value


def invalid_credentials() -> ApiError:
    """401 ``invalid-credentials``: the same answer for an unknown name and a wrong password."""
    return ApiError(401, "invalid-credentials", "wrong username or password")


@dataclass(frozen=True, slots=True)
class NewAccount:
    """A validated account to create, its password already hashed."""

    username: str
    """Lower-case username."""
    password_hash: str
    """Argon2id hash of the chosen password."""
    role: Role
    """The account's role."""
    email: str | None
    """Optional contact address."""


@dataclass(frozen=True, slots=True)
class Login:
    """A successful login."""

    body: dict[str, Any]
    """The JSON answer."""
    session_token: str | None
    """The cookie value, for a web-session login."""


class Accounts:
    """Accounts, credentials and the tokens that prove them."""

    def __init__(
        self,
        settings: Settings,
        users: UserStore,
        key: CloudKey,
        *,
        passwords: Passwords | None = None,
        clock: Clock | None = None,
        limiter_clock: Clock | None = None,
    ) -> None:
        self.settings = settings
        self.users = users
        self.passwords = passwords or Passwords()
        self.clock: Clock = clock or WallClock()
        self.access = AccessTokens(key, settings.issuer, settings.access_token_ttl_s, self.clock)
        self.refresh_tokens = RefreshTokens(users, settings.refresh_token_ttl_s, self.clock)
        self.sessions = WebSessions(users, settings.refresh_token_ttl_s, self.clock)
        self.failed_by_address = RateLimiter(
            settings.address_login_failures,
            settings.login_window_s,
            what="failed logins from this address",
            clock=limiter_clock,
        )
        self.failed_by_unknown_name = FailureLocks(
            settings.login_attempts, settings.login_window_s * 1000, settings.lockout_s * 1000
        )
        self.registrations = RateLimiter(
            settings.registrations_per_address,
            settings.registration_window_s,
            what="registrations from this address",
            clock=limiter_clock,
        )

    def now_ms(self) -> int:
        """Wall-clock UTC milliseconds."""
        return int(self.clock.now() * 1000)

    # people

    def register(self, data: dict[str, Any], address: str) -> User:
        """Self-service sign-up as a racer or spectator."""
        username, password, role, email = self._account_fields(data, SELF_SERVICE)
        self.registrations.hit(f"register:{address}")  # before spending a hash
        password_hash = self.passwords.hash(password)
        return self.users.create(username, password_hash, role, self.now_ms(), email)

    def new_account(self, data: dict[str, Any], roles: tuple[Role, ...]) -> NewAccount:
        """Validate ``{username, password, role, email?}`` and hash the password."""
        username, password, role, email = self._account_fields(data, roles)
        return NewAccount(username, self.passwords.hash(password), role, email)

    @staticmethod
    def _account_fields(
        data: dict[str, Any], roles: tuple[Role, ...]
    ) -> tuple[str, str, Role, str | None]:
        username = validate_username(data.get("username"))
        password = validate_password(data.get("password"), username)
        return (
            username,
            password,
            validate_role(data.get("role"), roles),
            validate_email(data.get("email")),
        )

    def login(self, data: dict[str, Any], address: str) -> Login:
        """Check the password (with lock-out); tokens, or a web session with ``"session": true``."""
        name, password = string(data, "username").lower(), string(data, "password")
        session = flag(data, "session", False)
        user = self._authenticate(name, password, address)
        if self.users.pending_reset(user.id) is not None:
            raise ApiError(
                403,
                "password-change-required",
                "this is a temporary password from an admin: choose your own with POST"
                " /api/auth/complete-reset {username, temporary_password, new_password}",
            )
        return self._signed_in(user, session)

    def complete_reset(self, data: dict[str, Any], address: str) -> Login:
        """Replace an admin's temporary password with the user's own, and log in.

        ``{username, temporary_password, new_password, session?}``: the answer is that of
        :meth:`login`. Failed attempts count towards the lock-out like failed logins.
        """
        name = string(data, "username").lower()
        temporary = string(data, "temporary_password")
        session = flag(data, "session", False)
        user = self._authenticate(name, temporary, address)
        new = validate_password(data.get("new_password"), user.username, "new_password")
        expires_ms = self.users.pending_reset(user.id)
        if expires_ms is None:
            raise ApiError(
                409,
                "no-password-reset",
                "this account has no temporary password to replace: log in, and change"
                " the password with POST /api/auth/password",
            )
        if expires_ms <= self.now_ms():
            raise ApiError(
                403,
                "temporary-password-expired",
                "the temporary password has expired: ask an admin to reset the password again",
            )
        if new == temporary:
            reason = "must differ from the temporary password"
            raise bad_request(f"new_password {reason}", new_password=reason)
        self.users.set_password_hash(user.id, self.passwords.hash(new))
        return self._signed_in(user, session)

    def refresh(self, data: dict[str, Any]) -> dict[str, Any]:
        """Spend a refresh token for a new access token and refresh token."""
        user, token = self.refresh_tokens.rotate(string(data, "refresh_token"))
        return self._tokens(user, token)

    def logout(self, refresh_token: str | None, session_token: str | None) -> None:
        """Revoke the refresh token and/or the web session (unknown ones are ignored)."""
        if refresh_token:
            self.refresh_tokens.revoke(refresh_token)
        if session_token:
            self.sessions.revoke(session_token)

    def change_password(
        self, who: Principal, data: dict[str, Any], session: WebSession | None, address: str
    ) -> dict[str, Any]:
        """New password; every other session and all refresh tokens are revoked.

        A web session keeps itself; a token client gets a fresh pair in the answer.
        """
        user = self.users.get(who.id)
        if user is None or user.disabled:
            raise ApiError(403, "account-disabled", "this account is disabled or gone")
        current = string(data, "current_password")
        new = validate_password(data.get("new_password"), user.username, "new_password")
        try:
            self._check_password(user, user.username, current, address)
        except ApiError as exc:
            if exc.code != "invalid-credentials":
                raise
            raise ApiError(
                403,
                "wrong-password",
                "the current password is wrong",
                {"current_password": "does not match"},
            ) from None
        if new == current:
            reason = "must differ from the current password"
            raise bad_request(f"new_password {reason}", new_password=reason)
        self.users.set_password_hash(user.id, self.passwords.hash(new))
        keep = session.token_sha256 if session is not None else None
        self.users.revoke_all(user.id, self.now_ms(), keep_session_sha256=keep)
        if session is not None:
            return {"user": user.public()}
        return self._tokens(user)

    # internals

    def _authenticate(self, name: str, password: str, address: str) -> User:
        """The enabled account whose password this is (lock-out and address limits apply)."""
        self.failed_by_address.check(f"login:{address}")
        user = self.users.by_username(name) if USERNAME.fullmatch(name) else None
        user = self._check_password(user, name, password, address)
        if user.disabled:
            raise ApiError(403, "account-disabled", "this account is disabled: ask an admin")
        return user

    def _signed_in(self, user: User, session: bool) -> Login:
        self.users.record_successful_login(user.id)
        if not session:
            return Login(self._tokens(user), None)
        token, csrf = self.sessions.create(user.id)
        return Login({"user": user.public(), "csrf_token": csrf}, token)

    def _tokens(self, user: User, refresh_token: str | None = None) -> dict[str, Any]:
        return {
            "access_token": self.access.issue(user.principal),
            "refresh_token": refresh_token or self.refresh_tokens.issue(user.id),
            "token_type": "Bearer",
            "expires_in": self.settings.access_token_ttl_s,
            "user": user.public(),
        }

    def _check_password(self, user: User | None, name: str, password: str, address: str) -> User:
        now, settings = self.now_ms(), self.settings
        if user is None:
            until = self.failed_by_unknown_name.locked_until(name, now)
            if until is not None:
                raise self._locked(now, until)
            self.passwords.waste_time(password)
            self.failed_by_unknown_name.fail(name, now)
            self.failed_by_address.record(f"login:{address}")
            raise invalid_credentials()
        if user.locked_until_ms is not None and user.locked_until_ms > now:
            raise self._locked(now, user.locked_until_ms)
        if not self.passwords.verify(user.password_hash, password):
            self.failed_by_address.record(f"login:{address}")
            self.users.record_failed_login(
                user.id,
                now,
                settings.login_attempts,
                settings.login_window_s * 1000,
                settings.lockout_s * 1000,
            )
            raise invalid_credentials()
        rehash = self.passwords.needs_rehash(user.password_hash)
        if rehash and self.users.pending_reset(user.id) is None:  # a temporary one stays as is
            self.users.set_password_hash(user.id, self.passwords.hash(password))
        return user

    def _locked(self, now_ms: int, until_ms: int) -> ApiError:
        retry_after = max(1, math.ceil((until_ms - now_ms) / 1000))
        until = datetime.datetime.fromtimestamp(until_ms / 1000, datetime.UTC)
        return ApiError(
            429,
            "account-locked",
            f"too many failed logins for this account: it is locked until"
            f" {until:%Y-%m-%d %H:%M:%S} UTC; try again in {retry_after} s",
            fields={"retry_after_s": str(retry_after)},
        )
