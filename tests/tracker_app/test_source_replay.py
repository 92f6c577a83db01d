"""``gpx:PATH`` and ``fit:PATH``: recorded tracks replayed at their own pace or faster."""

from __future__ import annotations

import asyncio
import itertools
import math
from pathlib import Path

import pytest
from fit_tool.fit_file_builder import FitFileBuilder  # type: ignore[import-untyped]
from fit_tool.profile.messages.file_id_message import FileIdMessage  # type: ignore[import-untyped]
from fit_tool.profile.messages.record_message import RecordMessage  # type: ignore[import-untyped]
from fit_tool.profile.profile_type import FileType, Manufacturer  # type: ignore[import-untyped]

from sync_protocol.fix import check_follows
from sync_protocol.geo import haversine_m
from tracker_app.simulate import START_MS
from tracker_app.sources import ManualClock, Quality, SourceError, open_source
from tracker_app.sources.replay import bearing_deg

from .gpsd_setup import DESCENT_GPX, collect, utc_ms

GPX_START = utc_ms("2026-07-01T09:30:00")
GPX_OFFSETS_S = [0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 12]  # 08 is there twice: one is dropped


def test_a_gpx_track_replays_faster_with_the_recorded_intervals() -> None:
    clock = ManualClock(START_MS, autojump=True)
    source = open_source(f"gpx:{DESCENT_GPX}", clock=clock, speed=4)
    readings = asyncio.run(collect(source))
    assert [r.t_ms - START_MS for r in readings] == [s * 1000 for s in GPX_OFFSETS_S]
    assert clock.now_ms() == START_MS + 12_000 // 4
    stats = source.stats
    assert (stats.readings, stats.repeated, stats.invalid, stats.no_fix) == (11, 1, 0, 0)
    first, second, after_gap = readings[0], readings[1], readings[5]
    assert (first.lat, first.lon, first.ele_m) == (45.0921, 6.0705, 1120.0)
    assert (first.speed_ms, first.heading_deg) == (None, None)  # nothing before it
    assert (first.hacc_m, first.satellites) == (None, None)
    assert second.hacc_m == pytest.approx(0.9 * 5.0)
    assert second.satellites == 11
    # Speed and course come from the previous point: the file was made at 12 m/s, turning.
    assert second.speed_ms == pytest.approx(12.0, abs=0.05)
    assert after_gap.speed_ms == pytest.approx(12.0, abs=0.05)  # over the 2-second gap
    assert second.heading_deg == pytest.approx(bearing_deg(45.0921, 6.0705, 45.0920014, 6.0704378))
    assert 195 < (second.heading_deg or 0) < 210
    assert all(r.quality is Quality.FIX_3D for r in readings)
    fixes = [r.to_fix(seq) for seq, r in enumerate(readings, 1)]
    for prev, fix in itertools.pairwise(fixes):
        check_follows(prev, fix)  # what every hop will check


def test_a_gpx_track_can_keep_its_recorded_times() -> None:
    source = open_source(
        f"gpx:{DESCENT_GPX}",
        clock=ManualClock(START_MS, autojump=True),
        speed=100,
        keep_times=True,
    )
    readings = asyncio.run(collect(source))
    assert [r.t_ms for r in readings] == [GPX_START + s * 1000 for s in GPX_OFFSETS_S]


def test_a_gpx_replay_at_real_speed_waits_for_each_point() -> None:
    async def scenario() -> list[int]:
        clock = ManualClock(START_MS)
        source = open_source(f"gpx:{DESCENT_GPX}", clock=clock)
        task = asyncio.create_task(collect(source))
        seen = []
        for _ in range(6):
            await clock.sleepers()
            seen.append(source.stats.readings)
            clock.advance(1000)
        source.close()
        await task
        return seen

    assert asyncio.run(scenario()) == [1, 2, 3, 4, 5, 5]  # nothing recorded at 09:30:05


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is not a readable GPX file"),
        (b"<html><body>not a track</body></html>", "is not a readable GPX file"),
        (b'<gpx version="1.1"><trk><trkseg></trkseg></trk></gpx>', "has no track points"),
        (
            b'<gpx version="1.1"><trk><trkseg><trkpt lat="45" lon="6"/></trkseg></trk></gpx>',
            "no timed positions to replay",
        ),
        (b"\xff\xfe<gpx", "is not a readable GPX file"),
    ],
)
def test_gpx_files_that_cannot_be_replayed(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.gpx"
    path.write_bytes(content)
    with pytest.raises(SourceError, match=message) as caught:
        open_source(f"gpx:{path}", clock=ManualClock(START_MS))
    assert "\n" not in str(caught.value)


# --- FIT ---------------------------------------------------------------------------------

FIT_START = utc_ms("2026-07-01T10:00:00")


def write_fit(
    path: Path, count: int = 10, lost: tuple[int, ...] = (4,)
) -> list[tuple[float, float]]:
    """A FIT activity written with fit-tool: ``count`` records a second, eastwards at
    about 8 m/s, without a position at the indices in ``lost``. Returns the positions."""
    builder = FitFileBuilder(auto_define=True)
    file_id = FileIdMessage()
    file_id.type = FileType.ACTIVITY
    file_id.manufacturer = Manufacturer.DEVELOPMENT.value
    file_id.product = 0
    file_id.serial_number = 0x1234
    file_id.time_created = FIT_START
    builder.add(file_id)
    positions = []
    for i in range(count):
        record = RecordMessage()
        record.timestamp = FIT_START + i * 1000
        lat, lon = 45.2, 6.1 + i * 0.0001
        positions.append((lat, lon))
        if i not in lost:
            record.position_lat, record.position_long = lat, lon
        record.altitude = 800.0 + i
        record.speed = 7.86
        record.gps_accuracy = 3
        builder.add(record)
    builder.build().to_file(str(path))
    return positions


def test_a_fit_activity_replays_faster(tmp_path: Path) -> None:
    path = tmp_path / "ride.fit"
    positions = write_fit(path)
    clock = ManualClock(START_MS, autojump=True)
    source = open_source(f"fit:{path}", clock=clock, speed=10)
    readings = asyncio.run(collect(source))
    assert [r.t_ms - START_MS for r in readings] == [i * 1000 for i in range(10) if i != 4]
    assert clock.now_ms() == START_MS + 900
    assert (source.stats.readings, source.stats.no_fix) == (9, 1)
    for r in readings:
        lat, lon = positions[(r.t_ms - START_MS) // 1000]
        assert haversine_m(r.lat, r.lon, lat, lon) < 0.02  # semicircles: ~1 cm
        assert r.speed_ms == pytest.approx(7.86)
        assert r.ele_m == pytest.approx(800.0 + (r.t_ms - START_MS) / 1000, abs=0.2)
        assert r.hacc_m == 3.0
        assert r.quality is Quality.FIX_3D
    # FIT records carry no course: it is derived from the previous point (due east).
    assert readings[1].heading_deg == pytest.approx(90.0, abs=0.01)
    assert math.isclose(readings[1].speed_ms or 0, 7.86)


def test_a_fit_activity_can_keep_its_recorded_times(tmp_path: Path) -> None:
    path = tmp_path / "ride.fit"
    write_fit(path, count=3, lost=())
    clock = ManualClock(START_MS, autojump=True)
    source = open_source(f"fit:{path}", clock=clock, keep_times=True)
    assert [r.t_ms for r in asyncio.run(collect(source))] == [
        FIT_START + i * 1000 for i in range(3)
    ]


def test_damaged_and_foreign_fit_files_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "ride.fit"
    write_fit(path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged = tmp_path / "damaged.fit"
    damaged.write_bytes(bytes(data))
    with pytest.raises(SourceError, match=r"fit: .*damaged\.fit is not a readable FIT file"):
        open_source(f"fit:{damaged}", clock=ManualClock(START_MS))
    with pytest.raises(SourceError, match="is not a readable FIT file"):
        open_source(f"fit:{DESCENT_GPX}", clock=ManualClock(START_MS))
    empty = tmp_path / "empty.fit"
    write_fit(empty, count=2, lost=(0, 1))
    with pytest.raises(SourceError, match="no timed positions to replay"):
        open_source(f"fit:{empty}", clock=ManualClock(START_MS))
