"""Tests of the live frame codec (sync_protocol.frames)."""

from __future__ import annotations

import dataclasses
import math
import random
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync_protocol.errors import DecodeError, LimitExceeded, LocalProtocolError
from sync_protocol.frames import (
    BATTERY_PCT_MAX,
    BIB_MAX,
    FIX_AGE_S_MAX,
    GAP_DS_MAX,
    LAT_E7_MAX,
    LON_E7_MAX,
    MAGIC,
    MAX_DATAGRAM,
    MAX_FRAME_BYTES,
    MAX_RIDERS,
    MAX_SAFE,
    PENALTY_S_MAX,
    PROGRESS_M_MAX,
    SPEED_CMS_MAX,
    T_MS_MAX,
    U32_MAX,
    VERSION,
    FrameKind,
    LiveFrame,
    RaceStatus,
    RiderState,
    RiderStatus,
    decode_frame,
    encode_delta,
    encode_snapshot,
    fits_datagram,
    peek_kind,
)
from sync_protocol.wire import put_uvarint

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---------------------------------------------------------------------------------------
# Strategies


@st.composite
def rider_fields(draw: st.DrawFn) -> dict[str, object]:
    """Every field of a RiderState except the bib, over its whole valid range."""
    battery = draw(st.none() | st.integers(0, BATTERY_PCT_MAX))
    return {
        "battery_pct": battery,
        "charging": battery is not None and draw(st.booleans()),
        "status": draw(st.sampled_from(RiderStatus)),
        "lat_e7": draw(st.integers(-LAT_E7_MAX, LAT_E7_MAX)),
        "lon_e7": draw(st.integers(-LON_E7_MAX, LON_E7_MAX)),
        "progress_m": draw(st.integers(-PROGRESS_M_MAX, PROGRESS_M_MAX)),
        "speed_cms": draw(st.integers(0, SPEED_CMS_MAX)),
        "gap_ds": draw(st.none() | st.integers(0, GAP_DS_MAX)),
        "fix_age_s": draw(st.integers(0, FIX_AGE_S_MAX)),
        "group": draw(st.integers(0, 255)),
        "penalty_s": draw(st.integers(0, PENALTY_S_MAX)),
    }


@st.composite
def frames(draw: st.DrawFn, max_riders: int = 60) -> LiveFrame:
    bibs = sorted(draw(st.sets(st.integers(1, BIB_MAX), max_size=max_riders)))
    riders = tuple(RiderState(bib=bib, **draw(rider_fields())) for bib in bibs)  # type: ignore[arg-type]
    return LiveFrame(
        race_id=draw(st.integers(0, U32_MAX)),
        tick=draw(st.integers(0, MAX_SAFE)),
        t_ms=draw(st.integers(0, T_MS_MAX)),
        race_status=draw(st.sampled_from(RaceStatus)),
        riders=riders,
    )


@st.composite
def next_frames(draw: st.DrawFn, base: LiveFrame) -> LiveFrame:
    """A later frame of the same race: some riders unchanged, some fields changed."""
    riders = []
    for rider in base.riders:
        if draw(st.booleans()):
            riders.append(rider)
            continue
        fields = draw(rider_fields())
        keep = draw(st.sets(st.sampled_from(sorted(fields))))
        changes = {k: v for k, v in fields.items() if k not in keep}
        if changes.get("battery_pct", rider.battery_pct) is None:
            changes["charging"] = False  # charging only with a known battery
        riders.append(dataclasses.replace(rider, **changes))  # type: ignore[arg-type]
    if draw(st.integers(0, 9)) == 0 and riders:  # sometimes the rider set changes
        riders.pop(draw(st.integers(0, len(riders) - 1)))
    return LiveFrame(
        race_id=base.race_id,
        tick=draw(st.integers(base.tick, MAX_SAFE)),
        t_ms=draw(st.integers(0, T_MS_MAX)),
        race_status=draw(st.sampled_from(RaceStatus)),
        riders=tuple(riders),
    )


# ---------------------------------------------------------------------------------------
# A realistic race: 50 riders over ~20 km of an Alpine road.

START_MS = 1_751_359_200_000  # 2025-07-01T08:40:00Z
RACE_TICK = 7_200  # two hours into the race
MOVING = (RiderStatus.RACING, RiderStatus.NO_SIGNAL)


def course_point(d: float) -> tuple[int, int]:
    """Latitude and longitude (1e-7 degrees) at ``d`` metres along a winding course."""
    heading = 0.6 + 0.5 * math.sin(d / 2500.0)
    lat = 45.05 + d * math.cos(heading) / 111_320 + 0.004 * math.sin(d / 900.0)
    lon = (
        6.10
        + d * math.sin(heading) / (111_320 * math.cos(math.radians(45)))
        + 0.003 * (math.cos(d / 700.0))
    )
    return round(lat * 1e7), round(lon * 1e7)


def realistic_riders(seed: int = 7) -> list[tuple[int, RiderStatus, float, float, int, int]]:
    """(bib, status, progress_m, speed_m_s, group, penalty_s) for 50 riders, Tour-style bibs."""
    rng = random.Random(seed)
    bibs = [team * 10 + n for team in range(1, 8) for n in range(1, 8)] + [81]
    rng.shuffle(bibs)
    riders = []
    leader = 92_000.0
    for i, bib in enumerate(bibs):
        status, speed, penalty = RiderStatus.RACING, rng.uniform(11.0, 13.5), 0
        if i < 3:  # breakaway
            progress, group = leader - rng.uniform(0, 25), 0
        elif i < 8:  # chase
            progress, group = leader - 1_400 - rng.uniform(0, 40), 1
        elif i < 40:  # peloton
            progress, group = leader - 3_200 - rng.uniform(0, 180), 2
        elif i < 46:  # gruppetto
            progress, group, speed = leader - 15_000 - rng.uniform(0, 60), 3, rng.uniform(8, 10)
        else:  # stragglers and trouble
            progress, group, speed = leader - 19_000 - rng.uniform(0, 900), 4 + i - 46, 8.5
        if i == 20:
            penalty = 20
        if i == 47:
            status, speed = RiderStatus.STOPPED, 0.0
        if i == 48:
            status, speed = RiderStatus.DNF, 0.0
        if i == 49:
            status = RiderStatus.NO_SIGNAL
        riders.append((bib, status, progress, speed, group, penalty))
    return riders


def battery(bib: int, tick: int) -> tuple[int | None, bool]:
    """A tracker's battery: most between 35 and 95 %, draining 1 % a minute of race time;
    two trackers charging from a power bank, two never reported one."""
    if bib in (11, 81):
        return None, False
    start = 35 + (bib * 37) % 61
    return max(0, start - (tick - RACE_TICK) // 60), bib in (23, 45)


def fix_age(status: RiderStatus, tick: int, rng: random.Random) -> int:
    if status is RiderStatus.NO_SIGNAL:
        return 45 + tick - RACE_TICK
    if status in (RiderStatus.STOPPED, RiderStatus.DNF):
        return 0 if status is RiderStatus.STOPPED else 600 + tick - RACE_TICK
    return rng.choice((0, 0, 0, 1))  # fixes arrive once a second, some just before the tick


def realistic_frame(tick: int, seed: int = 7) -> LiveFrame:
    """Tick ``tick`` of the race: every moving rider has ridden ``speed`` metres a second."""
    rng = random.Random(seed * 1000 + tick)
    states = []
    riders = realistic_riders(seed)
    elapsed = tick - RACE_TICK
    where = [
        progress + (speed * elapsed if status in MOVING else 0)
        for _, status, progress, speed, _, _ in riders
    ]
    leader = max(where)
    for (bib, status, _, speed, group, penalty), at in zip(riders, where, strict=True):
        lat, lon = course_point(at)
        jitter = rng.randint(-25, 25)  # GPS noise, about 3 m
        gap = None if status is RiderStatus.NO_SIGNAL else round((leader - at) / 12.5 * 10)
        battery_pct, charging = battery(bib, tick)
        states.append(
            RiderState(
                bib=bib,
                status=status,
                lat_e7=lat + jitter,
                lon_e7=lon - jitter,
                progress_m=round(at),
                speed_cms=round(speed * 100) + rng.randint(-15, 15) if speed else 0,
                gap_ds=gap,
                fix_age_s=fix_age(status, tick, rng),
                group=group,
                penalty_s=penalty,
                battery_pct=battery_pct,
                charging=charging,
            )
        )
    return LiveFrame(
        race_id=4_711,
        tick=tick,
        t_ms=START_MS + 1000 * tick,
        race_status=RaceStatus.LIVE,
        riders=tuple(sorted(states, key=lambda r: r.bib)),
    )


def header(kind: int, *varints: int) -> bytearray:
    out = bytearray(MAGIC + bytes([VERSION, kind]))
    for value in varints:
        put_uvarint(out, value)
    return out


# ---------------------------------------------------------------------------------------
# Round trips


@FAST
@given(frames())
def test_snapshot_round_trip(frame: LiveFrame) -> None:
    data = encode_snapshot(frame)
    assert peek_kind(data) is FrameKind.SNAPSHOT
    assert decode_frame(data) == frame
    assert encode_snapshot(decode_frame(data)) == data  # one encoding per frame


@FAST
@given(st.data())
def test_delta_round_trip(data: st.DataObject) -> None:
    base = data.draw(frames(max_riders=40))
    frame = data.draw(next_frames(base))
    encoded = encode_delta(base, frame)
    assert decode_frame(encoded, base) == frame
    snapshot = encode_snapshot(frame)
    if peek_kind(encoded) is FrameKind.DELTA:
        assert len(encoded) < len(snapshot)
        assert encode_delta(base, decode_frame(encoded, base)) == encoded
    else:
        assert encoded == snapshot


def test_delta_of_identical_frames_costs_header_and_bitmap() -> None:
    frame = realistic_frame(RACE_TICK)
    later = dataclasses.replace(frame, tick=frame.tick + 1, t_ms=frame.t_ms + 1000)
    data = encode_delta(frame, later)
    assert peek_kind(data) is FrameKind.DELTA
    # magic 2, version 1, kind 1, race_id 2, tick 2, back 1, dt 2, status 1, count 1
    assert len(data) == 13 + 7  # 50 unchanged riders: a 7-byte bitmap, nothing else
    assert decode_frame(data, frame) == later


def test_delta_falls_back_to_snapshot_when_riders_change() -> None:
    base = realistic_frame(RACE_TICK)
    frame = dataclasses.replace(realistic_frame(RACE_TICK + 1), riders=base.riders[1:])
    data = encode_delta(base, frame)
    assert peek_kind(data) is FrameKind.SNAPSHOT
    assert data == encode_snapshot(frame)
    assert decode_frame(data) == frame


def test_empty_frame_round_trips() -> None:
    frame = LiveFrame(race_id=1, tick=0, t_ms=0, race_status=RaceStatus.SCHEDULED)
    assert decode_frame(encode_snapshot(frame)) == frame
    later = dataclasses.replace(frame, tick=1, t_ms=1000, race_status=RaceStatus.LIVE)
    assert decode_frame(encode_delta(frame, later), frame) == later


# ---------------------------------------------------------------------------------------
# Size of a realistic race tick


def test_realistic_50_rider_snapshot_fits_a_datagram() -> None:
    frame = realistic_frame(RACE_TICK)
    assert len(frame.riders) == 50
    spread = max(r.progress_m for r in frame.riders) - min(r.progress_m for r in frame.riders)
    assert 18_000 < spread < 22_000
    data = encode_snapshot(frame)
    print(f"50-rider snapshot: {len(data)} bytes")
    assert len(data) <= MAX_DATAGRAM
    assert fits_datagram(data)
    assert decode_frame(data) == frame


def test_realistic_next_tick_delta_is_smaller_than_snapshot() -> None:
    base = realistic_frame(RACE_TICK)
    frame = realistic_frame(RACE_TICK + 1)
    moved = [b.progress_m - a.progress_m for a, b in zip(base.riders, frame.riders, strict=True)]
    assert sum(8 <= m <= 15 for m in moved) >= 45  # the racing riders rode ~10 m
    data = encode_delta(base, frame)
    snapshot = encode_snapshot(frame)
    print(f"50-rider delta: {len(data)} bytes (snapshot {len(snapshot)} bytes)")
    assert peek_kind(data) is FrameKind.DELTA
    assert len(data) < len(snapshot)
    assert decode_frame(data, base) == frame


def test_fits_datagram() -> None:
    assert fits_datagram(b"x" * MAX_DATAGRAM)
    assert not fits_datagram(bytearray(MAX_DATAGRAM + 1))
    assert fits_datagram(memoryview(b""))


# ---------------------------------------------------------------------------------------
# Stale bases


def test_delta_without_or_with_wrong_base_is_stale() -> None:
    base = realistic_frame(RACE_TICK)
    data = encode_delta(base, realistic_frame(RACE_TICK + 1))
    wrong_bases = [
        None,
        realistic_frame(RACE_TICK - 1),
        dataclasses.replace(base, race_id=base.race_id + 1),
        dataclasses.replace(base, riders=base.riders[:-1]),
    ]
    for wrong in wrong_bases:
        with pytest.raises(DecodeError, match="wait for a snapshot") as info:
            decode_frame(data, wrong)
        assert info.value.reason == "stale-base"


def test_snapshot_ignores_base() -> None:
    frame = realistic_frame(RACE_TICK)
    other = dataclasses.replace(frame, race_id=9)
    assert decode_frame(encode_snapshot(frame), other) == frame


def test_encode_delta_misuse() -> None:
    base = realistic_frame(RACE_TICK)
    with pytest.raises(LocalProtocolError, match="race"):
        encode_delta(dataclasses.replace(base, race_id=1), realistic_frame(RACE_TICK + 1))
    with pytest.raises(LocalProtocolError, match="after the frame's tick"):
        encode_delta(realistic_frame(RACE_TICK + 1), base)
    with pytest.raises(LocalProtocolError, match="LiveFrame"):
        encode_snapshot(base.riders)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------
# Bad bytes: DecodeError and nothing else


def decode_or_reject(data: bytes, base: LiveFrame | None) -> None:
    """Decode; on success the result re-encodes to an equivalent frame."""
    try:
        frame = decode_frame(data, base)
    except DecodeError:
        return
    assert decode_frame(encode_snapshot(frame)) == frame


@FAST
@given(st.binary(max_size=300))
def test_arbitrary_bytes_only_raise_decode_error(data: bytes) -> None:
    decode_or_reject(data, realistic_frame(RACE_TICK))


@FAST
@given(st.sampled_from(FrameKind), st.binary(max_size=300))
def test_valid_header_then_junk_only_raises_decode_error(kind: FrameKind, junk: bytes) -> None:
    base = realistic_frame(RACE_TICK)
    decode_or_reject(bytes(header(kind, base.race_id, RACE_TICK + 1)) + junk, base)
    decode_or_reject(bytes(header(kind, base.race_id, RACE_TICK + 1, 1, 2000, 1)) + junk, base)


@FAST
@given(st.data())
def test_mutated_frames_only_raise_decode_error(data: st.DataObject) -> None:
    base = data.draw(frames(max_riders=12))
    frame = data.draw(next_frames(base))
    encoded = bytearray(
        data.draw(st.sampled_from([encode_delta(base, frame), encode_snapshot(frame)]))
    )
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        at = data.draw(st.integers(0, max(len(encoded) - 1, 0)))
        if op == "flip" and encoded:
            encoded[at] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "set" and encoded:
            encoded[at] = data.draw(st.integers(0, 255))
        elif op == "insert":
            encoded[at:at] = data.draw(st.binary(min_size=1, max_size=4))
        elif op == "delete":
            del encoded[at : at + data.draw(st.integers(1, 4))]
        else:
            del encoded[at:]
    decode_or_reject(bytes(encoded), base)


def test_every_truncation_is_a_decode_error() -> None:
    base = realistic_frame(RACE_TICK)
    for data in (encode_snapshot(base), encode_delta(base, realistic_frame(RACE_TICK + 1))):
        for end in range(len(data)):
            with pytest.raises(DecodeError):
                decode_frame(data[:end], base)


def test_trailing_bytes_are_rejected() -> None:
    base = realistic_frame(RACE_TICK)
    for data in (encode_snapshot(base), encode_delta(base, realistic_frame(RACE_TICK + 1))):
        with pytest.raises(DecodeError) as info:
            decode_frame(data + b"\x00", base)
        assert info.value.reason == "trailing"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"GX\x01\x01", "bad-magic"),
        (b"GL\x01\x01", "bad-version"),
        (b"GL\x03\x01", "bad-version"),
        (b"GL\x02\x00", "bad-kind"),
        (b"GL\x02\x03", "bad-kind"),
        (b"GL", "truncated"),
        (b"", "truncated"),
    ],
)
def test_bad_preamble(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_frame(data)
    assert info.value.reason == reason


def test_oversized_frame_is_rejected() -> None:
    with pytest.raises(LimitExceeded):
        decode_frame(bytes(encode_snapshot(realistic_frame(RACE_TICK))) + bytes(MAX_FRAME_BYTES))


def test_more_than_255_riders_is_rejected() -> None:
    data = header(FrameKind.SNAPSHOT, 1, 1, 1000) + b"\x01"
    put_uvarint(data, MAX_RIDERS + 1)
    data += bytes(4000)
    with pytest.raises(LimitExceeded, match="rider count"):
        decode_frame(bytes(data))


def test_varints_beyond_what_a_browser_holds_are_rejected() -> None:
    with pytest.raises(LimitExceeded, match="t_ms"):
        decode_frame(bytes(header(FrameKind.SNAPSHOT, 1, 1, MAX_SAFE + 1) + b"\x01\x00"))
    with pytest.raises(LimitExceeded, match="t_ms"):
        decode_frame(bytes(header(FrameKind.SNAPSHOT, 1, 1, T_MS_MAX + 1) + b"\x01\x00"))
    with pytest.raises(LimitExceeded, match="race_id"):
        decode_frame(bytes(header(FrameKind.SNAPSHOT, U32_MAX + 1)))


def test_decoded_values_out_of_range_are_decode_errors() -> None:
    # one rider: bib 0 is not a valid bib
    # columns: bib, lat, lon, progress, speed, gap, fix age, three empty sparse columns,
    # battery (plain), charging (sparse)
    data = header(FrameKind.SNAPSHOT, 1, 1, 1000) + b"\x01\x01" + bytes(12)
    with pytest.raises(DecodeError, match="bib") as info:
        decode_frame(bytes(data))
    assert info.value.reason == "out-of-range"
    # two riders with the same bib (second bib difference 0)
    data = header(FrameKind.SNAPSHOT, 1, 1, 1000) + b"\x01\x02" + bytes([2, 0]) + bytes(18)
    with pytest.raises(DecodeError, match="twice"):
        decode_frame(bytes(data))
    # unknown rider status 7 (sparse column: one entry, skip 0, value 7)
    one_rider = header(FrameKind.SNAPSHOT, 1, 1, 1000) + b"\x01\x01\x02" + bytes(7)
    data = one_rider + b"\x01\x00\x07\x00\x00\x00"
    with pytest.raises(DecodeError, match="status"):
        decode_frame(bytes(data))
    # a battery of 101 % (wire 102), charging 2, charging with an unknown battery
    for tail, match in [
        (b"\x66\x00", "battery_pct"),
        (b"\x33\x01\x00\x02", "charging"),
        (b"\x00\x01\x00\x01", "charging"),
    ]:
        with pytest.raises(DecodeError, match=match) as info:
            decode_frame(bytes(one_rider + b"\x00\x00" + tail))
        assert info.value.reason == "out-of-range"
    # unknown race status
    data = header(FrameKind.SNAPSHOT, 1, 1, 1000) + b"\x09\x00"
    with pytest.raises(DecodeError, match="race status"):
        decode_frame(bytes(data))


# ---------------------------------------------------------------------------------------
# Validation of the dataclasses


def rider(**changes: object) -> RiderState:
    fields: dict[str, object] = {
        "bib": 7,
        "status": RiderStatus.RACING,
        "lat_e7": 450_000_000,
        "lon_e7": 61_000_000,
        "progress_m": 12_000,
        "speed_cms": 1_200,
    }
    fields.update(changes)
    return RiderState(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("bib", 0),
        ("bib", BIB_MAX + 1),
        ("bib", True),
        ("bib", 7.0),
        ("status", 0),
        ("status", RaceStatus.LIVE),
        ("lat_e7", LAT_E7_MAX + 1),
        ("lat_e7", -LAT_E7_MAX - 1),
        ("lon_e7", LON_E7_MAX + 1),
        ("progress_m", PROGRESS_M_MAX + 1),
        ("progress_m", -PROGRESS_M_MAX - 1),
        ("speed_cms", -1),
        ("speed_cms", SPEED_CMS_MAX + 1),
        ("gap_ds", -1),
        ("gap_ds", GAP_DS_MAX + 1),
        ("fix_age_s", -1),
        ("fix_age_s", FIX_AGE_S_MAX + 1),
        ("group", -1),
        ("group", 256),
        ("penalty_s", -5),
        ("penalty_s", PENALTY_S_MAX + 1),
        ("battery_pct", -1),
        ("battery_pct", BATTERY_PCT_MAX + 1),
        ("battery_pct", 50.0),
        ("charging", 1),
    ],
)
def test_rider_state_validation(field: str, value: object) -> None:
    with pytest.raises(LocalProtocolError, match=field):
        rider(**{field: value})


def test_rider_state_defaults() -> None:
    state = rider()
    assert (state.gap_ds, state.fix_age_s, state.group, state.penalty_s) == (None, 0, 0, 0)
    assert (state.battery_pct, state.charging) == (None, False)


def test_charging_needs_a_known_battery() -> None:
    with pytest.raises(LocalProtocolError, match="charging needs a known battery_pct"):
        rider(charging=True)
    assert rider(battery_pct=0, charging=True).charging


def test_an_empty_battery_is_not_an_unknown_one() -> None:
    riders = (rider(bib=1, battery_pct=0), rider(bib=2), rider(bib=3, battery_pct=100))
    frame = LiveFrame(race_id=1, tick=1, t_ms=1000, race_status=RaceStatus.LIVE, riders=riders)
    decoded = decode_frame(encode_snapshot(frame))
    assert [r.battery_pct for r in decoded.riders] == [0, None, 100]
    later = dataclasses.replace(
        frame, tick=2, riders=(rider(bib=1), rider(bib=2, battery_pct=0), riders[2])
    )
    assert decode_frame(encode_delta(frame, later), frame) == later


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"race_id": -1}, "race_id"),
        ({"race_id": U32_MAX + 1}, "race_id"),
        ({"tick": -1}, "tick"),
        ({"t_ms": T_MS_MAX + 1}, "t_ms"),
        ({"race_status": 1}, "race_status"),
        ({"riders": [rider()]}, "tuple"),
        ({"riders": (rider(bib=2), rider(bib=1))}, "sorted"),
        ({"riders": (rider(bib=2), rider(bib=2))}, "sorted"),
        ({"riders": ("rider",)}, "RiderState"),
        ({"riders": tuple(rider(bib=b) for b in range(1, MAX_RIDERS + 2))}, "at most 255"),
    ],
)
def test_live_frame_validation(changes: dict[str, object], match: str) -> None:
    fields: dict[str, object] = {
        "race_id": 1,
        "tick": 1,
        "t_ms": START_MS,
        "race_status": RaceStatus.LIVE,
    }
    fields.update(changes)
    with pytest.raises(LocalProtocolError, match=match):
        LiveFrame(**fields)  # type: ignore[arg-type]


def test_non_canonical_deltas_are_rejected() -> None:
    base = LiveFrame(
        race_id=1,
        tick=1,
        t_ms=1000,
        race_status=RaceStatus.LIVE,
        riders=(rider(bib=1), rider(bib=2), rider(bib=3)),
    )
    start = bytes(header(FrameKind.DELTA, 1, 2, 1)) + b"\xd0\x0f\x01\x03"  # dt, status, n
    decode_frame(start + b"\x01\x08\x02", base)  # rider 1: speed +1 is fine
    for body, match in [
        (b"\x09\x08\x02", "past the last rider"),  # bitmap bit 3 of a 3-rider frame
        (b"\x01\x08\x00", "changed by 0"),
        (b"\x01\x00", "field mask"),
        (b"\x01\x80\x10\x00", "field mask"),  # bit 11: no such field
    ]:
        with pytest.raises(DecodeError, match=match) as info:
            decode_frame(start + body, base)
        assert info.value.reason == "malformed"


def test_malformed_sparse_column_is_rejected() -> None:
    one_rider = bytes(header(FrameKind.SNAPSHOT, 1, 1, 1000)) + b"\x01\x01\x02" + bytes(6)
    decode_frame(one_rider + b"\x00\x00\x01\x00\x14\x00\x00")  # penalty 20
    for columns in (b"\x00\x00\x01\x01\x14", b"\x00\x00\x01\x00\x00"):  # skip past n; zero
        with pytest.raises(DecodeError, match="sparse column penalty_s"):
            decode_frame(one_rider + columns + b"\x00\x00")


# ---------------------------------------------------------------------------------------
# The worked example of docs/live-frames.md

DOCS = Path(__file__).parents[2] / "docs" / "live-frames.md"


def docs_example(name: str) -> bytes:
    found = re.search(rf"<!-- example: {name} -->\s*```text\n(.*?)```", DOCS.read_text(), re.S)
    assert found, f"no {name} example in {DOCS}"
    return bytes.fromhex(found.group(1))


def test_docs_example_matches_the_codec() -> None:
    t_ms = 1_751_366_400_000
    r5 = RiderState(
        bib=5,
        status=RiderStatus.NO_SIGNAL,
        lat_e7=450_990_000,
        lon_e7=62_100_000,
        progress_m=88_800,
        speed_cms=1_100,
        gap_ds=None,
        fix_age_s=45,
        group=1,
    )
    r11 = RiderState(
        bib=11,
        status=RiderStatus.RACING,
        lat_e7=451_234_567,
        lon_e7=62_345_678,
        progress_m=92_000,
        speed_cms=1_250,
        gap_ds=0,
        battery_pct=74,
    )
    r23 = RiderState(
        bib=23,
        status=RiderStatus.RACING,
        lat_e7=451_233_900,
        lon_e7=62_344_900,
        progress_m=91_990,
        speed_cms=1_240,
        gap_ds=8,
        fix_age_s=1,
        penalty_s=20,
        battery_pct=55,
        charging=True,
    )
    base = LiveFrame(
        race_id=4711, tick=7200, t_ms=t_ms, race_status=RaceStatus.LIVE, riders=(r5, r11, r23)
    )
    moved = dataclasses.replace(
        r11,
        lat_e7=r11.lat_e7 + 61,
        lon_e7=r11.lon_e7 + 104,
        progress_m=92_013,
        speed_cms=1_262,
        battery_pct=73,
    )
    frame = dataclasses.replace(
        base,
        tick=7201,
        t_ms=t_ms + 1000,
        riders=(dataclasses.replace(r5, fix_age_s=46), moved, r23),
    )
    assert encode_snapshot(base) == docs_example("snapshot")
    assert encode_delta(base, frame) == docs_example("delta")
    assert decode_frame(docs_example("delta"), base) == frame


def test_frames_still_exports_what_moved_to_its_sibling_modules() -> None:
    import sync_protocol.frame_columns as columns
    import sync_protocol.frame_types as types
    import sync_protocol.frames as frames

    for name in frames.__all__:
        assert hasattr(frames, name), name
    assert frames.LiveFrame is types.LiveFrame
    assert frames.RiderState is types.RiderState
    assert frames.MAX_RIDERS == types.MAX_RIDERS == 255
    for module in (frames, types, columns):
        assert module.__file__ is not None
        assert len(Path(module.__file__).read_text().splitlines()) < 400, module.__name__


@pytest.mark.parametrize("coding", [0, 1, 2, 3, 4])
def test_every_column_coding_round_trips(coding: int) -> None:
    from sync_protocol.frame_columns import DESC, put_column, read_column
    from sync_protocol.wire import Reader

    column = [900, 850, 850, 12, 3, 0, -5] if coding == DESC else [5, 0, 0, 7, -3, 0, 0, 1]
    if coding in (2, 3):  # plain and sparse columns hold unsigned values
        column = [abs(v) for v in column]
    out = bytearray()
    put_column(out, coding, column)
    reader = Reader(bytes(out), "column")
    assert read_column(reader, coding, len(column), "field") == column
    reader.expect_end()
