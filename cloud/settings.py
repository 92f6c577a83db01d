"""Cloud configuration from flags and environment variables (``GRUPPETTO_*``).

Each tunable setting has one environment variable (:data:`ENVIRONMENT`); ``gruppetto
cloud`` has a flag for the same setting, and a flag given wins over the variable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from starlette.config import Config

ENVIRONMENT: dict[str, str] = {
    "issuer": "GRUPPETTO_ISSUER",
    "access_token_ttl_s": "GRUPPETTO_ACCESS_TTL",
    "device_cert_ttl_s": "GRUPPETTO_DEVICE_CERT_TTL",
    "secure_cookies": "GRUPPETTO_SECURE_COOKIES",
    "login_attempts": "GRUPPETTO_LOGIN_ATTEMPTS",
    "login_window_s": "GRUPPETTO_LOGIN_WINDOW",
    "lockout_s": "GRUPPETTO_LOCKOUT",
    "address_login_failures": "GRUPPETTO_ADDRESS_LOGIN_FAILURES",
    "registrations_per_address": "GRUPPETTO_REGISTRATIONS",
    "registration_window_s": "GRUPPETTO_REGISTRATION_WINDOW",
    "temporary_password_ttl_s": "GRUPPETTO_TEMP_PASSWORD_TTL",
    "ingest_rate_per_s": "GRUPPETTO_INGEST_RATE",
    "tracker_uploads": "GRUPPETTO_TRACKER_UPLOADS",
    "tracker_window_s": "GRUPPETTO_TRACKER_WINDOW",
}
"""Setting name -> the environment variable that sets it."""


class SettingsError(ValueError):
    """A setting has a value the cloud cannot run with; the message names it."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the cloud app needs to know; injectable in tests."""

    data_dir: Path
    """Where the SQLite system of record, DuckDB history, keys and certificates live."""
    issuer: str = "gruppetto-cloud"
    """``iss`` of the access tokens and name of the certificate issuer."""
    access_token_ttl_s: int = 900
    """Lifetime of API access tokens (short: relays verify them offline)."""
    refresh_token_ttl_s: int = 14 * 86_400
    """Lifetime of refresh tokens and web sessions."""
    device_cert_ttl_s: int = 7 * 86_400
    """Validity of a device certificate from enrolment."""
    secure_cookies: bool = True
    """Mark session cookies Secure (turn off only for plain-HTTP local use)."""
    login_attempts: int = 5
    """Failed logins for one account within ``login_window_s`` that lock it."""
    login_window_s: int = 300
    """The window in which failed logins of one account (and of one address) count."""
    lockout_s: int = 300
    """How long a locked account stays locked (an admin can unlock it sooner)."""
    address_login_failures: int = 50
    """Failed logins one client address may make within ``login_window_s`` before a 429
    (generous: an event's riders often share one NAT address)."""
    registrations_per_address: int = 60
    """Self-service registrations one client address may make per ``registration_window_s``."""
    registration_window_s: int = 3_600
    """The registration rate-limit window."""
    temporary_password_ttl_s: int = 72 * 3_600
    """How long a temporary password from an admin's reset may be used to set a new one."""
    ingest_rate_per_s: int = 200
    """Uploads (each up to 1,024 batches) per second one relay may post before a 429."""
    tracker_uploads: int = 100
    """Requests to ``/v1/hello`` and ``/v1/batches`` one client address may make per
    ``tracker_window_s`` (trackers uploading straight to the cloud; many may share a
    carrier-grade NAT address)."""
    tracker_window_s: int = 1
    """The tracker upload rate-limit window."""
    max_body_bytes: int = 25 * 1024 * 1024
    """Largest request body accepted (GPX uploads are the largest)."""

    def __post_init__(self) -> None:
        for spec in fields(self):
            value = getattr(self, spec.name)
            if spec.type == "int" and (isinstance(value, bool) or not isinstance(value, int)):
                raise SettingsError(f"{_name(spec.name)} must be a whole number, not {value!r}")
            if spec.type == "int" and value < 1:
                raise SettingsError(f"{_name(spec.name)} must be at least 1, not {value}")

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read ``GRUPPETTO_*`` variables; keyword overrides (from flags) win.

        A variable that is not a number where one is needed raises :class:`SettingsError`.
        """
        config = Config(environ=environ) if environ is not None else Config()
        values: dict[str, Any] = {
            "data_dir": Path(config("GRUPPETTO_DATA", default="gruppetto-data"))
        }
        types = {spec.name: spec.type for spec in fields(cls)}
        for name, variable in ENVIRONMENT.items():
            cast = {"int": int, "bool": bool}.get(str(types[name]), str)
            try:
                value = config(variable, cast=cast, default=None)
            except ValueError:
                raw = config(variable, default="")
                kind = "a whole number" if cast is int else "true or false"
                raise SettingsError(f"{variable} must be {kind}, not {raw!r}") from None
            if value is not None:
                values[name] = value
        settings = cls(**values)
        return replace(settings, **{k: v for k, v in overrides.items() if v is not None})


def _name(setting: str) -> str:
    variable = ENVIRONMENT.get(setting)
    return f"{setting} ({variable})" if variable else setting
