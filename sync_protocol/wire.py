"""Low-level wire primitives: unsigned/zigzag varints and a bounds-checked reader.

Everything here raises only :class:`~sync_protocol.errors.DecodeError` (or its subclass
:class:`~sync_protocol.errors.LimitExceeded`) on bad input, never ``IndexError`` or
``ValueError``, and never allocates more than the caller's declared limits.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

import msgpack

from .errors import DecodeError, LimitExceeded

_T = TypeVar("_T")

MAX_VARINT_BYTES = 10
"""A 64-bit value needs at most ten 7-bit groups."""


def zigzag(value: int) -> int:
    """Map a signed integer to an unsigned one so small magnitudes stay small."""
    return (value << 1) if value >= 0 else ((-value) << 1) - 1


def unzigzag(value: int) -> int:
    """Inverse of :func:`zigzag`."""
    return (value >> 1) ^ -(value & 1)


def put_uvarint(out: bytearray, value: int) -> None:
    """Append ``value`` (0 <= value < 2**64) as an unsigned LEB128 varint."""
    if value < 0 or value >= 1 << 64:
        raise ValueError(f"varint out of range: {value}")
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def put_svarint(out: bytearray, value: int) -> None:
    """Append a signed integer as a zigzag varint."""
    put_uvarint(out, zigzag(value))


def encode_svarints(values: Iterable[int]) -> bytes:
    """Encode a sequence of signed integers as consecutive zigzag varints."""
    out = bytearray()
    for value in values:
        put_svarint(out, value)
    return bytes(out)


class Reader:
    """Reads fields from ``data`` with explicit bounds; every overrun is a DecodeError."""

    __slots__ = ("_data", "_pos", "what")

    def __init__(self, data: bytes | bytearray | memoryview, what: str) -> None:
        self._data = bytes(data)
        self._pos = 0
        self.what = what
        """What is being decoded, for error messages ("batch", "live frame")."""

    @property
    def remaining(self) -> int:
        """Bytes not yet read."""
        return len(self._data) - self._pos

    def bytes(self, count: int) -> bytes:
        """Read exactly ``count`` raw bytes."""
        if count < 0 or count > self.remaining:
            raise DecodeError(
                f"{self.what} is truncated: needed {count} more bytes at offset {self._pos}, "
                f"only {self.remaining} left",
                reason="truncated",
            )
        chunk = self._data[self._pos : self._pos + count]
        self._pos += count
        return chunk

    def u8(self) -> int:
        """Read one unsigned byte."""
        return self.bytes(1)[0]

    def uvarint(self, limit: int = (1 << 64) - 1, field: str = "varint") -> int:
        """Read an unsigned varint and check it is at most ``limit``."""
        data, pos, value, shift = self._data, self._pos, 0, 0
        for i in range(MAX_VARINT_BYTES):
            if pos + i >= len(data):
                raise DecodeError(
                    f"{self.what} is truncated inside {field} at offset {pos}", reason="truncated"
                )
            byte = data[pos + i]
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                self._pos = pos + i + 1
                if value > limit:
                    raise LimitExceeded(
                        f"{self.what}: {field} is {value}, above the limit of {limit}"
                    )
                return value
            shift += 7
        raise DecodeError(f"{self.what}: {field} varint is longer than 10 bytes at offset {pos}")

    def svarints(self, count: int, field: str) -> list[int]:
        """Read ``count`` zigzag varints (each bounded to 64 bits).

        One tight loop rather than a :meth:`uvarint` call per value: every fix of every
        upload is decoded here.
        """
        data, pos = self._data, self._pos
        end = len(data)
        if count > end - pos:  # every varint takes at least one byte
            raise DecodeError(
                f"{self.what} is truncated: {field} declares {count} values, "
                f"only {end - pos} bytes left",
                reason="truncated",
            )
        out: list[int] = []
        append = out.append
        for _ in range(count):
            start, value, shift = pos, 0, 0
            while True:
                if pos >= end:
                    raise DecodeError(
                        f"{self.what} is truncated inside {field} at offset {start}",
                        reason="truncated",
                    )
                byte = data[pos]
                pos += 1
                value |= (byte & 0x7F) << shift
                if byte < 0x80:
                    break
                shift += 7
                if shift >= 7 * MAX_VARINT_BYTES:
                    raise DecodeError(
                        f"{self.what}: {field} varint is longer than 10 bytes at offset {start}"
                    )
            if value >= 1 << 64:
                raise LimitExceeded(
                    f"{self.what}: {field} is {value}, above the limit of {(1 << 64) - 1}"
                )
            append((value >> 1) ^ -(value & 1))
        self._pos = pos
        return out

    def expect_end(self) -> None:
        """Fail when bytes are left over (trailing junk is tampering or a framing bug)."""
        if self.remaining:
            raise DecodeError(
                f"{self.what} has {self.remaining} unexpected trailing bytes", reason="trailing"
            )


def pack(value: object) -> bytes:
    """Serialize a small structured message (certificates, hellos, acks) with msgpack."""
    return bytes(msgpack.packb(value, use_bin_type=True))


def unpack_array(data: bytes, what: str, length: int, max_bytes: int = 4_096) -> list[Any]:
    """Parse a msgpack array of exactly ``length`` items with tight allocation limits."""
    if len(data) > max_bytes:
        raise LimitExceeded(f"{what} is {len(data)} bytes, above the limit of {max_bytes}")
    try:
        value = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            max_bin_len=max_bytes,
            max_str_len=max_bytes,
            max_array_len=max_bytes,
            max_map_len=0,
            max_ext_len=0,
        )
    except Exception as exc:  # msgpack raises many types (ValueError, ExtraData, ...)
        raise DecodeError(f"{what} is not valid: {type(exc).__name__}: {exc}") from None
    if not isinstance(value, list) or len(value) != length:
        raise DecodeError(f"{what} must be an array of {length} fields")
    return value


def field(value: object, kind: type[_T], what: str) -> _T:
    """Check the type of one decoded message field (bool is never an int here)."""
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise DecodeError(f"{what} must be {kind.__name__}, got {type(value).__name__}")
    return value
