"""Benchmark of the history: ingest a season into DuckDB, then query it.

    python -m bench.analytics --json     # full run: 50 riders, 21 stages of 6.6 h at 1 Hz (25 M)
    python -m bench.analytics --quick    # the same season with 32-minute stages (2 M), < 30 s

Prints one JSON object: {"bench": "analytics", "quick": bool, "figures": {...},
"targets": {...}, "met": bool}. Each stage is generated inside DuckDB (not timed), handed
over as an Arrow table and appended through ``History.append`` in 250,000-fix batches
(timed: ``ingest_fixes_per_s``), then sealed (``seal_race_ms``). Query figures are the
median of 7 runs on one stage in the middle of the season, after one warm-up run.
The DuckDB file lives in a temporary directory, deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from cloud.history.analytics import (
    RiderInfo,
    compare_races,
    race_results,
    race_summary,
    rider_season,
    rider_stats,
)
from cloud.history.store import History
from sync_protocol.course import Checkpoint
from tracker_app.simulate import START_MS

TARGETS = {"ingest_fixes_per_s": 1_000_000.0, "race_results_plus_stats_ms": 200.0}
RIDERS, STAGES = 50, 21
BATCH = 250_000
"""Fixes per append in the main ingest: a relay's backlog after an hour or two offline."""
SMALL_BATCH = 3_000
"""One minute of a 50-rider race: the size of a live micro-batch."""

_STAGE_SQL = """
WITH riders AS (
    SELECT rider_id,
           7.0 + (hash(rider_id * 7919 + $stage) % 1000) / 400.0 AS base_v,
           (hash(rider_id * 31 + $stage) % 6283) / 1000.0 AS phase,
           CASE WHEN rider_id % 10 = 3 THEN $seconds // 2 ELSE $seconds + 1 END AS stop_at
    FROM range(1, $riders + 1) r(rider_id)
), ticks AS (
    SELECT rider_id, i, base_v, phase,
           CASE WHEN i < stop_at THEN i WHEN i < stop_at + 120 THEN stop_at ELSE i - 120 END
               AS ride_s,
           i >= stop_at AND i < stop_at + 120 AS stopped
    FROM range(0, $seconds) t(i), riders
), track AS (
    SELECT *, base_v * ride_s - 1500.0 * cos(ride_s / 600.0 + phase) + 1500.0 * cos(phase)
               AS progress,
           CASE WHEN stopped THEN 0.0 ELSE base_v + 2.5 * sin(ride_s / 600.0 + phase) END AS v
    FROM ticks
)
SELECT $stage::INTEGER AS race_id, rider_id::INTEGER AS rider_id, rider_id::SMALLINT AS bib,
       unhex(md5(rider_id::VARCHAR)) AS device_id,
       (($stage - 1) * $seconds + i + 1)::BIGINT AS seq,
       ($start + $stage * 86400000 + i * 1000)::BIGINT AS t_ms,
       (450000000 + progress * 63.6)::INTEGER AS lat_e7,
       (60000000 + progress * 89.9)::INTEGER AS lon_e7,
       (5000 + 4000 * sin(progress / 12000.0 + $stage) + hash($stage, rider_id, i) % 9 - 4)
           ::INTEGER AS ele_dm,
       (v * 100)::SMALLINT AS speed_cms, 450::SMALLINT AS heading_dd, 40 AS hacc_dm,
       progress AS progress_m,
       CASE WHEN i = 0 THEN 0.0 WHEN stopped THEN 0.3 ELSE v END AS step_m,
       CASE WHEN i = 0 THEN 0 ELSE 1000 END AS dt_ms,
       v > 1.0 AS moving
FROM track
"""


def stage_table(gen: duckdb.DuckDBPyConnection, stage: int, seconds: int) -> pa.Table:
    """One stage of the season, in arrival order (every rider's fix of second 0, 1, ...)."""
    params = {"stage": stage, "seconds": seconds, "riders": RIDERS, "start": START_MS}
    return gen.sql(_STAGE_SQL, params=params).to_arrow_table()


def timed_ms(work: Callable[[], object], runs: int = 7) -> float:
    """Median wall time of ``work`` in ms, after one warm-up run."""
    work()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        work()
        times.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(times), 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.analytics", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    parser.add_argument("--quick", action="store_true", help="smaller season (under 30 s)")
    args = parser.parse_args(argv)
    seconds = 1_905 if args.quick else 23_800

    def log(message: str) -> None:
        if not args.json:
            print(message, file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="bench-analytics-") as tmp:
        figures = run(Path(tmp), seconds, log)
    met = (
        figures["ingest_fixes_per_s"] >= TARGETS["ingest_fixes_per_s"]
        and figures["race_results_plus_stats_ms"] <= TARGETS["race_results_plus_stats_ms"]
    )
    result = {
        "bench": "analytics",
        "quick": args.quick,
        "figures": figures,
        "targets": {
            "ingest_fixes_per_s": f">= {TARGETS['ingest_fixes_per_s']:.0f}",
            "race_results_plus_stats_ms": f"<= {TARGETS['race_results_plus_stats_ms']:g}",
        },
        "met": met,
    }
    print(json.dumps(result, indent=None if args.json else 2))
    return 0


def run(tmp: Path, seconds: int, log: Callable[[str], None]) -> dict[str, Any]:
    """Build the season in ``tmp``, query it, return the figures."""
    gen = duckdb.connect(config={"threads": 2})
    history = History.open(tmp / "history.duckdb", threads=2, memory_limit="4GB")
    figures: dict[str, Any] = {"riders": RIDERS, "stages": STAGES, "stage_seconds": seconds}
    ingest_s, seal_ms, fixes, generate_s = 0.0, [], 0, 0.0
    redelivered = pa.table({})
    middle, last = STAGES // 2 + 1, STAGES
    finish_m = 6.9 * seconds
    checkpoints = [
        Checkpoint("Sprint", "sprint", 0.3 * finish_m),
        Checkpoint("Climb", "climb", 0.5 * finish_m, 0.6 * finish_m),
        Checkpoint("Feed", "feed", 0.8 * finish_m),
    ]
    riders = {
        r: RiderInfo(r, r, f"Rider {r}", "DNF" if r == 17 else "racing", 20 if r == 5 else 0)
        for r in range(1, RIDERS + 1)
    }

    def report(cur: duckdb.DuckDBPyConnection, race_id: int) -> None:
        race_results(cur, race_id, finish_m=finish_m, riders=riders)
        rider_stats(cur, race_id, checkpoints=checkpoints)

    with history:
        for stage in range(1, STAGES + 1):
            log(f"stage {stage}/{STAGES}: generate, ingest, seal ...")
            start = time.perf_counter()
            table = stage_table(gen, stage, seconds)
            generate_s += time.perf_counter() - start
            start = time.perf_counter()
            for offset in range(0, table.num_rows, BATCH):
                fixes += history.append(table.slice(offset, BATCH))
            ingest_s += time.perf_counter() - start
            if stage == last:
                with history.reader() as cur:
                    figures["live_race_results_plus_stats_ms"] = timed_ms(lambda: report(cur, last))
            start = time.perf_counter()
            history.seal_race(stage)
            seal_ms.append((time.perf_counter() - start) * 1000)
            if stage == middle:
                redelivered = table.slice(table.num_rows // 2, SMALL_BATCH)
        figures["generate_s"] = round(generate_s, 1)
        figures["fixes"] = fixes
        figures["ingest_fixes_per_s"] = round(fixes / ingest_s)
        figures["seal_race_ms"] = round(statistics.median(seal_ms))
        figures["file_bytes_per_fix"] = round(history.path.stat().st_size / fixes, 1)

        log("idempotency and small batches ...")
        start = time.perf_counter()
        stored_again = history.append(redelivered)
        figures["redelivered_3000_stored"] = stored_again
        figures["redelivered_3000_ms"] = round((time.perf_counter() - start) * 1000, 1)
        extra = stage_table(gen, STAGES + 1, min(seconds, 1_200))
        start = time.perf_counter()
        for offset in range(0, extra.num_rows, SMALL_BATCH):
            history.append(extra.slice(offset, SMALL_BATCH))
        elapsed = time.perf_counter() - start
        figures["ingest_fixes_per_s_batch3000"] = round(extra.num_rows / elapsed)
        history.seal_race(STAGES + 1)

        log(f"queries on stage {middle} ...")
        with history.reader() as cur:
            figures["race_results_ms"] = timed_ms(
                lambda: race_results(cur, middle, finish_m=finish_m, riders=riders)
            )
            figures["rider_stats_ms"] = timed_ms(
                lambda: rider_stats(cur, middle, checkpoints=checkpoints)
            )
            figures["race_results_plus_stats_ms"] = timed_ms(lambda: report(cur, middle))
            figures["race_summary_ms"] = timed_ms(lambda: race_summary(cur, middle))
            figures["rider_season_ms"] = timed_ms(lambda: rider_season(cur, 7), runs=5)
            stages = list(range(1, STAGES + 1))
            figures["compare_races_season_ms"] = timed_ms(
                lambda: compare_races(cur, stages), runs=3
            )
            results = race_results(cur, middle, finish_m=finish_m, riders=riders)
            figures["finishers"] = sum(1 for r in results if r["rank"] is not None)

        log("parquet export ...")
        start = time.perf_counter()
        history.export_parquet(middle, tmp / "parquet")
        figures["export_parquet_race_ms"] = round((time.perf_counter() - start) * 1000)
    gen.close()
    return figures


if __name__ == "__main__":
    raise SystemExit(main())
