"""Live frames: what spectators' browsers receive for one race, once a tick.

A frame is one QUIC datagram, so it must fit in :data:`MAX_DATAGRAM` bytes. A
**snapshot** is self-contained and columnar: riders furthest along the course first, one
column of varints per field, positions and gaps as zigzag differences from the rider in
front. A **delta** names its base frame (race, tick) and carries, per changed rider, only
the changed fields as zigzag differences. :func:`encode_delta` writes a snapshot instead
when the riders differ from the base's or the delta would not be smaller.
:func:`decode_frame` rejects a delta whose base is missing or another one with a
:class:`~sync_protocol.errors.DecodeError`, reason ``"stale-base"``: wait for a snapshot.

The byte layout is specified in ``docs/live-frames.md``. The frame's data types and limits
live in :mod:`sync_protocol.frame_types` and the snapshot's column codec in
:mod:`sync_protocol.frame_columns`; this module re-exports the public names.
"""

from __future__ import annotations

from itertools import pairwise

from .errors import DecodeError, LimitExceeded, LocalProtocolError
from .frame_columns import CHAIN, DESC, PLAIN, SPARSE, SPARSE_CHAIN, put_column, read_column
from .frame_types import (
    BATTERY_PCT_MAX,
    BIB_MAX,
    FIX_AGE_S_MAX,
    GAP_DS_MAX,
    GROUP_MAX,
    LAT_E7_MAX,
    LON_E7_MAX,
    MAX_RIDERS,
    MAX_SAFE,
    PENALTY_S_MAX,
    PROGRESS_M_MAX,
    RACE_STATUSES,
    RIDER_STATUSES,
    SPEED_CMS_MAX,
    T_MS_MAX,
    U32_MAX,
    FrameKind,
    LiveFrame,
    RaceStatus,
    RiderState,
    RiderStatus,
    invalid_frame,
)
from .wire import Reader, put_svarint, put_uvarint, unzigzag

__all__ = [
    "BATTERY_PCT_MAX",
    "BIB_MAX",
    "FIX_AGE_S_MAX",
    "GAP_DS_MAX",
    "GROUP_MAX",
    "LAT_E7_MAX",
    "LON_E7_MAX",
    "MAGIC",
    "MAX_DATAGRAM",
    "MAX_FRAME_BYTES",
    "MAX_RIDERS",
    "MAX_SAFE",
    "PENALTY_S_MAX",
    "PROGRESS_M_MAX",
    "SPEED_CMS_MAX",
    "T_MS_MAX",
    "U32_MAX",
    "VERSION",
    "FrameKind",
    "LiveFrame",
    "RaceStatus",
    "RiderState",
    "RiderStatus",
    "decode_frame",
    "encode_delta",
    "encode_snapshot",
    "fits_datagram",
    "peek_kind",
]

MAGIC = b"GL"
"""The first two bytes of every live frame ("Gruppetto Live")."""

VERSION = 2
"""The layout version this module writes and reads (2 added the battery columns)."""

MAX_DATAGRAM = 1200
"""The largest payload that fits one QUIC datagram on any path (RFC 9000 minimum MTU)."""

MAX_FRAME_BYTES = 64 * 1024
"""The decoder refuses anything longer (a 255-rider snapshot is under 11 KiB)."""

_KINDS = frozenset(FrameKind)


# The per-rider fields after the bib, in column order (snapshot) and bit order (delta
# field mask), each with its column coding (sync_protocol.frame_columns).
_FIELDS = (
    ("lat_e7", CHAIN),
    ("lon_e7", CHAIN),
    ("progress_m", DESC),
    ("speed_cms", CHAIN),
    ("gap", CHAIN),  # 0 = unknown, else gap_ds + 1
    ("fix_age_s", PLAIN),
    ("group", SPARSE_CHAIN),
    ("status", SPARSE),
    ("penalty_s", SPARSE),
    ("battery", PLAIN),  # 0 = unknown, else battery_pct + 1
    ("charging", SPARSE),  # 1 = on external power
)
_ALL_FIELDS = (1 << len(_FIELDS)) - 1


def _wire_values(r: RiderState) -> tuple[int, ...]:
    gap = 0 if r.gap_ds is None else r.gap_ds + 1
    battery = 0 if r.battery_pct is None else r.battery_pct + 1
    head = (r.lat_e7, r.lon_e7, r.progress_m, r.speed_cms, gap)
    return (*head, r.fix_age_s, r.group, r.status, r.penalty_s, battery, int(r.charging))


def _rider_from_wire(bib: int, v: list[int]) -> RiderState:
    status = RIDER_STATUSES.get(v[7])
    if status is None:
        raise DecodeError(f"live frame: rider {bib} has unknown status {v[7]}")
    if v[10] not in (0, 1):
        raise invalid_frame(f"rider {bib}: charging must be 0 or 1, got {v[10]}")
    return RiderState(
        bib=bib,
        status=status,
        lat_e7=v[0],
        lon_e7=v[1],
        progress_m=v[2],
        speed_cms=v[3],
        gap_ds=None if v[4] == 0 else v[4] - 1,
        fix_age_s=v[5],
        group=v[6],
        penalty_s=v[8],
        battery_pct=None if v[9] == 0 else v[9] - 1,
        charging=v[10] == 1,
    )


def _check_frame(frame: object, name: str = "frame") -> None:
    if not isinstance(frame, LiveFrame):
        raise invalid_frame(f"{name} must be a LiveFrame, got {frame!r}")


def _put_header(out: bytearray, kind: FrameKind, frame: LiveFrame) -> None:
    out += MAGIC
    out.append(VERSION)
    out.append(kind)
    put_uvarint(out, frame.race_id)
    put_uvarint(out, frame.tick)


def encode_snapshot(frame: LiveFrame) -> bytes:
    """Encode ``frame`` as a self-contained snapshot."""
    _check_frame(frame)
    out = bytearray()
    _put_header(out, FrameKind.SNAPSHOT, frame)
    put_uvarint(out, frame.t_ms)
    out.append(frame.race_status)
    put_uvarint(out, len(frame.riders))
    riders = sorted(frame.riders, key=lambda r: (-r.progress_m, r.bib))
    put_column(out, CHAIN, [r.bib for r in riders])
    rows = [_wire_values(r) for r in riders]
    for j, (_, coding) in enumerate(_FIELDS):
        put_column(out, coding, [row[j] for row in rows])
    return bytes(out)


def encode_delta(base: LiveFrame, frame: LiveFrame) -> bytes:
    """Encode ``frame`` relative to ``base``, an earlier frame of the same race.

    Returns a snapshot instead when the riders (the set of bibs) differ from the base's or
    when the delta would not be smaller; :func:`peek_kind` tells which was written.
    """
    _check_frame(base, "base")
    _check_frame(frame)
    if base.race_id != frame.race_id:
        raise invalid_frame(f"delta base is race {base.race_id}, the frame race {frame.race_id}")
    if frame.tick < base.tick:
        raise invalid_frame(f"delta base tick {base.tick} is after the frame's tick {frame.tick}")
    snapshot = encode_snapshot(frame)
    if [r.bib for r in base.riders] != [r.bib for r in frame.riders]:
        return snapshot
    out = bytearray()
    _put_header(out, FrameKind.DELTA, frame)
    put_uvarint(out, frame.tick - base.tick)
    put_svarint(out, frame.t_ms - base.t_ms)
    out.append(frame.race_status)
    put_uvarint(out, len(frame.riders))
    bitmap = bytearray((len(frame.riders) + 7) // 8)
    body = bytearray()
    for i, (old, new) in enumerate(zip(base.riders, frame.riders, strict=True)):
        if old == new:
            continue
        bitmap[i >> 3] |= 1 << (i & 7)
        before, after = _wire_values(old), _wire_values(new)
        changed = [j for j in range(len(_FIELDS)) if before[j] != after[j]]
        put_uvarint(body, sum(1 << j for j in changed))
        for j in changed:
            put_svarint(body, after[j] - before[j])
    out += bitmap
    out += body
    return bytes(out) if len(out) < len(snapshot) else snapshot


def fits_datagram(data: bytes | bytearray | memoryview) -> bool:
    """Whether ``data`` fits in one QUIC datagram (:data:`MAX_DATAGRAM` bytes)."""
    return memoryview(data).nbytes <= MAX_DATAGRAM


def _read_preamble(r: Reader) -> FrameKind:
    magic = r.bytes(2)
    if magic != MAGIC:
        raise DecodeError(f"live frame: bad magic {magic.hex()}", reason="bad-magic")
    version = r.u8()
    if version != VERSION:
        raise DecodeError(
            f"live frame: version {version} is unknown (this side speaks {VERSION})",
            reason="bad-version",
        )
    kind = r.u8()
    if kind not in _KINDS:
        raise DecodeError(f"live frame: kind {kind} is unknown", reason="bad-kind")
    return FrameKind(kind)


def _open(data: bytes | bytearray | memoryview) -> tuple[Reader, FrameKind]:
    size = memoryview(data).nbytes
    if size > MAX_FRAME_BYTES:
        raise LimitExceeded(f"live frame is {size} bytes, above the limit of {MAX_FRAME_BYTES}")
    r = Reader(data, "live frame")
    return r, _read_preamble(r)


def peek_kind(data: bytes | bytearray | memoryview) -> FrameKind:
    """Read only the header's kind: whether ``data`` is a snapshot or a delta."""
    return _open(data)[1]


def _race_status(r: Reader) -> RaceStatus:
    value = r.u8()
    status = RACE_STATUSES.get(value)
    if status is None:
        raise DecodeError(f"live frame: race status {value} is unknown")
    return status


def _decode_snapshot(r: Reader, race_id: int, tick: int) -> LiveFrame:
    t_ms = r.uvarint(T_MS_MAX, "t_ms")
    status = _race_status(r)
    count = r.uvarint(MAX_RIDERS, "rider count")
    bibs = read_column(r, CHAIN, count, "bib")
    columns = [read_column(r, coding, count, name) for name, coding in _FIELDS]
    r.expect_end()
    riders = [_rider_from_wire(bib, [c[i] for c in columns]) for i, bib in enumerate(bibs)]
    riders.sort(key=lambda rider: rider.bib)
    for ahead, behind in pairwise(riders):
        if ahead.bib == behind.bib:
            raise DecodeError(f"live frame: bib {ahead.bib} appears twice")
    return LiveFrame(
        race_id=race_id, tick=tick, t_ms=t_ms, race_status=status, riders=tuple(riders)
    )


def _decode_delta(r: Reader, race_id: int, tick: int, base: LiveFrame | None) -> LiveFrame:
    base_tick = tick - r.uvarint(tick, "base tick offset")
    dt_ms = unzigzag(r.uvarint(MAX_SAFE, "t_ms delta"))
    status = _race_status(r)
    count = r.uvarint(MAX_RIDERS, "rider count")
    if (
        base is None
        or base.race_id != race_id
        or base.tick != base_tick
        or len(base.riders) != count
    ):
        have = "no base" if base is None else f"tick {base.tick} of race {base.race_id}"
        raise DecodeError(
            f"live frame is a delta against tick {base_tick} of race {race_id} "
            f"({count} riders) but the base is {have}: wait for a snapshot",
            reason="stale-base",
        )
    bitmap = r.bytes((count + 7) // 8)
    if count % 8 and bitmap[-1] >> (count % 8):
        raise DecodeError("live frame: delta bitmap has bits set past the last rider")
    riders = []
    for i, old in enumerate(base.riders):
        if not bitmap[i >> 3] >> (i & 7) & 1:
            riders.append(old)
            continue
        mask = r.uvarint(MAX_SAFE, "field mask")
        if mask == 0 or mask > _ALL_FIELDS:
            raise DecodeError(f"live frame: rider {old.bib} has a bad field mask {mask:#x}")
        values = list(_wire_values(old))
        for j, (name, _) in enumerate(_FIELDS):
            if mask >> j & 1:
                change = unzigzag(r.uvarint(MAX_SAFE, name))
                if change == 0:
                    raise DecodeError(f"live frame: rider {old.bib} {name} marked changed by 0")
                values[j] += change
        riders.append(_rider_from_wire(old.bib, values))
    r.expect_end()
    t_ms = base.t_ms + dt_ms
    return LiveFrame(
        race_id=race_id, tick=tick, t_ms=t_ms, race_status=status, riders=tuple(riders)
    )


def decode_frame(data: bytes | bytearray | memoryview, base: LiveFrame | None = None) -> LiveFrame:
    """Decode a snapshot, or a delta against ``base`` (the frame it names).

    Raises :class:`~sync_protocol.errors.DecodeError` (reason ``"stale-base"`` for a delta
    whose base is missing or another one) or :class:`~sync_protocol.errors.LimitExceeded`;
    never anything else.
    """
    r, kind = _open(data)
    race_id = r.uvarint(U32_MAX, "race_id")
    tick = r.uvarint(MAX_SAFE, "tick")
    try:
        if kind == FrameKind.SNAPSHOT:
            return _decode_snapshot(r, race_id, tick)
        return _decode_delta(r, race_id, tick, base)
    except LocalProtocolError as exc:  # a decoded value out of range
        raise DecodeError(f"live frame: {exc.message}", reason="out-of-range") from exc
