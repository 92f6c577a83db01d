"""The console's errors: one base, and subclasses that say whose fault it is."""

from __future__ import annotations

__all__ = ["BadCommand", "ConsoleError", "NotOfficial", "Refused", "SessionExpired", "Unreachable"]


class ConsoleError(Exception):
    """Base of the console's errors; ``message`` is one line for people."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadCommand(ConsoleError):
    """A command was built with bad fields (the caller's fault: nothing was sent)."""


class Unreachable(ConsoleError):
    """The server could not be reached or could not take the request now (network down,
    timeout, 5xx, rate limit): the same request may succeed later."""


class Refused(ConsoleError):
    """The server answered and said no (4xx): sending it again will not help."""

    def __init__(self, message: str, *, status: int, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        """The HTTP status."""
        self.code = code
        """The server's machine-readable reason (``bad-transition``, ``forbidden``, ...)."""


class SessionExpired(Refused):
    """The login ended (refresh token revoked or expired): log in again."""


class NotOfficial(Refused):
    """The account logged in, but race control is only for officials and admins."""
