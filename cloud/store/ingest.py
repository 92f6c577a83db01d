"""Per-device ingest state: the protocol receiver's state and the rider's last position."""

from __future__ import annotations

from dataclasses import dataclass

from sync_protocol.fix import Fix

from .base import Store


@dataclass(slots=True)
class DeviceProgress:
    """What ingest remembers about one device between batches."""

    receiver: bytes
    """``ReceiverState.to_bytes()``."""
    race_id: int
    """Race of the last fix."""
    last_fix: Fix | None
    """The newest fix ingested (for step distance and the projection window)."""
    progress_m: float | None
    """Its distance along the course."""


class IngestStateStore(Store):
    """One row per device."""

    SCHEMA = """
    CREATE TABLE IF NOT EXISTS ingest_state (
        device_id BLOB PRIMARY KEY,
        receiver BLOB NOT NULL,
        race_id INTEGER NOT NULL,
        last_fix TEXT,
        progress_m REAL
    );
    """

    def get(self, device_id: bytes) -> DeviceProgress | None:
        """The stored state of a device."""
        row = self.one("SELECT * FROM ingest_state WHERE device_id = ?", (device_id,))
        if row is None:
            return None
        last = Fix(*map(int, row["last_fix"].split(","))) if row["last_fix"] else None
        return DeviceProgress(row["receiver"], row["race_id"], last, row["progress_m"])

    def put_many(self, states: dict[bytes, DeviceProgress]) -> None:
        """Store several devices' states in one transaction."""
        rows = []
        for device, s in states.items():
            last = s.last_fix
            text = None if last is None else ",".join(str(getattr(last, f)) for f in Fix.__slots__)
            rows.append((device, s.receiver, s.race_id, text, s.progress_m))
        with self.transaction() as conn:
            conn.executemany(
                "INSERT INTO ingest_state (device_id, receiver, race_id, last_fix, progress_m)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (device_id) DO UPDATE SET"
                " receiver = excluded.receiver, race_id = excluded.race_id,"
                " last_fix = excluded.last_fix, progress_m = excluded.progress_m",
                rows,
            )
