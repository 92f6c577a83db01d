"""The rules for credentials and account fields: usernames, passwords, roles, e-mail.

Each ``validate_*`` returns the clean value or raises a 400 :class:`~cloud.errors.ApiError`
naming the field and what is wrong with it.
"""

from __future__ import annotations

import re

from ..auth.principal import Role
from ..errors import bad_request

USERNAME = re.compile(r"[a-z0-9_.-]{3,32}")
MIN_PASSWORD = 10
MAX_PASSWORD = 1_024
MAX_EMAIL = 254
PEOPLE = tuple(r for r in Role if r is not Role.RELAY)
"""Roles a user account may have (``relay`` is for machine credentials only)."""


def validate_username(value: object) -> str:
    """The username, lower-cased (usernames are case-insensitive), or a 400 saying why not."""
    if value is None:
        raise bad_request("username is required", username="required")
    if not isinstance(value, str):
        raise bad_request("username must be a string", username="must be a string")
    name = value.lower()
    if not USERNAME.fullmatch(name):
        reason = "must be 3-32 characters of a-z, 0-9, '_', '.' and '-'"
        raise bad_request(f"username {reason}", username=reason)
    return name


def validate_password(value: object, username: str, field: str = "password") -> str:
    """A password that is long enough and not the username, or a 400 saying why not."""
    if value is None:
        raise bad_request(f"{field} is required", **{field: "required"})
    if not isinstance(value, str):
        raise bad_request(f"{field} must be a string", **{field: "must be a string"})
    if len(value) < MIN_PASSWORD:
        reason = f"must be at least {MIN_PASSWORD} characters"
        raise bad_request(f"{field} {reason}", **{field: reason})
    if len(value) > MAX_PASSWORD:
        reason = f"must be at most {MAX_PASSWORD} characters"
        raise bad_request(f"{field} {reason}", **{field: reason})
    if value.strip().lower() == username.lower():
        raise bad_request(
            f"{field} must not be the username", **{field: "must not be the username"}
        )
    return value


def validate_role(value: object, allowed: tuple[Role, ...] = PEOPLE) -> Role:
    """One of ``allowed``, or a 400 listing them."""
    names = ", ".join(r.value for r in allowed)
    if value is None:
        raise bad_request(f"role is required: one of {names}", role=f"required: one of {names}")
    if not isinstance(value, str) or value not in {r.value for r in allowed}:
        raise bad_request(f"role must be one of {names}", role=f"must be one of {names}")
    return Role(value)


def validate_email(value: object) -> str | None:
    """An optional e-mail address (shape only: something@domain)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise bad_request("email must be a string", email="must be a string")
    email = value.strip()
    local, at, domain = email.partition("@")
    if not (at and local and "." in domain and len(email) <= MAX_EMAIL) or " " in email:
        raise bad_request("email is not an e-mail address", email="expected name@domain")
    return email
