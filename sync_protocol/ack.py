"""The receiver's answer to uploads: what it holds durably, and what it is missing."""

from __future__ import annotations

from dataclasses import dataclass

from .chain import DEVICE_ID_LEN
from .errors import DecodeError, LocalProtocolError
from .ranges import Range
from .wire import field, pack, unpack_array

MAX_ACK_RANGES = 64


@dataclass(frozen=True, slots=True)
class Ack:
    """A cumulative acknowledgement with selective ranges, sent only after a durable commit."""

    device_id: bytes
    """The device the ack is for."""
    acked_seq: int
    """Every fix 1..acked_seq is verified and durably stored by the receiver."""
    held: tuple[Range, ...] = ()
    """Verified, durable ranges beyond ``acked_seq`` (live fixes sent ahead of a backlog)."""
    missing: tuple[Range, ...] = ()
    """Ranges the receiver lacks below the highest fix it has seen: please send these."""
    provisional_seq: int = 0
    """Live fixes up to here arrived under a session MAC and await the next signed head."""

    def __post_init__(self) -> None:
        if len(self.device_id) != DEVICE_ID_LEN or self.acked_seq < 0:
            raise LocalProtocolError("ack needs a 16-byte device id and acked_seq >= 0")
        for first, last in (*self.held, *self.missing):
            if not 1 <= first <= last:
                raise LocalProtocolError(f"ack range {first}..{last} is not a valid range")

    def encode(self) -> bytes:
        """Wire form."""
        return pack(
            [
                1,
                self.device_id,
                self.acked_seq,
                [list(r) for r in self.held[:MAX_ACK_RANGES]],
                [list(r) for r in self.missing[:MAX_ACK_RANGES]],
                self.provisional_seq,
            ]
        )

    @classmethod
    def decode(cls, data: bytes) -> Ack:
        """Parse an ack."""
        v = unpack_array(data, "ack", 6)
        if field(v[0], int, "ack version") != 1:
            raise DecodeError(f"ack version {v[0]} is not supported", reason="version")
        try:
            return cls(
                field(v[1], bytes, "device id"),
                field(v[2], int, "acked_seq"),
                _ranges(v[3], "held"),
                _ranges(v[4], "missing"),
                field(v[5], int, "provisional_seq"),
            )
        except LocalProtocolError as exc:
            raise DecodeError(f"ack is invalid: {exc}") from None


def _ranges(value: object, what: str) -> tuple[Range, ...]:
    items = field(value, list, what)
    if len(items) > MAX_ACK_RANGES:
        raise DecodeError(f"ack has more than {MAX_ACK_RANGES} {what} ranges")
    out: list[Range] = []
    for item in items:
        pair = field(item, list, f"{what} range")
        if len(pair) != 2:
            raise DecodeError(f"{what} range must have 2 numbers")
        out.append((field(pair[0], int, what), field(pair[1], int, what)))
    return tuple(out)
