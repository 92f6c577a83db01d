"""The position-source API: SOURCE specs, readings, clocks, closing."""

from __future__ import annotations

import asyncio
import math

import pytest

from sync_protocol.course import Course
from sync_protocol.fix import Fix
from tracker_app.simulate import START_MS
from tracker_app.sources import (
    InvalidReadingError,
    ManualClock,
    Quality,
    Reading,
    SourceError,
    SystemClock,
    open_source,
    parse_gpsd_address,
)
from tracker_app.sources.gpsd import GpsdSource
from tracker_app.sources.nmea_source import NmeaFileSource
from tracker_app.sources.replay import ReplaySource
from tracker_app.sources.sim import SimSource

from .gpsd_setup import DESCENT_GPX, RIDE_NMEA, collect

COURSE = Course.from_points([(45.0, 6.0, 200.0), (45.01, 6.0, 210.0)], name="sprint")


def reading(**changes: object) -> Reading:
    fields: dict[str, object] = {
        "t_ms": START_MS,
        "lat": 45.0,
        "lon": 6.0,
        "ele_m": 650.0,
        "speed_ms": 10.0,
        "heading_deg": 90.0,
        "hacc_m": 3.0,
        "quality": Quality.FIX_3D,
        "satellites": 9,
    }
    return Reading(**{**fields, **changes})  # type: ignore[arg-type]


# --- SOURCE specs ------------------------------------------------------------------------


def test_each_kind_of_spec_opens_its_source() -> None:
    clock = ManualClock(START_MS)
    assert isinstance(open_source("gpsd", clock=clock), GpsdSource)
    assert isinstance(open_source(f"nmea:{RIDE_NMEA}", clock=clock), NmeaFileSource)
    assert isinstance(open_source(f"gpx:{DESCENT_GPX}", clock=clock, speed=5), ReplaySource)
    sim = open_source("sim", clock=clock, course=COURSE, seed=3)
    assert isinstance(sim, SimSource)
    assert sim.spec == "sim"
    assert sim.stats.readings == 0
    assert not sim.stats.connected


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("", ("127.0.0.1", 2947)),
        ("gps.local", ("gps.local", 2947)),
        ("10.0.0.7:3000", ("10.0.0.7", 3000)),
        ("[::1]:2948", ("::1", 2948)),
        ("[::1]", ("::1", 2947)),
    ],
)
def test_gpsd_addresses(text: str, address: tuple[str, int]) -> None:
    assert parse_gpsd_address(text) == address


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "no position source given: use gpsd[:HOST:PORT], nmea:PATH"),
        ("garmin", "unknown position source 'garmin': use gpsd[:HOST:PORT]"),
        ("gpsd:localhost:99999", "gpsd port '99999' is not a number in 1..65535"),
        ("gpsd:localhost:http", "gpsd port 'http' is not a number"),
        ("gpsd::2947", "has no host"),
        ("gpsd:::1:2947", "write an IPv6 address as [ADDRESS]:PORT"),
        ("gpsd:[::1", "is not [IPV6]:PORT"),
        ("nmea:", "nmea: needs a path, as in nmea:ride.nmea"),
        ("nmea:/no/such/ride.nmea", "nmea: no such file: /no/such/ride.nmea"),
        ("gpx:/no/such/ride.gpx", "gpx: no such file: /no/such/ride.gpx"),
        ("fit:/no/such/ride.fit", "fit: no such file"),
        ("fit:/tmp", "fit: /tmp is a directory, not a file"),
        ("sim", "sim needs the race's course"),
        ("sim:fast", "sim takes no argument"),
    ],
)
def test_bad_specs_say_what_is_wrong_in_one_line(spec: str, message: str) -> None:
    with pytest.raises(SourceError) as caught:
        open_source(spec, clock=ManualClock(START_MS))
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("speed", [0, -1, math.nan, math.inf, 1e9])
def test_bad_speed_factors(speed: float) -> None:
    with pytest.raises(SourceError, match="--speed"):
        open_source("sim", clock=ManualClock(START_MS), course=COURSE, speed=speed)


def test_speed_factor_is_refused_for_a_live_source() -> None:
    with pytest.raises(SourceError, match="not to the live source gpsd"):
        open_source("gpsd", clock=ManualClock(START_MS), speed=4)


# --- readings ----------------------------------------------------------------------------


def test_a_reading_becomes_the_fix_the_tracker_signs() -> None:
    fix = reading(lat=45.1234567, lon=-6.5, ele_m=651.27, speed_ms=11.5, heading_deg=359.96)
    assert fix.to_fix(7) == Fix(
        seq=7,
        t_ms=START_MS,
        lat_e7=451_234_567,
        lon_e7=-65_000_000,
        ele_dm=6513,
        speed_cms=1150,
        heading_dd=0,
        hacc_dm=30,
    )


def test_unknown_values_take_the_fix_defaults() -> None:
    fix = reading(ele_m=None, speed_ms=None, heading_deg=None, hacc_m=None, satellites=None)
    assert fix.to_fix(1) == Fix.from_degrees(1, START_MS, 45.0, 6.0)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"lat": math.nan}, "lat=nan is not a finite number"),
        ({"lon": None}, "lon=None is not a finite number"),
        ({"lat": 90.5}, "beyond ±90°"),
        ({"t_ms": 631_152_000_000}, "is not between 2000 and 2100"),
        ({"t_ms": 1.5e12}, "time must be an integer"),
        ({"speed_ms": 60.0}, "is not in 0..150 km/h"),
        ({"ele_m": 9500.0}, "is not in -500..9000 m"),
        ({"hacc_m": -1.0}, "is not in 0..10 km"),
        ({"heading_deg": 400.0}, "is not in 0..360°"),
        ({"satellites": -1}, "satellites=-1 is not in 0..255"),
        ({"quality": Quality.NO_FIX}, "needs a fix quality"),
        ({"quality": "3d"}, "needs a fix quality"),
    ],
)
def test_readings_that_cannot_be_fixes_are_refused(
    changes: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidReadingError, match=message.replace(".", r"\.")):
        reading(**changes)


def test_readings_are_frozen_records() -> None:
    r = reading()
    with pytest.raises(AttributeError):
        r.lat = 46.0  # type: ignore[misc]
    assert r.coverage


# --- clocks ------------------------------------------------------------------------------


def test_manual_clock_wakes_sleepers_in_time_order_when_advanced() -> None:
    async def scenario() -> list[tuple[str, int]]:
        clock = ManualClock(1_000)
        woke: list[tuple[str, int]] = []

        async def sleeper(name: str, until: int) -> None:
            await clock.sleep_until(until)
            woke.append((name, clock.now_ms()))

        tasks = [asyncio.create_task(sleeper(n, t)) for n, t in (("b", 3_000), ("a", 2_000))]
        await clock.sleepers(2)
        clock.advance(1_500)
        await asyncio.sleep(0)
        assert woke == [("a", 2_500)]
        clock.set(5_000)
        await asyncio.gather(*tasks)
        await clock.sleep_until(4_000)  # already past: returns at once
        return woke

    assert asyncio.run(scenario()) == [("a", 2_500), ("b", 5_000)]


def test_manual_clock_with_autojump_lets_hours_pass_at_once() -> None:
    async def scenario() -> int:
        clock = ManualClock(START_MS, autojump=True)
        for second in range(1, 3_601):
            await clock.sleep_until(START_MS + second * 1000)
        return clock.now_ms()

    assert asyncio.run(scenario()) == START_MS + 3_600_000


def test_manual_clock_never_goes_back() -> None:
    clock = ManualClock(5_000)
    with pytest.raises(ValueError, match="cannot go back"):
        clock.set(4_999)
    with pytest.raises(ValueError, match="cannot go back"):
        clock.advance(-1)


def test_system_clock_is_utc_milliseconds_and_sleeps_until_a_time() -> None:
    async def scenario() -> tuple[int, int]:
        clock = SystemClock()
        target = clock.now_ms() + 5
        await clock.sleep_until(target)
        return target, clock.now_ms()

    target, now = asyncio.run(scenario())
    assert now >= target
    assert Fix.from_degrees(1, now, 45.0, 6.0).t_ms == now  # a valid fix time


# --- closing -----------------------------------------------------------------------------


def test_close_ends_a_source_waiting_for_its_next_reading() -> None:
    async def scenario() -> tuple[int, bool]:
        clock = ManualClock(START_MS)
        source = open_source("sim", clock=clock, course=COURSE, seed=1)
        task = asyncio.create_task(collect(source))
        await clock.sleepers()  # the first reading is out, the second one is due in 1 s
        source.close()
        source.close()  # idempotent
        readings = await task
        return len(readings), source.stats.connected

    assert asyncio.run(scenario()) == (1, False)


def test_a_source_is_iterated_once() -> None:
    async def scenario() -> None:
        source = open_source("sim", clock=ManualClock(START_MS, autojump=True), course=COURSE)
        await collect(source)
        with pytest.raises(SourceError, match="can be iterated only once"):
            await collect(source)

    asyncio.run(scenario())


def test_a_source_closed_before_it_starts_yields_nothing() -> None:
    source = open_source(f"nmea:{RIDE_NMEA}", clock=ManualClock(START_MS, autojump=True))
    source.close()
    assert asyncio.run(collect(source)) == []
