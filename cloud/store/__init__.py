"""The system of record: SQLite (WAL) behind small store classes, one per concept."""
