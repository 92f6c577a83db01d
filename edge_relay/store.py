"""The relay's durable state: one SQLite file in WAL mode, one writer, readers concurrent.

What is kept (``DATA/relay.db``):

``devices``   each admitted device: its certificate, persisted receiver state, and how
              far the cloud holds its chain (``cloud_acked_seq``, told back to trackers so
              they may prune).
``fixes``     every fix received, keyed ``(device_id, seq)``; ``verified = 0`` while
              a fix is provisional (MAC'd live fix awaiting its signed head).
``outbox``    verified runs still to forward to the cloud, deleted only on the cloud's
              ack; a run the cloud refused is kept with the reason (never silently lost).
``control``   officials' commands taken while the cloud was out of reach, until forwarded.
``config``    the last race configuration downloaded from the cloud, so a restarted relay
              runs its races with no uplink.

Writes happen only on the writer thread (:mod:`edge_relay.commit`), which opens the file
with ``synchronous=FULL``: a commit is on disk when it returns, and only then are acks
sent. Readers open their own connections.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sync_protocol.fix import Fix

SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (
    device_id BLOB PRIMARY KEY,
    certificate BLOB NOT NULL,
    racer_id INTEGER NOT NULL,
    receiver BLOB,
    cloud_acked_seq INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS fixes (
    device_id BLOB NOT NULL,
    seq INTEGER NOT NULL,
    t_ms INTEGER NOT NULL,
    lat_e7 INTEGER NOT NULL,
    lon_e7 INTEGER NOT NULL,
    ele_dm INTEGER NOT NULL,
    speed_cms INTEGER NOT NULL,
    heading_dd INTEGER NOT NULL,
    hacc_dm INTEGER NOT NULL,
    verified INTEGER NOT NULL,
    PRIMARY KEY (device_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    device_id BLOB NOT NULL,
    first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    prev_hash BLOB NOT NULL,
    signature BLOB NOT NULL,
    refused TEXT
);
CREATE TABLE IF NOT EXISTS control (
    action_id TEXT PRIMARY KEY,
    race_id INTEGER NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    official TEXT NOT NULL,
    t_ms INTEGER NOT NULL,
    forwarded INTEGER NOT NULL DEFAULT 0,
    outcome TEXT
);
CREATE TABLE IF NOT EXISTS config (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class Run:
    """A verified run of one device's chain waiting to be forwarded."""

    id: int
    """Outbox row id."""
    device_id: bytes
    """The device."""
    first_seq: int
    """First fix of the run."""
    last_seq: int
    """Last fix of the run; the signature covers the chain head here."""
    prev_hash: bytes
    """Chain hash before ``first_seq``."""
    signature: bytes
    """The device's Ed25519 signature over the head at ``last_seq``."""


_INSERT_FIXES = (
    "INSERT OR REPLACE INTO fixes (device_id, seq, t_ms, lat_e7, lon_e7, ele_dm, speed_cms,"
    " heading_dd, hacc_dm, verified) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_MARK_VERIFIED = (
    "UPDATE fixes SET verified = 1 WHERE device_id = ? AND seq BETWEEN ? AND ? AND verified = 0"
)
_QUEUE_RUN = (
    "INSERT INTO outbox (device_id, first_seq, last_seq, prev_hash, signature)"
    " VALUES (?, ?, ?, ?, ?)"
)
_BUFFERED = (_INSERT_FIXES, _MARK_VERIFIED, _QUEUE_RUN)
"""Statements :class:`Writes` buffers, in the order a flush runs them.

Marks after inserts: a signed head verifies fixes inserted before it (a later provisional
fix always has a higher seq, so no mark can reach it)."""


def connect(path: Path, *, writer: bool) -> sqlite3.Connection:
    """Open the relay database; the writer connection creates the schema."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA busy_timeout=30000")
    if writer:
        conn.execute("PRAGMA synchronous=FULL")
        conn.executescript(SCHEMA)
    return conn


class GroupWriteFailed(sqlite3.Error):
    """Writing a group's buffered rows failed: the whole group's transaction is lost."""


class Writes:
    """Statements run inside the writer's transaction (see :mod:`edge_relay.commit`)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.cloud_seq: dict[bytes, int] = {}
        """Cache of ``devices.cloud_acked_seq`` (this connection is its only writer)."""
        # The writes of every upload (fix rows, verified marks, outbox runs, receiver
        # states) are buffered and written with one statement each per group, not one per
        # request. A job's writes join the group's only when the job succeeds; a job that
        # runs a statement of its own gets a savepoint, opened then (most jobs need none).
        self._pending: dict[str, list[tuple[Any, ...]]] = {sql: [] for sql in _BUFFERED}
        self._job: dict[str, list[tuple[Any, ...]]] = {sql: [] for sql in _BUFFERED}
        self._states: dict[bytes, bytes] = {}
        self._job_states: dict[bytes, bytes] = {}
        self._in_job = False
        self._savepoint = False

    def begin_job(self) -> None:
        """A job starts: its writes are kept apart until :meth:`end_job`."""
        self._in_job, self._savepoint = True, False

    def end_job(self, ok: bool) -> None:
        """The job finished: keep its writes, or undo every one of them (it failed)."""
        self._in_job = False
        if self._savepoint:
            self._savepoint = False
            if not ok:
                self.conn.execute("ROLLBACK TO job")
            self.conn.execute("RELEASE job")
        for sql, rows in self._job.items():
            if rows:
                if ok:
                    self._pending[sql] += rows
                self._job[sql] = []
        if self._job_states:
            if ok:
                self._states.update(self._job_states)
            self._job_states = {}
        if not ok:
            self.cloud_seq.clear()  # the job may have changed what it caches

    def flush(self) -> None:
        """Write what is buffered: before any other statement, and before COMMIT.

        The group's writes go first, outside any savepoint (a failing job must not undo
        them); then, inside a job, its savepoint opens and the job's own writes follow.
        A failure writing the group's rows fails the whole group (:class:`GroupWriteFailed`).
        """
        try:
            self._write(self._pending, self._states)
        except sqlite3.Error as exc:
            raise GroupWriteFailed(str(exc)) from exc
        self._states = {}
        if self._in_job:
            if not self._savepoint:
                self.conn.execute("SAVEPOINT job")
                self._savepoint = True
            self._write(self._job, self._job_states)
            self._job_states = {}

    def _write(self, buffers: dict[str, list[tuple[Any, ...]]], states: dict[bytes, bytes]) -> None:
        for sql, rows in buffers.items():  # fixes, then marks, then runs
            if rows:
                self.conn.executemany(sql, rows)
                buffers[sql] = []
        if states:
            self.conn.executemany(
                "UPDATE devices SET receiver = ? WHERE device_id = ?",
                [(state, device) for device, state in states.items()],
            )

    def discard(self) -> None:
        """The transaction was rolled back: forget everything buffered."""
        for buffers in (self._pending, self._job):
            for sql in buffers:
                buffers[sql] = []
        self._states, self._job_states = {}, {}
        self._in_job = self._savepoint = False
        self.cloud_seq.clear()  # it may hold values of the rolled-back transaction

    def cloud_acked_seq(self, device_id: bytes) -> int:
        """How far the cloud holds a device's chain (0 for an unknown device)."""
        seq = self.cloud_seq.get(device_id)
        if seq is None:
            row = self.conn.execute(
                "SELECT cloud_acked_seq FROM devices WHERE device_id = ?", (device_id,)
            ).fetchone()
            seq = self.cloud_seq[device_id] = 0 if row is None else int(row[0])
        return seq

    def put_device(self, device_id: bytes, certificate: bytes, racer_id: int) -> None:
        """Record (or refresh) an admitted device's certificate."""
        self.flush()
        self.conn.execute(
            "INSERT INTO devices (device_id, certificate, racer_id) VALUES (?, ?, ?)"
            " ON CONFLICT (device_id) DO UPDATE SET certificate = excluded.certificate,"
            " racer_id = excluded.racer_id",
            (device_id, certificate, racer_id),
        )

    def put_receiver(self, device_id: bytes, state: bytes) -> None:
        """Persist a device's receiver state (same transaction as its fixes; buffered)."""
        self._job_states[device_id] = state

    def put_fixes(self, device_id: bytes, fixes: Sequence[Fix], *, verified: bool) -> None:
        """Insert fixes (buffered); a verified fix replaces a provisional one, same seq."""
        flag = int(verified)
        self._job[_INSERT_FIXES] += [
            (
                device_id,
                f.seq,
                f.t_ms,
                f.lat_e7,
                f.lon_e7,
                f.ele_dm,
                f.speed_cms,
                f.heading_dd,
                f.hacc_dm,
                flag,
            )
            for f in fixes
        ]

    def mark_verified(self, device_id: bytes, first: int, last: int) -> None:
        """Provisional fixes ``first..last`` are now covered by a signature (buffered)."""
        self._job[_MARK_VERIFIED].append((device_id, first, last))

    def delete_fixes(self, device_id: bytes, first: int, last: int) -> None:
        """Drop provisional fixes the signed chain replaced."""
        self.flush()
        self.conn.execute(
            "DELETE FROM fixes WHERE device_id = ? AND seq BETWEEN ? AND ? AND verified = 0",
            (device_id, first, last),
        )

    def queue_run(
        self, device_id: bytes, first: int, last: int, prev_hash: bytes, signature: bytes
    ) -> None:
        """Queue a verified run for forwarding (buffered; forwarded in this order)."""
        self._job[_QUEUE_RUN].append((device_id, first, last, prev_hash, signature))

    def forwarded(self, run_ids: Iterable[int]) -> None:
        """The cloud holds these runs durably: forget them."""
        self.flush()
        self.conn.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in run_ids])

    def refused(self, run_id: int, reason: str) -> None:
        """The cloud refused a run for good: keep it, with the reason, out of the queue."""
        self.flush()
        self.conn.execute("UPDATE outbox SET refused = ? WHERE id = ?", (reason, run_id))

    def cloud_acked(self, device_id: bytes, seq: int) -> None:
        """The cloud holds the device's chain up to ``seq``."""
        self.cloud_seq.pop(device_id, None)  # re-read after the update (rollback-safe)
        self.flush()
        self.conn.execute(
            "UPDATE devices SET cloud_acked_seq = MAX(cloud_acked_seq, ?) WHERE device_id = ?",
            (seq, device_id),
        )

    def queue_command(self, row: tuple[str, int, str, str, str, int]) -> bool:
        """Record an official's command once (False: this action_id is already here)."""
        self.flush()
        cur = self.conn.execute(
            "INSERT OR IGNORE INTO control (action_id, race_id, kind, body, official, t_ms)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            row,
        )
        return cur.rowcount == 1

    def command_done(self, action_id: str, outcome: str) -> None:
        """The cloud has the command (or refused it for good, with the reason)."""
        self.flush()
        self.conn.execute(
            "UPDATE control SET forwarded = 1, outcome = ? WHERE action_id = ?",
            (outcome, action_id),
        )

    def put_config(self, key: str, value: Any) -> None:
        """Save a configuration document (JSON)."""
        self.flush()
        self.conn.execute(
            "INSERT OR REPLACE INTO config (key, value) VALUES (?, ?)", (key, json.dumps(value))
        )


class Reads:
    """Queries on a reader connection (any thread that owns it)."""

    def __init__(self, conn: sqlite3.Connection, before: Callable[[], None] | None = None) -> None:
        self.conn = conn
        self._before = before
        """Runs before each query (the writer's reads flush its buffered writes first)."""

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        if self._before is not None:
            self._before()
        return self.conn.execute(sql, params)

    def device(self, device_id: bytes) -> tuple[bytes, bytes | None, int] | None:
        """A device's certificate, receiver state and cloud-acked seq."""
        row = self._execute(
            "SELECT certificate, receiver, cloud_acked_seq FROM devices WHERE device_id = ?",
            (device_id,),
        ).fetchone()
        return None if row is None else (row[0], row[1], int(row[2]))

    def fixes(self, device_id: bytes, first: int, last: int) -> list[Fix]:
        """Stored fixes ``first..last`` of a device, in order."""
        rows = self._execute(
            "SELECT seq, t_ms, lat_e7, lon_e7, ele_dm, speed_cms, heading_dd, hacc_dm"
            " FROM fixes WHERE device_id = ? AND seq BETWEEN ? AND ? ORDER BY seq",
            (device_id, first, last),
        ).fetchall()
        return [Fix(*row) for row in rows]

    def pending_runs(self, limit: int) -> list[Run]:
        """Oldest runs not yet forwarded (and not refused)."""
        rows = self._execute(
            "SELECT id, device_id, first_seq, last_seq, prev_hash, signature FROM outbox"
            " WHERE refused IS NULL ORDER BY id LIMIT ?",
            (limit,),
        ).fetchall()
        return [Run(*row) for row in rows]

    def backlog(self) -> tuple[int, int]:
        """Runs and fixes waiting to be forwarded."""
        row = self._execute(
            "SELECT COUNT(*), COALESCE(SUM(last_seq - first_seq + 1), 0) FROM outbox"
            " WHERE refused IS NULL"
        ).fetchone()
        return int(row[0]), int(row[1])

    def refused_runs(self) -> int:
        """Runs the cloud refused (kept for an operator to look at)."""
        return int(
            self._execute("SELECT COUNT(*) FROM outbox WHERE refused IS NOT NULL").fetchone()[0]
        )

    def pending_commands(self) -> list[tuple[Any, ...]]:
        """Officials' commands not yet forwarded, oldest first."""
        return self._execute(
            "SELECT action_id, race_id, kind, body, official, t_ms FROM control"
            " WHERE forwarded = 0 ORDER BY t_ms, rowid"
        ).fetchall()

    def commands(self, race_id: int) -> list[dict[str, Any]]:
        """A race's commands taken here, with their forwarding state."""
        rows = self._execute(
            "SELECT action_id, kind, body, official, t_ms, forwarded, outcome FROM control"
            " WHERE race_id = ? ORDER BY t_ms, rowid",
            (race_id,),
        ).fetchall()
        return [
            {
                "action_id": r[0],
                "kind": r[1],
                "body": json.loads(r[2]),
                "official": json.loads(r[3]),
                "t_ms": r[4],
                "forwarded": bool(r[5]),
                "outcome": r[6],
            }
            for r in rows
        ]

    def config(self, key: str) -> Any:
        """A saved configuration document, or None."""
        row = self._execute("SELECT value FROM config WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def count_fixes(self, device_id: bytes | None = None) -> int:
        """Stored fixes (of one device, or all)."""
        if device_id is None:
            return int(self._execute("SELECT COUNT(*) FROM fixes").fetchone()[0])
        row = self._execute("SELECT COUNT(*) FROM fixes WHERE device_id = ?", (device_id,))
        return int(row.fetchone()[0])
