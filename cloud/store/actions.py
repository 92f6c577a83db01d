"""Official actions of race control: penalties and rider statuses, each recorded once."""

from __future__ import annotations

import sqlite3
from typing import Any

from .base import Store


class ActionStore(Store):
    """Race-control actions, unique by the client's ``action_id`` (replays are no-ops)."""

    SCHEMA = """
    CREATE TABLE IF NOT EXISTS race_actions (
        id INTEGER PRIMARY KEY,
        action_id TEXT NOT NULL UNIQUE,
        race_id INTEGER NOT NULL REFERENCES races(id) ON DELETE CASCADE,
        rider_id INTEGER NOT NULL,
        kind TEXT NOT NULL,
        seconds INTEGER NOT NULL DEFAULT 0,
        reason TEXT NOT NULL,
        actor_id INTEGER,
        actor TEXT NOT NULL,
        t_ms INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS race_actions_race ON race_actions(race_id);
    """

    def by_action_id(self, action_id: str) -> dict[str, Any] | None:
        """A recorded action by its client id."""
        return self.one("SELECT * FROM race_actions WHERE action_id = ?", (action_id,))

    def add(self, conn: sqlite3.Connection, action: dict[str, Any]) -> int:
        """Insert inside the caller's transaction; returns the row id."""
        cur = conn.execute(
            "INSERT INTO race_actions (action_id, race_id, rider_id, kind, seconds, reason,"
            " actor_id, actor, t_ms) VALUES (:action_id, :race_id, :rider_id, :kind, :seconds,"
            " :reason, :actor_id, :actor, :t_ms)",
            action,
        )
        return int(cur.lastrowid or 0)

    def of_race(self, race_id: int) -> list[dict[str, Any]]:
        """Every action of a race, oldest first."""
        return self.query("SELECT * FROM race_actions WHERE race_id = ? ORDER BY id", (race_id,))

    def penalties(self, race_id: int) -> dict[int, int]:
        """Total penalty seconds per rider."""
        rows = self.query(
            "SELECT rider_id, SUM(seconds) AS s FROM race_actions"
            " WHERE race_id = ? AND kind = 'penalty' GROUP BY rider_id",
            (race_id,),
        )
        return {r["rider_id"]: int(r["s"]) for r in rows}

    def set_status(
        self, conn: sqlite3.Connection, race_id: int, rider_id: int, status: str
    ) -> None:
        """Set a rider's registration status (registered, dnf, dns, dsq)."""
        conn.execute(
            "UPDATE registrations SET status = ? WHERE race_id = ? AND user_id = ?",
            (status, race_id, rider_id),
        )
