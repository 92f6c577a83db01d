"""The tracker's buffer: every fix in SQLite before it counts as recorded.

One SQLite file (WAL, ``synchronous=FULL``) per tracker data directory holds the device's
fixes, each with its chain hash, and the sender's persisted state. A fix and the
:class:`~sync_protocol.sender.SenderState` that records it are written in one transaction,
so after a kill -9 at any instant the buffer holds either both or neither, and the
sequence resumes from what is on disk.

Fixes the cloud holds (``SenderState.cloud_acked_seq``) may be pruned when space runs
short; the chain hash at the pruning point is kept (with the genesis hash) so the next
batch can still name the hash before its first fix. Storage is bounded by a
:class:`Budget`: a warning from :data:`Budget.warn_at` of it, and :class:`StorageFull`
instead of recording once it is reached with nothing prunable.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import sqlite_utils

from sync_protocol.chain import genesis
from sync_protocol.errors import DecodeError
from sync_protocol.fix import Fix
from sync_protocol.sender import SenderState

from .errors import StorageFull, StoreError

FORMAT = 1
_FIELDS = ("seq", "t_ms", "lat_e7", "lon_e7", "ele_dm", "speed_cms", "heading_dd", "hacc_dm")
_INSERT = (
    "INSERT INTO fixes (seq, t_ms, lat_e7, lon_e7, ele_dm, speed_cms, heading_dd, hacc_dm, hash)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_SELECT = (
    "SELECT seq, t_ms, lat_e7, lon_e7, ele_dm, speed_cms, heading_dd, hacc_dm FROM fixes"
    " WHERE seq BETWEEN ? AND ? ORDER BY seq"
)
_PUT_META = "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = ?"


@dataclass(frozen=True, slots=True)
class Budget:
    """How much the buffer may hold."""

    max_bytes: int | None = 64 * 1024 * 1024
    """Bytes of database pages in use (None: no limit)."""
    max_fixes: int | None = None
    """Fixes held (None: no limit)."""
    warn_at: float = 0.8
    """Warn from this fraction of either limit."""
    prune_at: float = 0.5
    """From this fraction, prune what the cloud holds before recording."""

    def __post_init__(self) -> None:
        for what, limit in (("max_bytes", self.max_bytes), ("max_fixes", self.max_fixes)):
            if limit is not None and limit < 1:
                raise StoreError(f"storage budget {what} must be positive, got {limit}")
        if not 0 < self.prune_at <= self.warn_at <= 1:
            raise StoreError("storage budget needs 0 < prune_at <= warn_at <= 1")


@dataclass(frozen=True, slots=True)
class Usage:
    """How full the buffer is."""

    fixes: int
    """Fixes held (recorded and not pruned)."""
    bytes: int
    """Bytes of database pages in use."""
    fraction: float
    """The larger of bytes and fixes as a fraction of the budget (0 when unlimited)."""
    warning: str
    """Empty, or a line for the racer when the budget is nearly (or) reached."""


class FixStore:
    """The SQLite buffer of one device's fixes; see the module docstring."""

    def __init__(self, path: Path, device_id: bytes, budget: Budget | None = None) -> None:
        """Open (creating) the buffer at ``path`` for ``device_id``.

        Raises :class:`StoreError` when the file belongs to another device or is corrupt.
        """
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.device_id = device_id
        self.budget = budget or Budget()
        try:
            self._conn = sqlite3.connect(path, isolation_level=None, timeout=30)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._setup()
            self._state = self._load_state()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"the fix buffer {path} cannot be opened: {exc}") from None
        self._page_size = int(self._conn.execute("PRAGMA page_size").fetchone()[0])
        self._held = int(self._conn.execute("SELECT count(*) FROM fixes").fetchone()[0])

    def _setup(self) -> None:
        db = sqlite_utils.Database(self._conn)
        db["fixes"].create(  # type: ignore[union-attr]
            {**dict.fromkeys(_FIELDS, int), "hash": bytes},
            pk="seq",
            not_null=set(_FIELDS) | {"hash"},
            if_not_exists=True,
        )
        db["meta"].create(  # type: ignore[union-attr]
            {"key": str, "value": bytes}, pk="key", not_null={"value"}, if_not_exists=True
        )
        stored = self._meta("device_id")
        if stored is None:
            with self._transaction():
                self._put("format", FORMAT.to_bytes(1, "big"))
                self._put("device_id", self.device_id)
                self._put("genesis", genesis(self.device_id))
                self._put("pruned_seq", b"\0" * 8)
                self._put("pruned_hash", genesis(self.device_id))
        elif stored != self.device_id:
            raise StoreError(
                f"the fix buffer {self.path} belongs to device {stored.hex()[:12]}, not this "
                f"device key ({self.device_id.hex()[:12]}); use another --data directory"
            )

    def _load_state(self) -> SenderState:
        raw = self._meta("sender_state")
        if raw is None:
            return SenderState(self.device_id)
        try:
            state = SenderState.from_bytes(raw)
        except DecodeError as exc:
            raise StoreError(f"the fix buffer {self.path} is corrupt: {exc.message}") from None
        row = self._conn.execute("SELECT max(seq) FROM fixes").fetchone()
        last = row[0] if row[0] is not None else self.pruned_seq
        if state.device_id != self.device_id or state.recorded_seq != last:
            raise StoreError(
                f"the fix buffer {self.path} is inconsistent (state at fix "
                f"{state.recorded_seq}, fixes up to {last}); keep the file for inspection and "
                "use another --data directory"
            )
        if last and self.hash_at(last) != state.head_hash:
            raise StoreError(f"the fix buffer {self.path} is inconsistent: chain head differs")
        return state

    @property
    def state(self) -> SenderState:
        """The sender state as last committed (a fresh one for a new buffer)."""
        return self._state

    @property
    def pruned_seq(self) -> int:
        """Fixes 1..pruned_seq were pruned (the cloud holds them)."""
        return int.from_bytes(self._meta("pruned_seq") or b"", "big")

    @property
    def genesis(self) -> bytes:
        """The chain hash before fix 1."""
        value = self._meta("genesis")
        return value if value is not None else genesis(self.device_id)

    # -- recording ----------------------------------------------------------------------

    def make_room(self) -> Usage:
        """Before recording: prune what the cloud holds if needed; StorageFull if still full."""
        usage = self.usage()
        if usage.fraction >= self.budget.prune_at and self._state.cloud_acked_seq > self.pruned_seq:
            self.prune()
            usage = self.usage()
        if usage.fraction >= 1:
            raise StorageFull(usage.warning)
        return usage

    def record(self, fix: Fix, chain_hash: bytes, state: SenderState) -> None:
        """Store ``fix`` with its chain hash and the state that records it, in one commit."""
        self.record_many([(fix, chain_hash)], state)

    def record_many(self, items: Sequence[tuple[Fix, bytes]], state: SenderState) -> None:
        """Store several fixes and the state after the last, in one commit."""
        blob = state.to_bytes()
        with self._transaction():
            self._conn.executemany(_INSERT, ((*_row(fix), h) for fix, h in items))
            self._put("sender_state", blob)
        self._held += len(items)
        self._state = SenderState.from_bytes(blob)

    def save_state(self, state: SenderState) -> None:
        """Persist the sender state (after folding in acks)."""
        blob = state.to_bytes()
        with self._transaction():
            self._put("sender_state", blob)
        self._state = SenderState.from_bytes(blob)

    def prune(self) -> int:
        """Delete the fixes the cloud holds, per the committed state; returns how many went."""
        upto = self._state.cloud_acked_seq
        if upto <= self.pruned_seq:
            return 0
        boundary = self.hash_at(upto)
        with self._transaction():
            cursor = self._conn.execute("DELETE FROM fixes WHERE seq <= ?", (upto,))
            self._put("pruned_seq", upto.to_bytes(8, "big"))
            self._put("pruned_hash", boundary)
        self._held -= cursor.rowcount
        return cursor.rowcount

    # -- reading ------------------------------------------------------------------------

    def fixes(self, first: int, last: int) -> list[Fix]:
        """Fixes ``first..last``; StoreError if any is missing (pruned or never recorded)."""
        rows = self._conn.execute(_SELECT, (first, last)).fetchall()
        if len(rows) != last - first + 1:
            raise StoreError(f"fixes {first}..{last} are not all in the buffer")
        return [Fix(*row) for row in rows]

    def hash_at(self, seq: int) -> bytes:
        """The chain hash after fix ``seq`` (the genesis hash for 0)."""
        if seq == 0:
            return self.genesis
        row = self._conn.execute("SELECT hash FROM fixes WHERE seq = ?", (seq,)).fetchone()
        if row is not None:
            return bytes(row[0])
        if seq == self.pruned_seq:
            value = self._meta("pruned_hash")
            if value is not None:
                return value
        raise StoreError(f"the chain hash after fix {seq} is not in the buffer")

    def hash_before(self, seq: int) -> bytes:
        """The chain hash before fix ``seq`` (what a batch starting there names)."""
        return self.hash_at(seq - 1)

    def held_seqs(self) -> Iterable[int]:
        """Sequence numbers held, in order (for checks and tests)."""
        for (seq,) in self._conn.execute("SELECT seq FROM fixes ORDER BY seq"):
            yield int(seq)

    def usage(self) -> Usage:
        """How full the buffer is against its budget."""
        pages = self._conn.execute("PRAGMA page_count").fetchone()[0]
        free = self._conn.execute("PRAGMA freelist_count").fetchone()[0]
        used = (int(pages) - int(free)) * self._page_size
        fractions = [0.0]
        if self.budget.max_bytes:
            fractions.append(used / self.budget.max_bytes)
        if self.budget.max_fixes:
            fractions.append(self._held / self.budget.max_fixes)
        fraction = max(fractions)
        waiting = self._state.recorded_seq - self._state.cloud_acked_seq
        warning = ""
        if fraction >= 1:
            warning = (
                f"storage budget reached: {self._held:,} fixes held, {waiting:,} not yet in "
                "the cloud; recording is paused until they sync (or raise --budget-mb)"
            )
        elif fraction >= self.budget.warn_at:
            warning = (
                f"storage {fraction:.0%} of budget: {waiting:,} fixes not yet in the cloud; "
                "get into coverage or raise --budget-mb"
            )
        return Usage(self._held, used, fraction, warning)

    def close(self) -> None:
        """Close the database (everything is already committed)."""
        self._conn.close()

    # -- internals ----------------------------------------------------------------------

    def _meta(self, key: str) -> bytes | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def _put(self, key: str, value: bytes) -> None:
        self._conn.execute(_PUT_META, (key, value, value))

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``; ``ROLLBACK`` if anything (the commit too) fails."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise


def _row(fix: Fix) -> tuple[int, ...]:
    return tuple(getattr(fix, name) for name in _FIELDS)
