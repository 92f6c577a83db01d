"""NMEA 0183 sentences in, one fix per receiver epoch out (no I/O; pynmea2 parses).

A receiver reports each epoch (one instant) in several sentences: RMC (position, speed,
course, date), GGA (position, fix quality, satellites, HDOP, elevation), GSA (2D/3D, DOPs;
it carries no time) and, on some receivers, GST (error estimates). :class:`NmeaDecoder`
merges the sentences of an epoch and hands the epoch out as soon as it is complete (all
the timed sentence types of the previous epoch have arrived) or when the next epoch
starts, so a live receiver adds no delay. Sentences with a bad or missing checksum, or
that do not parse, are counted in :attr:`NmeaDecoder.bad_sentences` and skipped.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any

import pynmea2  # type: ignore[import-untyped]

from .reading import Quality

KNOT_MS = 1852 / 3600
UERE_M = 5.0
"""User equivalent range error: accuracy is estimated as HDOP times this when there is no GST."""
_DAY_MS = 86_400_000
_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
_NO_FIX_GGA = frozenset({0, 6, 7, 8})  # invalid, dead reckoning, manual input, simulator
_DGPS_GGA = frozenset({2, 4, 5})  # DGPS/SBAS, RTK fixed, RTK float
_TIMED = frozenset({"RMC", "GGA", "GST"})


@dataclass(frozen=True, slots=True)
class NmeaEpoch:
    """What the receiver said about one instant."""

    t_ms: int | None
    """UTC time of the epoch; None for a no-fix sentence without a time."""
    fix: bool
    """True when the receiver reported a valid position."""
    lat: float | None = None
    """Latitude in degrees."""
    lon: float | None = None
    """Longitude in degrees."""
    ele_m: float | None = None
    """Elevation above mean sea level (GGA), None for a 2D fix."""
    speed_ms: float | None = None
    """Speed over ground (RMC), metres per second."""
    heading_deg: float | None = None
    """Course over ground (RMC), degrees from true north."""
    hacc_m: float | None = None
    """1-sigma horizontal error: from GST, else HDOP times :data:`UERE_M`."""
    quality: Quality = Quality.NO_FIX
    """2D, 3D or DGPS when ``fix``."""
    satellites: int | None = None
    """Satellites in use (GGA)."""


@dataclass(slots=True)
class _Pending:
    tod_ms: int
    types: set[str] = field(default_factory=set)
    date: dt.date | None = None
    lat: float | None = None
    lon: float | None = None
    rmc_valid: bool | None = None
    rmc_mode: str | None = None
    gga_quality: int | None = None
    satellites: int | None = None
    hdop: float | None = None
    altitude: float | None = None
    speed_kn: float | None = None
    course: float | None = None
    gsa_mode: int | None = None
    gst: tuple[float, float] | None = None


class NmeaDecoder:
    """Feed it lines; it returns the epochs they complete. ``fallback_date`` dates the epochs
    of a receiver that sends no RMC (GGA has only the time of day)."""

    def __init__(self, fallback_date: dt.date) -> None:
        self.bad_sentences = 0
        """Sentences skipped: bad or missing checksum, garbled, not NMEA."""
        self._date = fallback_date
        self._pending: _Pending | None = None
        self._expected: frozenset[str] = frozenset()
        self._last_tod: int | None = None
        self._last_types: set[str] = set()
        self._gsa: tuple[int | None, float | None] | None = None

    def feed(self, line: str | bytes) -> list[NmeaEpoch]:
        """Take one line (with or without its line ending); return the epochs it completes."""
        if isinstance(line, bytes):
            try:
                line = line.decode("ascii")
            except UnicodeDecodeError:
                self.bad_sentences += 1
                return []
        line = line.strip()
        if not line or line.startswith("#"):  # blank lines, log comments (gpsd, gpsfake)
            return []
        try:
            return self._sentence(pynmea2.parse(line, check=True))
        except (ValueError, TypeError, AttributeError, IndexError):
            self.bad_sentences += 1
            return []

    def flush(self) -> list[NmeaEpoch]:
        """At the end of the input: the epoch still being assembled, if any."""
        return self._finish()

    def _sentence(self, msg: Any) -> list[NmeaEpoch]:
        kind = getattr(msg, "sentence_type", None)
        if kind == "GSA":
            mode, hdop = _int(msg.mode_fix_type), _float(msg.hdop)
            self._gsa = (mode, hdop)
            if self._pending is not None:
                self._pending.gsa_mode = mode
                self._pending.hdop = self._pending.hdop or hdop
            return []
        if kind not in _TIMED:
            return []  # GSV, VTG, GLL, TXT, proprietary: nothing a fix needs
        stamp = msg.timestamp  # pynmea2 gives the raw text when it cannot convert a field
        if stamp is not None and not isinstance(stamp, dt.time):
            raise ValueError(f"bad time {stamp!r}")
        if stamp is None:
            if (kind == "RMC" and msg.status != "A") or (kind == "GGA" and not msg.gps_qual):
                return [NmeaEpoch(t_ms=None, fix=False)]
            raise ValueError("a position without a time")
        tod_ms = (stamp.hour * 3600 + stamp.minute * 60 + stamp.second) * 1000 + (
            stamp.microsecond // 1000
        )
        if tod_ms == self._last_tod:
            self._last_types.add(kind)  # arrived after its epoch was complete: late
            return []
        done = []
        if self._pending is not None and self._pending.tod_ms != tod_ms:
            done = self._finish()
        if self._pending is None:
            self._pending = _Pending(tod_ms)
            self._expected = frozenset(self._last_types)
            if self._gsa is not None:
                self._pending.gsa_mode, self._pending.hdop = self._gsa
        pending = self._pending
        pending.types.add(kind)
        _merge(pending, kind, msg)
        if self._expected and pending.types >= self._expected:
            done += self._finish()
        return done

    def _finish(self) -> list[NmeaEpoch]:
        pending, self._pending = self._pending, None
        if pending is None:
            return []
        if pending.date is not None:
            self._date = pending.date
        elif self._last_tod is not None and pending.tod_ms < self._last_tod - _DAY_MS // 2:
            self._date += dt.timedelta(days=1)  # past midnight with no RMC to say so
        self._last_tod, self._last_types = pending.tod_ms, pending.types
        t_ms = (self._date.toordinal() - _EPOCH_ORDINAL) * _DAY_MS + pending.tod_ms
        return [_epoch(pending, t_ms)]


def _merge(pending: _Pending, kind: str, msg: Any) -> None:
    if kind == "GST":
        sd_lat, sd_lon = _float(msg.std_dev_latitude), _float(msg.std_dev_longitude)
        if sd_lat is not None and sd_lon is not None:
            pending.gst = (sd_lat, sd_lon)
        return
    if msg.lat and msg.lon:
        if msg.lat_dir not in ("N", "S") or msg.lon_dir not in ("E", "W"):
            raise ValueError("a position without its hemisphere")
        pending.lat, pending.lon = float(msg.latitude), float(msg.longitude)
    if kind == "RMC":
        pending.rmc_valid = msg.status == "A"
        pending.rmc_mode = msg.mode_indicator or None
        pending.speed_kn = _float(msg.spd_over_grnd)
        pending.course = _float(msg.true_course)
        if isinstance(msg.datestamp, dt.date):
            pending.date = msg.datestamp
        elif msg.datestamp is not None:
            raise ValueError(f"bad date {msg.datestamp!r}")
    else:
        pending.gga_quality = _int(msg.gps_qual)
        pending.satellites = _int(msg.num_sats)
        pending.hdop = _float(msg.horizontal_dil) or pending.hdop
        pending.altitude = _float(msg.altitude)


def _epoch(p: _Pending, t_ms: int) -> NmeaEpoch:
    fix = (
        p.lat is not None
        and p.lon is not None
        and p.rmc_valid is not False
        and p.rmc_mode != "N"
        and p.gga_quality not in _NO_FIX_GGA
        and p.gsa_mode != 1
    )
    if not fix:
        return NmeaEpoch(t_ms=t_ms, fix=False)
    if p.gga_quality in _DGPS_GGA or p.rmc_mode in ("D", "R", "F"):
        quality = Quality.DGPS
    elif p.gsa_mode == 2 or (p.gsa_mode is None and p.altitude is None):
        quality = Quality.FIX_2D
    else:
        quality = Quality.FIX_3D
    if p.gst is not None:
        hacc: float | None = math.hypot(*p.gst)
    else:
        hacc = None if p.hdop is None else p.hdop * UERE_M
    return NmeaEpoch(
        t_ms=t_ms,
        fix=True,
        lat=p.lat,
        lon=p.lon,
        ele_m=None if quality is Quality.FIX_2D else p.altitude,
        speed_ms=None if p.speed_kn is None else p.speed_kn * KNOT_MS,
        heading_deg=None if p.course is None else p.course % 360.0,
        hacc_m=hacc,
        quality=quality,
        satellites=p.satellites,
    )


def _float(value: Any) -> float | None:
    if value is None or value == "":
        return None
    return float(value)


def _int(value: Any) -> int | None:
    if value is None or value == "":
        return None
    return int(value)
