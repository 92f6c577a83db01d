"""Race analytics over the history: results, splits, speeds, climbs, seasons. Pure queries.

Each function takes a DuckDB cursor (``History.reader()``) and returns JSON-ready dicts:
times in ms (epoch or durations), distances in metres, speeds in km/h. Per-race queries
filter ``race_id`` first and use only aggregates (``step_m``, ``dt_ms`` and ``moving`` are
computed at ingest), so they read one race's row groups and need no window functions.

A mark (checkpoint, climb top, finish line) is crossed between the rider's first fix at
or after it and the fix before that one, interpolated linearly
(:func:`sync_protocol.course.crossing_time_ms`). A rider starts at the gun (``start_ms``)
when the caller knows it, else when crossing race distance 0 (or at the first fix). The
gun is the moment the race really started (the cloud passes the time it first went live,
not the scheduled start: officials start late or early); finish times and splits count
from it. ``start_ms``/``end_ms`` of summaries and seasons are first and last fixes, and
moving time, distance, speeds and climbing do not depend on the gun.

Elevation gain: elevations are averaged over 10 s windows (GPS altitude noise of ±0.4 m
averages to ±0.13 m), then rises are summed with the course's 1 m hysteresis
(:data:`sync_protocol.course.ELEVATION_HYSTERESIS_M`), so noise adds nothing on the flat.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb

from sync_protocol.course import ELEVATION_HYSTERESIS_M, Checkpoint, crossing_time_ms

from .store import HistoryError

STATUSES = ("racing", "finished", "DNF", "DNS", "DSQ")
"""A rider's status in a race, as race control sets it."""
UNCLASSIFIED = ("DNF", "DSQ", "DNS")
"""Statuses that take no rank, listed after the finishers in this order."""
ELEVATION_BIN_MS = 10_000
"""Elevations are averaged over windows this long before summing the climbing."""

Row = dict[str, Any]


@dataclass(frozen=True, slots=True)
class RiderInfo:
    """What race control knows about a rider in one race (the fixes know the rest)."""

    rider_id: int
    """The rider (account) id, as in the ``fixes`` table."""
    bib: int
    """Race number."""
    name: str
    """Display name."""
    status: str = "racing"
    """One of :data:`STATUSES`."""
    penalty_s: float = 0
    """Time penalty in seconds, added to the finish time."""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise HistoryError(f"rider {self.rider_id}: status {self.status!r} not in {STATUSES}")
        if self.penalty_s < 0:
            raise HistoryError(f"rider {self.rider_id}: penalty_s must not be negative")


@dataclass(frozen=True, slots=True)
class _Crossing:
    t_ms: int
    ele_m: float | None


def _rows(cur: duckdb.DuckDBPyConnection, sql: str, params: Mapping[str, Any]) -> list[Row]:
    result = cur.execute(sql, dict(params))
    names = [d[0] for d in result.description or ()]
    return [dict(zip(names, row, strict=True)) for row in result.fetchall()]


_INTERVALS_SQL = """
SELECT rider_id, {interval} AS k, any_value(bib) AS bib, count(*) AS fixes,
       min(t_ms) AS first_fix_ms, max(t_ms) AS last_fix_ms, max(progress_m) AS progress_m,
       sum(step_m) AS distance_m, max(speed_cms) AS max_speed_cms,
       sum(dt_ms) FILTER (WHERE moving) AS moving_ms, sum(step_m) FILTER (WHERE moving) AS moving_m,
       arg_min(dt_ms, t_ms) AS first_dt_ms
FROM fixes WHERE race_id = $race GROUP BY ALL
"""
"""Aggregates per rider and interval k between sorted marks, and the interval's first fix."""
_LOOKUP_SQL = """
SELECT rider_id, t_ms, progress_m, ele_dm FROM fixes
SEMI JOIN (SELECT unnest($riders) AS rider_id, unnest($times) AS t_ms) USING (rider_id, t_ms)
WHERE race_id = $race AND t_ms = ANY($times)
"""
_SUMS = ("fixes", "distance_m", "moving_ms", "moving_m")
_MAXES = ("last_fix_ms", "progress_m", "max_speed_cms")


def _pass(cur: duckdb.DuckDBPyConnection, race_id: int, marks: Sequence[float]) -> list[Row]:
    """Per rider: the aggregates and a ``crossings`` list (a :class:`_Crossing` per mark).

    One scan groups each rider's fixes by the interval between sorted marks they fall in;
    the first fix at/after mark i is the earliest first fix of the intervals above i, and
    its ``dt_ms`` says when the fix before it was. A point lookup reads those two fixes.
    """
    order = sorted(set(marks))
    cases = " ".join(f"WHEN progress_m >= $m{i} THEN {i + 1}" for i in reversed(range(len(order))))
    sql = _INTERVALS_SQL.format(interval=f"CASE {cases} ELSE 0 END" if order else "0")
    params: dict[str, Any] = {"race": race_id} | {f"m{i}": m for i, m in enumerate(order)}
    riders: dict[int, Row] = {}
    for g in _rows(cur, sql, params):
        rider = riders.get(g["rider_id"])
        if rider is None:
            riders[g["rider_id"]] = rider = g | {"intervals": {}}
        else:
            rider |= {name: (rider[name] or 0) + (g[name] or 0) for name in _SUMS}
            rider |= {name: max(rider[name], g[name]) for name in _MAXES}
            rider["first_fix_ms"] = min(rider["first_fix_ms"], g["first_fix_ms"])
        rider["intervals"][g["k"]] = (g["first_fix_ms"], g["first_dt_ms"])
    firsts: dict[tuple[int, int], tuple[int, int]] = {}  # (rider, i) -> (t_ms, dt_ms)
    for rider_id, rider in riders.items():
        best = None
        for i in reversed(range(len(order))):
            entry = rider["intervals"].get(i + 1)
            best = entry if entry and (best is None or entry[0] < best[0]) else best
            if best is not None:
                firsts[rider_id, i] = best
    wanted = {(r, t) for (r, _), (t, _) in firsts.items()}
    wanted |= {(r, t - dt) for (r, _), (t, dt) in firsts.items() if dt > 0}
    params = {"race": race_id, "riders": [r for r, _ in wanted], "times": [t for _, t in wanted]}
    fixes = {(f["rider_id"], f["t_ms"]): f for f in _rows(cur, _LOOKUP_SQL, params)}
    index = {m: i for i, m in enumerate(order)}
    for rider_id, rider in riders.items():
        crossings: list[_Crossing | None] = []
        for mark in marks:
            first = firsts.get((rider_id, index[mark]))
            if first is None:
                crossings.append(None)
                continue
            at, before = fixes.get((rider_id, first[0])), fixes.get((rider_id, first[0] - first[1]))
            crossings.append(_cross(before, at, mark) if at else _Crossing(first[0], None))
        rider["crossings"] = crossings
    return [riders[r] for r in sorted(riders)]


def _cross(before: Row | None, at: Row, mark: float) -> _Crossing:
    """Interpolate the crossing of ``mark`` between the fix before and the fix at/after it."""
    if before is not None and before is not at:
        t_ms = crossing_time_ms(
            before["t_ms"], before["progress_m"], at["t_ms"], at["progress_m"], mark
        )
        if t_ms is not None:
            fraction = (mark - before["progress_m"]) / (at["progress_m"] - before["progress_m"])
            ele_dm = before["ele_dm"] + (at["ele_dm"] - before["ele_dm"]) * fraction
            return _Crossing(t_ms, ele_dm / 10)
    return _Crossing(at["t_ms"], at["ele_dm"] / 10)  # the first fix is already past the mark


def _start_ms(row: Row, start_ms: int | None) -> int:
    """The gun time, else the rider's crossing of race distance 0 (mark 0 comes first)."""
    if start_ms is not None:
        return start_ms
    crossing = row["crossings"][0]
    return int(row["first_fix_ms"] if crossing is None else crossing.t_ms)


def race_results(
    cur: duckdb.DuckDBPyConnection,
    race_id: int,
    *,
    finish_m: float,
    riders: Mapping[int, RiderInfo],
    start_ms: int | None = None,
) -> list[Row]:
    """The classification: finishers by time (penalties added), then the rest.

    A rider is classified when they crossed ``finish_m`` and are not DNF/DNS/DSQ; ``rank``
    ties share a rank (1, 2, 2, 4). Riders still racing (or finished with no timed
    crossing) follow by distance covered, then DNF, DSQ and DNS, all with rank None.
    Riders known to race control with no fixes appear with null figures.
    """
    rows = {r["rider_id"]: r for r in _pass(cur, race_id, [0.0, finish_m])}
    out: list[Row] = []
    for rider_id in sorted(set(rows) | set(riders)):
        row, info = rows.get(rider_id), riders.get(rider_id)
        info = info or RiderInfo(rider_id, row["bib"] if row else 0, "")
        entry: Row = {"rank": None, "rider_id": rider_id, "bib": info.bib, "name": info.name}
        entry |= {"status": info.status, "time_ms": None, "gap_ms": None}
        entry |= {"penalty_s": info.penalty_s, "start_ms": None, "finish_ms": None}
        entry |= {"progress_m": None, "fixes": 0, "last_fix_ms": None}
        if row is not None:
            entry |= {"progress_m": round(row["progress_m"], 1), "fixes": row["fixes"]}
            entry |= {"last_fix_ms": row["last_fix_ms"], "start_ms": _start_ms(row, start_ms)}
            finish = row["crossings"][1]
            if finish is not None:
                entry["finish_ms"] = finish.t_ms
                if info.status == "racing":
                    entry["status"] = "finished"  # crossed the line; race control may say otherwise
                if info.status not in UNCLASSIFIED:
                    penalty_ms = round(info.penalty_s * 1000)
                    entry["time_ms"] = finish.t_ms - entry["start_ms"] + penalty_ms
        out.append(entry)

    def order(e: Row) -> tuple[int, float, int]:
        if e["time_ms"] is not None:
            return (0, e["time_ms"], e["bib"] or 0)
        group = 1 + (UNCLASSIFIED.index(e["status"]) + 1 if e["status"] in UNCLASSIFIED else 0)
        progress = e["progress_m"]
        return (group, math.inf if progress is None else -progress, e["bib"] or 0)

    out.sort(key=order)
    _rank(out, "time_ms")
    for entry in out:
        if entry["time_ms"] is not None:
            entry["gap_ms"] = entry["time_ms"] - out[0]["time_ms"]
    return out


def _rank(rows: list[Row], key: str) -> None:
    """Set ``rank`` by ``key`` (smallest first, ties share a rank) where ``key`` is set."""
    ranked = sorted((r for r in rows if r[key] is not None), key=lambda r: r[key])
    for i, row in enumerate(ranked):
        tied = i > 0 and ranked[i - 1][key] == row[key]
        row["rank"] = ranked[i - 1]["rank"] if tied else i + 1


def _gains(cur: duckdb.DuckDBPyConnection, where: str, params: Row, key: str) -> dict[int, float]:
    """Elevation gain in metres per ``key`` value (10 s means, then 1 m hysteresis)."""
    sql = f"""
        SELECT {key} AS k, list(e ORDER BY b) AS es FROM (
            SELECT {key}, t_ms // {ELEVATION_BIN_MS} AS b, avg(ele_dm) AS e
            FROM fixes WHERE {where} GROUP BY ALL
        ) GROUP BY k
    """  # noqa: S608 (where/key are literals of this module)
    table = cur.sql(sql, params=dict(params)).to_arrow_table()
    keys, series = table.column("k").to_pylist(), table.column("es").to_pylist()
    return {k: _hysteresis_gain(es) / 10 for k, es in zip(keys, series, strict=True)}


def _hysteresis_gain(elevations: Iterable[float]) -> float:
    """Sum of rises in decimetres, each counted once it exceeds the hysteresis."""
    gain, ref, threshold = 0.0, None, ELEVATION_HYSTERESIS_M * 10
    for ele in elevations:
        if ref is None or ele < ref - threshold:
            ref = ele
        elif ele >= ref + threshold:
            gain += ele - ref
            ref = ele
    return gain


def _kmh(metres: float | None, ms: float | None) -> float | None:
    return round(metres / ms * 3600, 2) if metres is not None and ms else None


def _figures(row: Row, gain_m: float) -> Row:
    """The figures of one rider in one race, from the aggregates."""
    return {
        "distance_m": round(row["distance_m"], 1),
        "moving_ms": int(row["moving_ms"] or 0),
        "avg_moving_speed_kmh": _kmh(row["moving_m"], row["moving_ms"]),
        "max_speed_kmh": round(row["max_speed_cms"] * 0.036, 2),
        "elevation_gain_m": round(gain_m, 1),
    }


def rider_stats(
    cur: duckdb.DuckDBPyConnection,
    race_id: int,
    *,
    checkpoints: Sequence[Checkpoint] = (),
    start_ms: int | None = None,
) -> list[Row]:
    """Per rider: distance, moving and elapsed time, speeds, climbing, splits and climbs.

    Figures cover every fix of the race. ``moving_ms`` sums the time since the previous fix
    over moving fixes; the average moving speed is the distance covered while moving over
    that time. ``splits`` time each checkpoint (``elapsed_ms`` from the rider's start);
    ``climbs`` (climb checkpoints with an ``end_m``) give the time from foot to top, the
    height gained between the two crossings, VAM (metres climbed per hour) and ``rank``
    among the riders who finished the climb (1 = fastest).
    """
    marks = [0.0, *(c.distance_m for c in checkpoints)]
    climbs_with_top = [c for c in checkpoints if c.end_m is not None]
    tops = {c.name: len(marks) + i for i, c in enumerate(climbs_with_top)}
    marks += [c.end_m for c in climbs_with_top if c.end_m is not None]
    rows = _pass(cur, race_id, marks)
    gains = _gains(cur, "race_id = $race", {"race": race_id}, "rider_id")
    out: list[Row] = []
    for row in rows:
        start, crossings = _start_ms(row, start_ms), row["crossings"]
        splits, climbs = [], []
        for k, cp in enumerate(checkpoints, start=1):
            at = crossings[k]
            split: Row = {"name": cp.name, "kind": cp.kind, "distance_m": cp.distance_m}
            splits.append(split | {"t_ms": at and at.t_ms, "elapsed_ms": at and at.t_ms - start})
            if cp.name in tops:
                climbs.append(_climb(cp, at, crossings[tops[cp.name]]))
        rider: Row = {"rider_id": row["rider_id"], "bib": row["bib"], "fixes": row["fixes"]}
        rider |= {"start_ms": start, "first_fix_ms": row["first_fix_ms"]}
        rider |= {"last_fix_ms": row["last_fix_ms"], "progress_m": round(row["progress_m"], 1)}
        rider["elapsed_ms"] = row["last_fix_ms"] - row["first_fix_ms"]
        rider |= _figures(row, gains.get(row["rider_id"], 0.0))
        out.append(rider | {"splits": splits, "climbs": climbs})
    for name in tops:
        _rank([c for r in out for c in r["climbs"] if c["name"] == name], "time_ms")
    return out


def _climb(cp: Checkpoint, foot: _Crossing | None, top: _Crossing | None) -> Row:
    climb: Row = {"name": cp.name, "start_m": cp.distance_m, "end_m": cp.end_m}
    climb |= {"time_ms": None, "gain_m": None, "vam_m_h": None, "rank": None}
    if foot is None or top is None or top.t_ms <= foot.t_ms:
        return climb
    climb["time_ms"] = top.t_ms - foot.t_ms
    if top.ele_m is not None and foot.ele_m is not None:
        gain = top.ele_m - foot.ele_m
        climb["gain_m"] = round(gain, 1)
        climb["vam_m_h"] = round(gain * 3_600_000 / climb["time_ms"], 1)
    return climb


_SUMMARY_SQL = """
SELECT race_id, count(*) AS riders, sum(fixes) AS fixes, min(first_ms) AS start_ms,
       max(last_ms) AS end_ms, sum(distance_m) AS distance_m,
       max(progress_m) AS leader_progress_m, sum(moving_m) AS moving_m, sum(moving_ms) AS moving_ms
FROM (
    SELECT race_id, rider_id, count(*) AS fixes, min(t_ms) AS first_ms, max(t_ms) AS last_ms,
           sum(step_m) AS distance_m, max(progress_m) AS progress_m,
           sum(step_m) FILTER (WHERE moving) AS moving_m,
           sum(dt_ms) FILTER (WHERE moving) AS moving_ms
    FROM fixes WHERE race_id IN ({races}) GROUP BY race_id, rider_id
) GROUP BY race_id
"""


def _summary(row: Row | None, race_id: int) -> Row:
    row = row or {"riders": 0, "fixes": 0}
    summary = {"race_id": race_id, "riders": row["riders"], "fixes": row["fixes"]}
    summary |= {k: row.get(k) for k in ("start_ms", "end_ms", "leader_progress_m")}
    distance = row.get("distance_m")
    summary["distance_m"] = None if distance is None else round(distance, 1)
    summary["avg_speed_kmh"] = _kmh(row.get("moving_m"), row.get("moving_ms"))
    return summary


def race_summary(cur: duckdb.DuckDBPyConnection, race_id: int) -> Row:
    """One race at a glance: riders, fixes, first and last fix (``start_ms``, ``end_ms``),
    distance covered by the whole field, the leader's race distance and the field's
    average moving speed."""
    return compare_races(cur, [race_id])[0]


def compare_races(cur: duckdb.DuckDBPyConnection, race_ids: Sequence[int]) -> list[Row]:
    """:func:`race_summary` of each race, in the order given (one scan for all)."""
    ids = [int(r) for r in race_ids]
    if not ids:
        return []
    sql = _SUMMARY_SQL.format(races=", ".join(f"$r{i}" for i in range(len(ids))))
    found = {r["race_id"]: r for r in _rows(cur, sql, {f"r{i}": r for i, r in enumerate(ids)})}
    return [_summary(found.get(race_id), race_id) for race_id in ids]


_SEASON_SQL = """
SELECT race_id, any_value(bib) AS bib, count(*) AS fixes, min(t_ms) AS start_ms,
       sum(step_m) AS distance_m, max(speed_cms) AS max_speed_cms,
       sum(step_m) FILTER (WHERE moving) AS moving_m, sum(dt_ms) FILTER (WHERE moving) AS moving_ms
FROM fixes WHERE rider_id = $rider GROUP BY race_id ORDER BY start_ms, race_id
"""


def rider_season(cur: duckdb.DuckDBPyConnection, rider_id: int) -> list[Row]:
    """Every race of one rider, oldest first: distance, moving time, speeds, climbing.

    ``start_ms`` is the rider's first fix in the race (the order of the season)."""
    params = {"rider": rider_id}
    gains = _gains(cur, "rider_id = $rider", params, "race_id")
    return [
        {"race_id": r["race_id"], "bib": r["bib"], "fixes": r["fixes"], "start_ms": r["start_ms"]}
        | _figures(r, gains.get(r["race_id"], 0.0))
        for r in _rows(cur, _SEASON_SQL, params)
    ]


def to_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """Rows as CSV text with a header (columns in first-seen order; nested values as JSON,
    None as an empty field)."""
    columns: dict[str, None] = {}
    for row in rows:
        columns |= dict.fromkeys(row)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(_cell(row.get(c)) for c in columns)
    return out.getvalue()


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, list | dict | tuple):
        return json.dumps(value, separators=(",", ":"), default=str)
    return value
