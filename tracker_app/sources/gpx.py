"""``gpx:PATH``: a recorded GPX track (gpxpy parses), replayed by :class:`ReplaySource`."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import gpxpy
import gpxpy.gpx

from .nmea import UERE_M
from .reading import SourceError
from .replay import RecordedPoint

MAX_BYTES = 64 * 1024 * 1024
"""Largest GPX file accepted (a day's ride at 1 Hz is about 5 MB)."""
_GPX_ROOT = re.compile(
    rb"(?:\xef\xbb\xbf)?\s*(?:<\?.*?\?>\s*|<!--.*?-->\s*)*<(?:[\w.-]+:)?gpx[\s/>]", re.DOTALL
)


def load_gpx(path: Path) -> list[RecordedPoint]:
    """The track points of a GPX file, in order (tracks and segments joined).

    Raises :class:`SourceError` if the file cannot be read or is not GPX.
    """
    try:
        with path.open("rb") as file:
            data = file.read(MAX_BYTES + 1)
    except OSError as e:
        raise SourceError(f"gpx: cannot read {path}: {e.strerror or e}") from None
    if len(data) > MAX_BYTES:
        raise SourceError(f"gpx: {path} is larger than {MAX_BYTES // 2**20} MiB")
    try:
        gpx = gpxpy.parse(data.decode("utf-8-sig"))
    except (gpxpy.gpx.GPXException, UnicodeDecodeError, ValueError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise SourceError(f"gpx: {path} is not a readable GPX file: {reason}") from None
    raw = [p for track in gpx.tracks for segment in track.segments for p in segment.points]
    if not raw and not _is_gpx(data):
        raise SourceError(f"gpx: {path} is not a readable GPX file: its root is not <gpx>")
    if not raw:
        raise SourceError(f"gpx: {path} has no track points (a route is not a recording)")
    return [
        RecordedPoint(
            t_ms=None if p.time is None else _ms(p.time),
            lat=p.latitude,
            lon=p.longitude,
            ele_m=p.elevation,
            speed_ms=p.speed,
            heading_deg=None if p.course is None else float(p.course) % 360.0,
            hacc_m=None if p.horizontal_dilution is None else p.horizontal_dilution * UERE_M,
            satellites=None if p.satellites is None else int(p.satellites),
        )
        for p in raw
    ]


def _is_gpx(data: bytes) -> bool:
    """True if the document's first element is ``gpx`` (with or without a prefix)."""
    return _GPX_ROOT.match(data[:65_536]) is not None


def _ms(stamp: dt.datetime) -> int:
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)  # GPX times are UTC
    return round(stamp.timestamp() * 1000)
