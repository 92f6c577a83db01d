"""All the stores of one cloud process, opened together from the settings."""

from __future__ import annotations

from dataclasses import dataclass

from .history.store import History
from .keys import CloudKey, load_or_create
from .settings import Settings
from .store.actions import ActionStore
from .store.audit import AuditLog
from .store.base import Database
from .store.devices import DeviceStore
from .store.ingest import IngestStateStore
from .store.races import RaceStore
from .store.relays import RelayStore
from .store.users import UserStore


@dataclass
class Stores:
    """The system of record (SQLite), history (DuckDB) and the signing key."""

    db: Database
    """The SQLite system of record."""
    key: CloudKey
    """The cloud signing key."""
    users: UserStore
    """Accounts, refresh tokens and web sessions."""
    races: RaceStore
    """Races, courses and registrations."""
    audit: AuditLog
    """Who changed what, and when."""
    actions: ActionStore
    """Race-control actions (penalties, rider statuses)."""
    devices: DeviceStore
    """Enrolled tracker devices and their certificates."""
    relays: RelayStore
    """Enrolled relays, their credentials and races."""
    ingest_state: IngestStateStore
    """Per-device receiver state of the cloud's ingest."""
    history: History
    """Every fix of every race (DuckDB)."""

    @classmethod
    def open(cls, settings: Settings) -> Stores:
        """Open (creating) every store under ``settings.data_dir``."""
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        db = Database(settings.data_dir / "gruppetto.db")
        return cls(
            db=db,
            key=load_or_create(settings.data_dir),
            users=UserStore(db),
            races=RaceStore(db),
            audit=AuditLog(db),
            actions=ActionStore(db),
            devices=DeviceStore(db),
            relays=RelayStore(db),
            ingest_state=IngestStateStore(db),
            history=History.open(settings.data_dir / "history.duckdb"),
        )

    def close(self) -> None:
        """Close the databases."""
        self.history.close()
        self.db.close()
