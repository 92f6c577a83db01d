"""The points of a course: their validation, cleaning and elevation gain.

Pure functions, no I/O. :func:`clean_points` turns raw (lat, lon[, ele]) items into
checked points with consecutive duplicates dropped, plus the haversine length of each
segment; :func:`gain_with_hysteresis` sums climbing with a hysteresis. The names here are
re-exported by :mod:`sync_protocol.course`.
"""

from __future__ import annotations

from collections.abc import Iterable

from .checkpoint import check_number
from .errors import CourseError
from .geo import haversine_m

Point = tuple[float, float, float | None]
"""(latitude in degrees, longitude in degrees, elevation in metres or None)."""

MAX_POINTS = 500_000
"""Most points one lap may have."""
DUPLICATE_M = 0.001
"""Consecutive points closer than this are duplicates and dropped."""
ELEVATION_HYSTERESIS_M = 1.0
"""Elevation changes smaller than this are noise for :attr:`Course.elevation_gain_m`."""
MIN_ELEVATION_M, MAX_ELEVATION_M = -1_000.0, 10_000.0
"""Plausible elevations; anything outside is a broken file, not a road."""


def clean_points(raw: Iterable[object]) -> tuple[list[Point], list[float]]:
    """Validate and convert points, drop consecutive duplicates; also the segment lengths.

    Raises CourseError for a malformed or implausible point, more than
    :data:`MAX_POINTS` points, or fewer than two distinct ones.
    """
    points: list[Point] = []
    lengths: list[float] = []
    for index, item in enumerate(raw):
        if index >= MAX_POINTS:
            raise CourseError(f"course has more than {MAX_POINTS:,} points; simplify it")
        if not isinstance(item, tuple | list) or len(item) not in (2, 3):
            raise CourseError(f"point {index} must be (lat, lon) or (lat, lon, ele): {item!r}")
        lat = check_number(item[0], f"point {index} latitude")
        lon = check_number(item[1], f"point {index} longitude")
        if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
            raise CourseError(f"point {index} ({lat}, {lon}) is outside -90..90, -180..180")
        ele = None
        if len(item) == 3 and item[2] is not None:
            ele = check_number(item[2], f"point {index} elevation")
            if not MIN_ELEVATION_M <= ele <= MAX_ELEVATION_M:
                raise CourseError(f"point {index} elevation {ele} m is not plausible")
        if points:
            length = haversine_m(points[-1][0], points[-1][1], lat, lon)
            if length < DUPLICATE_M:
                continue
            lengths.append(length)
        points.append((lat, lon, ele))
    if len(points) < 2:
        raise CourseError(f"a course needs at least 2 distinct points, got {len(points)}")
    return points, lengths


def wrap_lon(dlon: float) -> float:
    """A longitude difference brought into -180..180 (across the antimeridian)."""
    return dlon - 360.0 if dlon > 180.0 else dlon + 360.0 if dlon < -180.0 else dlon


def gain_with_hysteresis(elevations: Iterable[float | None]) -> float | None:
    """Sum of climbs with a hysteresis, so noise below the threshold counts nothing.

    None when no elevation is known.
    """
    gain, ref = 0.0, None
    for ele in elevations:
        if ele is None:
            continue
        if ref is None or ele < ref - ELEVATION_HYSTERESIS_M:
            ref = ele
        elif ele >= ref + ELEVATION_HYSTERESIS_M:
            gain += ele - ref
            ref = ele
    return None if ref is None else gain
