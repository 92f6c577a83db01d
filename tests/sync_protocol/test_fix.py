from __future__ import annotations

import math

import pytest

from sync_protocol.errors import InvalidFixError, ProtocolError
from sync_protocol.fix import Fix, check_follows
from tracker_app.simulate import START_MS


def fix(seq: int = 1, t: int = START_MS, lat: float = 45.0, lon: float = 6.0, **kw: float) -> Fix:
    return Fix.from_degrees(seq, t, lat, lon, **kw)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"seq": 0}, "seq=0 must be at least 1"),
        ({"t": 0}, "t_ms=0 is not between 2000 and 2100"),
        ({"lat": 91.0}, "lat_e7=910000000 is beyond ±90°"),
        ({"lon": -180.5}, "beyond ±180°"),
        ({"ele_m": 9_500.0}, "ele_dm=95000 is not in -500..9000 m"),
        ({"speed_ms": 90.0}, "speed_cms=9000 is not in 0..150 km/h"),
        ({"hacc_m": -1.0}, "hacc_dm=-10"),
    ],
)
def test_out_of_range_fields_are_named(kwargs: dict[str, float], words: str) -> None:
    with pytest.raises(InvalidFixError, match=words):
        fix(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_readings_are_refused(bad: float) -> None:
    with pytest.raises(InvalidFixError, match="not a finite number"):
        fix(lat=bad)
    with pytest.raises(InvalidFixError, match="speed_ms"):
        fix(speed_ms=bad)


def test_non_integer_fields_are_refused() -> None:
    with pytest.raises(InvalidFixError, match="must be an integer"):
        Fix(1, START_MS, 1.5, 0)  # type: ignore[arg-type]
    with pytest.raises(InvalidFixError, match="hacc_dm must be an integer"):
        Fix(1, START_MS, 0, 0, hacc_dm=5.5)  # type: ignore[arg-type]


def test_heading_wraps_and_units_convert() -> None:
    f = fix(heading_deg=-0.1, ele_m=1234.56, speed_ms=12.345, hacc_m=3.2)
    assert f.heading_dd == 3599
    assert (f.ele_dm, f.speed_cms, f.hacc_dm) == (12346, 1234, 32)
    assert f.lat == 45.0


def test_follows_checks_sequence_time_and_plausibility() -> None:
    a = fix(1, START_MS)
    check_follows(a, fix(2, START_MS + 1000, lat=45.0001))  # 11 m in 1 s: fine
    with pytest.raises(InvalidFixError, match="does not follow") as e:
        check_follows(a, fix(3, START_MS + 1000))
    assert e.value.reason == "out-of-order"
    with pytest.raises(InvalidFixError, match="time goes backwards") as e:
        check_follows(a, fix(2, START_MS - 1))
    assert e.value.reason == "time-backwards"
    with pytest.raises(InvalidFixError, match="impossible on a bicycle") as e:
        check_follows(a, fix(2, START_MS + 1000, lat=45.01))  # 1.1 km in 1 s
    assert e.value.reason == "implausible"
    assert isinstance(e.value, ProtocolError)


def test_poor_accuracy_widens_plausibility() -> None:
    a = fix(1, START_MS, hacc_m=40)
    check_follows(a, fix(2, START_MS + 1000, lat=45.0007, hacc_m=40))  # 78 m, within 80 m slack


def test_canonical_bytes_are_fixed_width_and_distinct() -> None:
    a, b = fix(1), fix(1, lat=45.0000001)
    assert len(a.canonical()) == 36
    assert a.canonical() != b.canonical()
