"""Live frames: what spectators' browsers receive for one race, once a tick.

A frame is one QUIC datagram, so it must fit in :data:`MAX_DATAGRAM` bytes. A
**snapshot** is self-contained and columnar: riders furthest along the course first, one
column of varints per field, positions and gaps as zigzag differences from the rider in
front. A **delta** names its base frame (race, tick) and carries, per changed rider, only
the changed fields as zigzag differences. :func:`encode_delta` writes a snapshot instead
when the riders differ from the base's or the delta would not be smaller.
:func:`decode_frame` rejects a delta whose base is missing or another one with a
:class:`~sync_protocol.errors.DecodeError`, reason ``"stale-base"``: wait for a snapshot.

The byte layout is specified in ``docs/live-frames.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from itertools import pairwise

from .errors import DecodeError, LimitExceeded, LocalProtocolError
from .wire import Reader, put_svarint, put_uvarint, unzigzag, zigzag

MAGIC = b"GL"
"""The first two bytes of every live frame ("Gruppetto Live")."""

VERSION = 1
"""The layout version this module writes and reads."""

MAX_DATAGRAM = 1200
"""The largest payload that fits one QUIC datagram on any path (RFC 9000 minimum MTU)."""

MAX_FRAME_BYTES = 64 * 1024
"""The decoder refuses anything longer (a 255-rider snapshot is under 11 KiB)."""

MAX_RIDERS = 255
"""The most riders one frame carries."""

MAX_SAFE = 2**53 - 1
"""The largest integer a browser holds exactly: the ceiling of every varint in a frame."""

T_MS_MAX = 2**51 - 1
"""The latest ``t_ms`` (year 73,000): the zigzag difference of two still fits :data:`MAX_SAFE`."""

U32_MAX = 2**32 - 1
BIB_MAX = 65535
LAT_E7_MAX = 900_000_000
LON_E7_MAX = 1_800_000_000
PROGRESS_M_MAX = 10_000_000
SPEED_CMS_MAX = 65535
GAP_DS_MAX = 2**31 - 1
FIX_AGE_S_MAX = 65535
GROUP_MAX = 255
PENALTY_S_MAX = 2**31 - 1


class FrameKind(IntEnum):
    """The kind byte of a frame."""

    SNAPSHOT = 1
    DELTA = 2


class RaceStatus(IntEnum):
    """Where a race is in its life (one byte on the wire)."""

    SCHEDULED = 0
    LIVE = 1
    NEUTRALISED = 2
    FINISHED = 3
    RESULTS_PUBLISHED = 4


class RiderStatus(IntEnum):
    """Where a rider is in the race (one varint on the wire)."""

    RACING = 0
    FINISHED = 1
    DNF = 2
    DNS = 3
    DSQ = 4
    STOPPED = 5
    NO_SIGNAL = 6


_KINDS = frozenset(FrameKind)
_RACE_STATUSES = {int(s): s for s in RaceStatus}
_RIDER_STATUSES = {int(s): s for s in RiderStatus}


def _invalid(message: str) -> LocalProtocolError:
    return LocalProtocolError(message, reason="invalid-frame")


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _invalid(f"{name} must be an integer in {low}..{high}, got {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class RiderState:
    """One rider as spectators see them at one tick."""

    bib: int
    """Race number, 1..65535; unique within a race."""
    status: RiderStatus
    """Racing, finished, out of the race, or not heard from."""
    lat_e7: int
    """Latitude of the last fix in 1e-7 degrees (-900000000..900000000)."""
    lon_e7: int
    """Longitude of the last fix in 1e-7 degrees (-1800000000..1800000000)."""
    progress_m: int
    """Distance along the course in metres (negative before the start line)."""
    speed_cms: int
    """Speed in cm/s, 0..65535."""
    gap_ds: int | None = None
    """Time behind the leader at the same point of the course, in tenths of a second;
    ``None`` when unknown."""
    fix_age_s: int = 0
    """Seconds since the rider's last fix, 0..65535; producers saturate at 65535."""
    group: int = 0
    """Index of the rider's group on the road, 0 = the front group."""
    penalty_s: int = 0
    """Time penalty in seconds given by the officials, >= 0."""

    def __post_init__(self) -> None:
        _check_int("bib", self.bib, 1, BIB_MAX)
        who = f"rider {self.bib}"
        if not isinstance(self.status, RiderStatus):
            raise _invalid(f"{who}: status must be a RiderStatus, got {self.status!r}")
        _check_int(f"{who}: lat_e7", self.lat_e7, -LAT_E7_MAX, LAT_E7_MAX)
        _check_int(f"{who}: lon_e7", self.lon_e7, -LON_E7_MAX, LON_E7_MAX)
        _check_int(f"{who}: progress_m", self.progress_m, -PROGRESS_M_MAX, PROGRESS_M_MAX)
        _check_int(f"{who}: speed_cms", self.speed_cms, 0, SPEED_CMS_MAX)
        if self.gap_ds is not None:
            _check_int(f"{who}: gap_ds", self.gap_ds, 0, GAP_DS_MAX)
        _check_int(f"{who}: fix_age_s", self.fix_age_s, 0, FIX_AGE_S_MAX)
        _check_int(f"{who}: group", self.group, 0, GROUP_MAX)
        _check_int(f"{who}: penalty_s", self.penalty_s, 0, PENALTY_S_MAX)


@dataclass(frozen=True, slots=True, kw_only=True)
class LiveFrame:
    """Everything a spectator page shows about one race at one tick."""

    race_id: int
    """The race, 0..2**32-1."""
    tick: int
    """Tick number, counting up by one a second within the race, 0..2**53-1."""
    t_ms: int
    """UTC time of the tick in milliseconds since the Unix epoch, 0..2**51-1."""
    race_status: RaceStatus
    """Scheduled, live, neutralised, finished or results published."""
    riders: tuple[RiderState, ...] = ()
    """The riders in ascending bib order, bibs unique, at most 255."""

    def __post_init__(self) -> None:
        _check_int("race_id", self.race_id, 0, U32_MAX)
        _check_int("tick", self.tick, 0, MAX_SAFE)
        _check_int("t_ms", self.t_ms, 0, T_MS_MAX)
        if not isinstance(self.race_status, RaceStatus):
            raise _invalid(f"race_status must be a RaceStatus, got {self.race_status!r}")
        if not isinstance(self.riders, tuple):
            raise _invalid("riders must be a tuple")
        if len(self.riders) > MAX_RIDERS:
            raise _invalid(f"a frame carries at most {MAX_RIDERS} riders, got {len(self.riders)}")
        previous = 0
        for rider in self.riders:
            if not isinstance(rider, RiderState):
                raise _invalid(f"riders must be RiderState, got {rider!r}")
            if rider.bib <= previous:
                raise _invalid(f"riders must be sorted by unique bib: {rider.bib} after {previous}")
            previous = rider.bib


# The per-rider fields after the bib, in column order (snapshot) and bit order (delta
# field mask). How a snapshot writes each column of n values:
_CHAIN = 0  # n zigzag differences from the rider before (the first from 0)
_DESC = 1  # the first zigzag, then n-1 unsigned drops from the rider before
_PLAIN = 2  # n unsigned varints
_SPARSE = 3  # mostly zero: count of non-zero values, then (zeros skipped, value) pairs
_SPARSE_CHAIN = 4  # _SPARSE over the zigzag differences of _CHAIN
_FIELDS = (
    ("lat_e7", _CHAIN),
    ("lon_e7", _CHAIN),
    ("progress_m", _DESC),
    ("speed_cms", _CHAIN),
    ("gap", _CHAIN),  # 0 = unknown, else gap_ds + 1
    ("fix_age_s", _PLAIN),
    ("group", _SPARSE_CHAIN),
    ("status", _SPARSE),
    ("penalty_s", _SPARSE),
)
_ALL_FIELDS = (1 << len(_FIELDS)) - 1


def _wire_values(r: RiderState) -> tuple[int, ...]:
    gap = 0 if r.gap_ds is None else r.gap_ds + 1
    head = (r.lat_e7, r.lon_e7, r.progress_m, r.speed_cms, gap)
    return (*head, r.fix_age_s, r.group, r.status, r.penalty_s)


def _rider_from_wire(bib: int, v: list[int]) -> RiderState:
    status = _RIDER_STATUSES.get(v[7])
    if status is None:
        raise DecodeError(f"live frame: rider {bib} has unknown status {v[7]}")
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
    )


def _check_frame(frame: object, name: str = "frame") -> None:
    if not isinstance(frame, LiveFrame):
        raise _invalid(f"{name} must be a LiveFrame, got {frame!r}")


def _put_header(out: bytearray, kind: FrameKind, frame: LiveFrame) -> None:
    out += MAGIC
    out.append(VERSION)
    out.append(kind)
    put_uvarint(out, frame.race_id)
    put_uvarint(out, frame.tick)


def _put_column(out: bytearray, coding: int, column: list[int]) -> None:
    if coding == _DESC:
        if column:
            put_svarint(out, column[0])
        for ahead, behind in pairwise(column):
            put_uvarint(out, ahead - behind)
        return
    if coding in (_CHAIN, _SPARSE_CHAIN):
        column = [zigzag(value - before) for before, value in pairwise([0, *column])]
    if coding in (_CHAIN, _PLAIN):
        for value in column:
            put_uvarint(out, value)
        return
    nonzero = [(i, value) for i, value in enumerate(column) if value]
    put_uvarint(out, len(nonzero))
    previous = -1
    for i, value in nonzero:
        put_uvarint(out, i - previous - 1)
        put_uvarint(out, value)
        previous = i


def encode_snapshot(frame: LiveFrame) -> bytes:
    """Encode ``frame`` as a self-contained snapshot."""
    _check_frame(frame)
    out = bytearray()
    _put_header(out, FrameKind.SNAPSHOT, frame)
    put_uvarint(out, frame.t_ms)
    out.append(frame.race_status)
    put_uvarint(out, len(frame.riders))
    riders = sorted(frame.riders, key=lambda r: (-r.progress_m, r.bib))
    _put_column(out, _CHAIN, [r.bib for r in riders])
    rows = [_wire_values(r) for r in riders]
    for j, (_, coding) in enumerate(_FIELDS):
        _put_column(out, coding, [row[j] for row in rows])
    return bytes(out)


def encode_delta(base: LiveFrame, frame: LiveFrame) -> bytes:
    """Encode ``frame`` relative to ``base``, an earlier frame of the same race.

    Returns a snapshot instead when the riders (the set of bibs) differ from the base's or
    when the delta would not be smaller; :func:`peek_kind` tells which was written.
    """
    _check_frame(base, "base")
    _check_frame(frame)
    if base.race_id != frame.race_id:
        raise _invalid(f"delta base is race {base.race_id}, the frame race {frame.race_id}")
    if frame.tick < base.tick:
        raise _invalid(f"delta base tick {base.tick} is after the frame's tick {frame.tick}")
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
    status = _RACE_STATUSES.get(value)
    if status is None:
        raise DecodeError(f"live frame: race status {value} is unknown")
    return status


def _read_column(r: Reader, coding: int, count: int, field: str) -> list[int]:
    if coding == _DESC:
        column = [unzigzag(r.uvarint(MAX_SAFE, field))] if count else []
        for _ in range(count - 1):
            column.append(column[-1] - r.uvarint(MAX_SAFE, field))
        return column
    if coding in (_CHAIN, _PLAIN):
        column = [r.uvarint(MAX_SAFE, field) for _ in range(count)]
    else:
        column = [0] * count
        i = -1
        for _ in range(r.uvarint(count, f"{field} count")):
            i += r.uvarint(MAX_SAFE, f"{field} skip") + 1
            value = r.uvarint(MAX_SAFE, field)
            if i >= count or value == 0:
                raise DecodeError(f"live frame: sparse column {field} is malformed")
            column[i] = value
    if coding in (_CHAIN, _SPARSE_CHAIN):
        for i, value in enumerate(column):
            column[i] = unzigzag(value) + (column[i - 1] if i else 0)
    return column


def _decode_snapshot(r: Reader, race_id: int, tick: int) -> LiveFrame:
    t_ms = r.uvarint(T_MS_MAX, "t_ms")
    status = _race_status(r)
    count = r.uvarint(MAX_RIDERS, "rider count")
    bibs = _read_column(r, _CHAIN, count, "bib")
    columns = [_read_column(r, coding, count, name) for name, coding in _FIELDS]
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
