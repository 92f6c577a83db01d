"""``sim``: a rider on the race's course, deterministic for a seed."""

from __future__ import annotations

import asyncio
import itertools
import math
import statistics

import pytest

from sync_protocol.course import Course
from sync_protocol.fix import check_follows
from tracker_app.simulate import START_MS, SimSettings, ride, steady_speed_ms
from tracker_app.sources import ManualClock, Quality, Reading, open_source

from .gpsd_setup import collect

FLAT_M, CLIMB_M, DESCENT_M, RUN_IN_M = 2_000.0, 3_000.0, 3_000.0, 1_000.0
GRADE = 0.07


def stage() -> Course:
    """Northwards: 2 km flat, 3 km at 7 %, 3 km down at 7 %, 1 km flat; a point every 100 m."""
    points = []
    distance, ele = 0.0, 500.0
    for _ in range(int((FLAT_M + CLIMB_M + DESCENT_M + RUN_IN_M) / 100) + 1):
        points.append((45.0 + distance / 111_195, 6.0, ele))
        if FLAT_M <= distance < FLAT_M + CLIMB_M:
            ele += 100 * GRADE
        elif FLAT_M + CLIMB_M <= distance < FLAT_M + CLIMB_M + DESCENT_M:
            ele -= 100 * GRADE
        distance += 100
    return Course.from_points(points, name="col")


COURSE = stage()
BUSY = SimSettings(gps_losses_per_hour=30, dropouts_per_hour=30, dropout_s=(20, 60))


def ride_it(seed: int, settings: SimSettings | None = None) -> tuple[list[Reading], int, int]:
    clock = ManualClock(START_MS, autojump=True)
    source = open_source(
        "sim", clock=clock, course=COURSE, seed=seed, speed=10, sim_settings=settings
    )
    readings = asyncio.run(collect(source))
    return readings, source.stats.no_fix, clock.now_ms()


def test_the_same_seed_rides_the_same_race() -> None:
    assert ride_it(7) == ride_it(7)
    assert ride_it(7)[0] != ride_it(8)[0]


def test_speed_drops_on_the_climb_and_rises_on_the_descent() -> None:
    samples = list(ride(COURSE, seed=3))

    def mean_speed(start_m: float, end_m: float) -> float:
        # True speed, well inside the section (away from where the rider changes pace).
        inside = [s.speed_ms for s in samples if start_m + 300 <= s.distance_m <= end_m - 100]
        return statistics.mean(inside)

    flat = mean_speed(0, FLAT_M)
    climb = mean_speed(FLAT_M, FLAT_M + CLIMB_M)
    descent = mean_speed(FLAT_M + CLIMB_M, FLAT_M + CLIMB_M + DESCENT_M)
    assert flat == pytest.approx(11.1, abs=1.0)  # ~40 km/h
    assert climb == pytest.approx(steady_speed_ms(GRADE, SimSettings()), rel=0.12)
    assert climb < flat * 0.6 < flat < descent
    assert descent <= SimSettings().max_speed_ms  # capped
    assert samples[-1].distance_m == COURSE.finish_m
    on_climb = [s.grade for s in samples if FLAT_M + 100 < s.distance_m < FLAT_M + 2_900]
    assert on_climb
    assert all(g == pytest.approx(GRADE) for g in on_climb)


def test_every_reading_is_a_valid_fix_that_follows_the_last() -> None:
    readings, _, end = ride_it(11, BUSY)
    fixes = [r.to_fix(seq) for seq, r in enumerate(readings, 1)]
    for prev, fix in itertools.pairwise(fixes):
        check_follows(prev, fix)
    assert all(r.quality is Quality.SIM and r.ele_m is not None for r in readings)
    last_offset = readings[-1].t_ms - START_MS
    assert end == START_MS + round(last_offset / 10)  # ridden at 10x on the clock
    assert 900_000 < last_offset < 1_800_000  # 9 km with a climb: 15 to 30 minutes


def test_gps_losses_and_coverage_dropouts_happen() -> None:
    readings, no_fix, _ = ride_it(11, BUSY)
    gaps = [b.t_ms - a.t_ms for a, b in itertools.pairwise(readings)]
    assert no_fix > 0
    assert max(gaps) >= 5_000  # a GPS loss: no readings for seconds
    covered = [r.coverage for r in readings]
    assert not all(covered)
    assert any(covered)
    outages = sum(1 for a, b in itertools.pairwise(covered) if a and not b)
    assert outages >= 2
    quiet, _, _ = ride_it(11, SimSettings(gps_losses_per_hour=0, dropouts_per_hour=0))
    assert all(r.coverage for r in quiet)
    assert all(b.t_ms - a.t_ms <= 1_002 for a, b in itertools.pairwise(quiet))


def test_gps_noise_scatters_positions_a_few_metres_around_the_course() -> None:
    def offsets(settings: SimSettings) -> list[float]:
        out = []
        for sample in ride(COURSE, seed=5, settings=settings):
            lat, lon, _ = COURSE.point_at(sample.distance_m)
            north = (sample.lat - lat) * 111_195
            east = (sample.lon - lon) * 111_195 * math.cos(math.radians(lat))
            out.append(math.hypot(north, east))
        return out

    noisy = offsets(SimSettings())
    assert statistics.mean(noisy) > 0.5  # off the line, as a receiver reports ...
    assert max(noisy) < 15  # ... by a few metres, not a teleport
    steps = [abs(b - a) for a, b in itertools.pairwise(noisy)]
    assert statistics.mean(steps) < statistics.mean(noisy)  # correlated, not white noise
    assert max(offsets(SimSettings(noise_m=0))) < 0.01  # no noise: on the course


def test_sim_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="0 < min <= flat <= max"):
        SimSettings(flat_speed_ms=30.0)
    with pytest.raises(ValueError, match="faster than a bicycle"):
        SimSettings(max_speed_ms=50.0)
    with pytest.raises(ValueError, match="dropouts_per_hour must be zero or more"):
        SimSettings(dropouts_per_hour=-1)
    with pytest.raises(ValueError, match="gps_loss_s must be"):
        SimSettings(gps_loss_s=(10, 5))


def test_a_course_without_elevations_is_ridden_flat() -> None:
    flat = Course.from_points([(45.0, 6.0), (45.0, 6.02)])
    readings = asyncio.run(
        collect(open_source("sim", clock=ManualClock(START_MS, autojump=True), course=flat))
    )
    assert readings
    assert all(r.ele_m is None for r in readings)
    assert statistics.mean(r.speed_ms or 0 for r in readings) == pytest.approx(11.1, abs=1.0)
