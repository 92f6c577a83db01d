"""What every position source produces: readings, their quality, the source's counters."""

from __future__ import annotations

import math
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from sync_protocol.errors import InvalidFixError
from sync_protocol.fix import Fix


class SourceError(ValueError):
    """A position source cannot be opened: a bad SOURCE spec, a missing or unreadable file,
    a recording with nothing to replay, ``sim`` without a course. One line, says what to do."""


class InvalidReadingError(SourceError):
    """A reading that cannot become a valid fix (NaN, out of range, outside 2000..2100).

    Sources catch it, count the reading in :attr:`SourceStats.invalid` and go on."""


class Quality(StrEnum):
    """How the receiver obtained a position (shown on the tracker's status line)."""

    NO_FIX = "no-fix"
    """No position: the receiver is searching (only ever seen in :attr:`SourceStats.quality`)."""
    FIX_2D = "2d"
    """Latitude and longitude from three satellites or fewer; no usable elevation."""
    FIX_3D = "3d"
    """A full position, elevation included."""
    DGPS = "dgps"
    """A position corrected by a differential service (SBAS, DGPS, RTK)."""
    SIM = "sim"
    """Made up by the simulated rider."""


@dataclass(frozen=True, slots=True)
class Reading:
    """One position from a source, validated so that :meth:`to_fix` cannot fail.

    Construction raises :class:`InvalidReadingError` for anything a :class:`Fix` would
    refuse, so a source never yields a reading the tracker cannot record.
    """

    t_ms: int
    """UTC time of the position, milliseconds since the Unix epoch."""
    lat: float
    """Latitude in degrees, -90..90."""
    lon: float
    """Longitude in degrees, -180..180."""
    ele_m: float | None
    """Elevation above mean sea level in metres; None when unknown (a 2D fix)."""
    speed_ms: float | None
    """Ground speed in metres per second; None when the source does not say."""
    heading_deg: float | None
    """Course over ground in degrees clockwise from true north; None when unknown."""
    hacc_m: float | None
    """Horizontal accuracy (1-sigma radius) in metres; None when the source gives none."""
    quality: Quality
    """How the position was obtained (never :attr:`Quality.NO_FIX`)."""
    satellites: int | None = None
    """Satellites used in the solution, when known."""
    coverage: bool = True
    """False while the simulated rider has no mobile network (``sim`` only): the sync layer
    can simulate an outage. Real sources always say True."""

    def __post_init__(self) -> None:
        if type(self.t_ms) is not int:
            raise InvalidReadingError(f"reading time must be an integer, not {self.t_ms!r}")
        if not isinstance(self.quality, Quality) or self.quality is Quality.NO_FIX:
            raise InvalidReadingError(f"a reading needs a fix quality, not {self.quality!r}")
        if self.satellites is not None and (
            type(self.satellites) is not int or not 0 <= self.satellites <= 255
        ):
            raise InvalidReadingError(f"satellites={self.satellites!r} is not in 0..255")
        for name in ("lat", "lon", "ele_m", "speed_ms", "heading_deg", "hacc_m"):
            value = getattr(self, name)
            if (value is not None or name in ("lat", "lon")) and (
                not isinstance(value, int | float) or not math.isfinite(value)
            ):
                raise InvalidReadingError(f"reading {name}={value!r} is not a finite number")
        if self.heading_deg is not None and not 0.0 <= self.heading_deg <= 360.0:
            raise InvalidReadingError(f"reading heading {self.heading_deg!r} is not in 0..360°")
        try:
            self.to_fix(1)
        except InvalidFixError as e:
            raise InvalidReadingError(str(e).removeprefix("fix 1: ")) from None

    def to_fix(self, seq: int) -> Fix:
        """The fix to sign and record as number ``seq`` of this device.

        Unknown values take the :class:`Fix` defaults: elevation, speed and heading 0,
        accuracy 5 m.
        """
        return Fix.from_degrees(
            seq,
            self.t_ms,
            self.lat,
            self.lon,
            ele_m=0.0 if self.ele_m is None else self.ele_m,
            speed_ms=0.0 if self.speed_ms is None else self.speed_ms,
            heading_deg=0.0 if self.heading_deg is None else self.heading_deg,
            hacc_m=5.0 if self.hacc_m is None else self.hacc_m,
        )


@dataclass(frozen=True, slots=True)
class SourceStats:
    """A snapshot of a source's counters, for the tracker's status line."""

    readings: int = 0
    """Readings yielded (each one a valid fix)."""
    bad_input: int = 0
    """Lines, reports or records that could not be parsed: NMEA checksum errors, garbled
    sentences, malformed gpsd JSON, unreadable track points."""
    no_fix: int = 0
    """Reports or epochs in which the receiver had no position (or the sim lost the sky)."""
    invalid: int = 0
    """Positions that could not become a valid fix: no time, NaN, out of range."""
    repeated: int = 0
    """Positions dropped because their time was not after the previous reading's."""
    reconnects: int = 0
    """Connection attempts after the first (gpsd unreachable or gone, device unplugged)."""
    connected: bool = False
    """True while the source is delivering: connected to gpsd, the device or file open,
    the replay or simulation running."""
    quality: Quality | None = None
    """Quality of the latest report, :attr:`Quality.NO_FIX` while searching; None before the
    first."""
    problem: str | None = None
    """Why the source is not delivering right now (gpsd unreachable, device gone), else None."""

    @property
    def skipped(self) -> int:
        """Everything read that did not become a reading."""
        return self.bad_input + self.no_fix + self.invalid + self.repeated


class PositionSource(Protocol):
    """Where positions come from. Iterate :meth:`readings` once; :meth:`close` ends it."""

    @property
    def spec(self) -> str:
        """The SOURCE spec this source was opened from (``gpsd:127.0.0.1:2947``)."""
        ...

    @property
    def stats(self) -> SourceStats:
        """The counters right now."""
        ...

    def readings(self) -> AsyncGenerator[Reading, None]:
        """Valid readings with strictly increasing times, until the source ends or is closed.

        Bad input is counted in :attr:`stats` and never raised. An async generator: wrap
        it in :func:`contextlib.aclosing` to release the source when leaving early.
        """
        ...

    def close(self) -> None:
        """Stop: a pending :meth:`readings` ends promptly. Idempotent."""
        ...
