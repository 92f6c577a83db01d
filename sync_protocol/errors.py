"""Typed errors of the sync protocol.

Every failure is a :class:`ProtocolError`. The subclasses say whose fault it is, in the
manner of h11: :class:`LocalProtocolError` when the caller misused the API (a bug on this
side), :class:`RemoteProtocolError` when the bytes or data came from a peer that broke the
protocol (a clean rejection with a reason, never a crash).

Each error carries a short machine-readable ``reason`` (used for metrics and in rejection
replies) and a message a person can act on.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """Base of every error raised by :mod:`sync_protocol`."""

    reason: str = "protocol-error"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason

    @property
    def message(self) -> str:
        """The human-readable explanation."""
        return str(self.args[0]) if self.args else self.reason


class LocalProtocolError(ProtocolError):
    """The caller used the API wrongly (for example recorded a fix out of sequence)."""

    reason = "local-error"


class RemoteProtocolError(ProtocolError):
    """A peer sent something that breaks the protocol; reject it, keep serving."""

    reason = "remote-error"


class DecodeError(RemoteProtocolError):
    """Bytes that are truncated, malformed, of an unknown version or with trailing junk."""

    reason = "malformed"


class LimitExceeded(DecodeError):
    """Input declares or carries more than the explicit limits allow (oversized)."""

    reason = "oversized"


class InvalidFixError(RemoteProtocolError):
    """A fix whose fields are out of range, not finite, going back in time or implausible."""

    reason = "invalid-fix"


class IntegrityError(RemoteProtocolError):
    """Signature, hash chain or certificate checks failed: tampering, forgery or splicing."""

    reason = "integrity"


class BadSignature(IntegrityError):
    """A signature does not verify under the key it claims."""

    reason = "bad-signature"


class ChainError(IntegrityError):
    """Fixes do not continue the device's hash chain (reordered, spliced, tampered)."""

    reason = "chain-broken"


class CertificateError(IntegrityError):
    """A device certificate is missing, expired, for another race or not issued by us."""

    reason = "certificate"


class CourseError(ProtocolError):
    """A course (for example from a GPX file) that cannot be used, and why."""

    reason = "bad-course"
