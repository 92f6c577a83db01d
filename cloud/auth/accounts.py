"""What the account endpoints do: register, log in (with lock-out), refresh, log out,
change a password, and the admin's user management. Endpoints only parse and respond.

Lock-out: after ``Settings.login_attempts`` failed logins for one account within
``Settings.login_window_s``, that account's logins are refused with **429**
``account-locked`` (and ``Retry-After``) for ``login_window_s``, even with the right
password. The lock is kept in the database (it survives restarts). Unknown usernames are
limited the same way in memory, so the answer does not tell which accounts exist. A
client address gets ``ADDRESS_FACTOR`` times the per-account allowance of failures (an
event's riders often share one NAT address) before 429 ``rate-limited``.
"""

from __future__ import annotations

import datetime
import math
from dataclasses import dataclass
from typing import Any

from ..errors import ApiError, bad_request, not_found
from ..keys import CloudKey
from ..settings import Settings
from ..store.users import (
    PEOPLE,
    USERNAME,
    User,
    UserStore,
    validate_email,
    validate_password,
    validate_role,
    validate_username,
)
from .passwords import Passwords
from .principal import Principal, Role
from .ratelimit import Clock, RateLimiter
from .tokens import AccessTokens, RefreshTokens, WallClock, WebSession, WebSessions

SELF_SERVICE = (Role.RACER, Role.SPECTATOR)
"""Roles anyone may register for; admins and officials are created by an admin."""
ADDRESS_FACTOR = 10
REGISTRATIONS_PER_ADDRESS = 60
REGISTRATION_WINDOW_S = 3_600
USER_FIELDS = frozenset({"role", "disabled"})


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
        attempts, window = settings.login_attempts, settings.login_window_s
        self.failed_by_address = RateLimiter(
            attempts * ADDRESS_FACTOR,
            window,
            what="failed logins from this address",
            clock=limiter_clock,
        )
        self.failed_by_unknown_name = RateLimiter(attempts, window, clock=limiter_clock)
        self.registrations = RateLimiter(
            REGISTRATIONS_PER_ADDRESS,
            REGISTRATION_WINDOW_S,
            what="registrations from this address",
            clock=limiter_clock,
        )

    def now_ms(self) -> int:
        """Wall-clock UTC milliseconds."""
        return int(self.clock.now() * 1000)

    # people

    def register(self, data: dict[str, Any], address: str) -> User:
        """Self-service sign-up as a racer or spectator."""
        return self._create(data, SELF_SERVICE, limit_key=f"register:{address}")

    def create_user(self, data: dict[str, Any]) -> User:
        """An admin creates (invites) an account with any person's role."""
        return self._create(data, PEOPLE, limit_key=None)

    def _create(self, data: dict[str, Any], roles: tuple[Role, ...], limit_key: str | None) -> User:
        username = validate_username(data.get("username"))
        password = validate_password(data.get("password"), username)
        role = validate_role(data.get("role"), roles)
        email = validate_email(data.get("email"))
        if limit_key is not None:
            self.registrations.hit(limit_key)
        return self.users.create(
            username, self.passwords.hash(password), role, self.now_ms(), email
        )

    def login(self, data: dict[str, Any], address: str) -> Login:
        """Check the password (with lock-out); tokens, or a web session with ``"session": true``."""
        name, password = string(data, "username").lower(), string(data, "password")
        session = flag(data, "session", False)
        self.failed_by_address.check(f"login:{address}")
        user = self.users.by_username(name) if USERNAME.fullmatch(name) else None
        user = self._check_password(user, name, password, address)
        if user.disabled:
            raise ApiError(403, "account-disabled", "this account is disabled: ask an admin")
        self.users.record_successful_login(user.id)
        if not session:
            return Login(self._tokens(user), None)
        token, csrf = self.sessions.create(user.id)
        return Login({"user": user.public(), "csrf_token": csrf}, token)

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

    def update_user(self, user_id: int, data: dict[str, Any]) -> User:
        """An admin changes a role or (dis)ables an account; the last admin stays."""
        unknown = sorted(set(data) - USER_FIELDS)
        if unknown:
            fields = {name: "unknown field (role, disabled)" for name in unknown}
            raise bad_request(f"cannot change {', '.join(unknown)}", **fields)
        with self.users.transaction():
            user = self.users.get(user_id)
            if user is None:
                raise not_found(f"user {user_id}")
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
            if role is not user.role:
                user = self.users.set_role(user_id, role)
            if disabled != user.disabled:
                user = self.users.set_disabled(user_id, disabled, self.now_ms())
        return user

    def list_users(self, role: str | None) -> list[User]:
        """All accounts, optionally of one role."""
        return self.users.list(None if role is None else validate_role(role))

    # internals

    def _tokens(self, user: User, refresh_token: str | None = None) -> dict[str, Any]:
        return {
            "access_token": self.access.issue(user.principal),
            "refresh_token": refresh_token or self.refresh_tokens.issue(user.id),
            "token_type": "Bearer",
            "expires_in": self.settings.access_token_ttl_s,
            "user": user.public(),
        }

    def _check_password(self, user: User | None, name: str, password: str, address: str) -> User:
        now = self.now_ms()
        window_ms = self.settings.login_window_s * 1000
        if user is None:
            try:
                self.failed_by_unknown_name.check(name)
            except ApiError as exc:
                raise self._locked(now, now + int(exc.fields["retry_after_s"]) * 1000) from None
            self.passwords.waste_time(password)
            self.failed_by_unknown_name.record(name)
            self.failed_by_address.record(f"login:{address}")
            raise invalid_credentials()
        if user.locked_until_ms is not None and user.locked_until_ms > now:
            raise self._locked(now, user.locked_until_ms)
        if not self.passwords.verify(user.password_hash, password):
            self.failed_by_address.record(f"login:{address}")
            self.users.record_failed_login(user.id, now, self.settings.login_attempts, window_ms)
            raise invalid_credentials()
        if self.passwords.needs_rehash(user.password_hash):
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
