"""The upload exchange between a tracker and a receiving hop (an edge relay or the cloud).

Both hops serve the same three HTTP/3 requests, so a tracker can switch between them:

``POST /v1/hello``
    Body: a :class:`~sync_protocol.session.SessionHello`. Admits the device (its certificate
    is checked offline) and arms the session key for MAC'd live fixes. Reply 200: a
    :class:`HelloReply`. A tracker sends it on every new connection, and again when a
    batch is refused with ``no-certificate`` or ``no-session`` (the hop restarted).
``POST /v1/batches``
    Body: batches joined with :func:`sync_protocol.framing.encode_frames`. Reply 200 once
    every accepted fix is durable: one :class:`UploadResult` per batch, in order, joined
    the same way. A refused batch refuses only itself.
``POST /v1/status``
    Body: a :class:`~sync_protocol.device_status.DeviceStatus` (the tracker's battery),
    MAC'd with the session key (a relay) or signed by the device key (the cloud). Reply
    204 once verified (an older status than the hop's newest is taken and ignored). Sent
    on a connection already open, with an upload; ``no-session`` or ``no-certificate``:
    hello again first.

A request that is wrong as a whole (bad hello, malformed body, too large, a status that
does not verify) gets a 4xx with a JSON body ``{"error": reason, "message": text}``.
Content type of every body: :data:`CONTENT_TYPE`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .ack import Ack
from .errors import DecodeError
from .framing import decode_frames, encode_frames
from .wire import field, pack, unpack_array

HELLO_PATH = "/v1/hello"
BATCHES_PATH = "/v1/batches"
STATUS_PATH = "/v1/status"
CONTENT_TYPE = "application/vnd.gruppetto"
MAX_UPLOAD_BYTES = 4 * 1024 * 1024
"""Largest ``/v1/batches`` body a hop accepts."""
MAX_RESULT_BYTES = 8_192


@dataclass(frozen=True, slots=True)
class HelloReply:
    """What a hop tells a device that said hello."""

    ack: Ack
    """What this hop already holds of the device's chain."""
    cloud_acked_seq: int
    """Fixes 1..n the cloud holds, as far as this hop knows (the tracker may prune them)."""
    live_mac: bool
    """Whether this hop accepts MAC'd live batches on this session (the cloud does not)."""

    def encode(self) -> bytes:
        """Wire form: msgpack ``[1, ack, cloud_acked_seq, live_mac]``."""
        return pack([1, self.ack.encode(), self.cloud_acked_seq, self.live_mac])

    @classmethod
    def decode(cls, data: bytes) -> HelloReply:
        """Parse a hello reply; DecodeError when malformed."""
        v = unpack_array(data, "hello reply", 4, MAX_RESULT_BYTES)
        _version(v[0], "hello reply")
        return cls(
            Ack.decode(field(v[1], bytes, "ack")),
            _seq(v[2], "cloud_acked_seq"),
            field(v[3], bool, "live_mac"),
        )


@dataclass(frozen=True, slots=True)
class UploadResult:
    """The outcome of one batch of an upload."""

    ack: Ack | None
    """The device's ack after the commit; None when the batch named no admitted device."""
    cloud_acked_seq: int = 0
    """Fixes 1..n the cloud holds, as far as this hop knows."""
    reason: str = ""
    """Empty when stored (or a duplicate, or a gap); else why the batch was refused."""
    message: str = ""
    """For a refusal: what is wrong, for a person."""

    @property
    def refused(self) -> bool:
        """True when the batch was refused (nothing of it stored)."""
        return bool(self.reason)

    def encode(self) -> bytes:
        """Wire form: msgpack ``[1, ack or nil, cloud_acked_seq, reason, message]``."""
        ack = None if self.ack is None else self.ack.encode()
        return pack([1, ack, self.cloud_acked_seq, self.reason, self.message[:1_000]])

    @classmethod
    def decode(cls, data: bytes) -> UploadResult:
        """Parse one result; DecodeError when malformed."""
        v = unpack_array(data, "upload result", 5, MAX_RESULT_BYTES)
        _version(v[0], "upload result")
        ack = None if v[1] is None else Ack.decode(field(v[1], bytes, "ack"))
        return cls(
            ack,
            _seq(v[2], "cloud_acked_seq"),
            field(v[3], str, "reason"),
            field(v[4], str, "message"),
        )


def encode_results(results: Iterable[UploadResult]) -> bytes:
    """Join results as the ``/v1/batches`` reply body."""
    return encode_frames(r.encode() for r in results)


def decode_results(data: bytes) -> list[UploadResult]:
    """Split a ``/v1/batches`` reply body."""
    return [
        UploadResult.decode(item) for item in decode_frames(data, max_frame_bytes=MAX_RESULT_BYTES)
    ]


def _version(value: object, what: str) -> None:
    if field(value, int, f"{what} version") != 1:
        raise DecodeError(f"{what} version {value} is not supported", reason="version")


def _seq(value: object, what: str) -> int:
    seq = field(value, int, what)
    if seq < 0:
        raise DecodeError(f"{what} must not be negative")
    return seq
