"""Signed batches of fixes and their compact, versioned binary codec.

A batch is a contiguous run of one device's fixes plus the proof that the device recorded
them: a 64-byte Ed25519 signature (or, for live fixes, a 16-byte session MAC) over the
device's chain head at the batch's last fix. When the batch does not follow the receiver's
verified chain (a live fix sent ahead of a backlog, or the first batch to a new relay) it
also carries ``prev_hash``, the chain hash before its first fix, which makes it verifiable
on its own.

Wire layout (version 1; integers are LEB128 varints unless sized)::

    magic "GB" | version 0x01 | flags u8 | device_id 16B | first_seq | count
    | [prev_hash 32B if flags&1] | body_len | body | auth (64B signature, or 16B MAC if flags&2)

``body`` holds the fixes column by column (time, lat, lon, elevation, speed, heading,
accuracy) as zigzag varints: the first row absolute, then deltas, and deltas of deltas for
time and position (a rider at steady speed costs almost nothing). Heading deltas wrap at
360°. If raw DEFLATE (``flags&4``) makes the body smaller it is compressed, with the
decompressed size bounded by the declared fix count.
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .chain import (
    DEVICE_ID_LEN,
    HASH_LEN,
    MAC_LEN,
    SIGNATURE_LEN,
    extend_all,
    mac_head,
    sign_head,
)
from .errors import DecodeError, LimitExceeded, LocalProtocolError
from .fix import Fix
from .wire import Reader, encode_svarints, put_uvarint

MAGIC = b"GB"
VERSION = 1
MAX_BATCH_FIXES = 4_096
"""Largest batch either side accepts (about 68 minutes at 1 Hz)."""
MAX_BATCH_BYTES = 4 + DEVICE_ID_LEN + 20 + HASH_LEN + 10 + MAX_BATCH_FIXES * 7 * 10 + SIGNATURE_LEN
"""No valid batch is longer than this; longer input is refused before parsing."""

_FLAG_PREV = 1
_FLAG_MAC = 2
_FLAG_DEFLATE = 4
_KNOWN_FLAGS = _FLAG_PREV | _FLAG_MAC | _FLAG_DEFLATE
_COLUMNS = 7


@dataclass(frozen=True, slots=True)
class Batch:
    """A contiguous run of one device's fixes with the device's proof over them."""

    device_id: bytes
    """16-byte id of the recording device (see :func:`sync_protocol.chain.device_id`)."""
    fixes: tuple[Fix, ...]
    """The fixes, consecutive in ``seq``."""
    auth: bytes
    """Ed25519 signature (64 bytes) or session MAC (16 bytes) over the head at the last fix."""
    prev_hash: bytes | None = None
    """Chain hash before the first fix, when the batch must be verifiable on its own."""

    def __post_init__(self) -> None:
        if len(self.device_id) != DEVICE_ID_LEN:
            raise LocalProtocolError("device_id must be 16 bytes")
        if not self.fixes or len(self.fixes) > MAX_BATCH_FIXES:
            raise LocalProtocolError(f"a batch holds 1..{MAX_BATCH_FIXES} fixes")
        first = self.fixes[0].seq
        for offset, fix in enumerate(self.fixes):
            if fix.seq != first + offset:
                raise LocalProtocolError(f"batch fixes must be consecutive: {fix.seq} at {offset}")
        if len(self.auth) not in (SIGNATURE_LEN, MAC_LEN):
            raise LocalProtocolError("auth must be a 64-byte signature or a 16-byte MAC")
        if self.prev_hash is not None and len(self.prev_hash) != HASH_LEN:
            raise LocalProtocolError("prev_hash must be 32 bytes")

    @property
    def first_seq(self) -> int:
        """Sequence number of the first fix."""
        return self.fixes[0].seq

    @property
    def last_seq(self) -> int:
        """Sequence number of the last fix (the signed head)."""
        return self.fixes[-1].seq

    @property
    def signed(self) -> bool:
        """True for an Ed25519-signed batch, False for a session-MAC (provisional) one."""
        return len(self.auth) == SIGNATURE_LEN


def seal(
    device: bytes,
    fixes: Sequence[Fix],
    prev_hash: bytes,
    *,
    key: Ed25519PrivateKey | None = None,
    session_key: bytes | None = None,
    include_prev_hash: bool = False,
) -> Batch:
    """Build a batch: hash ``fixes`` onto ``prev_hash`` and sign (or MAC) the head.

    Exactly one of ``key`` (the device's Ed25519 key) or ``session_key`` must be given.
    """
    if (key is None) == (session_key is None):
        raise LocalProtocolError("seal() needs exactly one of key= or session_key=")
    fixes = tuple(fixes)
    if not fixes:
        raise LocalProtocolError("cannot seal an empty batch")
    head = extend_all(prev_hash, fixes)[-1]
    last = fixes[-1].seq
    if key is not None:
        auth = sign_head(key, device, last, head)
    else:
        assert session_key is not None  # narrowed by the check above
        auth = mac_head(session_key, device, last, head)
    return Batch(device, fixes, auth, prev_hash if include_prev_hash else None)


def encode_batch(batch: Batch) -> bytes:
    """Serialize a batch to its wire form."""
    body = _encode_columns(batch.fixes)
    flags = 0
    packed = zlib.compressobj(9, zlib.DEFLATED, -15)
    deflated = packed.compress(body) + packed.flush()
    if len(deflated) < len(body):
        body, flags = deflated, flags | _FLAG_DEFLATE
    if batch.prev_hash is not None:
        flags |= _FLAG_PREV
    if not batch.signed:
        flags |= _FLAG_MAC
    out = bytearray(MAGIC)
    out += bytes((VERSION, flags))
    out += batch.device_id
    put_uvarint(out, batch.first_seq)
    put_uvarint(out, len(batch.fixes))
    if batch.prev_hash is not None:
        out += batch.prev_hash
    put_uvarint(out, len(body))
    out += body
    out += batch.auth
    return bytes(out)


def decode_batch(data: bytes | bytearray | memoryview) -> Batch:
    """Parse and validate a batch; raises only DecodeError/LimitExceeded/InvalidFixError.

    Decoding checks structure and each fix's ranges, not authenticity: feed the result to
    a :class:`~sync_protocol.receiver.Receiver` to verify signature and chain.
    """
    if len(data) > MAX_BATCH_BYTES:
        raise LimitExceeded(f"batch is {len(data)} bytes, above the limit of {MAX_BATCH_BYTES}")
    data = bytes(data)
    fast = _decode_plain(data)
    return fast if fast is not None else _decode_full(data)


def _decode_full(data: bytes) -> Batch:
    """Parse field by field, each error saying what is wrong where."""
    r = Reader(data, "batch")
    if r.bytes(2) != MAGIC:
        raise DecodeError("not a Gruppetto batch (bad magic)", reason="bad-magic")
    version, flags = r.u8(), r.u8()
    if version != VERSION:
        raise DecodeError(
            f"batch version {version} is not supported (this side speaks {VERSION}); "
            "update the tracker or relay",
            reason="version",
        )
    if flags & ~_KNOWN_FLAGS:
        raise DecodeError(f"batch has unknown flags 0x{flags:02x}")
    device = r.bytes(DEVICE_ID_LEN)
    first_seq = r.uvarint((1 << 63) - 1, "first_seq")
    count = r.uvarint(MAX_BATCH_FIXES, "fix count")
    if count == 0 or first_seq == 0:
        raise DecodeError("batch declares no fixes or a seq of 0")
    prev_hash = r.bytes(HASH_LEN) if flags & _FLAG_PREV else None
    body_len = r.uvarint(count * _COLUMNS * 10, "body length")
    body = r.bytes(body_len)
    if flags & _FLAG_DEFLATE:
        body = _inflate(body, count * _COLUMNS * 10)
    auth = r.bytes(MAC_LEN if flags & _FLAG_MAC else SIGNATURE_LEN)
    r.expect_end()
    fixes = _decode_columns(body, first_seq, count)
    return Batch(device, fixes, auth, prev_hash)


def _decode_plain(data: bytes) -> Batch | None:
    """The common case — a well-formed batch with an uncompressed body — parsed without a
    :class:`Reader`; None for anything else, which the full parser then explains."""
    if len(data) < 24 or data[:2] != MAGIC or data[2] != VERSION:
        return None
    flags = data[3]
    if flags & ~_KNOWN_FLAGS or flags & _FLAG_DEFLATE:
        return None
    first_seq, pos = _small_uvarint(data, 4 + DEVICE_ID_LEN)
    count, pos = _small_uvarint(data, pos)
    if not 0 < count <= MAX_BATCH_FIXES or not 0 < first_seq < 1 << 63:
        return None
    prev_hash = None
    if flags & _FLAG_PREV:
        prev_hash, pos = data[pos : pos + HASH_LEN], pos + HASH_LEN
    body_len, pos = _small_uvarint(data, pos)
    auth_len = MAC_LEN if flags & _FLAG_MAC else SIGNATURE_LEN
    if body_len > count * _COLUMNS * 10 or pos + body_len + auth_len != len(data):
        return None
    fixes = _decode_columns(data[pos : pos + body_len], first_seq, count)
    return Batch(data[4 : 4 + DEVICE_ID_LEN], fixes, data[pos + body_len :], prev_hash)


def _small_uvarint(data: bytes, pos: int) -> tuple[int, int]:
    """A varint of at most 9 bytes at ``pos`` and the position after it; (-1, pos) when
    it runs off the end or is longer (the full parser then says why)."""
    value, shift, end = 0, 0, min(len(data), pos + 9)
    while pos < end:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
    return -1, pos


def _inflate(body: bytes, limit: int) -> bytes:
    inflater = zlib.decompressobj(-15)
    try:
        out = inflater.decompress(body, limit)
    except zlib.error as exc:
        raise DecodeError(f"batch body does not inflate: {exc}") from None
    if inflater.unconsumed_tail or not inflater.eof:
        raise LimitExceeded("batch body inflates beyond its declared size, or is cut short")
    return out


def _encode_columns(fixes: Sequence[Fix]) -> bytes:
    columns = (
        (_dod, [f.t_ms for f in fixes]),
        (_dod, [f.lat_e7 for f in fixes]),
        (_dod, [f.lon_e7 for f in fixes]),
        (_delta, [f.ele_dm for f in fixes]),
        (_delta, [f.speed_cms for f in fixes]),
        (_heading_delta, [f.heading_dd for f in fixes]),
        (_delta, [f.hacc_dm for f in fixes]),
    )
    return b"".join(encode_svarints(transform(values)) for transform, values in columns)


def _decode_columns(body: bytes, first_seq: int, count: int) -> tuple[Fix, ...]:
    r = Reader(body, "batch body")
    try:
        values = r.svarints(count * _COLUMNS, "fix columns")
        r.expect_end()
    except DecodeError:
        _explain_columns(body, count)  # names the column at fault
        raise
    if count == 1:  # a live fix: deltas of a single value are the value itself
        t1, lat1, lon1, ele1, speed1, heading1, hacc1 = values
        return (Fix(first_seq, t1, lat1, lon1, ele1, speed1, heading1 % 3600, hacc1),)
    t = _undod(values[:count])
    lat = _undod(values[count : 2 * count])
    lon = _undod(values[2 * count : 3 * count])
    ele = _undelta(values[3 * count : 4 * count])
    speed = _undelta(values[4 * count : 5 * count])
    heading = [h % 3600 for h in _undelta(values[5 * count : 6 * count])]
    hacc = _undelta(values[6 * count :])
    return tuple(
        Fix(first_seq + i, t[i], lat[i], lon[i], ele[i], speed[i], heading[i], hacc[i])
        for i in range(count)
    )


def _explain_columns(body: bytes, count: int) -> None:
    """Re-read a body that failed to decode column by column, raising the precise error."""
    r = Reader(body, "batch body")
    for name in ("time", "latitude", "longitude", "elevation", "speed", "heading", "accuracy"):
        r.svarints(count, name)
    r.expect_end()


def _delta(values: list[int]) -> list[int]:
    return [values[0]] + [b - a for a, b in itertools.pairwise(values)]


def _undelta(values: list[int]) -> list[int]:
    total, out = 0, []
    for v in values:
        total += v
        out.append(total)
    return out


def _dod(values: list[int]) -> list[int]:
    """First value, first delta, then deltas of deltas."""
    deltas = _delta(values)
    return deltas[:2] + [b - a for a, b in itertools.pairwise(deltas[1:])]


def _undod(values: list[int]) -> list[int]:
    deltas = values[:2]
    for v in values[2:]:
        deltas.append(deltas[-1] + v)
    return _undelta(deltas)


def _heading_delta(values: list[int]) -> list[int]:
    out = [values[0]]
    for a, b in itertools.pairwise(values):
        out.append((b - a + 1800) % 3600 - 1800)
    return out
