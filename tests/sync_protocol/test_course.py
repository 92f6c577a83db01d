"""The race course model: projection of fixes to race distance, laps, crossings."""

from __future__ import annotations

import json
import math
import random
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sync_protocol.course as course_module
from sync_protocol.course import (
    Bounds,
    Checkpoint,
    Course,
    crossing_time_ms,
)
from sync_protocol.errors import CourseError, LocalProtocolError
from sync_protocol.geo import EARTH_RADIUS_M

M_PER_DEG = EARTH_RADIUS_M * math.pi / 180.0
LAT0, LON0 = 45.0, 6.0


def to_ll(x: float, y: float, lat0: float = LAT0, lon0: float = LON0) -> tuple[float, float]:
    """Local metres east/north of (lat0, lon0) to degrees."""
    return lat0 + y / M_PER_DEG, lon0 + x / (M_PER_DEG * math.cos(math.radians(lat0)))


def to_xy(lat: float, lon: float) -> tuple[float, float]:
    return (lon - LON0) * M_PER_DEG * math.cos(math.radians(LAT0)), (lat - LAT0) * M_PER_DEG


def course_xy(xys: list[tuple[float, float]], **kwargs: object) -> Course:
    return Course.from_points([(*to_ll(x, y), None) for x, y in xys], **kwargs)  # type: ignore[arg-type]


def noisy(course: Course, d: float, rng: random.Random, noise_m: float) -> tuple[float, float]:
    """The true position at race distance d plus uniform GPS noise of +-noise_m per axis."""
    lat, lon, _ = course.point_at(d)
    x, y = to_xy(lat, lon)
    return to_ll(x + rng.uniform(-noise_m, noise_m), y + rng.uniform(-noise_m, noise_m))


def switchback(spacing_m: float, legs: int = 6, leg_m: float = 500.0) -> Course:
    """Parallel legs ``spacing_m`` apart, 10 m between points, joined by round hairpins."""
    xys: list[tuple[float, float]] = []
    r = spacing_m / 2
    for j in range(legs):
        xs = [i * 10.0 for i in range(int(leg_m / 10) + 1)]
        xys += [(x, j * spacing_m) for x in (xs[::-1] if j % 2 else xs)]
        if j < legs - 1:
            cx, sign = (leg_m, 1.0) if j % 2 == 0 else (0.0, -1.0)
            for k in range(1, 12):
                a = -math.pi / 2 + math.pi * k / 12
                xys.append((cx + sign * r * math.cos(a), j * spacing_m + r + r * math.sin(a)))
    return course_xy(xys)


def ride(course: Course, step_m: float, noise_m: float, seed: int, **window: float) -> float:
    """Ride the course with noisy fixes feeding back the progress; return the worst error."""
    rng, last, worst, d = random.Random(seed), None, 0.0, 0.0
    while d <= course.total_length_m:
        lat, lon = noisy(course, d, rng, noise_m)
        p = course.project(lat, lon, last_progress_m=last, **window)
        worst, last = max(worst, abs(p.progress_m - d)), p.progress_m
        d += step_m
    return worst


def naive_worst(course: Course, step_m: float, noise_m: float, seed: int) -> float:
    """Global nearest point (a window over the whole course): what the window prevents."""
    rng, worst, d = random.Random(seed), 0.0, 0.0
    while d <= course.total_length_m:
        lat, lon = noisy(course, d, rng, noise_m)
        p = course.project(lat, lon, last_progress_m=None, max_advance_m=course.total_length_m)
        worst = max(worst, abs(p.progress_m - d))
        d += step_m
    return worst


def test_switchback_40m_apart_stays_on_its_leg_with_the_default_window() -> None:
    course = switchback(40.0)
    assert ride(course, 5.0, 5.0, seed=1) < 30.0


def test_tight_switchback_needs_the_window_naive_nearest_jumps_legs() -> None:
    # Legs 8 m apart on the map (stacked hairpins on a steep face) with +-5 m GPS noise:
    # the nearest leg is often the wrong one. A rider at 5 m/s with 1 Hz fixes is kept on
    # the right leg by a window sized from speed x time, smaller than the ~60+ m along the
    # road to the neighbouring leg; the global nearest jumps whole legs (hundreds of m).
    course = switchback(8.0)
    assert ride(course, 5.0, 5.0, seed=1, max_advance_m=30.0, max_back_m=30.0) < 30.0
    assert naive_worst(course, 5.0, 5.0, seed=1) > 400.0


def circuit(length_m: float = 5_000.0, n: int = 500, laps: int = 10) -> Course:
    r = length_m / (2 * math.pi)
    xys = [
        (r * math.sin(2 * math.pi * i / n), r - r * math.cos(2 * math.pi * i / n)) for i in range(n)
    ]
    return course_xy(xys, laps=laps, name="Circuit")


def test_circuit_progress_increases_across_laps_and_finish_is_interpolated() -> None:
    course = circuit()
    assert course.points[-1] == course.points[0]  # closed automatically
    assert course.lap_length_m == pytest.approx(5_000.0, rel=1e-3)
    assert course.total_length_m == pytest.approx(10 * course.lap_length_m)
    speed, lap, t0 = 12.0, course.lap_length_m, 1_700_000_000_000  # m/s, m, ms
    last: float | None = None
    prev: tuple[int, float] | None = None
    finish_ms = None
    for second in range(int(course.finish_m / speed) + 3):
        d = second * speed
        lat, lon, _ = course.point_at(d if d <= course.finish_m else d - (course.laps - 1) * lap)
        p = course.project(lat, lon, last_progress_m=last)
        assert abs(p.progress_m - d) < 0.05
        assert p.on_course
        if last is not None:
            assert p.progress_m > last
        t = t0 + second * 1000
        if prev is not None and finish_ms is None:
            finish_ms = crossing_time_ms(prev[0], prev[1], t, p.progress_m, course.finish_m)
        prev, last = (t, p.progress_m), p.progress_m
    assert last is not None
    assert last > course.finish_m
    assert finish_ms is not None
    assert abs(finish_ms - (t0 + course.finish_m / speed * 1000)) <= 2


def test_first_fix_searches_only_the_start_of_lap_one() -> None:
    course = circuit()
    lat, lon, _ = course.point_at(100.0 + 3 * course.lap_length_m)
    first = course.project(lat, lon, last_progress_m=None)
    assert first.progress_m == pytest.approx(100.0, abs=0.01)
    far = course.point_at(2_500.0)
    p = course.project(far[0], far[1], last_progress_m=None)
    assert p.progress_m <= 2_000.0
    assert not p.on_course


def out_and_back() -> Course:
    out = [(x * 100.0, 0.0) for x in range(101)]
    back = [(x * 100.0, -3.0) for x in range(100, -1, -1)]
    return course_xy(out + back)


def test_out_and_back_return_is_not_mirrored() -> None:
    course = out_and_back()
    assert course.total_length_m == pytest.approx(20_003.0, abs=0.5)
    rng, last, d = random.Random(3), None, 0.0
    while d <= course.total_length_m:
        lat, lon = noisy(course, d, rng, 1.0)  # < 1.5 m: each side stays nearest its own
        p = course.project(lat, lon, last_progress_m=last)
        assert abs(p.progress_m - d) < 2.0
        if d > 10_010.0:
            assert p.progress_m > 10_000.0
        last = p.progress_m
        d += 10.0
    # Without a last progress the same fix on the way back is taken for the way out.
    lat, lon, _ = course.point_at(19_000.0)
    assert course.project(lat, lon, last_progress_m=None).progress_m == pytest.approx(
        1_003.0, abs=0.5
    )
    assert course.project(lat, lon, last_progress_m=18_990.0).progress_m == pytest.approx(
        19_000.0, abs=1e-6
    )


def test_crossing_time_ms_interpolates_exactly() -> None:
    assert crossing_time_ms(1_000, 100.0, 2_000, 200.0, 150.0) == 1_500
    assert crossing_time_ms(1_000, 100.0, 2_000, 200.0, 200.0) == 2_000
    assert crossing_time_ms(1_000, 100.0, 2_000, 200.0, 100.0) is None
    assert crossing_time_ms(1_000, 100.0, 2_000, 200.0, 200.5) is None
    assert crossing_time_ms(0, 0.0, 3_000, 30.0, 10.0) == 1_000
    big = 1_700_000_000_000
    assert crossing_time_ms(big, 49_990.0, big + 1_000, 50_030.0, 50_000.0) == big + 250
    assert crossing_time_ms(5, 10.0, 5, 20.0, 15.0) == 5
    assert crossing_time_ms(0, 30.0, 1_000, 20.0, 25.0) is None  # going back
    with pytest.raises(LocalProtocolError):
        crossing_time_ms(2_000, 0.0, 1_000, 10.0, 5.0)
    with pytest.raises(LocalProtocolError):
        crossing_time_ms(0, math.nan, 1_000, 10.0, 5.0)


def test_before_the_start_and_past_the_finish_progress_continues_straight() -> None:
    course = course_xy([(0.0, 0.0), (1_000.0, 0.0)])
    lat, lon = to_ll(-20.0, 0.5)
    for last in (None, 0.0):
        p = course.project(lat, lon, last_progress_m=last)
        assert p.progress_m == pytest.approx(-20.0, abs=0.01)
        assert p.offset_m == pytest.approx(0.5, abs=0.01)
    assert crossing_time_ms(0, -20.0, 1_000, 5.0, 0.0) == 800  # a time trial's start
    lat, lon = to_ll(1_030.0, 1.0)
    p = course.project(lat, lon, last_progress_m=990.0)
    assert p.progress_m == pytest.approx(1_030.0, abs=0.01)
    assert p.offset_m == pytest.approx(1.0, abs=0.01)
    assert crossing_time_ms(0, 990.0, 1_000, p.progress_m, course.finish_m) == pytest.approx(
        250, abs=1
    )


def test_off_course_and_window_clamping() -> None:
    course = course_xy([(0.0, 0.0), (10_000.0, 0.0)])
    lat, lon = to_ll(5_000.0, 150.0)
    p = course.project(lat, lon, last_progress_m=4_990.0)
    assert p.progress_m == pytest.approx(5_000.0, abs=0.01)
    assert p.offset_m == pytest.approx(150.0, abs=0.01)
    assert not p.on_course
    assert course.project(lat, lon, last_progress_m=4_990.0, off_course_m=200.0).on_course
    # A fix far ahead of the window is clamped to the window's end.
    lat, lon = to_ll(8_000.0, 0.0)
    assert course.project(lat, lon, last_progress_m=1_000.0).progress_m == pytest.approx(3_000.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_advance_m": -1.0},
        {"max_back_m": math.inf},
        {"off_course_m": math.nan},
        {"last_progress_m": math.inf},
    ],
)
def test_project_rejects_bad_arguments(kwargs: dict[str, float]) -> None:
    course = course_xy([(0.0, 0.0), (100.0, 0.0)])
    args: dict[str, float | None] = {"last_progress_m": None, **kwargs}
    with pytest.raises(LocalProtocolError):
        course.project(LAT0, LON0, **args)  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError):
        course.project(math.nan, LON0, last_progress_m=None)


def test_point_at_interpolates_and_wraps_laps() -> None:
    course = Course.from_points(
        [(*to_ll(0, 0), 100.0), (*to_ll(1_000, 0), 200.0), (*to_ll(1_000, 1_000), None)],
        laps=1,
    )
    lat, lon, ele = course.point_at(250.0)
    assert to_xy(lat, lon) == pytest.approx((250.0, 0.0), abs=0.01)
    assert ele == pytest.approx(125.0)
    assert course.point_at(1_500.0)[2] == 200.0  # one end without elevation
    assert course.point_at(0.0) == course.points[0]
    assert course.point_at(course.total_length_m)[:2] == pytest.approx(course.points[-1][:2])
    loop = circuit(laps=3)
    assert loop.point_at(1_234.5) == pytest.approx(loop.point_at(1_234.5 + 2 * loop.lap_length_m))
    for bad in (-0.1, course.total_length_m + 1, math.nan):
        with pytest.raises(LocalProtocolError):
            course.point_at(bad)


def test_cleaning_validation_and_properties() -> None:
    a, b = to_ll(0, 0), to_ll(100, 0)
    course = Course.from_points([(*a, None), (*a, None), (*b, 5.0), (*b, 6.0)], name="Short")
    assert len(course.points) == 2  # consecutive duplicates dropped
    assert course.cumulative_m == (0.0, pytest.approx(100.0, abs=0.01))
    assert course.lap_length_m == course.total_length_m == course.finish_m
    assert course.bounds == Bounds(a[0], a[1], b[0], b[1])
    assert course.lap_length_m == pytest.approx(100.0, abs=0.01)
    assert "Short" in repr(course)
    bad_inputs: list[tuple[list[object], dict[str, object]]] = [
        ([a], {}),
        ([a, a], {}),
        ([(91.0, 0.0), b], {}),
        ([(0.0, 181.0), b], {}),
        ([(math.nan, 0.0), b], {}),
        ([("1", 0.0), b], {}),
        ([(True, 0.0), b], {}),
        ([(1.0,), b], {}),
        ([a, b], {"laps": 0}),
        ([a, b], {"laps": 201}),
        ([a, to_ll(1_000, 0)], {"laps": 2}),  # not a closed circuit
        ([a, b], {"name": "bad\x00name"}),
        ([a, b], {"checkpoints": [Checkpoint("Far", "sprint", 500.0)]}),
        ([a, b], {"checkpoints": [Checkpoint("A", "feed", 10.0), Checkpoint("A", "feed", 20.0)]}),
        ([a, b], {"checkpoints": [Checkpoint("Line", "finish", 50.0)]}),
    ]
    for points, kwargs in bad_inputs:
        with pytest.raises(CourseError):
            Course.from_points(points, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "args",
    [
        ("", "sprint", 1.0, None),
        ("X", "kom", 1.0, None),
        ("X", "sprint", -1.0, None),
        ("X", "sprint", math.inf, None),
        ("X", "sprint", 10.0, 20.0),
        ("X", "climb", 10.0, 5.0),
        (3, "climb", 10.0, None),
    ],
)
def test_checkpoint_validation(args: tuple[object, ...]) -> None:
    with pytest.raises(CourseError):
        Checkpoint(*args)  # type: ignore[arg-type]


def test_elevation_gain_ignores_noise_below_the_hysteresis() -> None:
    flat = [(*to_ll(i * 10.0, 0), 100.0 + (0.4 if i % 2 else -0.4)) for i in range(100)]
    assert Course.from_points(flat).elevation_gain_m == 0.0
    climb = [(*to_ll(i * 10.0, 0), 100.0 + i * 0.5 + (0.3 if i % 2 else 0.0)) for i in range(101)]
    assert Course.from_points(climb).elevation_gain_m == pytest.approx(50.0, abs=1.0)
    assert Course.from_points([(*to_ll(0, 0), None), (*to_ll(9, 0), None)]).elevation_gain_m is None
    loop = circuit(laps=4)
    assert loop.elevation_gain_m is None
    hill = [
        (*to_ll(x, y), 10.0 * math.sin(i / 10))
        for i, (x, y) in enumerate(
            [
                (100 * math.sin(2 * math.pi * i / 63), 100 * math.cos(2 * math.pi * i / 63))
                for i in range(63)
            ]
        )
    ]
    three = Course.from_points(hill, laps=3)
    assert three.lap_elevation_gain_m is not None
    assert three.elevation_gain_m is not None
    assert three.lap_elevation_gain_m == pytest.approx(20.0, abs=1.5)
    assert three.elevation_gain_m == pytest.approx(3 * three.lap_elevation_gain_m)


def test_dict_round_trip_through_json() -> None:
    course = Course.from_points(
        [(*to_ll(x, 0), 100.0 + x / 100) for x in range(0, 5_001, 250)]
        + [(*to_ll(5_000, 50), None)],
        checkpoints=[
            Checkpoint("Feed", "feed", 1_000),
            Checkpoint("Col", "climb", 2_000.0, 4_000.0),
            Checkpoint("Sprint", "sprint", 0.0),
        ],
        name="Étape 17",
    )
    assert [c.name for c in course.checkpoints] == ["Sprint", "Feed", "Col"]
    again = Course.from_dict(json.loads(json.dumps(course.to_dict())))
    assert again == course
    assert again.cumulative_m == course.cumulative_m
    assert again.checkpoints[1].distance_m == 1_000.0
    loop = circuit(laps=5)
    assert Course.from_dict(json.loads(json.dumps(loop.to_dict()))) == loop


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(version=2),
        lambda d: d.update(points="x"),
        lambda d: d.update(points=[[1.0, 2.0]]),
        lambda d: d.update(laps="3"),
        lambda d: d.update(checkpoints=[{"name": "A"}]),
        lambda d: d.update(checkpoints=[{"name": "A", "kind": "feed", "distance_m": 1, "x": 1}]),
        lambda d: d.update(checkpoints=["A"]),
    ],
)
def test_from_dict_rejects_malformed_data(mutate: object) -> None:
    data = course_xy([(0.0, 0.0), (100.0, 0.0)]).to_dict()
    mutate(data)  # type: ignore[operator]
    with pytest.raises(CourseError):
        Course.from_dict(data)
    with pytest.raises(CourseError):
        Course.from_dict([])  # type: ignore[arg-type]


def walk_xy(walk: list[tuple[float, float]], *, smooth: bool) -> list[tuple[float, float]]:
    """A random walk in metres: absolute headings, or turns of at most 45 degrees (smooth)."""
    x = y = heading = 0.0
    xys = [(x, y)]
    for value, length in walk:
        heading = heading + (value - 180.0) / 4 if smooth else value
        x += length * math.sin(math.radians(heading))
        y += length * math.cos(math.radians(heading))
        xys.append((x, y))
    return xys


walks = st.lists(st.tuples(st.floats(0.0, 360.0), st.floats(5.0, 800.0)), min_size=1, max_size=25)
long_walks = st.lists(  # many pruning blocks of 16 segments
    st.tuples(st.floats(0.0, 360.0), st.floats(5.0, 300.0)), min_size=1, max_size=120
)


@settings(derandomize=True, database=None, max_examples=150, deadline=None)
@given(
    walk=walks,
    lat0=st.floats(-70.0, 70.0),
    lon0=st.floats(-180.0, 180.0),
    laps=st.integers(1, 3),
    fraction=st.floats(0.0, 1.0),
    jitter=st.floats(-0.5, 0.5),
)
def test_point_at_then_project_round_trips(
    walk: list[tuple[float, float]],
    lat0: float,
    lon0: float,
    laps: int,
    fraction: float,
    jitter: float,
) -> None:
    xys = walk_xy(walk, smooth=False)
    if laps > 1:
        xys.append((0.0, 0.0))
    points = []
    for px, py in xys:
        lat, lon = to_ll(px, py, lat0, lon0)
        points.append((lat, (lon + 180.0) % 360.0 - 180.0, None))  # may cross 180 degrees
    course = Course.from_points(points, laps=laps)
    truth = fraction * course.total_length_m
    lat, lon, _ = course.point_at(truth)
    p = course.project(lat, lon, last_progress_m=truth + jitter)
    assert abs(p.progress_m - truth) <= 1.0
    assert p.offset_m < 0.01


def test_many_fixes_on_a_long_detailed_course() -> None:
    # 100 km, 10,000 points; 10,000 noisy fixes, fed back as a relay would. No timing here.
    xys = [(i * 9.98, 200.0 * math.sin(i / 50.0)) for i in range(10_000)]
    course = course_xy(xys)
    rng, last = random.Random(7), None
    for i in range(10_000):
        d = i * course.total_length_m / 10_000
        lat, lon = noisy(course, d, rng, 4.0)
        p = course.project(lat, lon, last_progress_m=last)
        assert abs(p.progress_m - d) < 15.0
        last = p.progress_m


@settings(derandomize=True, database=None, max_examples=150, deadline=None)
@given(
    walk=long_walks,
    smooth=st.booleans(),
    laps=st.integers(1, 3),
    fraction=st.floats(-0.05, 1.05),
    off=st.tuples(*[st.floats(-5.0, 5.0) | st.floats(-300.0, 300.0)] * 2),
    last=st.none() | st.floats(-500.0, 60_000.0),
    window=st.tuples(st.floats(0.0, 5_000.0), st.floats(0.0, 1_000.0)),
)
def test_pruned_search_equals_exhaustive_search(
    walk: list[tuple[float, float]],
    smooth: bool,
    laps: int,
    fraction: float,
    off: tuple[float, float],
    last: float | None,
    window: tuple[float, float],
) -> None:
    xys = walk_xy(walk, smooth=smooth)
    if laps > 1:
        xys.append((0.0, 0.0))
    pruned = course_xy(xys, laps=laps)
    with mock.patch.object(course_module, "_BLOCK", 10**9):
        exhaustive = course_xy(xys, laps=laps)
        d = min(max(fraction * pruned.total_length_m, 0.0), pruned.total_length_m)
        px, py = to_xy(*pruned.point_at(d)[:2])
        lat, lon = to_ll(px + off[0], py + off[1])
        kwargs = {"last_progress_m": last, "max_advance_m": window[0], "max_back_m": window[1]}
        want = exhaustive.project(lat, lon, **kwargs)
    got = pruned.project(lat, lon, **kwargs)
    assert got.offset_m == pytest.approx(want.offset_m, abs=1e-6)
    if got.offset_m > 0.01:  # not a 1 mm tie between two parts of the course
        assert got.progress_m == pytest.approx(want.progress_m, abs=1e-6)


def test_course_still_exports_what_moved_to_its_sibling_modules() -> None:
    import sync_protocol.checkpoint as checkpoint_module
    import sync_protocol.course_points as points_module

    for name in course_module.__all__:
        assert hasattr(course_module, name), name
    assert course_module.Checkpoint is checkpoint_module.Checkpoint
    assert course_module.crossing_time_ms is checkpoint_module.crossing_time_ms
    assert course_module.CHECKPOINT_KINDS is checkpoint_module.CHECKPOINT_KINDS
    assert course_module.Point is points_module.Point
    assert (course_module.MIN_ELEVATION_M, course_module.MAX_ELEVATION_M) == (-1_000.0, 10_000.0)
    for module in (course_module, checkpoint_module, points_module):
        assert module.__file__ is not None
        with open(module.__file__, encoding="utf-8") as source:
            assert len(source.readlines()) < 400, module.__name__


def test_checkpoints_are_checked_against_the_finish() -> None:
    from sync_protocol.checkpoint import check_checkpoints

    sprint = Checkpoint("Sprint", "sprint", 500.0)
    finish = Checkpoint("Finish", "finish", 1_000.0)
    assert check_checkpoints([finish, sprint], 1_000.0) == (sprint, finish)
    with pytest.raises(CourseError, match="beyond the finish"):
        check_checkpoints([Checkpoint("Far", "feed", 1_200.0)], 1_000.0)
    with pytest.raises(CourseError, match="two checkpoints are named"):
        check_checkpoints([sprint, sprint], 1_000.0)
    with pytest.raises(CourseError, match="not at the finish line"):
        check_checkpoints([Checkpoint("Finish", "finish", 900.0)], 1_000.0)
    with pytest.raises(CourseError, match="sequence of Checkpoint"):
        check_checkpoints(sprint, 1_000.0)  # type: ignore[arg-type]
