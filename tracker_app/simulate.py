"""A simulated rider: a realistic 1 Hz cycling track, generated deterministically.

Speed follows gradient (slower uphill, faster down) with rider variation; heading drifts
smoothly with occasional bends; GPS error is a correlated random walk (as real receivers
produce: consecutive errors are similar), accuracy steps between a few values, and the
timestamp jitters by a millisecond now and then. Used by tests, benchmarks and the demo;
the tracker's `sim` source will build on it.
"""

from __future__ import annotations

import math
import random

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
