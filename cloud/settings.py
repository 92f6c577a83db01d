"""Cloud configuration from flags and environment variables (``GRUPPETTO_*``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from starlette.config import Config


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
    """Failed logins allowed per account and per client address per window."""
    login_window_s: int = 300
    """The login rate-limit window; a locked account unlocks after it."""
    ingest_rate_per_s: int = 200
    """Uploads (each up to 1,024 batches) per second one relay may post before a 429."""
    max_body_bytes: int = 25 * 1024 * 1024
    """Largest request body accepted (GPX uploads are the largest)."""

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read ``GRUPPETTO_*`` variables; keyword overrides (from flags) win."""
        config = Config(environ=environ) if environ is not None else Config()
        settings = cls(
            data_dir=Path(config("GRUPPETTO_DATA", default="gruppetto-data")),
            issuer=config("GRUPPETTO_ISSUER", default="gruppetto-cloud"),
            access_token_ttl_s=config("GRUPPETTO_ACCESS_TTL", cast=int, default=900),
            device_cert_ttl_s=config("GRUPPETTO_DEVICE_CERT_TTL", cast=int, default=7 * 86_400),
            secure_cookies=config("GRUPPETTO_SECURE_COOKIES", cast=bool, default=True),
        )
        return replace(settings, **{k: v for k, v in overrides.items() if v is not None})
