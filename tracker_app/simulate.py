"""A simulated rider: a realistic 1 Hz cycling track, generated deterministically.

Speed follows gradient (slower uphill, faster down) with rider variation; heading drifts
smoothly with occasional bends; GPS error is a correlated random walk (as real receivers
produce: consecutive errors are similar), accuracy steps between a few values, and the
timestamp jitters by a millisecond now and then. Used by tests, benchmarks and the demo.

`ride(course)` is the rider of the tracker's ``sim`` source: it rides a course at the speed
its gradient allows (constant power against gravity, rolling resistance and air, capped),
with GPS error, occasional GPS losses and mobile-coverage dropouts. Both are pure and
deterministic for a seed; the source paces samples with a clock.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass

from sync_protocol.course import Course
from sync_protocol.fix import Fix

START_MS = 1_782_900_000_000  # 2026-07-01, a summer stage


def realistic_track(
    count: int, *, seed: int = 1, start_seq: int = 1, lat: float = 45.0, lon: float = 6.0
) -> list[Fix]:
    """``count`` consecutive fixes of one rider at 1 Hz."""
    rng = random.Random(seed)
    heading, speed, ele, grade = rng.uniform(0, 360), 9.0, 600.0, 0.0
    err_n = err_e = 0.0
    fixes = []
    for i in range(count):
        if rng.random() < 0.01:
            grade = rng.uniform(-0.08, 0.09)
        if (ele < 100 and grade < 0) or (ele > 2_500 and grade > 0):
            grade = -grade  # valleys and passes: a long ride stays on real ground
        target = 11.0 - grade * 90
        speed = min(20.0, max(2.5, speed + 0.15 * (target - speed) + rng.gauss(0, 0.25)))
        heading = (
            heading + rng.gauss(0, 2.0) + (rng.gauss(0, 25) if rng.random() < 0.02 else 0)
        ) % 360
        ele += speed * grade
        lat += speed * math.cos(math.radians(heading)) / 111_195
        lon += speed * math.sin(math.radians(heading)) / (111_195 * math.cos(math.radians(lat)))
        err_n = 0.92 * err_n + rng.gauss(0, 0.35)
        err_e = 0.92 * err_e + rng.gauss(0, 0.35)
        jitter = rng.choice((0, 0, 0, 0, 1, -1))
        fixes.append(
            Fix.from_degrees(
                start_seq + i,
                START_MS + (start_seq + i) * 1000 + jitter,
                lat + err_n / 111_195,
                lon + err_e / (111_195 * math.cos(math.radians(lat))),
                ele_m=ele + rng.gauss(0, 0.4),
                speed_ms=max(0.0, speed + rng.gauss(0, 0.15)),
                heading_deg=heading,
                hacc_m=rng.choice((3.0, 3.0, 3.0, 4.0, 5.0)),
            )
        )
    return fixes


# --- A rider on a course -------------------------------------------------------------

GRAVITY = 9.81
AIR_DENSITY = 1.225
ROLLING_RESISTANCE = 0.004
DRAG_AREA_M2 = 0.32
"""CdA of a rider on the drops, metres squared."""
GRADE_SPAN_M = 25.0
"""The gradient is measured over this many metres either side of the rider."""


@dataclass(frozen=True, slots=True)
class SimSettings:
    """How the simulated rider rides and what goes wrong around them."""

    flat_speed_ms: float = 11.1
    """Speed on the flat, metres per second (about 40 km/h in a bunch)."""
    max_speed_ms: float = 19.5
    """Cap on descents (about 70 km/h: bends and brakes)."""
    min_speed_ms: float = 2.5
    """Floor on the steepest ramps (9 km/h)."""
    mass_kg: float = 80.0
    """Rider and bike."""
    gps_losses_per_hour: float = 1.0
    """Expected GPS losses (tunnels, deep valleys) per hour."""
    gps_loss_s: tuple[int, int] = (5, 45)
    """Shortest and longest GPS loss, seconds."""
    dropouts_per_hour: float = 1.0
    """Expected mobile-coverage dropouts per hour."""
    dropout_s: tuple[int, int] = (60, 600)
    """Shortest and longest coverage dropout, seconds."""
    noise_m: float = 1.0
    """Scale of the GPS position error (a correlated random walk), metres."""

    def __post_init__(self) -> None:
        speeds = (self.min_speed_ms, self.flat_speed_ms, self.max_speed_ms)
        if not all(math.isfinite(v) for v in speeds) or not 0 < speeds[0] <= speeds[1] <= speeds[2]:
            raise ValueError(f"sim speeds must be 0 < min <= flat <= max, not {speeds}")
        if speeds[2] > 40.0:
            raise ValueError(f"sim max_speed_ms {speeds[2]} is faster than a bicycle goes")
        if not (math.isfinite(self.mass_kg) and self.mass_kg > 0):
            raise ValueError(f"sim mass_kg must be positive, not {self.mass_kg}")
        for name in ("gps_losses_per_hour", "dropouts_per_hour", "noise_m"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"sim {name} must be zero or more, not {value}")
        for name in ("gps_loss_s", "dropout_s"):
            low, high = getattr(self, name)
            if not 1 <= low <= high:
                raise ValueError(f"sim {name} must be (shortest, longest) seconds, 1 or more")


@dataclass(frozen=True, slots=True)
class SimSample:
    """One second of the simulated ride."""

    t_offset_ms: int
    """Time since the start, milliseconds (1000 per sample, a millisecond of jitter)."""
    distance_m: float
    """True race distance of the rider."""
    lat: float
    """Latitude as the GPS reports it (true position plus error), degrees."""
    lon: float
    """Longitude as the GPS reports it, degrees."""
    ele_m: float | None
    """Elevation as the GPS reports it; None on a course without elevations."""
    speed_ms: float
    """Speed as the GPS reports it."""
    heading_deg: float
    """Course over ground, degrees from true north."""
    hacc_m: float
    """Accuracy the GPS claims, metres."""
    satellites: int
    """Satellites in use."""
    grade: float
    """Gradient under the rider (0.08 is 8 % uphill)."""
    gps: bool
    """False during a GPS loss: the receiver has no fix this second."""
    coverage: bool
    """False during a coverage dropout: no mobile network."""


def steady_speed_ms(grade: float, settings: SimSettings) -> float:
    """The speed a rider holding their flat-road power reaches on ``grade``, capped."""
    flat = settings.flat_speed_ms
    weight = settings.mass_kg * GRAVITY
    power = flat * weight * ROLLING_RESISTANCE + 0.5 * AIR_DENSITY * DRAG_AREA_M2 * flat**3
    theta = math.atan(grade)
    resist = weight * (math.sin(theta) + ROLLING_RESISTANCE * math.cos(theta))
    low, high = 0.0, 60.0  # power needed rises monotonically past the one root: bisect
    for _ in range(50):
        mid = (low + high) / 2
        if mid * resist + 0.5 * AIR_DENSITY * DRAG_AREA_M2 * mid**3 < power:
            low = mid
        else:
            high = mid
    return min(settings.max_speed_ms, max(settings.min_speed_ms, low))


def ride(
    course: Course, *, seed: int = 0, settings: SimSettings | None = None
) -> Iterator[SimSample]:
    """One rider from the start line to the finish, a sample a second (deterministic)."""
    settings = settings or SimSettings()
    legs = random.Random(f"gruppetto-sim/{seed}/legs")
    sky = random.Random(f"gruppetto-sim/{seed}/gps")
    net = random.Random(f"gruppetto-sim/{seed}/network")
    finish = course.finish_m
    distance, form = 0.0, 1.0
    speed = steady_speed_ms(_grade(course, 0.0), settings)
    err_n = err_e = 0.0
    satellites = 11
    loss_left = dropout_left = 0
    for second in itertools.count():
        grade = _grade(course, distance)
        lat, lon, ele = course.point_at(distance)
        heading = _heading(course, distance)
        err_n = 0.92 * err_n + sky.gauss(0, 0.35 * settings.noise_m)
        err_e = 0.92 * err_e + sky.gauss(0, 0.35 * settings.noise_m)
        satellites = min(16, max(5, satellites + sky.choice((-1, 0, 0, 0, 0, 0, 0, 1))))
        if loss_left == 0 and sky.random() < settings.gps_losses_per_hour / 3600:
            loss_left = sky.randint(*settings.gps_loss_s)
        if dropout_left == 0 and net.random() < settings.dropouts_per_hour / 3600:
            dropout_left = net.randint(*settings.dropout_s)
        metres_per_deg_lon = 111_195 * math.cos(math.radians(lat))
        yield SimSample(
            t_offset_ms=second * 1000 + (sky.choice((0, 0, 0, 0, 1, -1)) if second else 0),
            distance_m=distance,
            lat=lat + err_n / 111_195,
            lon=lon + err_e / max(metres_per_deg_lon, 1.0),
            ele_m=None if ele is None else ele + sky.gauss(0, 0.4),
            speed_ms=max(0.0, speed + sky.gauss(0, 0.15)),
            heading_deg=heading,
            hacc_m=sky.choice((3.0, 3.0, 3.0, 4.0, 5.0)) * max(settings.noise_m, 0.5),
            satellites=satellites,
            grade=grade,
            gps=loss_left == 0,
            coverage=dropout_left == 0,
        )
        loss_left, dropout_left = max(0, loss_left - 1), max(0, dropout_left - 1)
        if distance >= finish:
            return
        form = min(1.1, max(0.9, form + 0.05 * (1.0 - form) + legs.gauss(0, 0.01)))
        target = steady_speed_ms(grade, settings) * form
        speed = min(
            settings.max_speed_ms, max(settings.min_speed_ms, speed + 0.3 * (target - speed))
        )
        distance = min(finish, distance + speed)


def _grade(course: Course, distance_m: float) -> float:
    a = max(0.0, distance_m - GRADE_SPAN_M)
    b = min(course.finish_m, distance_m + GRADE_SPAN_M)
    ele_a, ele_b = course.point_at(a)[2], course.point_at(b)[2]
    if ele_a is None or ele_b is None or b <= a:
        return 0.0
    return min(0.25, max(-0.25, (ele_b - ele_a) / (b - a)))


def _heading(course: Course, distance_m: float) -> float:
    lat1, lon1, _ = course.point_at(max(0.0, distance_m - 5.0))
    lat2, lon2, _ = course.point_at(min(course.finish_m, distance_m + 5.0))
    north = lat2 - lat1
    east = (lon2 - lon1) * math.cos(math.radians((lat1 + lat2) / 2))
    return math.degrees(math.atan2(east, north)) % 360.0
