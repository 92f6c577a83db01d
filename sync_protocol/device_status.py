"""Device status: a tracker's battery level, authenticated, from the tracker to its hop.

A tracker tells the hop it uploads to (a relay or the cloud) how full its battery is and
whether it is charging, so the officials see a tracker about to die before it goes
silent. The message is small and rides on a connection the tracker already has open
(``POST /v1/status``, see :mod:`sync_protocol.upload`), next to an upload.

Nobody may spoof another rider's battery, so a status is authenticated like a batch:

* to a relay, with a 16-byte HMAC-SHA256 under the connection's session key (the one the
  signed session hello armed, :mod:`sync_protocol.session`): about 2 µs to check;
* to the cloud, which keeps no session between requests, with an Ed25519 signature by the
  device key, checked against the key the cloud enrolled.

Both cover ``"gruppetto/status/v1" || device_id || u64be(t_ms) || u8(battery_pct) ||
u8(charging)``. A receiver also refuses a status dated more than
:data:`~sync_protocol.session.MAX_CLOCK_SKEW_MS` from its clock (a replay from long ago),
and keeps only the newest per device (:class:`StatusBoard`). When to send one is the
tracker's :class:`StatusReporter`.

Sans-IO: the time, the keys and the bytes come from the caller.
"""

from __future__ import annotations

import hmac
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .chain import DEVICE_ID_LEN, MAC_LEN, SIGNATURE_LEN
from .errors import (
    BadSignature,
    CertificateError,
    DecodeError,
    IntegrityError,
    LocalProtocolError,
)
from .fix import MAX_T_MS, MIN_T_MS
from .frame_types import BATTERY_PCT_MAX
from .session import MAX_CLOCK_SKEW_MS, SESSION_KEY_LEN
from .wire import field, pack, unpack_array

__all__ = [
    "BATTERY_PCT_MAX",
    "MAX_STATUS_BYTES",
    "DeviceStatus",
    "StatusBoard",
    "StatusReporter",
]

MAX_STATUS_BYTES = 160
"""Largest encoded status a receiver parses (a signed one is about 100 bytes)."""
VERSION = 1
"""The message version this module writes and reads."""
_CONTEXT = b"gruppetto/status/v1"
_BODY = struct.Struct(">16sQBB")


def _invalid(message: str) -> LocalProtocolError:
    return LocalProtocolError(message, reason="invalid-status")


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    """One report of a tracker's battery, as sent to its hop.

    Construction validates the fields and raises
    :class:`~sync_protocol.errors.LocalProtocolError` (reason ``"invalid-status"``) on a
    bad one; :meth:`decode` turns that into a ``DecodeError`` for bytes from a peer.
    """

    device_id: bytes
    """The reporting device (16 bytes)."""
    t_ms: int
    """When the level was read, UTC ms (2000-01-01 .. 2100-01-01)."""
    battery_pct: int
    """Battery level, 0..100 %."""
    charging: bool
    """Whether the device is on external power (charging, or full and plugged in)."""
    auth: bytes = b""
    """The 16-byte session MAC or the 64-byte device signature (empty before sealing)."""

    def __post_init__(self) -> None:
        if not isinstance(self.device_id, bytes) or len(self.device_id) != DEVICE_ID_LEN:
            raise _invalid(f"a device id is {DEVICE_ID_LEN} bytes, got {self.device_id!r}")
        if type(self.t_ms) is not int or not MIN_T_MS <= self.t_ms <= MAX_T_MS:
            raise _invalid(f"status time must be UTC ms between 2000 and 2100, got {self.t_ms!r}")
        if type(self.battery_pct) is not int or not 0 <= self.battery_pct <= BATTERY_PCT_MAX:
            raise _invalid(f"battery level must be an integer 0..100 %, got {self.battery_pct!r}")
        if not isinstance(self.charging, bool):
            raise _invalid(f"charging must be True or False, got {self.charging!r}")
        if not isinstance(self.auth, bytes) or len(self.auth) not in (0, MAC_LEN, SIGNATURE_LEN):
            raise _invalid(
                f"a status is authenticated by a {MAC_LEN}-byte MAC or a {SIGNATURE_LEN}-byte "
                f"signature, got {len(self.auth) if isinstance(self.auth, bytes) else self.auth!r}"
            )

    # -- making one --------------------------------------------------------------------

    def signed_bytes(self) -> bytes:
        """What the MAC or the signature covers."""
        return _CONTEXT + _BODY.pack(
            self.device_id, self.t_ms, self.battery_pct, 1 if self.charging else 0
        )

    @classmethod
    def create(
        cls,
        device_id: bytes,
        t_ms: int,
        battery_pct: int,
        charging: bool,
        *,
        session_key: bytes | None = None,
        key: Ed25519PrivateKey | None = None,
    ) -> DeviceStatus:
        """A status sealed with the session key (to a relay) or the device key (the cloud).

        Exactly one of ``session_key`` and ``key`` must be given.
        """
        unsealed = cls(device_id, t_ms, battery_pct, charging)
        if session_key is not None and key is None:
            if not isinstance(session_key, bytes) or len(session_key) != SESSION_KEY_LEN:
                raise _invalid(f"a session key is {SESSION_KEY_LEN} bytes")
            auth = _mac(session_key, unsealed.signed_bytes())
        elif key is not None and session_key is None:
            auth = key.sign(unsealed.signed_bytes())
        else:
            raise _invalid("seal a status with exactly one of session_key= and key=")
        return cls(device_id, t_ms, battery_pct, charging, auth)

    @property
    def mac(self) -> bool:
        """Whether the status carries a session MAC (else a signature, or nothing)."""
        return len(self.auth) == MAC_LEN

    # -- the wire ----------------------------------------------------------------------

    def encode(self) -> bytes:
        """Wire form: msgpack ``[1, device_id, t_ms, battery_pct, charging, auth]``."""
        if not self.auth:
            raise _invalid("seal the status (DeviceStatus.create) before encoding it")
        return pack(
            [VERSION, self.device_id, self.t_ms, self.battery_pct, self.charging, self.auth]
        )

    @classmethod
    def decode(cls, data: bytes) -> DeviceStatus:
        """Parse a status (structure and ranges, not authenticity).

        Raises ``DecodeError``: ``oversized`` past :data:`MAX_STATUS_BYTES`, ``version``,
        ``malformed`` (wrong types, no authentication), ``out-of-range`` (a level past
        100 %, a time outside 2000..2100, a device id of the wrong size).
        """
        v = unpack_array(bytes(data), "device status", 6, max_bytes=MAX_STATUS_BYTES)
        if field(v[0], int, "device status version") != VERSION:
            raise DecodeError(f"device status version {v[0]} is not supported", reason="version")
        device = field(v[1], bytes, "device id")
        t_ms = field(v[2], int, "status time")
        battery = field(v[3], int, "battery level")
        charging = field(v[4], bool, "charging")
        auth = field(v[5], bytes, "status authentication")
        if len(auth) not in (MAC_LEN, SIGNATURE_LEN):
            raise DecodeError(
                f"device status carries {len(auth)} bytes of authentication: neither a "
                f"{MAC_LEN}-byte MAC nor a {SIGNATURE_LEN}-byte signature"
            )
        try:
            return cls(device, t_ms, battery, charging, auth)
        except LocalProtocolError as exc:
            raise DecodeError(f"device status: {exc.message}", reason="out-of-range") from None

    # -- checking one ------------------------------------------------------------------

    def verify(
        self,
        *,
        now_ms: int,
        session_key: bytes | None = None,
        public_key: Ed25519PublicKey | None = None,
    ) -> None:
        """Check the MAC (with the device's session key) or the signature (with its
        certified public key), then the time.

        Raises ``BadSignature`` (``no-session`` for a MAC with no session key armed, which
        a tracker answers with a new hello; ``bad-signature`` when it does not verify),
        ``CertificateError`` ``no-certificate`` for a signature with no device key, or
        ``IntegrityError`` ``stale-status`` when dated more than 10 minutes from
        ``now_ms``.
        """
        if self.mac:
            if session_key is None:
                raise BadSignature(
                    "device status is MAC'd but this hop holds no session key for the "
                    "device: open the connection with a session hello",
                    reason="no-session",
                )
            if not hmac.compare_digest(_mac(session_key, self.signed_bytes()), self.auth):
                raise BadSignature(
                    "the device status MAC does not verify (altered, or from another session)"
                )
        elif len(self.auth) == SIGNATURE_LEN:
            if public_key is None:
                raise CertificateError(
                    "device status is signed but no device key is known here to check it",
                    reason="no-certificate",
                )
            try:
                public_key.verify(self.auth, self.signed_bytes())
            except InvalidSignature:
                raise BadSignature(
                    "the device status signature does not verify (altered, or signed by "
                    "another device's key)"
                ) from None
        else:
            raise BadSignature("device status is not authenticated", reason="unsigned")
        if abs(now_ms - self.t_ms) > MAX_CLOCK_SKEW_MS:
            raise IntegrityError(
                "device status is dated more than 10 minutes from this hop's clock: a replay, "
                "or a tracker whose clock is off",
                reason="stale-status",
            )


def _mac(session_key: bytes, message: bytes) -> bytes:
    return hmac.digest(session_key, message, "sha256")[:MAC_LEN]


class StatusBoard:
    """The newest verified status of each device, as a receiving hop keeps it."""

    def __init__(self) -> None:
        self.latest: dict[bytes, DeviceStatus] = {}
        """Statuses by device id."""

    def offer(self, status: DeviceStatus) -> bool:
        """Keep ``status`` if it is newer than the device's last; True when kept.

        An older or equally old status (a retry, a status that overtook another) changes
        nothing: the board never goes back in time.
        """
        known = self.latest.get(status.device_id)
        if known is not None and known.t_ms >= status.t_ms:
            return False
        self.latest[status.device_id] = status
        return True


class StatusReporter:
    """When a tracker sends its status: on news, and at least every ``every_ms``.

    A status is due when the level moved by ``min_change_pct`` or more from the last one
    the hop took, when charging started or stopped, when ``every_ms`` passed since then,
    and on every new connection (a new hop knows nothing of this device). The caller sends
    it with its next upload (no radio wake-up of its own) and reports the answer:
    :meth:`sent` when the hop took it, :meth:`refused` when it will not (then the next try
    waits ``every_ms``); a lost request changes nothing, so the status stays due.
    """

    def __init__(self, *, min_change_pct: int = 1, every_ms: int = 60_000) -> None:
        if type(min_change_pct) is not int or min_change_pct < 1:
            raise _invalid(f"min_change_pct must be a positive integer, got {min_change_pct!r}")
        if type(every_ms) is not int or every_ms < 1:
            raise _invalid(f"every_ms must be a positive integer, got {every_ms!r}")
        self.min_change_pct = min_change_pct
        self.every_ms = every_ms
        self.last: tuple[int, bool, int] | None = None
        """(battery_pct, charging, t_ms) of the last status the current hop took."""
        self._hold_until_ms: int | None = None

    def connected(self) -> None:
        """A new connection: the hop has no status of this device yet."""
        self.last = None
        self._hold_until_ms = None

    def due(self, battery_pct: int, charging: bool, now_ms: int) -> bool:
        """Whether a status with this reading should go with the next upload."""
        if self._hold_until_ms is not None and now_ms < self._hold_until_ms:
            return False
        if self.last is None:
            return True
        pct, was_charging, t_ms = self.last
        return (
            abs(battery_pct - pct) >= self.min_change_pct
            or charging != was_charging
            or now_ms - t_ms >= self.every_ms
        )

    def sent(self, status: DeviceStatus) -> None:
        """The hop took ``status``."""
        self.last = (status.battery_pct, status.charging, status.t_ms)
        self._hold_until_ms = None

    def refused(self, now_ms: int) -> None:
        """The hop refused a status (not a forgotten session): try again later."""
        self._hold_until_ms = now_ms + self.every_ms
