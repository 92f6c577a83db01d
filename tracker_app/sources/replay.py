"""Replaying a recorded track (GPX, FIT): the points, and the source that paces them."""

from __future__ import annotations

import math
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, replace

from sync_protocol.geo import haversine_m

from ._base import Closed, Pacer, SourceBase
from .clock import Clock
from .reading import Quality, Reading, SourceError

MAX_GAP_FOR_MOTION_MS = 30_000
"""Speed and course are derived from the previous point only if it is this recent."""


@dataclass(frozen=True, slots=True)
class RecordedPoint:
    """One point of a recorded track, as the file has it."""

    t_ms: int | None
    """UTC time of the point; None if the file gives none (the point is skipped)."""
    lat: float | None
    """Latitude in degrees; None for a record without a position (no fix)."""
    lon: float | None
    """Longitude in degrees."""
    ele_m: float | None = None
    """Elevation in metres."""
    speed_ms: float | None = None
    """Speed in metres per second (derived from the previous point when absent)."""
    heading_deg: float | None = None
    """Course in degrees from true north (derived from the previous point when absent)."""
    hacc_m: float | None = None
    """Horizontal accuracy in metres."""
    satellites: int | None = None
    """Satellites used."""

    @property
    def has_fix(self) -> bool:
        """True when the point has a position."""
        return self.lat is not None and self.lon is not None


def bearing_deg(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Initial great-circle bearing from the first point to the second, 0..360 degrees."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dl = math.radians(lon2 - lon1)
    y = math.sin(dl) * math.cos(p2)
    x = math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl)
    return math.degrees(math.atan2(y, x)) % 360.0


def with_motion(points: Sequence[RecordedPoint]) -> list[RecordedPoint]:
    """The points, with speed and course derived from the previous point where missing."""
    out: list[RecordedPoint] = []
    prev: tuple[int, float, float] | None = None  # time, lat, lon of the last fix
    for point in points:
        t_ms, lat, lon = point.t_ms, point.lat, point.lon
        if t_ms is None or lat is None or lon is None:
            out.append(point)
            continue
        if (
            prev is not None
            and 0 < t_ms - prev[0] <= MAX_GAP_FOR_MOTION_MS
            and (point.speed_ms is None or point.heading_deg is None)
        ):
            metres = haversine_m(prev[1], prev[2], lat, lon)
            heading = bearing_deg(prev[1], prev[2], lat, lon) if metres else None
            point = replace(
                point,
                speed_ms=metres * 1000 / (t_ms - prev[0])
                if point.speed_ms is None
                else point.speed_ms,
                heading_deg=heading if point.heading_deg is None else point.heading_deg,
            )
        out.append(point)
        prev = (t_ms, lat, lon)
    return out


class ReplaySource(SourceBase):
    """Replays recorded points at their own pace, ``speed`` times faster. Readings are
    stamped with the clock's time (the recorded intervals kept) unless ``keep_times``."""

    def __init__(
        self,
        spec: str,
        points: Sequence[RecordedPoint],
        clock: Clock,
        *,
        speed: float,
        keep_times: bool,
    ) -> None:
        super().__init__(spec, clock)
        if not any(p.t_ms is not None and p.has_fix for p in points):
            raise SourceError(f"{spec}: no timed positions to replay")
        self._points = with_motion(points)
        self._pacer = Pacer(clock, speed=speed, keep_times=keep_times)

    async def readings(self) -> AsyncGenerator[Reading, None]:
        """The recorded fixes, paced; ends after the last one."""
        self._start()
        self._update(connected=True)
        try:
            for point in self._points:
                if point.t_ms is None:
                    self._count("invalid")
                    continue
                await self._sleep_until(self._pacer.due_ms(point.t_ms))
                if not point.has_fix:
                    self._no_fix()
                    continue
                reading = self._reading(
                    t_ms=self._pacer.stamp(point.t_ms),
                    lat=point.lat,
                    lon=point.lon,
                    ele_m=point.ele_m,
                    speed_ms=point.speed_ms,
                    heading_deg=point.heading_deg,
                    hacc_m=point.hacc_m,
                    quality=Quality.FIX_2D if point.ele_m is None else Quality.FIX_3D,
                    satellites=point.satellites,
                )
                if reading is not None:
                    yield reading
        except Closed:
            return
        finally:
            self._update(connected=False)
