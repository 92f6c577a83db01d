"""A race's tracks for a replay: every rider's positions resampled on a time grid.

One query over one race's fixes: the race's time span and rider count choose the grid
step (the one asked for, made coarser when the answer would pass ``max_samples``
positions in all), then each rider keeps the last fix of each step. The answer is
columnar (one list per field per rider): four numbers a position, no keys repeated. A
50-rider, 4-hour race asked at 5 s would be 144,000 positions: it comes at 15 s, 48,000
positions, about 1.9 MB of JSON.

The fixes keep their own times (``t_ms``): a player interpolates between them, so a
rider who stopped, or whose tracker was silent for a while, is shown as they were.
"""

from __future__ import annotations

from typing import Any

import duckdb

from .store import History

DEFAULT_STEP_S = 5
"""The grid step when the caller names none."""
MAX_STEP_S = 3_600
"""The coarsest grid a caller may ask for."""
MAX_SAMPLES = 50_000
"""At most this many positions in one answer, over all riders (about 2 MB of JSON)."""

_TRACK_SQL = """
WITH race AS (
    SELECT rider_id, bib, t_ms, lat_e7, lon_e7, progress_m FROM fixes WHERE race_id = $race
), span AS (
    SELECT min(t_ms) AS t0, max(t_ms) AS t1, count(DISTINCT rider_id) AS riders FROM race
), grid AS (
    SELECT t0, t1, greatest(
        $step_ms,
        ceil((t1 - t0) * riders / greatest($max_samples - 2 * riders, 1) / 1000) * 1000
    )::BIGINT AS step_ms
    FROM span
), samples AS (
    SELECT r.rider_id, (r.t_ms - g.t0 + g.step_ms - 1) // g.step_ms AS k,
           any_value(r.bib) AS bib, max(r.t_ms) AS t_ms,
           arg_max(r.lat_e7, r.t_ms) AS lat_e7, arg_max(r.lon_e7, r.t_ms) AS lon_e7,
           round(arg_max(r.progress_m, r.t_ms), 1) AS progress_m
    FROM race r CROSS JOIN grid g GROUP BY r.rider_id, k
)
SELECT s.rider_id, any_value(s.bib) AS bib, any_value(g.step_ms) AS step_ms,
       any_value(g.t0) AS t0, any_value(g.t1) AS t1,
       list(s.t_ms ORDER BY s.k) AS t_ms, list(s.lat_e7 ORDER BY s.k) AS lat_e7,
       list(s.lon_e7 ORDER BY s.k) AS lon_e7, list(s.progress_m ORDER BY s.k) AS progress_m
FROM samples s CROSS JOIN grid g GROUP BY s.rider_id ORDER BY s.rider_id
"""
"""``grid``: one row, the race's span and the step: the one asked for, made coarser (in
whole seconds) until riders x (span / step + 2) fits ``max_samples``; ``samples``: each
rider's last fix in each step k, which holds (t0 + (k - 1) step, t0 + k step] (step 0
holds only the race's first instant, so the replay starts where the race did); then one
row per rider with the samples as lists in time order."""


def race_track(
    cur: duckdb.DuckDBPyConnection,
    race_id: int,
    *,
    step_s: int = DEFAULT_STEP_S,
    max_samples: int = MAX_SAMPLES,
) -> dict[str, Any]:
    """Every rider's positions in a race, one every ``step_s`` seconds (or coarser).

    Returns ``{race_id, step_s, requested_step_s, start_ms, end_ms, samples, riders}``:
    ``step_s`` is the step used, coarser than asked when the answer would otherwise pass
    ``max_samples`` positions (it stays within them whenever they allow three a rider);
    ``start_ms`` and ``end_ms`` are the race's first and last fix (None without fixes);
    ``samples`` counts the positions; each rider is ``{rider_id, bib, t_ms: [...],
    lat_e7: [...], lon_e7: [...], progress_m: [...]}``, their last fix in each step,
    oldest first. A step in which a rider sent no fix has no sample for them.
    """
    if step_s < 1:
        raise ValueError("step_s must be at least 1")
    if max_samples < 1:
        raise ValueError("max_samples must be at least 1")
    params = {"race": race_id, "step_ms": step_s * 1000, "max_samples": max_samples}
    table = cur.sql(_TRACK_SQL, params=params).to_arrow_table()
    rows = table.to_pylist()
    riders = [
        {
            "rider_id": row["rider_id"],
            "bib": row["bib"],
            "t_ms": row["t_ms"],
            "lat_e7": row["lat_e7"],
            "lon_e7": row["lon_e7"],
            "progress_m": row["progress_m"],
        }
        for row in rows
    ]
    first = rows[0] if rows else None
    return {
        "race_id": race_id,
        "step_s": first["step_ms"] // 1000 if first else step_s,
        "requested_step_s": step_s,
        "start_ms": first["t0"] if first else None,
        "end_ms": first["t1"] if first else None,
        "samples": sum(len(r["t_ms"]) for r in riders),
        "riders": riders,
    }


class Replay:
    """The replay's reads of the history (``History.reader()`` per call)."""

    def __init__(self, history: History) -> None:
        self.history = history

    def track(self, race_id: int, step_s: int = DEFAULT_STEP_S) -> dict[str, Any]:
        """See :func:`race_track`."""
        with self.history.reader() as cur:
            return race_track(cur, race_id, step_s=step_s)
