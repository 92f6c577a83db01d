"""The race course: its geometry, distances along it, and where a rider is on it.

Pure functions and data, no I/O. A :class:`Course` is one lap of points plus a number of
laps; every position along it is a *race distance* in metres, from 0 at the start to
:attr:`Course.finish_m` at the finish, counted across laps (lap 3 of a 5 km circuit starts
at 10,000 m). :meth:`Course.project` maps a GPS fix to a race distance, searching only a
window of race distance around the rider's previous progress, which is what keeps a rider
on the right leg of a switchback, the right lap of a circuit and the right direction of an
out-and-back. :func:`crossing_time_ms` interpolates when a checkpoint or the finish line
was crossed between two fixes.

Distances along the course are haversine; distances from a fix to the course use a local
equirectangular projection per segment (sub-millimetre error at bike-race scale).

Checkpoints and crossing times live in :mod:`sync_protocol.checkpoint`, point cleaning in
:mod:`sync_protocol.course_points`; both are re-exported here.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, cast

from .checkpoint import (
    CHECKPOINT_KINDS,
    FINISH_TOLERANCE_M,
    Checkpoint,
    check_checkpoints,
    check_name,
    crossing_time_ms,
)
from .course_points import (
    DUPLICATE_M,
    ELEVATION_HYSTERESIS_M,
    MAX_ELEVATION_M,
    MAX_POINTS,
    MIN_ELEVATION_M,
    Point,
    clean_points,
    gain_with_hysteresis,
)
from .course_points import wrap_lon as _wrap
from .errors import CourseError, LocalProtocolError
from .geo import EARTH_RADIUS_M, haversine_m

__all__ = [
    "CHECKPOINT_KINDS",
    "DICT_VERSION",
    "DUPLICATE_M",
    "ELEVATION_HYSTERESIS_M",
    "FINISH_TOLERANCE_M",
    "MAX_CIRCUIT_GAP_M",
    "MAX_ELEVATION_M",
    "MAX_LAPS",
    "MAX_POINTS",
    "MIN_ELEVATION_M",
    "Bounds",
    "Checkpoint",
    "Course",
    "Point",
    "Projection",
    "crossing_time_ms",
]

MAX_LAPS = 200
"""Most laps a course may have."""
MAX_CIRCUIT_GAP_M = 200.0
"""A multi-lap course must end within this distance of its start (it is then closed)."""
DICT_VERSION = 1
"""Version of the :meth:`Course.to_dict` format."""

_M_PER_DEG = EARTH_RADIUS_M * math.pi / 180.0
_BLOCK = 16  # segments per block of the projection's pruning bounds
_TIE_M2 = 1e-6  # squared distances this close are a tie (1 mm at the course line)
_FAR_M = 1e7  # windows are cut to this far before the start / past the finish


@dataclass(frozen=True, slots=True)
class Projection:
    """Where a fix lies on the course."""

    progress_m: float
    """Race distance along the course (across laps). Before the start line it is negative
    and past the finish line above :attr:`Course.finish_m`, along the straight extension
    of the first/last segment, so start and finish crossings can be interpolated."""
    offset_m: float
    """Distance in metres from the fix to the course line at that point."""
    on_course: bool
    """True when ``offset_m`` is at most the ``off_course_m`` the caller allowed."""


@dataclass(frozen=True, slots=True)
class Bounds:
    """The latitude/longitude box around a course, in degrees."""

    south: float
    """Smallest latitude."""
    west: float
    """Smallest longitude."""
    north: float
    """Largest latitude."""
    east: float
    """Largest longitude."""


@dataclass(frozen=True, slots=True, repr=False)
class Course:
    """A race course: one lap of points, a number of laps and its checkpoints.

    Build it with :meth:`from_points`, :meth:`from_dict` or :func:`~sync_protocol.gpx.
    course_from_gpx`. Construction validates everything and raises
    :class:`~sync_protocol.errors.CourseError`; consecutive duplicate points are dropped,
    and a multi-lap course whose end is not its start is closed with a last point equal to
    the first (the end must be within :data:`MAX_CIRCUIT_GAP_M` of the start).
    """

    points: tuple[Point, ...]
    """The points of one lap, (lat, lon, ele or None), cleaned (a circuit's last point is
    its first)."""
    laps: int = 1
    """Number of laps, 1..:data:`MAX_LAPS`."""
    checkpoints: tuple[Checkpoint, ...] = ()
    """Checkpoints, sorted by race distance."""
    name: str = ""
    """The course's name, for people."""
    cumulative_m: tuple[float, ...] = field(init=False, compare=False)
    """Distance along the lap at each point (first 0.0, last :attr:`lap_length_m`)."""
    elevation_gain_m: float | None = field(init=False, compare=False)
    """Climbing of the whole race (laps x one lap's), None when no point has an elevation."""
    bounds: Bounds = field(init=False, compare=False)
    """The box around the course."""
    _segs: tuple[tuple[float, float, float, float, float, float, float, float], ...] = field(
        init=False, compare=False
    )
    """Per segment: lat0, lon0, metres per degree of longitude, dx, dy (metres),
    1/(dx²+dy²), lap distance at its start, haversine length."""
    _blocks: tuple[tuple[float, float, float, float, float], ...] = field(init=False, compare=False)
    """Per block of segments: centre lat, lon, metres/degree lon, radius, metric ratio."""

    def __post_init__(self) -> None:
        if isinstance(self.points, str | bytes):
            raise CourseError("points must be a sequence of (lat, lon, ele) tuples")
        points, seg_len = clean_points(self.points)
        laps = self.laps
        if isinstance(laps, bool) or not isinstance(laps, int) or not 1 <= laps <= MAX_LAPS:
            raise CourseError(f"laps must be an integer in 1..{MAX_LAPS}, not {laps!r}")
        if laps > 1:
            gap = haversine_m(points[-1][0], points[-1][1], points[0][0], points[0][1])
            if gap > MAX_CIRCUIT_GAP_M:
                raise CourseError(
                    f"a course of {laps} laps must be a closed circuit, but its end is "
                    f"{gap:,.0f} m from its start (at most {MAX_CIRCUIT_GAP_M:,.0f} m)"
                )
            if gap >= DUPLICATE_M:
                points.append(points[0])
                seg_len.append(gap)
        check_name(self.name, "course name")
        cumulative = [0.0]
        for length in seg_len:
            cumulative.append(cumulative[-1] + length)
        if not cumulative[-1] > 0:
            raise CourseError("course length must be greater than zero")
        set_ = object.__setattr__
        set_(self, "points", tuple(points))
        set_(self, "cumulative_m", tuple(cumulative))
        set_(self, "checkpoints", check_checkpoints(self.checkpoints, self.total_length_m))
        lap_gain = gain_with_hysteresis(p[2] for p in points)
        set_(self, "elevation_gain_m", None if lap_gain is None else lap_gain * laps)
        lats, lons = [p[0] for p in points], [p[1] for p in points]
        set_(self, "bounds", Bounds(min(lats), min(lons), max(lats), max(lons)))
        self._index()

    def _index(self) -> None:
        """Precompute the per-segment projection data and the pruning blocks."""
        pts, cum, segs, blocks = self.points, self.cumulative_m, [], []
        for i, ((lat0, lon0, _), (lat1, lon1, _)) in enumerate(pairwise(pts)):
            kx = _M_PER_DEG * math.cos(math.radians((lat0 + lat1) / 2))
            dx, dy = _wrap(lon1 - lon0) * kx, (lat1 - lat0) * _M_PER_DEG
            inv = 1.0 / (dx * dx + dy * dy) if dx or dy else 0.0
            segs.append((lat0, lon0, kx, dx, dy, inv, cum[i], cum[i + 1] - cum[i]))
        for first in range(0, len(segs), _BLOCK):
            last = min(first + _BLOCK, len(segs))  # vertices first..last
            vertices = pts[first : last + 1]
            lat_c = (min(p[0] for p in vertices) + max(p[0] for p in vertices)) / 2
            rel = [_wrap(p[1] - pts[first][1]) for p in vertices]
            lon_c = pts[first][1] + (min(rel) + max(rel)) / 2
            kx_c = _M_PER_DEG * math.cos(math.radians(lat_c))
            radius = max(
                math.hypot(_wrap(p[1] - lon_c) * kx_c, (p[0] - lat_c) * _M_PER_DEG)
                for p in vertices
            )
            ratio = min([1.0] + [s[2] / kx_c for s in segs[first:last]]) if kx_c > 0 else 0.0
            blocks.append((lat_c, lon_c, kx_c, radius * (1 + 1e-9) + 1e-6, ratio))
        object.__setattr__(self, "_segs", tuple(segs))
        object.__setattr__(self, "_blocks", tuple(blocks))

    @classmethod
    def from_points(
        cls,
        points: Iterable[Sequence[float | None]],
        *,
        laps: int = 1,
        checkpoints: Iterable[Checkpoint] = (),
        name: str = "",
    ) -> Course:
        """Build a course from (lat, lon, ele or None) points of one lap."""
        return cls(
            points=cast("tuple[Point, ...]", tuple(points)),
            laps=laps,
            checkpoints=tuple(checkpoints),
            name=name,
        )

    def __repr__(self) -> str:
        return (
            f"Course(name={self.name!r}, laps={self.laps}, points={len(self.points)}, "
            f"lap_length_m={self.lap_length_m:.1f}, checkpoints={len(self.checkpoints)})"
        )

    @property
    def lap_length_m(self) -> float:
        """Length of one lap in metres."""
        return self.cumulative_m[-1]

    @property
    def total_length_m(self) -> float:
        """Length of the race: lap length x laps."""
        return self.cumulative_m[-1] * self.laps

    @property
    def lap_elevation_gain_m(self) -> float | None:
        """Climbing of one lap, None when no point has an elevation."""
        gain = self.elevation_gain_m
        return None if gain is None else gain / self.laps

    @property
    def finish_m(self) -> float:
        """Race distance of the finish line (= :attr:`total_length_m`)."""
        return self.cumulative_m[-1] * self.laps

    def point_at(self, distance_m: float) -> Point:
        """The (lat, lon, ele) at a race distance in 0..finish, interpolated (laps wrap)."""
        total = self.total_length_m
        if not (math.isfinite(distance_m) and 0.0 <= distance_m <= total):
            raise LocalProtocolError(f"point_at: distance {distance_m!r} is outside 0..{total}")
        lap_len, cum = self.cumulative_m[-1], self.cumulative_m
        lap = min(int(distance_m // lap_len), self.laps - 1)
        along = distance_m - lap * lap_len
        i = min(max(bisect_right(cum, along) - 1, 0), len(cum) - 2)
        f = min(max((along - cum[i]) / self._segs[i][7], 0.0), 1.0)
        (lat0, lon0, e0), (lat1, lon1, e1) = self.points[i], self.points[i + 1]
        lon = _wrap(lon0 + f * _wrap(lon1 - lon0))
        ele = e0 if e1 is None else e1 if e0 is None else e0 + f * (e1 - e0)
        return (lat0 + f * (lat1 - lat0), lon, ele)

    def project(
        self,
        lat: float,
        lon: float,
        *,
        last_progress_m: float | None,
        max_advance_m: float = 2_000.0,
        max_back_m: float = 200.0,
        off_course_m: float = 100.0,
    ) -> Projection:
        """Where the fix (lat, lon) is on the course: the nearest point within a window.

        Only the segments within the race distances ``[last_progress_m - max_back_m,
        last_progress_m + max_advance_m]`` are searched; the nearest point wins and on a tie
        (within 1 mm) the one closest to ``last_progress_m``. Without a last progress (a
        rider's first fix) the window is ``[-max_back_m, max_advance_m]``: the start of lap
        1 only, never a later lap or the way back of an out-and-back.

        Size ``max_advance_m`` from the time since the last fix (top speed x elapsed time +
        GPS error): where two legs run closer together than the GPS error (tight
        switchbacks), only a window shorter than the road between them tells them apart.
        Laps are windows of race distance too, so the right lap is always the one near
        ``last_progress_m``. Progress is not made monotonic here: the caller decides.
        Before the start (negative) and past the finish, progress follows the straight
        extension of the first/last segment, so crossings of both lines interpolate.
        """
        if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):  # also refuses NaN
            raise LocalProtocolError(f"project: ({lat!r}, {lon!r}) is not a valid position")
        if not all(math.isfinite(v) and v >= 0 for v in (max_advance_m, max_back_m, off_course_m)):
            raise LocalProtocolError(
                "project: max_advance_m, max_back_m and off_course_m must be finite and >= 0"
            )
        if last_progress_m is None:
            lo, hi, ref = -max_back_m, max_advance_m, 0.0
        elif math.isfinite(last_progress_m):
            ref = last_progress_m
            lo, hi = ref - max_back_m, ref + max_advance_m
        else:
            raise LocalProtocolError(f"project: last_progress_m {last_progress_m!r} is infinite")
        cum, segs, blocks = self.cumulative_m, self._segs, self._blocks
        lap_len, last_lap, last_seg = cum[-1], self.laps - 1, len(cum) - 2
        lo = min(max(lo, -_FAR_M), lap_len * self.laps)
        hi = min(max(hi, lo), lap_len * self.laps + _FAR_M)
        work: list[tuple[float, float, int, int, float, float, int, int]] = []
        first_lap = max(0, min(int(lo // lap_len), last_lap))
        for lap in range(first_lap, min(int(hi // lap_len), last_lap) + 1):
            base = lap * lap_len
            a, b = lo - base, hi - base
            # The first/last segment of the race extends straight before the start/after
            # the finish: these are the segments whose t may leave 0..1 (-1: none).
            ext_lo = 0 if lap == 0 and a < 0 else -1
            ext_hi = last_seg if lap == last_lap and b > lap_len else -1
            a, b = a if ext_lo == 0 else max(a, 0.0), b if ext_hi >= 0 else min(b, lap_len)
            i0 = min(max(bisect_right(cum, a) - 1, 0), last_seg)
            i1 = min(max(bisect_left(cum, min(b, lap_len)) - 1, i0), last_seg)
            for block in range(i0 // _BLOCK, i1 // _BLOCK + 1):
                lat_c, lon_c, kx_c, radius, ratio = blocks[block]
                first = max(i0, block * _BLOCK)
                last = min(i1, block * _BLOCK + _BLOCK - 1)
                if ext_lo == first or ext_hi == last:
                    bound = -1.0  # an extension leaves the block's circle
                else:
                    dist = math.hypot(_wrap(lon - lon_c) * kx_c, (lat - lat_c) * _M_PER_DEG)
                    bound = (dist - radius) * ratio
                work.append((bound, base, first, last, a, b, ext_lo, ext_hi))
        work.sort()
        best_d2, best_p, best_dp = math.inf, 0.0, math.inf
        for bound, base, first, last, a, b, ext_lo, ext_hi in work:
            if bound > 0 and bound * bound > best_d2 + _TIE_M2:
                break  # no point of this block (or any later one) can be as near
            for i in range(first, last + 1):
                lat0, lon0, kx, dx, dy, inv, c0, length = segs[i]
                dlon = lon - lon0
                if dlon > 180.0:
                    dlon -= 360.0
                elif dlon < -180.0:
                    dlon += 360.0
                x, y = dlon * kx, (lat - lat0) * _M_PER_DEG
                t = (x * dx + y * dy) * inv
                t_lo = (a - c0) / length if a > c0 or i == ext_lo else 0.0
                if t < t_lo:
                    t = t_lo
                else:
                    t_hi = (b - c0) / length if b < c0 + length or i == ext_hi else 1.0
                    if t > t_hi:
                        t = t_hi
                ex, ey = x - t * dx, y - t * dy
                d2 = ex * ex + ey * ey
                if d2 < best_d2 + _TIE_M2:
                    p = base + c0 + t * length
                    dp = abs(p - ref)
                    if d2 < best_d2 - _TIE_M2 or dp < best_dp:
                        best_d2, best_p, best_dp = d2, p, dp
        offset = math.sqrt(best_d2)
        return Projection(progress_m=best_p, offset_m=offset, on_course=offset <= off_course_m)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict; :meth:`from_dict` rebuilds an equal course."""
        return {
            "version": DICT_VERSION,
            "name": self.name,
            "laps": self.laps,
            "points": [list(p) for p in self.points],
            "checkpoints": [
                {"name": c.name, "kind": c.kind, "distance_m": c.distance_m, "end_m": c.end_m}
                for c in self.checkpoints
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Course:
        """Rebuild a course from :meth:`to_dict` output; CourseError when malformed."""
        if not isinstance(data, Mapping):
            raise CourseError(f"course data must be a mapping, not {type(data).__name__}")
        if data.get("version") != DICT_VERSION:
            raise CourseError(f"unsupported course data version {data.get('version')!r}")
        points, raw_cps = data.get("points"), data.get("checkpoints", [])
        if not isinstance(points, list) or not isinstance(raw_cps, list):
            raise CourseError("course data: points and checkpoints must be lists")
        keys, checkpoints = {"name", "kind", "distance_m", "end_m"}, []
        for raw in raw_cps:
            if not isinstance(raw, Mapping) or not keys - {"end_m"} <= set(raw) <= keys:
                raise CourseError(f"course data: malformed checkpoint {raw!r}")
            checkpoints.append(Checkpoint(**raw))
        return cls(
            points=tuple(points),
            laps=data.get("laps", 1),
            checkpoints=tuple(checkpoints),
            name=data.get("name", ""),
        )
