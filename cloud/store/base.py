"""Opening the SQLite system of record, and the base every store class shares."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlite_utils


class Database:
    """The SQLite connection every store shares, with the lock that serializes it."""

    def __init__(self, path: Path) -> None:
        """Open (creating) the SQLite file: WAL, full fsync, foreign keys on."""
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        self.conn = conn
        self.utils = sqlite_utils.Database(conn)
        """sqlite-utils view of the same connection (table helpers, upserts)."""
        self.lock = threading.RLock()

    def close(self) -> None:
        """Close the connection."""
        with self.lock:
            self.conn.close()


class Store:
    """Base of the store classes: one shared connection, serialized, explicit transactions.

    Subclasses set ``SCHEMA`` (idempotent DDL) and keep their SQL inside their module.
    """

    SCHEMA = ""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._lock = db.lock
        if self.SCHEMA:
            with self._lock:
                db.conn.executescript(self.SCHEMA)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (or rollback on error), reentrant per store set."""
        with self._lock:
            conn = self.db.conn
            if conn.in_transaction:
                yield conn
                return
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def query(
        self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()
    ) -> list[dict[str, Any]]:
        """Rows as dicts."""
        with self._lock:
            cursor = self.db.conn.execute(sql, params)
            names = [d[0] for d in cursor.description or ()]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def one(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> dict[str, Any] | None:
        """The first row as a dict, or None."""
        rows = self.query(sql, params)
        return rows[0] if rows else None
