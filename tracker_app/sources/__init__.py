"""Where the tracker's positions come from: ``gruppetto tracker run --source SOURCE``.

SOURCE is one of

- ``gpsd[:HOST[:PORT]]``: the gpsd daemon (default ``127.0.0.1:2947``; ``[::1]:2947``
  for IPv6), reconnecting with backoff when it goes away;
- ``nmea:PATH``: an NMEA 0183 log (replayed at its own pace, ``speed`` times faster) or a
  serial device or FIFO (read as the receiver sends);
- ``gpx:PATH`` / ``fit:PATH``: a recorded track, replayed at its own pace or faster;
- ``sim``: a simulated rider on the race's course.

Every source yields :class:`Reading` objects that are valid fixes with strictly increasing
times; whatever cannot be one is counted in :attr:`PositionSource.stats`, never raised.
Replays are stamped with the clock's time (the recorded intervals kept) unless
``keep_times``. See docs/tracker-sources.md.
"""

from __future__ import annotations

import math
from pathlib import Path

from sync_protocol.course import Course

from ..simulate import SimSettings
from .clock import Clock, ManualClock, SystemClock
from .fit import load_fit
from .gpsd import DEFAULT_HOST, DEFAULT_PORT, GpsdSource
from .gpx import load_gpx
from .nmea_source import NmeaFileSource, NmeaStreamSource, is_stream
from .reading import (
    InvalidReadingError,
    PositionSource,
    Quality,
    Reading,
    SourceError,
    SourceStats,
)
from .replay import ReplaySource
from .sim import SimSource

__all__ = [
    "Clock",
    "InvalidReadingError",
    "ManualClock",
    "PositionSource",
    "Quality",
    "Reading",
    "SimSettings",
    "SourceError",
    "SourceStats",
    "SystemClock",
    "open_source",
    "parse_gpsd_address",
]

FORMS = "gpsd[:HOST:PORT], nmea:PATH, gpx:PATH, fit:PATH or sim"
MAX_SPEED_FACTOR = 10_000.0


def open_source(
    spec: str,
    *,
    clock: Clock,
    speed: float = 1.0,
    course: Course | None = None,
    seed: int = 0,
    keep_times: bool = False,
    sim_settings: SimSettings | None = None,
) -> PositionSource:
    """The position source SOURCE names, ready to iterate.

    ``speed`` replays a recording (nmea file, gpx, fit) or the simulation that many times
    faster; ``keep_times`` stamps replayed readings with their recorded times instead of
    the clock's; ``course``, ``seed`` and ``sim_settings`` drive ``sim``. Files are checked
    (GPX and FIT parsed) here. Raises :class:`SourceError` with a one-line reason.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise SourceError(f"no position source given: use {FORMS}")
    spec = spec.strip()
    kind, _, rest = spec.partition(":")
    if not (isinstance(speed, int | float) and math.isfinite(speed) and speed > 0):
        raise SourceError(f"--speed must be a positive number, not {speed!r}")
    if speed > MAX_SPEED_FACTOR:
        raise SourceError(f"--speed {speed:g} is too fast (at most {MAX_SPEED_FACTOR:g})")
    if kind == "gpsd":
        _live_only(spec, speed)
        host, port = parse_gpsd_address(rest)
        return GpsdSource(spec, host, port, clock)
    if kind == "sim":
        if rest:
            raise SourceError(f"sim takes no argument (got {spec!r}): use sim")
        if course is None:
            raise SourceError("sim needs the race's course: the race has none, or pass one")
        return SimSource(spec, course, clock, speed=speed, seed=seed, settings=sim_settings)
    if kind in ("nmea", "gpx", "fit"):
        path = _existing(kind, rest)
        if kind == "gpx":
            points = load_gpx(path)
        elif kind == "fit":
            points = load_fit(path)
        elif is_stream(path):
            _live_only(spec, speed)
            return NmeaStreamSource(spec, path, clock)
        else:
            return NmeaFileSource(spec, path, clock, speed=speed, keep_times=keep_times)
        return ReplaySource(spec, points, clock, speed=speed, keep_times=keep_times)
    raise SourceError(f"unknown position source {spec!r}: use {FORMS}")


def parse_gpsd_address(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``HOST``, ``[IPV6]:PORT`` or empty → (host, port), gpsd's defaults
    filling in what is missing."""
    if not text:
        return DEFAULT_HOST, DEFAULT_PORT
    if text.startswith("["):
        host, bracket, tail = text[1:].partition("]")
        if not bracket or not host or (tail and not tail.startswith(":")):
            raise SourceError(f"gpsd address {text!r} is not [IPV6]:PORT")
        port_text = tail[1:]
    elif text.count(":") > 1:
        raise SourceError(f"gpsd address {text!r}: write an IPv6 address as [ADDRESS]:PORT")
    else:
        host, _, port_text = text.partition(":")
    if not host:
        raise SourceError(f"gpsd address {text!r} has no host: use gpsd:HOST:PORT")
    if not port_text:
        return host, DEFAULT_PORT
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise SourceError(f"gpsd port {port_text!r} is not a number in 1..65535")
    return host, int(port_text)


def _existing(kind: str, text: str) -> Path:
    if not text:
        raise SourceError(f"{kind}: needs a path, as in {kind}:ride.{kind}")
    path = Path(text).expanduser()
    if not path.exists():
        raise SourceError(f"{kind}: no such file: {path}")
    if path.is_dir():
        raise SourceError(f"{kind}: {path} is a directory, not a file")
    return path


def _live_only(spec: str, speed: float) -> None:
    if speed != 1.0:
        raise SourceError(f"--speed applies to replays and sim, not to the live source {spec}")
