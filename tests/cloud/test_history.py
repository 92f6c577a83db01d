"""The history store and its analytics, on real DuckDB files (no server)."""

from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from cloud.history import History, HistoryError, fix_row, fixes_schema, rows_to_arrow
from cloud.history.analytics import (
    RiderInfo,
    compare_races,
    race_results,
    race_summary,
    rider_season,
    rider_stats,
    to_csv,
)
from cloud.history.store import COLUMNS
from sync_protocol.course import Checkpoint
from sync_protocol.fix import Fix
from sync_protocol.geo import haversine_m
from tracker_app.simulate import START_MS, realistic_track

M_PER_DEG = 111_195.0  # metres per degree of latitude, near enough for a straight road


@pytest.fixture
def history(tmp_path: Path) -> Iterator[History]:
    with History.open(tmp_path / "history.duckdb", memory_limit="512MB") as h:
        yield h


@pytest.fixture
def cur(history: History) -> Iterator[duckdb.DuckDBPyConnection]:
    with history.reader() as c:
        yield c


def device(rider_id: int) -> bytes:
    return rider_id.to_bytes(16, "big")


def ride(
    race_id: int,
    rider_id: int,
    seconds: int,
    progress: Callable[[int], float],
    *,
    ele: Callable[[float], float] = lambda p: 100.0,
    speed_ms: Callable[[int], float] = lambda i: 10.0,
    first_seq: int = 1,
    day: int = 0,
) -> list[tuple[Any, ...]]:
    """A rider going north along a straight road at 1 Hz; ``progress(i)`` is exact."""
    rows, prev = [], None
    for i in range(seconds + 1):
        p = progress(i)
        fix = Fix.from_degrees(
            first_seq + i,
            START_MS + day * 86_400_000 + i * 1000,
            45.0 + p / M_PER_DEG,
            6.0,
            ele_m=ele(p),
            speed_ms=speed_ms(i),
        )
        rows.append(
            fix_row(race_id, rider_id, rider_id, device(rider_id), fix, progress_m=p, prev=prev)
        )
        prev = fix
    return rows


def append(history: History, rows: list[tuple[Any, ...]]) -> int:
    return history.append(rows_to_arrow(rows))


def count(cur: duckdb.DuckDBPyConnection) -> int:
    row = cur.execute("SELECT count(*) FROM fixes").fetchone()
    return int(row[0]) if row else -1


# --- store -------------------------------------------------------------------------------


def test_append_is_idempotent_by_device_and_seq(
    history: History, cur: duckdb.DuckDBPyConnection
) -> None:
    rows = ride(1, 1, 99, lambda i: 10.0 * i) + ride(1, 2, 99, lambda i: 9.0 * i)
    assert append(history, rows) == 200
    assert append(history, rows) == 0  # the whole batch re-delivered
    assert append(history, rows[50:150]) == 0  # a slice of it
    more = ride(1, 1, 149, lambda i: 10.0 * i)  # rider 1 went on: seqs 1..150
    assert append(history, more[90:] + more[140:]) == 50  # overlap, and repeats inside
    assert count(cur) == 250
    key = "SELECT count(*) FROM (SELECT DISTINCT race_id, device_id, seq FROM fixes)"
    assert cur.execute(key).fetchone() == (250,)


def test_same_device_and_seq_in_another_race_is_another_fix(history: History) -> None:
    assert append(history, ride(1, 1, 9, lambda i: i)) == 10
    assert append(history, ride(2, 1, 9, lambda i: i)) == 10


def test_seal_moves_a_race_and_keeps_it_idempotent(
    history: History, cur: duckdb.DuckDBPyConnection
) -> None:
    rows = ride(1, 1, 99, lambda i: 10.0 * i)
    append(history, rows[:60])
    append(history, ride(2, 2, 9, lambda i: i, day=1))
    assert history.live_races() == [1, 2]
    before = rider_stats(cur, 1)
    assert history.seal_race(1) == 60
    assert history.live_races() == [2]
    assert rider_stats(cur, 1) == before
    assert append(history, rows) == 40  # late upload: only the new fixes, into the live table
    assert history.seal_race(1) == 40
    sealed = cur.execute("SELECT count(*) FROM fixes_sealed WHERE race_id = 1").fetchone()
    assert sealed == (100,)
    assert append(history, rows) == 0


def test_last_fixes_resume_ingest(history: History) -> None:
    append(history, ride(1, 1, 99, lambda i: 10.0 * i) + ride(1, 2, 49, lambda i: 9.0 * i))
    last = history.last_fixes(1)
    assert sorted(last) == [1, 2]
    fix, progress = last[2]
    assert (fix.seq, fix.t_ms, progress) == (50, START_MS + 49_000, 441.0)
    assert fix.lat_e7 == round((45.0 + 441.0 / M_PER_DEG) * 1e7)
    assert history.last_fixes(7) == {}


def test_readers_see_whole_appends_while_the_writer_appends(history: History) -> None:
    rows = ride(1, 1, 1_999, lambda i: 10.0 * i)
    seen: list[int] = []

    def read() -> None:
        deadline = time.monotonic() + 30
        with history.reader() as c:
            while (not seen or seen[-1] < 2_000) and time.monotonic() < deadline:
                seen.append(count(c))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    for start in range(0, 2_000, 100):
        append(history, rows[start : start + 100])
    reader.join(timeout=30)
    assert seen == sorted(seen)
    assert all(n % 100 == 0 for n in seen)
    assert seen[-1] == 2_000


def test_rows_to_arrow_takes_mappings_and_rejects_bad_rows(history: History) -> None:
    row = ride(1, 1, 0, lambda i: 0.0)[0]
    table = rows_to_arrow([dict(zip(COLUMNS, row, strict=True))])
    assert table.schema == fixes_schema()
    assert table.num_rows == 1
    assert rows_to_arrow([]).num_rows == 0
    with pytest.raises(HistoryError, match="has no progress_m"):
        rows_to_arrow([{k: v for k, v in zip(COLUMNS, row, strict=True) if k != "progress_m"}])
    with pytest.raises(HistoryError, match="values"):
        rows_to_arrow([row[:-1]])
    with pytest.raises(HistoryError, match="schema"):
        rows_to_arrow([(*row[:5], "not a time", *row[6:])])
    with pytest.raises(HistoryError, match="lacks column"):
        history.append(table.drop_columns(["dt_ms"]))
    nan = table.set_column(COLUMNS.index("step_m"), "step_m", pa.array([math.nan]))
    with pytest.raises(HistoryError, match="non-finite step_m"):
        history.append(nan)
    null = table.set_column(0, "race_id", pa.array([None], pa.int32()))
    with pytest.raises(HistoryError, match="nulls"):
        history.append(null)
    too_big = table.set_column(COLUMNS.index("bib"), "bib", pa.array([70_000]))
    with pytest.raises(HistoryError, match="schema"):
        history.append(too_big)
    assert history.append(table.slice(0, 0)) == 0


def test_export_parquet_partitioned_by_race(history: History, tmp_path: Path) -> None:
    append(history, ride(1, 1, 99, lambda i: 10.0 * i) + ride(1, 2, 99, lambda i: 9.0 * i))
    append(history, ride(2, 1, 49, lambda i: 10.0 * i, day=1))
    out = tmp_path / "parquet"
    path = history.export_parquet(1, out)
    assert path == out / "race_id=1" / "fixes.parquet"
    history.export_parquet(2, out)
    history.export_parquet(2, out)  # re-export replaces
    glob = str(out / "*" / "*.parquet")
    parquet = f"read_parquet('{glob}', hive_partitioning = true)"
    rows = duckdb.sql(
        f"SELECT race_id, count(*), sum(step_m) FROM {parquet} GROUP BY race_id ORDER BY race_id"
    ).fetchall()
    assert [(r[0], r[1]) for r in rows] == [(1, 200), (2, 50)]
    assert sorted(p.name for p in (out / "race_id=2").iterdir()) == ["fixes.parquet"]
    with history.reader() as c:
        assert rows[0][2] == pytest.approx(
            c.execute("SELECT sum(step_m) FROM fixes WHERE race_id = 1").fetchone()[0]
        )


# --- results -----------------------------------------------------------------------------


def straight_race(history: History) -> dict[int, RiderInfo]:
    """A 10 km straight course at constant speeds: 10, 9, 12.5 (+300 s penalty), DNF, DNS."""
    for rider_id, speed, seconds in (
        (1, 10.0, 1_100),
        (2, 9.0, 1_200),
        (3, 12.5, 900),
        (4, 11.0, 500),
    ):
        append(history, ride(1, rider_id, seconds, lambda i, v=speed: v * i))
    return {
        1: RiderInfo(1, 1, "Ada"),
        2: RiderInfo(2, 2, "Bea", "finished"),
        3: RiderInfo(3, 3, "Cas", penalty_s=300),
        4: RiderInfo(4, 4, "Dee", "DNF"),
        5: RiderInfo(5, 5, "Eve", "DNS"),
    }


def test_results_finish_times_gaps_penalties_and_unclassified(
    history: History, cur: duckdb.DuckDBPyConnection
) -> None:
    riders = straight_race(history)
    results = race_results(cur, 1, finish_m=10_000.0, riders=riders)
    got = [(r["rider_id"], r["rank"], r["time_ms"], r["gap_ms"], r["status"]) for r in results]
    assert got == [
        (1, 1, 1_000_000, 0, "finished"),  # 10 km at 10 m/s; crossing the line finishes
        (3, 2, 800_000 + 300_000, 100_000, "finished"),  # 800 s plus the penalty
        (2, 3, 1_111_111, 111_111, "finished"),  # 10000/9 s, interpolated between fixes
        (4, None, None, None, "DNF"),
        (5, None, None, None, "DNS"),
    ]
    by_rider = {r["rider_id"]: r for r in results}
    assert by_rider[2]["finish_ms"] == START_MS + 1_111_111
    assert by_rider[2]["start_ms"] == START_MS
    assert by_rider[4]["progress_m"] == 5_500.0
    assert by_rider[4]["finish_ms"] is None
    assert by_rider[5]["fixes"] == 0
    assert by_rider[5]["progress_m"] is None
    assert json.loads(json.dumps(results)) == results
    gun = race_results(cur, 1, finish_m=10_000.0, riders=riders, start_ms=START_MS - 5_000)
    assert gun[0]["time_ms"] == 1_005_000


def test_results_ties_share_a_rank_and_riders_still_racing_follow(
    history: History, cur: duckdb.DuckDBPyConnection
) -> None:
    for rider_id, speed in ((1, 10.0), (2, 10.0), (3, 9.5)):
        append(history, ride(1, rider_id, 1_100, lambda i, v=speed: v * i))
    append(history, ride(1, 4, 300, lambda i: 10.0 * i))  # still on the road
    results = race_results(cur, 1, finish_m=10_000.0, riders={})
    assert [(r["rider_id"], r["rank"]) for r in results] == [(1, 1), (2, 1), (3, 3), (4, None)]
    assert results[3]["status"] == "racing"
    assert results[3]["bib"] == 4


def test_start_is_the_interpolated_crossing_of_the_start_line(
    history: History, cur: duckdb.DuckDBPyConnection
) -> None:
    append(history, ride(1, 1, 1_100, lambda i: 10.0 * i - 25.0))  # crosses 0 m at 2.5 s
    (result,) = race_results(cur, 1, finish_m=10_000.0, riders={})
    assert result["start_ms"] == START_MS + 2_500
    assert result["time_ms"] == 1_000_000


# --- splits, climbs, stats ---------------------------------------------------------------


def test_splits_are_interpolated_exactly(history: History, cur: duckdb.DuckDBPyConnection) -> None:
    straight_race(history)
    checkpoints = [Checkpoint("Sprint", "sprint", 2_500.5), Checkpoint("Feed", "feed", 7_777.7)]
    stats = {s["rider_id"]: s for s in rider_stats(cur, 1, checkpoints=checkpoints)}
    for rider_id, speed in ((1, 10.0), (2, 9.0), (3, 12.5)):
        splits = stats[rider_id]["splits"]
        assert [s["name"] for s in splits] == ["Sprint", "Feed"]
        for split, mark in zip(splits, (2_500.5, 7_777.7), strict=True):
            assert split["elapsed_ms"] == round(mark / speed * 1000)
            assert split["t_ms"] == START_MS + split["elapsed_ms"]
    assert [s["t_ms"] for s in stats[4]["splits"]] == [START_MS + 227_318, None]


def test_climb_time_and_vam(history: History, cur: duckdb.DuckDBPyConnection) -> None:
    def ele(p: float) -> float:  # flat, 8 % from 2 km to 5 km (240 m), then flat
        return 100.0 + 0.08 * min(max(p - 2_000.0, 0.0), 3_000.0)

    append(history, ride(1, 1, 1_300, lambda i: 5.0 * i, ele=ele, speed_ms=lambda i: 5.0))
    append(history, ride(1, 2, 1_300, lambda i: 4.0 * i, ele=ele, speed_ms=lambda i: 4.0))
    climb = Checkpoint("Col", "climb", 2_000.0, 5_000.0)
    stats = {s["rider_id"]: s for s in rider_stats(cur, 1, checkpoints=[climb])}
    first, second = stats[1]["climbs"][0], stats[2]["climbs"][0]
    assert first["time_ms"] == 600_000
    assert second["time_ms"] == 750_000
    assert first["gain_m"] == pytest.approx(240.0, abs=0.1)
    assert first["vam_m_h"] == pytest.approx(1_440.0, abs=1.0)  # 240 m in 10 min
    assert second["vam_m_h"] == pytest.approx(1_152.0, abs=1.0)
    assert (first["rank"], second["rank"]) == (1, 2)
    assert stats[1]["elevation_gain_m"] == pytest.approx(240.0, abs=1.0)


def test_stats_on_a_realistic_track_with_a_stop(
    history: History, cur: duckdb.DuckDBPyConnection
) -> None:
    ridden = realistic_track(1_080, seed=7)
    stop = ridden[600]  # then 120 s standing still: speed 0, GPS jitter of a centimetre or two
    still = [
        dataclasses.replace(
            stop,
            seq=stop.seq + i,
            t_ms=stop.t_ms + i * 1000,
            lat_e7=stop.lat_e7 + i % 3,
            speed_cms=0,
        )
        for i in range(1, 121)
    ]
    after = [dataclasses.replace(f, seq=f.seq + 120, t_ms=f.t_ms + 120_000) for f in ridden[601:]]
    track = ridden[:601] + still + after
    rows, prev, progress, steps = [], None, 0.0, []
    for fix in track:
        step = 0.0 if prev is None else haversine_m(prev.lat, prev.lon, fix.lat, fix.lon)
        progress += step
        steps.append(step)
        rows.append(fix_row(1, 9, 9, device(9), fix, progress_m=progress, prev=prev))
        prev = fix
    append(history, rows)
    (stats,) = rider_stats(cur, 1)
    assert stats["distance_m"] == pytest.approx(sum(steps), abs=0.1)
    assert stats["elapsed_ms"] == track[-1].t_ms - track[0].t_ms
    assert stats["moving_ms"] == pytest.approx(stats["elapsed_ms"] - 120_000, abs=2)
    moving_m = sum(s for s, f in zip(steps, track, strict=True) if f.speed_cms > 100)
    assert stats["avg_moving_speed_kmh"] == pytest.approx(
        moving_m / stats["moving_ms"] * 3600, abs=0.01
    )
    assert stats["max_speed_kmh"] == pytest.approx(
        max(f.speed_cms for f in track) * 0.036, abs=0.01
    )
    raw_rises = sum(max(b.ele_dm - a.ele_dm, 0) for a, b in itertools.pairwise(track)) / 10
    assert 0 < stats["elevation_gain_m"] < raw_rises  # noise filtered out, real climbing kept


def test_gps_altitude_noise_adds_no_climbing(
    history: History, cur: duckdb.DuckDBPyConnection
) -> None:
    wobble = [0.0, 0.3, -0.4, 0.5, -0.2, 0.1, -0.5, 0.4, -0.3, 0.2, 0.0]
    rows = ride(1, 1, 3_600, lambda i: 10.0 * i, ele=lambda p: 100.0 + wobble[int(p / 10) % 11])
    append(history, rows)
    (stats,) = rider_stats(cur, 1)
    assert stats["elevation_gain_m"] == 0.0


# --- summaries, seasons, CSV -------------------------------------------------------------


def test_race_summary_rider_season_and_compare_races(
    history: History, cur: duckdb.DuckDBPyConnection
) -> None:
    straight_race(history)
    append(history, ride(2, 1, 600, lambda i: 8.0 * i, first_seq=2_000, day=1))
    summary = race_summary(cur, 1)
    assert summary["race_id"] == 1
    assert summary["riders"] == 4
    assert summary["fixes"] == 1_101 + 1_201 + 901 + 501
    assert summary["start_ms"] == START_MS
    assert summary["end_ms"] == START_MS + 1_200_000
    assert summary["leader_progress_m"] == pytest.approx(11_250.0)
    assert summary["distance_m"] > 0
    assert 35 < summary["avg_speed_kmh"] < 45
    season = rider_season(cur, 1)
    assert [s["race_id"] for s in season] == [1, 2]
    assert set(season[0]) == {
        "race_id",
        "bib",
        "fixes",
        "start_ms",
        "distance_m",
        "moving_ms",
        "avg_moving_speed_kmh",
        "max_speed_kmh",
        "elevation_gain_m",
    }
    assert season[1]["moving_ms"] == 600_000
    assert season[1]["avg_moving_speed_kmh"] == pytest.approx(28.8, abs=0.1)
    compared = compare_races(cur, [2, 99, 1])
    assert [c["race_id"] for c in compared] == [2, 99, 1]
    assert compared[0]["riders"] == 1
    assert compared[2] == summary
    assert compared[1]["riders"] == 0
    assert compared[1]["avg_speed_kmh"] is None
    assert compare_races(cur, []) == []
    assert rider_season(cur, 42) == []


def test_csv_has_a_header_and_flattens_nested_values(
    history: History, cur: duckdb.DuckDBPyConnection
) -> None:
    riders = straight_race(history)
    results = race_results(cur, 1, finish_m=10_000.0, riders=riders)
    parsed = list(csv.DictReader(io.StringIO(to_csv(results))))
    assert [r["rider_id"] for r in parsed] == ["1", "3", "2", "4", "5"]
    assert parsed[0]["time_ms"] == "1000000"
    assert parsed[3]["rank"] == ""
    stats = rider_stats(cur, 1, checkpoints=[Checkpoint("Sprint", "sprint", 2_500.5)])
    first = next(csv.DictReader(io.StringIO(to_csv(stats))))
    assert json.loads(first["splits"])[0]["name"] == "Sprint"
    assert to_csv([]) == "\r\n"


def test_a_race_with_no_fixes(cur: duckdb.DuckDBPyConnection) -> None:
    (dns,) = race_results(cur, 9, finish_m=1_000.0, riders={1: RiderInfo(1, 7, "Ada", "DNS")})
    assert (dns["bib"], dns["rank"], dns["fixes"], dns["start_ms"]) == (7, None, 0, None)
    assert rider_stats(cur, 9, checkpoints=[Checkpoint("Top", "climb", 1.0, 2.0)]) == []
    assert race_summary(cur, 9)["fixes"] == 0


def test_rider_info_validates_itself() -> None:
    with pytest.raises(HistoryError, match="status"):
        RiderInfo(1, 1, "Ada", "crashed")
    with pytest.raises(HistoryError, match="penalty"):
        RiderInfo(1, 1, "Ada", penalty_s=-5)
