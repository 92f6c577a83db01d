"""Enrolled relays: their credentials and the races each may serve."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from typing import Any

from ..auth.principal import Principal, Role
from .base import Store

PREFIX = "grr"


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class RelayStore(Store):
    """Relays authenticate with ``grr_<id>_<secret>``; only the secret's hash is stored."""

    SCHEMA = """
    CREATE TABLE IF NOT EXISTS relays (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        secret_sha256 TEXT NOT NULL,
        disabled INTEGER NOT NULL DEFAULT 0,
        created_ms INTEGER NOT NULL,
        last_seen_ms INTEGER
    );
    CREATE TABLE IF NOT EXISTS relay_status (
        relay_id INTEGER PRIMARY KEY REFERENCES relays(id) ON DELETE CASCADE,
        status TEXT NOT NULL,
        reported_ms INTEGER NOT NULL
    );
    CREATE TABLE IF NOT EXISTS relay_races (
        relay_id INTEGER NOT NULL REFERENCES relays(id) ON DELETE CASCADE,
        race_id INTEGER NOT NULL REFERENCES races(id) ON DELETE CASCADE,
        PRIMARY KEY (relay_id, race_id)
    );
    """

    def create(self, name: str, race_ids: list[int], now_ms: int) -> tuple[int, str]:
        """Enrol a relay; returns its id and the credential (shown once, never stored)."""
        secret = secrets.token_urlsafe(32)
        with self.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO relays (name, secret_sha256, created_ms) VALUES (?, ?, ?)",
                (name, _digest(secret), now_ms),
            )
            relay_id = int(cur.lastrowid or 0)
            self._set_races(conn, relay_id, race_ids)
        return relay_id, f"{PREFIX}_{relay_id}_{secret}"

    def set_races(self, relay_id: int, race_ids: list[int]) -> None:
        """Replace the races a relay serves."""
        with self.transaction() as conn:
            conn.execute("DELETE FROM relay_races WHERE relay_id = ?", (relay_id,))
            self._set_races(conn, relay_id, race_ids)

    @staticmethod
    def _set_races(conn: Any, relay_id: int, race_ids: list[int]) -> None:
        conn.executemany(
            "INSERT INTO relay_races (relay_id, race_id) VALUES (?, ?)",
            [(relay_id, r) for r in sorted(set(race_ids))],
        )

    def set_disabled(self, relay_id: int, disabled: bool) -> None:
        """Turn a relay's credential off (or on again)."""
        with self.transaction() as conn:
            conn.execute("UPDATE relays SET disabled = ? WHERE id = ?", (int(disabled), relay_id))

    def get(self, relay_id: int) -> dict[str, Any] | None:
        """A relay with its race ids (no secret)."""
        row = self.one(
            "SELECT id, name, disabled, created_ms, last_seen_ms FROM relays WHERE id = ?",
            (relay_id,),
        )
        if row is not None:
            row["disabled"] = bool(row["disabled"])
            row["race_ids"] = self.race_ids(relay_id)
            row["status"], row["reported_ms"] = self.status(relay_id)
        return row

    def report(self, relay_id: int, status: dict[str, Any], now_ms: int) -> None:
        """Keep what a relay last said about itself (health, addresses, backlog)."""
        with self.transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO relay_status (relay_id, status, reported_ms)"
                " VALUES (?, ?, ?)",
                (relay_id, json.dumps(status), now_ms),
            )

    def status(self, relay_id: int) -> tuple[dict[str, Any] | None, int | None]:
        """A relay's last report and when it came (None, None before the first)."""
        row = self.one(
            "SELECT status, reported_ms FROM relay_status WHERE relay_id = ?", (relay_id,)
        )
        if row is None:
            return None, None
        return json.loads(row["status"]), int(row["reported_ms"])

    def serving(self, race_id: int) -> list[dict[str, Any]]:
        """Enabled relays of a race, with their last reports."""
        rows = self.query(
            "SELECT r.id FROM relays r JOIN relay_races g ON g.relay_id = r.id"
            " WHERE g.race_id = ? AND r.disabled = 0 ORDER BY r.id",
            (race_id,),
        )
        return [relay for r in rows if (relay := self.get(r["id"])) is not None]

    def overview(self) -> list[dict[str, Any]]:
        """All relays with their races."""
        ids = [r["id"] for r in self.query("SELECT id FROM relays ORDER BY id")]
        return [relay for i in ids if (relay := self.get(i)) is not None]

    def race_ids(self, relay_id: int) -> list[int]:
        """Races a relay may serve."""
        rows = self.query("SELECT race_id FROM relay_races WHERE relay_id = ?", (relay_id,))
        return [r["race_id"] for r in rows]

    def authenticate(self, credential: str) -> Principal | None:
        """The relay a credential belongs to, or None (unknown, wrong secret, disabled)."""
        prefix, _, rest = credential.partition("_")
        relay_id, _, secret = rest.partition("_")
        if prefix != PREFIX or not relay_id.isdigit() or not secret:
            return None
        row = self.one(
            "SELECT id, name, secret_sha256, disabled FROM relays WHERE id = ?", (int(relay_id),)
        )
        if row is None or row["disabled"]:
            return None
        if not hmac.compare_digest(row["secret_sha256"], _digest(secret)):
            return None
        return Principal(row["id"], row["name"], Role.RELAY)
