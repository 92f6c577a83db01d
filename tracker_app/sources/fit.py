"""``fit:PATH``: a recorded FIT activity (fitdecode parses), replayed by
:class:`ReplaySource`. Its ``record`` messages are the track points."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import fitdecode  # type: ignore[import-untyped]

from .reading import SourceError
from .replay import RecordedPoint

SEMICIRCLE_DEG = 180 / 2**31
"""Degrees in one FIT semicircle (positions are stored as 32-bit semicircles)."""


def load_fit(path: Path) -> list[RecordedPoint]:
    """The ``record`` messages of a FIT file, in order.

    Raises :class:`SourceError` if the file cannot be read, is not FIT or fails its CRC.
    """
    points = []
    try:
        with fitdecode.FitReader(
            str(path),
            check_crc=fitdecode.CrcCheck.RAISE,
            error_handling=fitdecode.ErrorHandling.RAISE,
        ) as fit:
            for frame in fit:
                if frame.frame_type == fitdecode.FIT_FRAME_DATA and frame.name == "record":
                    points.append(_point(frame))
    except OSError as e:
        raise SourceError(f"fit: cannot read {path}: {e.strerror or e}") from None
    except (fitdecode.FitError, ValueError, TypeError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise SourceError(f"fit: {path} is not a readable FIT file: {reason}") from None
    return points


def _point(frame: Any) -> RecordedPoint:
    def value(*names: str) -> Any:
        for name in names:
            found = frame.get_value(name, fallback=None)
            if found is not None:
                return found
        return None

    stamp, lat, lon = value("timestamp"), value("position_lat"), value("position_long")
    has_position = isinstance(lat, int) and isinstance(lon, int)
    return RecordedPoint(
        t_ms=_ms(stamp) if isinstance(stamp, dt.datetime) else None,
        lat=lat * SEMICIRCLE_DEG if has_position else None,
        lon=lon * SEMICIRCLE_DEG if has_position else None,
        ele_m=_float(value("enhanced_altitude", "altitude")),
        speed_ms=_float(value("enhanced_speed", "speed")),
        hacc_m=_float(value("gps_accuracy")),
    )


def _ms(stamp: dt.datetime) -> int:
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)  # FIT times are UTC
    return round(stamp.timestamp() * 1000)


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None
