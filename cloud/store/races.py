"""Races, their courses and start lists (registrations with bib numbers)."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from .base import Database, Store

RACE_STATES = ("scheduled", "live", "neutralised", "finished", "published")
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "scheduled": ("live",),
    "live": ("neutralised", "finished"),
    "neutralised": ("live", "finished"),
    "finished": ("published",),
    "published": (),
}
"""The race state machine: which state may follow which."""


def gun_ms(race: dict[str, Any]) -> int:
    """When the race's clock starts: the gun, from which finish times and splits count.

    ``started_ms``, the moment the race first went live (officials start late or early:
    this is the real start), else ``starts_at_ms``, the scheduled start, which stands as
    the planned start until the race goes live. Neutralising and resuming do not move it.
    """
    started = race.get("started_ms")
    return int(race["starts_at_ms"] if started is None else started)


class RaceStore(Store):
    """Races and registrations. Callers validate; this module holds the SQL.

    A race has two start times: ``starts_at_ms``, when it is scheduled to start (editable
    while scheduled), and ``started_ms``, when it first went live (null until then; set
    once, in the transaction that records the change to live). See :func:`gun_ms`.
    """

    SCHEMA = """
    CREATE TABLE IF NOT EXISTS races (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        starts_at_ms INTEGER NOT NULL,
        started_ms INTEGER,
        state TEXT NOT NULL DEFAULT 'scheduled',
        max_riders INTEGER NOT NULL DEFAULT 50,
        registration_open INTEGER NOT NULL DEFAULT 1,
        course TEXT,
        created_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL
    );
    CREATE TABLE IF NOT EXISTS registrations (
        race_id INTEGER NOT NULL REFERENCES races(id) ON DELETE CASCADE,
        user_id INTEGER NOT NULL,
        bib INTEGER NOT NULL,
        status TEXT NOT NULL DEFAULT 'registered',
        created_ms INTEGER NOT NULL,
        PRIMARY KEY (race_id, user_id),
        UNIQUE (race_id, bib)
    );
    """
    _BACKFILL_STARTS = """
    UPDATE races SET started_ms = (
        SELECT min(a.t_ms) FROM audit a
        WHERE a.object_type = 'race' AND a.object_id = races.id AND a.action = 'race.state'
          AND json_extract(a.detail, '$.new') = 'live'
    ) WHERE started_ms IS NULL AND state != 'scheduled'
    """
    """Races that went live before ``started_ms`` existed get it from the audit log: the
    time of their first recorded change to live (the transition writes both in one
    transaction, so for newer races the two agree)."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self._migrate()

    def _migrate(self) -> None:
        """Bring a database made by an older version up to this schema (idempotent)."""
        with self.transaction() as conn:
            columns = {row[1] for row in conn.execute("PRAGMA table_info(races)")}
            if "started_ms" not in columns:
                conn.execute("ALTER TABLE races ADD COLUMN started_ms INTEGER")
            audit = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'audit'"
            ).fetchone()
            if audit is not None:
                conn.execute(self._BACKFILL_STARTS)

    def create(
        self,
        conn: sqlite3.Connection,
        name: str,
        starts_at_ms: int,
        now_ms: int,
        max_riders: int,
        registration_open: bool,
    ) -> int:
        """Insert a scheduled race; returns its id."""
        cur = conn.execute(
            "INSERT INTO races (name, starts_at_ms, max_riders, registration_open, created_ms,"
            " updated_ms) VALUES (?, ?, ?, ?, ?, ?)",
            (name, starts_at_ms, max_riders, int(registration_open), now_ms, now_ms),
        )
        return int(cur.lastrowid or 0)

    def get(self, race_id: int) -> dict[str, Any] | None:
        """One race with its course decoded (or None)."""
        row = self.one("SELECT * FROM races WHERE id = ?", (race_id,))
        if row is not None:
            row["course"] = json.loads(row["course"]) if row["course"] else None
            row["registration_open"] = bool(row["registration_open"])
        return row

    def overview(self, state: str | None = None) -> list[dict[str, Any]]:
        """Races (without course geometry), soonest first, with their rider counts."""
        sql = (
            "SELECT r.id, r.name, r.starts_at_ms, r.started_ms, r.state, r.max_riders,"
            " r.registration_open,"
            " r.course IS NOT NULL AS has_course,"
            " (SELECT COUNT(*) FROM registrations g WHERE g.race_id = r.id"
            "  AND g.status != 'withdrawn') AS riders FROM races r"
        )
        rows = (
            self.query(sql + " WHERE r.state = ? ORDER BY r.starts_at_ms", (state,))
            if state
            else self.query(sql + " ORDER BY r.starts_at_ms")
        )
        for row in rows:
            row["registration_open"], row["has_course"] = (
                bool(row["registration_open"]),
                bool(row["has_course"]),
            )
        return rows

    def update(self, conn: sqlite3.Connection, race_id: int, now_ms: int, **fields: Any) -> None:
        """Set columns (names come from the caller's whitelist, never from input)."""
        sets = ", ".join(f"{name} = ?" for name in fields)
        conn.execute(
            f"UPDATE races SET {sets}, updated_ms = ? WHERE id = ?",  # noqa: S608
            (*fields.values(), now_ms, race_id),
        )

    def mark_started(self, conn: sqlite3.Connection, race_id: int, t_ms: int) -> None:
        """Record the race's real start (``started_ms``) unless it already has one."""
        conn.execute(
            "UPDATE races SET started_ms = ? WHERE id = ? AND started_ms IS NULL", (t_ms, race_id)
        )

    def set_course(
        self, conn: sqlite3.Connection, race_id: int, course: dict[str, Any], now_ms: int
    ) -> None:
        """Store the course (``Course.to_dict()``)."""
        self.update(conn, race_id, now_ms, course=json.dumps(course))

    def delete(self, conn: sqlite3.Connection, race_id: int) -> None:
        """Remove a race and its registrations."""
        conn.execute("DELETE FROM races WHERE id = ?", (race_id,))

    def start_list(self, race_id: int) -> list[dict[str, Any]]:
        """Riders of the race with bib, name and status, by bib."""
        return self.query(
            "SELECT g.bib, g.user_id AS rider_id, u.username AS name, g.status"
            " FROM registrations g JOIN users u ON u.id = g.user_id"
            " WHERE g.race_id = ? AND g.status != 'withdrawn' ORDER BY g.bib",
            (race_id,),
        )

    def registration(self, race_id: int, user_id: int) -> dict[str, Any] | None:
        """One rider's registration row."""
        return self.one(
            "SELECT * FROM registrations WHERE race_id = ? AND user_id = ?", (race_id, user_id)
        )

    def active_count(self, conn: sqlite3.Connection, race_id: int) -> int:
        """Riders registered (not withdrawn)."""
        row = conn.execute(
            "SELECT COUNT(*) FROM registrations WHERE race_id = ? AND status != 'withdrawn'",
            (race_id,),
        ).fetchone()
        return int(row[0])

    def bib_taken(self, conn: sqlite3.Connection, race_id: int, bib: int, user_id: int) -> bool:
        """Whether another rider holds ``bib``."""
        row = conn.execute(
            "SELECT 1 FROM registrations WHERE race_id = ? AND bib = ? AND user_id != ?",
            (race_id, bib, user_id),
        ).fetchone()
        return row is not None

    def next_bib(self, conn: sqlite3.Connection, race_id: int) -> int:
        """The lowest free bib number."""
        taken = {
            r[0]
            for r in conn.execute("SELECT bib FROM registrations WHERE race_id = ?", (race_id,))
        }
        return next(b for b in range(1, len(taken) + 2) if b not in taken)

    def register(
        self, conn: sqlite3.Connection, race_id: int, user_id: int, bib: int, now_ms: int
    ) -> None:
        """Add (or re-activate) a registration."""
        conn.execute(
            "INSERT INTO registrations (race_id, user_id, bib, created_ms) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (race_id, user_id)"
            " DO UPDATE SET status = 'registered', bib = excluded.bib",
            (race_id, user_id, bib, now_ms),
        )

    def withdraw(self, conn: sqlite3.Connection, race_id: int, user_id: int) -> None:
        """Mark a registration withdrawn (kept for the record)."""
        conn.execute(
            "UPDATE registrations SET status = 'withdrawn' WHERE race_id = ? AND user_id = ?",
            (race_id, user_id),
        )

    def races_of(self, user_id: int) -> list[int]:
        """Races a rider is registered for and that are not over."""
        rows = self.query(
            "SELECT g.race_id FROM registrations g JOIN races r ON r.id = g.race_id"
            " WHERE g.user_id = ? AND g.status = 'registered'"
            " AND r.state IN ('scheduled', 'live', 'neutralised')",
            (user_id,),
        )
        return [r["race_id"] for r in rows]
