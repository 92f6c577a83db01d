"""The replay's tracks: every rider's positions resampled on a time grid, from DuckDB
(``cloud.history.replay``), and ``GET /api/races/{id}/track`` on a real server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from cloud.history import History, fix_row, rows_to_arrow
from cloud.history.replay import MAX_SAMPLES, race_track
from sync_protocol.fix import Fix
from tests.cloud.conftest import CloudServer
from tests.cloud.helpers import user_client
from tests.cloud.riders import Rider, post, setup_race

T0 = 1_782_900_000_000
M_PER_DEG = 111_195.0


@pytest.fixture
def history(tmp_path: Path) -> Iterator[History]:
    with History.open(tmp_path / "history.duckdb", memory_limit="512MB") as h:
        yield h


@pytest.fixture
def cur(history: History) -> Iterator[duckdb.DuckDBPyConnection]:
    with history.reader() as c:
        yield c


def ride(race_id: int, rider_id: int, seconds: range, *, every_s: int = 1) -> list[tuple[Any, ...]]:
    """Fixes of a rider going north at 10 m/s, one every ``every_s`` s over ``seconds``."""
    rows, prev = [], None
    for seq, s in enumerate(seconds[::every_s], start=1):
        p = 10.0 * s
        fix = Fix.from_degrees(seq, T0 + s * 1000, 45.0 + p / M_PER_DEG, 6.0, speed_ms=10.0)
        device = rider_id.to_bytes(16, "big")
        rows.append(fix_row(race_id, rider_id, rider_id, device, fix, progress_m=p, prev=prev))
        prev = fix
    return rows


def test_each_step_keeps_the_riders_last_fix(
    history: History, cur: duckdb.DuckDBPyConnection
) -> None:
    early = ride(1, 7, range(0, 61))  # 61 fixes, 0..60 s
    late = ride(1, 9, range(23, 41))  # starts late, stops early
    other_race = ride(2, 7, range(0, 61))
    history.append(rows_to_arrow(early + late + other_race))

    track = race_track(cur, 1, step_s=10)
    assert track["race_id"] == 1
    assert (track["step_s"], track["requested_step_s"]) == (10, 10)
    assert (track["start_ms"], track["end_ms"]) == (T0, T0 + 60_000)
    first, second = track["riders"]
    assert (first["rider_id"], first["bib"], second["rider_id"]) == (7, 7, 9)
    # Step 0 holds the race's first instant; step k the fixes in (t0 + 10(k-1), t0 + 10k] s.
    assert first["t_ms"] == [T0 + s * 1000 for s in (0, 10, 20, 30, 40, 50, 60)]
    assert first["progress_m"] == [10.0 * s for s in (0, 10, 20, 30, 40, 50, 60)]
    by_time = {row[5]: row for row in early}
    assert first["lat_e7"] == [by_time[t][6] for t in first["t_ms"]]
    assert first["lon_e7"] == [by_time[t][7] for t in first["t_ms"]]
    assert second["t_ms"] == [T0 + s * 1000 for s in (30, 40)]  # 23..30 and 31..40
    assert track["samples"] == 9


def test_steps_without_a_fix_have_no_sample(
    history: History, cur: duckdb.DuckDBPyConnection
) -> None:
    rows = ride(1, 7, range(0, 31)) + ride(1, 7, range(100, 131))  # a 70 s hole
    rows = [(*r[:4], seq, *r[5:]) for seq, r in enumerate(rows, start=1)]  # one chain
    history.append(rows_to_arrow(rows))
    (rider,) = race_track(cur, 1, step_s=10)["riders"]
    assert [(t - T0) // 1000 for t in rider["t_ms"]] == [0, 10, 20, 30, 100, 110, 120, 130]


def test_the_answer_is_bounded_by_coarser_steps(
    history: History, cur: duckdb.DuckDBPyConnection
) -> None:
    rows = [r for rider in range(1, 21) for r in ride(1, rider, range(0, 3_601), every_s=2)]
    history.append(rows_to_arrow(rows))
    asked = race_track(cur, 1, step_s=1)
    assert asked["samples"] <= MAX_SAMPLES
    assert asked["step_s"] == 2  # 20 riders x 3,601 steps of 1 s would pass MAX_SAMPLES
    for limit in (100, 1_000, 5_000, 20_000):
        track = race_track(cur, 1, step_s=1, max_samples=limit)
        assert track["samples"] <= limit, (limit, track["step_s"])
        assert track["step_s"] > 1
        for rider in track["riders"]:
            gaps = {b - a for a, b in zip(rider["t_ms"], rider["t_ms"][1:], strict=False)}
            assert max(gaps) <= track["step_s"] * 1000 + 2_000
        assert {r["t_ms"][-1] for r in track["riders"]} == {T0 + 3_600_000}  # the end is kept


def test_sealed_and_live_races_answer_the_same(
    history: History, cur: duckdb.DuckDBPyConnection
) -> None:
    history.append(rows_to_arrow(ride(1, 7, range(0, 120)) + ride(1, 8, range(5, 100))))
    live = race_track(cur, 1, step_s=5)
    history.seal_race(1)
    with history.reader() as fresh:
        assert race_track(fresh, 1, step_s=5) == live


def test_a_race_without_fixes_and_bad_arguments(cur: duckdb.DuckDBPyConnection) -> None:
    empty = race_track(cur, 42, step_s=5)
    assert empty == {
        "race_id": 42,
        "step_s": 5,
        "requested_step_s": 5,
        "start_ms": None,
        "end_ms": None,
        "samples": 0,
        "riders": [],
    }
    with pytest.raises(ValueError, match="step_s"):
        race_track(cur, 42, step_s=0)
    with pytest.raises(ValueError, match="max_samples"):
        race_track(cur, 42, max_samples=0)


def test_the_track_endpoint(cloud_server: CloudServer, tmp_path: Path) -> None:
    admin, race_id, credential = setup_race(cloud_server, tmp_path)
    rider = Rider(cloud_server, admin, race_id, count=120)
    outcomes = post(cloud_server, credential, rider.batch(1, 60), rider.batch(61, 120))
    assert {r["outcome"] for r in outcomes} == {"accepted"}
    spectator, _ = user_client(cloud_server, "spectator")

    answer = spectator.get(f"/api/races/{race_id}/track")
    assert answer.status_code == 200, answer.text
    track = answer.json()
    assert (track["race_id"], track["step_s"]) == (race_id, 5)
    (ridden,) = track["riders"]
    assert ridden["rider_id"] == rider.id
    fixes = {f.t_ms: f for f in rider.fixes}
    assert ridden["t_ms"][0] == rider.fixes[0].t_ms
    assert ridden["t_ms"][-1] == rider.fixes[-1].t_ms
    assert len(ridden["t_ms"]) == 1 + 119 // 5 + 1  # the first fix, then every 5 s
    for t, lat, lon in zip(ridden["t_ms"], ridden["lat_e7"], ridden["lon_e7"], strict=True):
        assert (lat, lon) == (fixes[t].lat_e7, fixes[t].lon_e7)
    progress = ridden["progress_m"]
    assert progress == sorted(progress)
    assert progress[-1] == pytest.approx(1_190, abs=15)

    coarse = spectator.get(f"/api/races/{race_id}/track", params={"step_s": 60}).json()
    assert coarse["step_s"] == 60
    assert len(coarse["riders"][0]["t_ms"]) == 3

    for bad in ("0", "-5", "1.5", "x", "3601"):
        refused = spectator.get(f"/api/races/{race_id}/track", params={"step_s": bad})
        assert refused.status_code == 400, bad
        assert refused.json()["error"]["fields"] == {"step_s": "an integer in 1..3600"}
    assert spectator.get("/api/races/999999/track").status_code == 404
    assert cloud_server.client().get(f"/api/races/{race_id}/track").status_code == 401
