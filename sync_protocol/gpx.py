"""GPX in and out: parse GPX bytes into course points, write a course as a GPX 1.1 track.

Bytes in, data out; no files. Parsing streams through expat with a target that keeps only
the points, so memory stays bounded by the point limit, not by the document. Anything with
a DTD (``<!DOCTYPE``/``<!ENTITY``: entity expansion and external entity attacks) is
refused, both by a scan of the bytes and by the parser itself (whatever the encoding).
Every failure is a :class:`~sync_protocol.errors.CourseError` with a ``reason`` and a
message a person can act on.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from xml.sax.saxutils import escape

from .course import MAX_ELEVATION_M, MIN_ELEVATION_M, Checkpoint, Course, Point
from .errors import CourseError, LocalProtocolError

MAX_GPX_BYTES = 20 * 1024 * 1024
"""Default size limit of a GPX document (20 MiB)."""
MAX_GPX_POINTS = 200_000
"""Default limit on track (or route) points."""
GPX_NAMESPACES = frozenset(
    {"http://www.topografix.com/GPX/1/1", "http://www.topografix.com/GPX/1/0", ""}
)
"""Namespaces of a GPX root element: GPX 1.1, GPX 1.0, or none."""

_HTML = (
    "not a GPX document: this is an HTML page (was the web page saved instead of the .gpx file?)"
)
_DTD = re.compile(rb"<!\s*(?:DOCTYPE|ENTITY)", re.IGNORECASE)
_MAX_TEXT = 1_000  # characters kept of a <name> or <ele>
_DECIMAL = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_POINT_PATHS = frozenset({("gpx", "trk", "trkseg", "trkpt"), ("gpx", "rte", "rtept")})
_NAME_PARENTS = frozenset({("gpx",), ("gpx", "metadata"), ("gpx", "trk"), ("gpx", "rte")})


@dataclass(frozen=True, slots=True)
class GpxTrack:
    """The points read from a GPX document."""

    name: str
    """The track's (or route's) name, else the document's, else ""."""
    points: tuple[Point, ...]
    """(lat, lon, ele or None) of every ``trkpt`` in document order, or of every ``rtept``
    when the document has no track points."""
    source: str
    """"track" or "route": where the points came from."""


class _Target:
    """An expat target that collects points and names, and nothing else."""

    def __init__(self, max_points: int) -> None:
        self.max_points = max_points
        self.prefix: str | None = None  # "{namespace}" of the root, "" for none
        self.path: list[str] = []  # local names of open elements ("" when foreign)
        self.points: dict[str, list[Point]] = {"trkpt": [], "rtept": []}
        self.names: dict[str, str] = {}
        self.text: list[str] | None = None
        self.point: tuple[str, float, float] | None = None
        self.ele: float | None = None

    def doctype(self, name: str, pubid: str | None, system: str | None) -> None:
        raise _refuse_dtd()

    def start(self, tag: str, attrib: dict[str, str]) -> None:
        prefix = self.prefix
        if prefix is None:
            ns, _, local = tag[1:].rpartition("}") if tag[:1] == "{" else ("", "", tag)
            if local != "gpx" or ns not in GPX_NAMESPACES:
                message = f"not a GPX document: the root element is <{local}>, not <gpx>"
                raise CourseError(_HTML if local == "html" else message, reason="not-gpx")
            self.prefix = prefix = "{" + ns + "}" if ns else ""
        if prefix:
            local = tag[len(prefix) :] if tag.startswith(prefix) else ""
        else:
            local = "" if tag[:1] == "{" else tag  # "": foreign elements match nothing
        self.path.append(local)
        where = tuple(self.path)
        if where in _POINT_PATHS:
            points = self.points[local]
            if len(points) >= self.max_points:
                raise CourseError(
                    f"GPX has more than {self.max_points:,} {local} points; simplify it "
                    "(one point every 5-10 m is plenty)",
                    reason="too-large",
                )
            lat = _coordinate(attrib.get("lat"), "lat", 90.0, local, len(points) + 1)
            lon = _coordinate(attrib.get("lon"), "lon", 180.0, local, len(points) + 1)
            self.point, self.ele = (local, lat, lon), None
        elif (local == "ele" and self.point and where[:-1] in _POINT_PATHS) or (
            local == "name" and where[:-1] in _NAME_PARENTS
        ):
            self.text = []

    def data(self, text: str) -> None:
        if self.text is not None and sum(map(len, self.text)) < _MAX_TEXT:
            self.text.append(text)

    def end(self, tag: str) -> None:
        where = tuple(self.path)
        local = self.path.pop()
        if self.text is not None and local in ("ele", "name"):
            text, self.text = "".join(self.text).strip(), None
            if local == "ele" and self.point:
                self.ele = _elevation(text, self.point[0], len(self.points[self.point[0]]) + 1)
            elif local == "name":
                self.names.setdefault("/".join(where[:-1]), " ".join(text.split())[:200])
        elif self.point and where in _POINT_PATHS:
            kind, lat, lon = self.point
            self.points[kind].append((lat, lon, self.ele))
            self.point = None

    def close(self) -> None:
        return None


def _refuse_dtd() -> CourseError:
    return CourseError(
        "GPX must not contain a <!DOCTYPE> or <!ENTITY> declaration (refused for safety)",
        reason="dtd-refused",
    )


def _coordinate(raw: str | None, attr: str, limit: float, kind: str, index: int) -> float:
    value = float(raw) if raw is not None and _DECIMAL.fullmatch(raw.strip()) else math.nan
    if -limit <= value <= limit:  # False for NaN
        return value
    if raw is None:
        problem = f"has no {attr} attribute"
    elif math.isnan(value):
        problem = f"has a non-numeric {attr} {raw[:40]!r}"
    else:
        problem = f"has {attr} {raw[:40]!r}, outside -{limit:g}..{limit:g}"
    raise CourseError(f"GPX {kind} {index} {problem}", reason="bad-point")


def _elevation(text: str, kind: str, index: int) -> float | None:
    if not text:
        return None
    value = float(text) if _DECIMAL.fullmatch(text) else math.nan
    if not (math.isfinite(value) and MIN_ELEVATION_M <= value <= MAX_ELEVATION_M):
        raise CourseError(
            f"GPX {kind} {index} has elevation {text[:40]!r}, not a number in "
            f"{MIN_ELEVATION_M:g}..{MAX_ELEVATION_M:g} m",
            reason="bad-point",
        )
    return value


def parse_gpx(
    data: bytes | bytearray | memoryview,
    *,
    max_bytes: int = MAX_GPX_BYTES,
    max_points: int = MAX_GPX_POINTS,
) -> GpxTrack:
    """Read the track points (else the route points) of a GPX 1.0/1.1 document.

    Track segments and tracks are joined in document order. Raises CourseError, with
    ``reason`` one of too-large, dtd-refused, not-xml, not-gpx, no-points, bad-point.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise LocalProtocolError(f"parse_gpx takes bytes, not {type(data).__name__}")
    size = data.nbytes if isinstance(data, memoryview) else len(data)
    if size > max_bytes:
        raise CourseError(
            f"GPX is {size:,} bytes, more than the limit of {max_bytes:,}", reason="too-large"
        )
    data = bytes(data)
    if not data.strip():
        raise CourseError("GPX is empty", reason="not-xml")
    looks_html = b"<html" in data[:2048].lower()
    if _DTD.search(data):
        raise CourseError(_HTML, reason="not-gpx") if looks_html else _refuse_dtd()
    target = _Target(max_points)
    parser = ET.XMLParser(target=target)  # noqa: S314 (DTDs refused, nothing expanded)
    try:
        parser.feed(data)
        parser.close()
    except ET.ParseError as exc:
        if target.prefix is None and looks_html:
            raise CourseError(_HTML, reason="not-gpx") from None
        raise CourseError(f"not valid XML: {exc}", reason="not-xml") from None
    except (ValueError, LookupError) as exc:  # unsupported encodings
        raise CourseError(f"not readable XML: {exc}", reason="not-xml") from None
    source, kind = ("track", "trkpt") if target.points["trkpt"] else ("route", "rtept")
    points = target.points[kind]
    if not points:
        raise CourseError("GPX has no track or route points (<trkpt>/<rtept>)", reason="no-points")
    names = target.names
    name = names.get("gpx/trk" if kind == "trkpt" else "gpx/rte") or names.get(
        "gpx/metadata", names.get("gpx", "")
    )
    return GpxTrack(name=name, points=tuple(points), source=source)


def course_from_gpx(
    data: bytes | bytearray | memoryview,
    *,
    laps: int = 1,
    checkpoints: Iterable[Checkpoint] = (),
    name: str | None = None,
    max_bytes: int = MAX_GPX_BYTES,
    max_points: int = MAX_GPX_POINTS,
) -> Course:
    """A :class:`Course` from GPX bytes; ``name`` defaults to the GPX's name."""
    track = parse_gpx(data, max_bytes=max_bytes, max_points=max_points)
    return Course.from_points(
        track.points,
        laps=laps,
        checkpoints=checkpoints,
        name=track.name if name is None else name,
    )


def _num(value: float) -> str:
    """A float as an exact, exponent-free decimal (xsd:decimal) that parses back equal."""
    text = repr(value)
    if "e" in text:
        text = format(Decimal(text), "f")
    return text[:-2] if text.endswith(".0") else text


def course_to_gpx(course: Course) -> bytes:
    """One lap of the course as a GPX 1.1 track; checkpoints become waypoints.

    Points and the name round-trip exactly through :func:`course_from_gpx`; laps and
    checkpoints are race settings that plain GPX cannot carry, pass them again.
    """
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<gpx version="1.1" creator="Gruppetto" xmlns="http://www.topografix.com/GPX/1/1">',
    ]
    name = f"<name>{escape(course.name)}</name>" if course.name else ""
    if name:
        out.append(f"<metadata>{name}</metadata>")
    for cp in course.checkpoints:
        lat, lon, _ = course.point_at(cp.distance_m)
        out.append(
            f'<wpt lat="{_num(lat)}" lon="{_num(lon)}">'
            f"<name>{escape(cp.name)}</name><type>{escape(cp.kind)}</type></wpt>"
        )
    out.append(f"<trk>{name}<trkseg>")
    for lat, lon, ele in course.points:
        ele_xml = "" if ele is None else f"<ele>{_num(ele)}</ele>"
        out.append(f'<trkpt lat="{_num(lat)}" lon="{_num(lon)}">{ele_xml}</trkpt>')
    out.append("</trkseg></trk></gpx>\n")
    return "\n".join(out).encode("utf-8")
