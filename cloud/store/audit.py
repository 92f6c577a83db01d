"""The audit log: who changed what, and when."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from .base import Store


class AuditLog(Store):
    """Append-only record of every change made through the API."""

    SCHEMA = """
    CREATE TABLE IF NOT EXISTS audit (
        id INTEGER PRIMARY KEY,
        t_ms INTEGER NOT NULL,
        actor_id INTEGER,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        object_type TEXT NOT NULL,
        object_id INTEGER,
        detail TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX IF NOT EXISTS audit_object ON audit(object_type, object_id);
    """

    def record(
        self,
        conn: sqlite3.Connection,
        t_ms: int,
        actor_id: int | None,
        actor: str,
        action: str,
        object_type: str,
        object_id: int | None,
        **detail: Any,
    ) -> None:
        """Add an entry inside the caller's transaction (``conn``)."""
        conn.execute(
            "INSERT INTO audit (t_ms, actor_id, actor, action, object_type, object_id, detail) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (t_ms, actor_id, actor, action, object_type, object_id, json.dumps(detail)),
        )

    def entries(
        self, object_type: str | None = None, object_id: int | None = None, limit: int = 200
    ) -> list[dict[str, Any]]:
        """Newest first, optionally for one object."""
        where, params = "", []
        if object_type is not None:
            where = "WHERE object_type = ?" + (" AND object_id = ?" if object_id else "")
            params = [object_type, *([object_id] if object_id else [])]
        rows = self.query(f"SELECT * FROM audit {where} ORDER BY id DESC LIMIT ?", (*params, limit))  # noqa: S608
        for row in rows:
            row["detail"] = json.loads(row["detail"])
        return rows
