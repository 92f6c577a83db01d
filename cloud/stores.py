"""All the stores of one cloud process, opened together from the settings."""

from __future__ import annotations

from dataclasses import dataclass

from .keys import CloudKey, load_or_create
from .settings import Settings
from .store.base import Database


@dataclass
class Stores:
    """The system of record (SQLite), history (DuckDB) and the signing key."""

    db: Database
    """The SQLite system of record."""
    key: CloudKey
    """The cloud signing key."""

    @classmethod
    def open(cls, settings: Settings) -> Stores:
        """Open (creating) every store under ``settings.data_dir``."""
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        db = Database(settings.data_dir / "gruppetto.db")
        return cls(db=db, key=load_or_create(settings.data_dir))

    def close(self) -> None:
        """Close the databases."""
        self.db.close()
