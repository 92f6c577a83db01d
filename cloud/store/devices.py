"""Enrolled tracker devices: their keys, owners and latest certificates."""

from __future__ import annotations

from typing import Any

from .base import Store


class DeviceStore(Store):
    """Device keys bound to racers."""

    SCHEMA = """
    CREATE TABLE IF NOT EXISTS devices (
        device_id BLOB PRIMARY KEY,
        user_id INTEGER NOT NULL,
        public_key BLOB NOT NULL UNIQUE,
        certificate BLOB NOT NULL,
        not_after_ms INTEGER NOT NULL,
        created_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS devices_user ON devices(user_id);
    """

    def get(self, device_id: bytes) -> dict[str, Any] | None:
        """A device row by its 16-byte id."""
        return self.one("SELECT * FROM devices WHERE device_id = ?", (device_id,))

    def save(
        self,
        device_id: bytes,
        user_id: int,
        public_key: bytes,
        certificate: bytes,
        not_after_ms: int,
        now_ms: int,
    ) -> None:
        """Insert a device or store its renewed certificate."""
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO devices (device_id, user_id, public_key, certificate, not_after_ms,"
                " created_ms, updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (device_id) DO UPDATE SET certificate = excluded.certificate,"
                " not_after_ms = excluded.not_after_ms, updated_ms = excluded.updated_ms",
                (device_id, user_id, public_key, certificate, not_after_ms, now_ms, now_ms),
            )

    def of_user(self, user_id: int | None) -> list[dict[str, Any]]:
        """Devices of one racer (or of everyone)."""
        sql = "SELECT device_id, user_id, not_after_ms, created_ms, updated_ms FROM devices"
        if user_id is None:
            return self.query(sql + " ORDER BY created_ms")
        return self.query(sql + " WHERE user_id = ? ORDER BY created_ms", (user_id,))
