"""The history store: one DuckDB file holding every fix of every race, appended through Arrow.

One :class:`History` per process owns the file: one writer connection (appends are
serialized by a lock) and any number of reader cursors (``reader()``; DuckDB MVCC: a
reader sees the last committed append).

Layout. Queries read the view ``fixes``, the union of two tables with the same columns:
``fixes_live``, where every append lands (races that run at the same time interleave
there), and ``fixes_sealed``, where :meth:`History.seal_race` moves a finished race,
sorted by rider and time. DuckDB keeps min/max statistics (zone maps) per row group of
~122,880 rows, so a query filtering ``race_id`` (and ``rider_id``) reads only that race's
row groups of the sealed table, plus the live table, which holds only unsealed races.
Without sealing, a race that ran alongside others is spread over every row group and
each of its queries scans the whole history.

Derived columns are computed once, at ingest, by the caller who already holds each
rider's previous fix (see :func:`fix_row`): ``progress_m`` (race distance, from
:meth:`sync_protocol.course.Course.project`), ``step_m`` and ``dt_ms`` (distance and time
since the rider's previous fix) and ``moving``. Analytics then need no window functions.

Idempotency: the caller's receiver state passes each fix once; on top of that every
append drops rows whose (race_id, device_id, seq) is already stored, and duplicates within
the appended table, so a re-delivered batch is a no-op (see :meth:`History.append`).
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from sync_protocol.fix import Fix
from sync_protocol.geo import haversine_m

MOVING_CMS = 100
"""A fix is *moving* when its speed is above this (1 m/s): slower is standing, walking
the bike through a crowd, or GPS drift at a stop."""

_COLUMNS: tuple[tuple[str, str, pa.DataType], ...] = (
    ("race_id", "INTEGER", pa.int32()),
    ("rider_id", "INTEGER", pa.int32()),
    ("bib", "SMALLINT", pa.int16()),
    ("device_id", "BLOB", pa.binary()),
    ("seq", "BIGINT", pa.int64()),
    ("t_ms", "BIGINT", pa.int64()),
    ("lat_e7", "INTEGER", pa.int32()),
    ("lon_e7", "INTEGER", pa.int32()),
    ("ele_dm", "INTEGER", pa.int32()),
    ("speed_cms", "SMALLINT", pa.int16()),
    ("heading_dd", "SMALLINT", pa.int16()),
    ("hacc_dm", "INTEGER", pa.int32()),
    ("progress_m", "DOUBLE", pa.float64()),
    ("step_m", "DOUBLE", pa.float64()),
    ("dt_ms", "INTEGER", pa.int32()),
    ("moving", "BOOLEAN", pa.bool_()),
)
COLUMNS = tuple(name for name, _, _ in _COLUMNS)
"""The columns of ``fixes``, in table order."""

_TABLE = "(" + ", ".join(f"{name} {sql} NOT NULL" for name, sql, _ in _COLUMNS) + ")"
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS fixes_live {_TABLE};
CREATE TABLE IF NOT EXISTS fixes_sealed {_TABLE};
CREATE OR REPLACE VIEW fixes AS
    SELECT * FROM fixes_sealed UNION ALL SELECT * FROM fixes_live;
"""  # noqa: S608 (no input: the column list above)


_REPEATS_SQL = "SELECT count(*) - count(DISTINCT (race_id, device_id, seq)) FROM {batch}"
_DISTINCT_SQL = "(SELECT DISTINCT ON (race_id, device_id, seq) * FROM {batch})"
_APPEND_SQL = """
    INSERT INTO fixes_live
    SELECT b.* FROM {source} b
    ANTI JOIN (
        SELECT f.race_id, f.device_id, f.seq FROM fixes f
        SEMI JOIN {batch} k USING (race_id, device_id, seq)
        WHERE f.race_id BETWEEN $rlo AND $rhi AND f.t_ms BETWEEN $tlo AND $thi
          AND f.seq BETWEEN $slo AND $shi
    ) d USING (race_id, device_id, seq)
"""
"""Insert the batch less the rows already stored. Stored rows are read only within the
batch's races, time span and seq range (a fix is immutable, so a re-delivered one has the
same ``t_ms``; rows arrive roughly in time order, so zone maps prune the rest) and matched
against a hash table of the batch; ``{source}`` is the batch, or its distinct rows when
it repeats."""


class HistoryError(ValueError):
    """The caller passed rows that do not fit the history (missing column, null, NaN...)."""


def fixes_schema() -> pa.Schema:
    """The Arrow schema :meth:`History.append` takes (extra columns are ignored)."""
    return pa.schema([pa.field(name, typ, nullable=False) for name, _, typ in _COLUMNS])


def fix_row(
    race_id: int,
    rider_id: int,
    bib: int,
    device_id: bytes,
    fix: Fix,
    *,
    progress_m: float,
    prev: Fix | None,
) -> tuple[Any, ...]:
    """One ``fixes`` row (a tuple in :data:`COLUMNS` order) for a verified fix.

    ``prev`` is the rider's previous fix in this race (None for the first): ``step_m`` is
    the haversine distance from it and ``dt_ms`` the time since it, both 0 for the first.
    ``progress_m`` is the fix's race distance (``course.project(...)``).
    """
    step, dt = 0.0, 0
    if prev is not None:
        step = haversine_m(prev.lat, prev.lon, fix.lat, fix.lon)
        dt = fix.t_ms - prev.t_ms
    return (
        race_id,
        rider_id,
        bib,
        device_id,
        fix.seq,
        fix.t_ms,
        fix.lat_e7,
        fix.lon_e7,
        fix.ele_dm,
        fix.speed_cms,
        fix.heading_dd,
        fix.hacc_dm,
        progress_m,
        step,
        dt,
        fix.speed_cms > MOVING_CMS,
    )


def rows_to_arrow(rows: Iterable[Sequence[Any] | Mapping[str, Any]]) -> pa.Table:
    """An Arrow table of ``fixes`` rows: tuples in :data:`COLUMNS` order or mappings.

    Raises :class:`HistoryError` when a row misses a column or a value does not fit.
    """
    tuples: list[Sequence[Any]] = []
    for row in rows:
        if isinstance(row, Mapping):
            missing = [name for name in COLUMNS if name not in row]
            if missing:
                raise HistoryError(f"a fixes row has no {', '.join(missing)}")
            row = [row[name] for name in COLUMNS]
        elif len(row) != len(COLUMNS):
            raise HistoryError(f"a fixes row has {len(COLUMNS)} values: {', '.join(COLUMNS)}")
        tuples.append(row)
    schema = fixes_schema()
    if not tuples:
        return schema.empty_table()
    columns = [list(column) for column in zip(*tuples, strict=True)]
    try:
        return pa.Table.from_arrays(
            [pa.array(col, type=field.type) for col, field in zip(columns, schema, strict=True)],
            schema=schema,
        )
    except (pa.ArrowException, TypeError) as exc:
        raise HistoryError(f"fixes rows do not fit the schema: {exc}") from None


def _conform(table: pa.Table) -> pa.Table:
    """``table`` with exactly the ``fixes`` columns and types, or :class:`HistoryError`."""
    schema = fixes_schema()
    missing = [name for name in COLUMNS if name not in table.column_names]
    if missing:
        raise HistoryError(f"fixes table lacks column(s): {', '.join(missing)}")
    table = table.select(list(COLUMNS))
    nulls = [name for name in COLUMNS if table.column(name).null_count]
    if nulls:
        raise HistoryError(f"fixes table has nulls in: {', '.join(nulls)}")
    if table.schema != schema:
        try:
            table = table.cast(schema)
        except (pa.ArrowException, ValueError) as exc:
            raise HistoryError(f"fixes table does not fit the schema: {exc}") from None
    for name in ("progress_m", "step_m"):
        if table.num_rows and not pc.all(pc.is_finite(table.column(name))).as_py():
            raise HistoryError(f"fixes table has a non-finite {name}")
    return table


class History:
    """The history DuckDB file: one writer connection, reader cursors for queries."""

    def __init__(self, conn: duckdb.DuckDBPyConnection, path: Path) -> None:
        """Use :meth:`open`."""
        self._conn = conn
        self._lock = threading.Lock()
        self._factory = conn.cursor()  # hands out reader cursors without waiting for appends
        self._factory_lock = threading.Lock()
        self.path = path
        """The DuckDB file."""

    @classmethod
    def open(
        cls, path: str | os.PathLike[str], *, threads: int = 2, memory_limit: str = "2GB"
    ) -> History:
        """Open (creating) the history file at ``path``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = duckdb.connect(str(path), config={"threads": threads, "memory_limit": memory_limit})
        conn.execute(SCHEMA)
        return cls(conn, path)

    def reader(self) -> duckdb.DuckDBPyConnection:
        """A new cursor for queries (close it, or use it as a context manager).

        Each thread or request uses its own cursor; it sees committed appends only.
        """
        with self._factory_lock:
            return self._factory.cursor()

    def append(self, table: pa.Table) -> int:
        """Append fixes in bulk (one transaction, into the live table); returns how many
        rows were stored.

        Idempotent by (device_id, seq) within a race: rows already stored (live or sealed)
        and repeats within ``table`` are dropped, so a re-delivered batch stores nothing.
        The guard reads stored keys only inside the batch's races, time span and seq range
        (zone maps skip the rest of the history) and costs ~1-3 ms on top of the insert.
        Every append also pays ~5-10 ms of commit: coalesce live fixes into appends of a
        second or more, and catch-up backlogs into appends of 100,000+ fixes (DuckDB writes
        those straight into compressed row groups, ~2-4 M fixes/s).
        """
        table = _conform(table)
        if table.num_rows == 0:
            return 0
        races = pc.min_max(table.column("race_id")).as_py()
        seqs = pc.min_max(table.column("seq")).as_py()
        times = pc.min_max(table.column("t_ms")).as_py()
        name = f"batch_{uuid.uuid4().hex}"
        params = {"rlo": races["min"], "rhi": races["max"], "slo": seqs["min"], "shi": seqs["max"]}
        params |= {"tlo": times["min"], "thi": times["max"]}
        with self._lock:
            conn = self._conn
            conn.register(name, table)
            try:
                repeats = conn.execute(_REPEATS_SQL.format(batch=name)).fetchone()
                source = _DISTINCT_SQL.format(batch=name) if repeats and repeats[0] else name
                sql = _APPEND_SQL.format(source=source, batch=name)
                row = conn.execute(sql, params).fetchone()
            finally:
                conn.unregister(name)
        return int(row[0]) if row else 0

    def seal_race(self, race_id: int) -> int:
        """Move a race's live rows to the sealed table, sorted by rider and time.

        Call it when a race is finished (and again after late uploads: it moves whatever
        arrived since). Atomic: readers see the rows in one table or the other, never
        both or neither; then a checkpoint reclaims the space. Returns how many rows moved.
        """
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN TRANSACTION")
            try:
                row = conn.execute(
                    "INSERT INTO fixes_sealed SELECT * FROM fixes_live WHERE race_id = $race "
                    "ORDER BY rider_id, t_ms, device_id, seq",
                    {"race": race_id},
                ).fetchone()
                conn.execute("DELETE FROM fixes_live WHERE race_id = $race", {"race": race_id})
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            # Drops the emptied row groups of the live table (and rewrites half-empty ones),
            # so its zone maps stop claiming the sealed race.
            conn.execute("CHECKPOINT")
        return int(row[0]) if row else 0

    def last_fixes(self, race_id: int) -> dict[int, tuple[Fix, float]]:
        """Each rider's last stored fix in a race and its ``progress_m``.

        What ingest needs to resume after a restart: the ``prev`` of :func:`fix_row` and
        the ``last_progress_m`` of ``Course.project``.
        """
        sql = """
            SELECT rider_id, seq, t_ms, lat_e7, lon_e7, ele_dm, speed_cms, heading_dd, hacc_dm,
                   progress_m
            FROM fixes WHERE race_id = $race
            QUALIFY row_number() OVER (PARTITION BY rider_id ORDER BY t_ms DESC, seq DESC) = 1
        """
        with self.reader() as cur:
            rows = cur.execute(sql, {"race": race_id}).fetchall()
        return {int(r[0]): (Fix(*r[1:9]), float(r[9])) for r in rows}

    def live_races(self) -> list[int]:
        """The races with rows not yet sealed."""
        with self.reader() as cur:
            rows = cur.execute("SELECT DISTINCT race_id FROM fixes_live ORDER BY 1").fetchall()
        return [int(r[0]) for r in rows]

    def export_parquet(self, race_id: int, directory: str | os.PathLike[str]) -> Path:
        """Write one race as ``directory/race_id=N/fixes.parquet`` (Hive partitioning).

        The multi-node history format: API replicas read every race with DuckDB's
        ``read_parquet('directory/*/*.parquet', hive_partitioning = true)``. Rows are
        sorted by rider and time; the file is replaced atomically when re-exported.
        """
        part = Path(directory) / f"race_id={int(race_id)}"
        part.mkdir(parents=True, exist_ok=True)
        final = part / "fixes.parquet"
        temp = part / f".fixes-{uuid.uuid4().hex}.parquet.tmp"
        query = (
            "SELECT * EXCLUDE (race_id) FROM fixes WHERE race_id = $race ORDER BY rider_id, t_ms"
        )
        with self.reader() as cur:
            try:
                cur.execute(
                    f"COPY ({query}) TO '{_sql_path(temp)}' "
                    "(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 122880)",
                    {"race": race_id},
                )
                os.replace(temp, final)
            finally:
                temp.unlink(missing_ok=True)
        return final

    def checkpoint(self) -> None:
        """Flush the write-ahead log into the file."""
        with self._lock:
            self._conn.execute("CHECKPOINT")

    def close(self) -> None:
        """Checkpoint and close the file (close the reader cursors first)."""
        with self._lock, self._factory_lock:
            self._factory.close()
            self._conn.close()

    def __enter__(self) -> History:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _sql_path(path: Path) -> str:
    """A path as a SQL string literal body (COPY TO takes no parameter for its target)."""
    return str(path).replace("'", "''")
