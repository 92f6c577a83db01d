"""A GPS fix as the tracker records it, with the validation every hop applies.

Units are integers chosen for the wire: 1e-7 degree for latitude and longitude (about
1 cm), decimetres for elevation and horizontal accuracy, centimetres per second for speed
and tenths of a degree for heading. ``t_ms`` is UTC in milliseconds since the Unix epoch.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

from .errors import InvalidFixError
from .geo import haversine_m

MIN_T_MS = 946_684_800_000
"""2000-01-01T00:00:00Z: no race fix is older (a GPS week-rollover bug is)."""
MAX_T_MS = 4_102_444_800_000
"""2100-01-01T00:00:00Z."""
MAX_SEQ = (1 << 63) - 1
MAX_SPEED_CMS = 4_167
"""150 km/h. Faster is implausible on a bicycle (descents top out near 130 km/h)."""
MAX_HACC_DM = 100_000
"""A 10 km accuracy radius; anything worse is no fix at all."""
MIN_ELE_DM, MAX_ELE_DM = -5_000, 90_000
"""-500 m (Dead Sea shore and sensor error) to 9,000 m."""

_CANONICAL = struct.Struct(">QqiiiHHI")
_INT_FIELDS = ("seq", "t_ms", "lat_e7", "lon_e7", "ele_dm", "speed_cms", "heading_dd", "hacc_dm")


@dataclass(frozen=True, slots=True)
class Fix:
    """One position of one device, immutable once recorded and signed."""

    seq: int
    """Per-device sequence number, gapless from 1."""
    t_ms: int
    """UTC time of the fix, milliseconds since the Unix epoch."""
    lat_e7: int
    """Latitude in 1e-7 degrees (-900000000..900000000)."""
    lon_e7: int
    """Longitude in 1e-7 degrees (-1800000000..1800000000)."""
    ele_dm: int = 0
    """Elevation above mean sea level in decimetres."""
    speed_cms: int = 0
    """Ground speed in centimetres per second."""
    heading_dd: int = 0
    """Course over ground in tenths of a degree, 0..3599 (0 = north)."""
    hacc_dm: int = 50
    """Horizontal accuracy (1-sigma radius) in decimetres."""

    def __post_init__(self) -> None:
        # One combined test on the hot path (every decoded fix comes through here); the
        # field-by-field explanation runs only when it fails.
        if not (
            type(self.seq) is int
            and type(self.t_ms) is int
            and type(self.lat_e7) is int
            and type(self.lon_e7) is int
            and type(self.ele_dm) is int
            and type(self.speed_cms) is int
            and type(self.heading_dd) is int
            and type(self.hacc_dm) is int
            and 1 <= self.seq <= MAX_SEQ
            and MIN_T_MS <= self.t_ms <= MAX_T_MS
            and -900_000_000 <= self.lat_e7 <= 900_000_000
            and -1_800_000_000 <= self.lon_e7 <= 1_800_000_000
            and MIN_ELE_DM <= self.ele_dm <= MAX_ELE_DM
            and 0 <= self.speed_cms <= MAX_SPEED_CMS
            and 0 <= self.heading_dd < 3600
            and 0 <= self.hacc_dm <= MAX_HACC_DM
        ):
            self._explain()

    def _explain(self) -> None:
        """Raise InvalidFixError naming the first field out of range."""
        for name in _INT_FIELDS:
            if type(getattr(self, name)) is not int:
                raise InvalidFixError(f"fix field {name} must be an integer")
        _check(1 <= self.seq <= MAX_SEQ, self, "seq", "must be at least 1")
        _check(MIN_T_MS <= self.t_ms <= MAX_T_MS, self, "t_ms", "is not between 2000 and 2100")
        _check(abs(self.lat_e7) <= 900_000_000, self, "lat_e7", "is beyond ±90°")
        _check(abs(self.lon_e7) <= 1_800_000_000, self, "lon_e7", "is beyond ±180°")
        _check(MIN_ELE_DM <= self.ele_dm <= MAX_ELE_DM, self, "ele_dm", "is not in -500..9000 m")
        _check(0 <= self.speed_cms <= MAX_SPEED_CMS, self, "speed_cms", "is not in 0..150 km/h")
        _check(0 <= self.heading_dd < 3600, self, "heading_dd", "is not in 0..359.9°")
        _check(0 <= self.hacc_dm <= MAX_HACC_DM, self, "hacc_dm", "is not in 0..10 km")

    @classmethod
    def from_degrees(
        cls,
        seq: int,
        t_ms: int,
        lat: float,
        lon: float,
        *,
        ele_m: float = 0.0,
        speed_ms: float = 0.0,
        heading_deg: float = 0.0,
        hacc_m: float = 5.0,
    ) -> Fix:
        """Build a fix from floating-point readings (as a GPS reports them)."""
        values = {
            "lat": lat,
            "lon": lon,
            "ele_m": ele_m,
            "speed_ms": speed_ms,
            "heading_deg": heading_deg,
            "hacc_m": hacc_m,
        }
        for name, value in values.items():
            if not math.isfinite(value):
                raise InvalidFixError(f"fix {seq}: {name} is {value}, not a finite number")
        return cls(
            seq=seq,
            t_ms=t_ms,
            lat_e7=round(lat * 1e7),
            lon_e7=round(lon * 1e7),
            ele_dm=round(ele_m * 10),
            speed_cms=round(speed_ms * 100),
            heading_dd=round(heading_deg * 10) % 3600,
            hacc_dm=round(hacc_m * 10),
        )

    @property
    def lat(self) -> float:
        """Latitude in degrees."""
        return self.lat_e7 / 1e7

    @property
    def lon(self) -> float:
        """Longitude in degrees."""
        return self.lon_e7 / 1e7

    def canonical(self) -> bytes:
        """The exact bytes hashed into the device's chain (fixed-width, big-endian)."""
        return _CANONICAL.pack(
            self.seq,
            self.t_ms,
            self.lat_e7,
            self.lon_e7,
            self.ele_dm,
            self.speed_cms,
            self.heading_dd,
            self.hacc_dm,
        )


def _check(ok: bool, fix: Fix, field: str, problem: str) -> None:
    if not ok:
        raise InvalidFixError(f"fix {fix.seq}: {field}={getattr(fix, field)} {problem}")


def check_follows(prev: Fix, fix: Fix) -> None:
    """Raise InvalidFixError unless ``fix`` can follow ``prev`` on the same device.

    Checks that the sequence is consecutive, time moves forward, and the implied speed
    between the two positions (less both accuracy radii) is possible on a bicycle:
    a teleport is rejected. Trackers run the same check before recording, so an honest
    device never signs a fix that a relay would refuse.
    """
    if fix.seq != prev.seq + 1:
        raise InvalidFixError(
            f"fix {fix.seq} does not follow fix {prev.seq}", reason="out-of-order"
        )
    if fix.t_ms <= prev.t_ms:
        raise InvalidFixError(
            f"fix {fix.seq}: time goes backwards or stands still "
            f"({fix.t_ms} ms after {prev.t_ms} ms)",
            reason="time-backwards",
        )
    distance = haversine_m(prev.lat, prev.lon, fix.lat, fix.lon)
    slack = (prev.hacc_dm + fix.hacc_dm) / 10
    implied_cms = max(0.0, distance - slack) * 100_000 / (fix.t_ms - prev.t_ms)
    if implied_cms > MAX_SPEED_CMS:
        raise InvalidFixError(
            f"fix {fix.seq}: moved {distance:.0f} m in {(fix.t_ms - prev.t_ms) / 1000:g} s "
            f"({implied_cms * 0.036:.0f} km/h), impossible on a bicycle",
            reason="implausible",
        )
