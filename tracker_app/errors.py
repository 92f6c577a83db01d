"""Errors of the tracker app: one base, subclasses that say what to do about them.

Every message is one line a racer can act on; the command line prints it as it is.
"""

from __future__ import annotations


class TrackerError(Exception):
    """Base of the tracker's own errors."""

    @property
    def message(self) -> str:
        """The explanation, with what to do."""
        return str(self.args[0]) if self.args else type(self).__name__


class StoreError(TrackerError):
    """The local buffer is unusable (corrupt, or belongs to another device key)."""


class StorageFull(StoreError):
    """The storage budget is reached and nothing can be pruned yet (the cloud lacks it)."""


class AccountError(TrackerError):
    """Logging in or enrolling failed, or the saved account cannot be used."""


class NotLoggedIn(AccountError):
    """No account is saved in the data directory."""


class NotAllowed(AccountError):
    """The device certificate does not allow tracking this race now (expired, wrong race)."""


class HopError(TrackerError):
    """A receiving hop (relay or cloud) failed or misbehaved; try again or another one."""

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        """How long the hop asked us to wait (``Retry-After``), if it did."""


class HopRefused(HopError):
    """A hop refused this device for a reason retrying will not fix (e.g. expired)."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason
        """The hop's machine-readable reason (``expired``, ``wrong-race``, ...)."""
