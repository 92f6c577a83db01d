"""Race history in DuckDB: every fix of every race, and the analytics computed over it.

:mod:`.store` holds the table, bulk ingest through Arrow and the Parquet export;
:mod:`.analytics` the pure query functions (results, splits, speeds, climbs, seasons).
"""

from __future__ import annotations

from .store import History, HistoryError, fix_row, fixes_schema, rows_to_arrow

__all__ = ["History", "HistoryError", "fix_row", "fixes_schema", "rows_to_arrow"]
