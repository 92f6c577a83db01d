"""GPX in and out: valid files round-trip, every bad input is a clear CourseError."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync_protocol.course import Checkpoint, Course
from sync_protocol.errors import CourseError, LocalProtocolError
from sync_protocol.gpx import course_from_gpx, course_to_gpx, parse_gpx

GPX11 = b"""<?xml version="1.0" encoding="UTF-8"?>
<gpx version="1.1" creator="test" xmlns="http://www.topografix.com/GPX/1/1"
     xmlns:gpxtpx="http://www.garmin.com/xmlschemas/TrackPointExtension/v1">
  <metadata><name>Document name</name></metadata>
  <wpt lat="45.1" lon="6.1"><name>Feed zone</name></wpt>
  <trk>
    <name>  Stage 17:
      Col &amp; descent </name>
    <trkseg>
      <trkpt lat="45.0" lon="6.0"><ele>1200.5</ele><time>2025-07-01T10:00:00Z</time></trkpt>
      <trkpt lat="45.001" lon="6.0005"><ele>1210</ele>
        <extensions><gpxtpx:TrackPointExtension><gpxtpx:hr>150</gpxtpx:hr>
        </gpxtpx:TrackPointExtension></extensions></trkpt>
    </trkseg>
    <trkseg>
      <trkpt lat="45.002" lon="6.001"/>
      <trkpt lat=" 45.003 " lon="6.0015"><ele></ele></trkpt>
    </trkseg>
  </trk>
</gpx>
"""

ROUTE10 = b"""<?xml version="1.0"?>
<gpx version="1.0" xmlns="http://www.topografix.com/GPX/1/0"><name>Old route</name>
<rte><rtept lat="-33.9" lon="151.2"><ele>5</ele></rtept><rtept lat="-33.91" lon="151.21"/></rte>
</gpx>"""


def gpx(
    points: str, root: str = '<gpx version="1.1" xmlns="http://www.topografix.com/GPX/1/1">'
) -> bytes:
    return f'<?xml version="1.0"?>\n{root}<trk><trkseg>{points}</trkseg></trk></gpx>'.encode()


def test_parses_track_points_across_segments_with_optional_elevation() -> None:
    track = parse_gpx(GPX11)
    assert track.source == "track"
    assert track.name == "Stage 17: Col & descent"
    assert track.points == (
        (45.0, 6.0, 1200.5),
        (45.001, 6.0005, 1210.0),
        (45.002, 6.001, None),
        (45.003, 6.0015, None),
    )


def test_route_points_when_there_is_no_track_and_gpx_1_0() -> None:
    track = parse_gpx(ROUTE10)
    assert track.source == "route"
    assert track.name == "Old route"
    assert track.points == ((-33.9, 151.2, 5.0), (-33.91, 151.21, None))
    no_namespace = parse_gpx(b'<gpx><trk><trkseg><trkpt lat="1" lon="2"/></trkseg></trk></gpx>')
    assert no_namespace.points == ((1.0, 2.0, None),)
    assert parse_gpx(bytearray(GPX11)).points == parse_gpx(memoryview(GPX11)).points


def test_course_round_trips_through_gpx() -> None:
    points = [(45.0 + i * 1e-4, 6.0 + (i % 7) * 3e-5, 1000.0 + i / 3) for i in range(300)]
    points += [(45.0 + 1e-5 / 3, -179.99999999999997, None), (1e-05, 6.5, -0.0)]
    course = Course.from_points(
        points,
        name='Étape <17> & "the" col',
        checkpoints=[Checkpoint("Top", "climb", 100.0, 2_000.0)],
    )
    data = course_to_gpx(course)
    assert data.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    assert b"e-" not in data  # xsd:decimal, no exponents
    again = course_from_gpx(data, checkpoints=course.checkpoints)
    assert again == course
    assert again.cumulative_m == course.cumulative_m
    assert parse_gpx(data).points == course.points
    # A circuit: the GPX holds one closed lap; laps are a race setting given again.
    loop = Course.from_points(
        [(45.0, 6.0), (45.01, 6.0), (45.01, 6.01), (45.0005, 6.0005)], laps=3, name="Loop"
    )
    assert course_from_gpx(course_to_gpx(loop), laps=3) == loop
    assert course_from_gpx(course_to_gpx(loop), name="Other").name == "Other"


BAD_INPUTS = [
    (b"", "not-xml", "empty"),
    (b"   \n", "not-xml", "empty"),
    (b"this is not xml", "not-xml", "not valid XML"),
    (b"<gpx><trk>", "not-xml", "not valid XML"),
    (b"\x89PNG\r\n\x1a\n\x00\x00", "not-xml", "not valid XML"),
    (
        b"<!DOCTYPE html><html><head><title>Strava</title></head><body><p>hi</body></html>",
        "not-gpx",
        "HTML page",
    ),
    (b"<html><body><p>hi</p></body></html>", "not-gpx", "HTML page"),
    (b"<html><body><p>hi<br></body></html>", "not-gpx", "HTML page"),
    (b'<kml xmlns="http://www.opengis.net/kml/2.2"><Document/></kml>', "not-gpx", "<kml>"),
    (b'<gpx xmlns="http://example.com/other"><trk/></gpx>', "not-gpx", "not <gpx>"),
    (gpx(""), "no-points", "no track or route points"),
    (b'<gpx version="1.1"><wpt lat="1" lon="2"/></gpx>', "no-points", "no track or route"),
    (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]>'
        b"<gpx><name>&lol2;</name></gpx>",
        "dtd-refused",
        "DOCTYPE",
    ),
    (
        b'<!DOCTYPE gpx SYSTEM "file:///etc/passwd"><gpx/>',
        "dtd-refused",
        "refused for safety",
    ),
    (
        '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE g [<!ENTITY x "y">]><gpx/>'.encode(
            "utf-16"
        ),
        "dtd-refused",
        "DOCTYPE",
    ),
    (gpx('<trkpt lat="95" lon="6"/>'), "bad-point", "trkpt 1 has lat '95', outside -90..90"),
    (gpx('<trkpt lat="45" lon="6"/><trkpt lat="45" lon="-181"/>'), "bad-point", "trkpt 2 has lon"),
    (gpx('<trkpt lat="abc" lon="6"/>'), "bad-point", "non-numeric lat 'abc'"),
    (gpx('<trkpt lat="nan" lon="6"/>'), "bad-point", "non-numeric lat"),
    (gpx('<trkpt lat="1_0" lon="6"/>'), "bad-point", "non-numeric lat"),
    (gpx('<trkpt lat="45"/>'), "bad-point", "has no lon attribute"),
    (gpx('<trkpt lat="45" lon="6"><ele>high</ele></trkpt>'), "bad-point", "elevation 'high'"),
    (gpx('<trkpt lat="45" lon="6"><ele>-9999</ele></trkpt>'), "bad-point", "elevation '-9999'"),
    (b'<?xml version="1.0" encoding="klingon"?><gpx/>', "not-xml", "encoding"),
]


@pytest.mark.parametrize(("data", "reason", "message"), BAD_INPUTS)
def test_bad_input_is_a_clear_course_error(data: bytes, reason: str, message: str) -> None:
    with pytest.raises(CourseError) as info:
        parse_gpx(data)
    assert info.value.reason == reason
    assert message in str(info.value)


def test_size_and_point_limits() -> None:
    two = gpx('<trkpt lat="45" lon="6"/><trkpt lat="45.001" lon="6"/>')
    with pytest.raises(CourseError, match=r"more than the limit of 100") as info:
        parse_gpx(two, max_bytes=100)
    assert info.value.reason == "too-large"
    with pytest.raises(CourseError, match=r"more than 1 trkpt points") as info:
        parse_gpx(two, max_points=1)
    assert info.value.reason == "too-large"
    assert len(parse_gpx(two, max_points=2).points) == 2
    big = b"<gpx>" + b"<!-- padding -->" * (21 * 1024 * 1024 // 16) + b"</gpx>"
    with pytest.raises(CourseError, match="more than the limit"):
        parse_gpx(big)


def test_not_bytes_is_api_misuse_and_course_errors_surface() -> None:
    with pytest.raises(LocalProtocolError):
        parse_gpx(GPX11.decode())  # type: ignore[arg-type]
    one_point = gpx('<trkpt lat="45" lon="6"/>')
    with pytest.raises(CourseError, match="at least 2 distinct points"):
        course_from_gpx(one_point)


@settings(derandomize=True, database=None, max_examples=300, deadline=None)
@given(st.binary(max_size=400) | st.builds(lambda b: GPX11[: len(b)] + b, st.binary(max_size=200)))
def test_arbitrary_bytes_raise_only_course_error(data: bytes) -> None:
    try:
        track = parse_gpx(data)
    except CourseError:
        return
    assert track.points


@settings(derandomize=True, database=None, max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(-90, 90),
            st.floats(-180, 180),
            st.none() | st.floats(-1_000, 10_000),
        ),
        min_size=1,
        max_size=20,
    ),
    st.text(max_size=30),
)
def test_written_points_parse_back_exactly(
    points: list[tuple[float, float, float | None]], name: str
) -> None:
    xml = "".join(
        f'<trkpt lat="{lat!r}" lon="{lon!r}">{"" if ele is None else f"<ele>{ele!r}</ele>"}</trkpt>'
        for lat, lon, ele in points
    )
    assert parse_gpx(gpx(xml)).points == tuple(points)
