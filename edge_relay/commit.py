"""Group commit: one writer thread, one transaction for many requests, fsyncs pipelined.

Requests from the event loop queue *jobs* (functions of :class:`~edge_relay.store.Writes`).
The writer opens a transaction for the first job and runs each job as soon as it takes it
— a failing job undoes only its own writes (:class:`~edge_relay.store.Writes` buffers
them per job, and gives a savepoint to a job that runs a statement of its own) — taking
every job that arrives meanwhile into the same group; then it writes the group's buffered
rows with one statement per kind and commits. Under load groups grow by themselves (jobs
queue while a group is being written); when idle a job commits alone, with no added
delay.

**Durability.** The connection commits with ``synchronous=NORMAL`` (the WAL is written,
not yet synced) and a second thread, the *syncer*, fsyncs the WAL file and only then
completes the jobs' futures: whatever a job returns (an ack) reaches its caller after its
data is on disk, exactly as with ``synchronous=FULL``. But the writer does not wait for
the disk: it goes on with the next group while the syncer's fsync covers every commit
made before it started (one fsync for many groups under load). A *preview* of a job's
result (a live position: shown, not acked) is handed over as soon as the job has run,
before its group is even closed.

**Checkpoints.** SQLite's automatic checkpoint would run inside the writer's COMMIT and
hold it for the checkpoint's writes and fsync of the database file (tens of ms here,
every few seconds under load, and every live position waiting behind it). The writer's
connection turns it off; a third thread, the *checkpointer*, runs a passive checkpoint on
its own connection every CHECKPOINT_EVERY_S, alongside the writer (WAL mode lets a
checkpoint and a writer run at once), and one last time on close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from .store import GroupWriteFailed, Reads, Writes, connect

log = logging.getLogger("gruppetto.relay.commit")

T = TypeVar("T")
MAX_GROUP = 512
"""Most jobs in one transaction."""
LINGER_S = 0.0005
LINGERS = 4
"""Under load, wait up to LINGERS x LINGER_S (2 ms) for more jobs before committing."""
CHECKPOINT_EVERY_S = 1.0
"""How often the checkpointer copies the WAL's new pages into the database file."""


class CommitFailed(RuntimeError):
    """The group's transaction did not reach the disk; nothing of it was acked."""


@dataclass(slots=True)
class _Job(Generic[T]):
    fn: Callable[[Writes], T]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[T]
    on_abort: Callable[[], None] | None = None
    preview: Callable[[T], None] | None = None


@dataclass(slots=True)
class CommitStats:
    """What the writer has done (exported as metrics)."""

    commits: int = 0
    """Transactions committed."""
    jobs: int = 0
    """Jobs committed."""
    failures: int = 0
    """Transactions that failed to commit."""
    seconds: float = 0.0
    """Time spent in COMMIT (writing the WAL)."""
    syncs: int = 0
    """fsyncs of the WAL (each covers every commit made before it)."""
    sync_seconds: float = 0.0
    """Time spent in fsync."""
    checkpoints: int = 0
    """Passive checkpoints that copied pages into the database file."""
    checkpoint_seconds: float = 0.0
    """Time spent checkpointing (on the checkpointer's thread, not the writer's)."""
    largest_group: int = 0
    """Most jobs seen in one commit."""
    group_sizes: list[int] = field(default_factory=list)
    """Recent group sizes (bounded)."""


class GroupCommitter:
    """The relay's single writer."""

    def __init__(self, path: Path) -> None:
        self._conn = connect(path, writer=True)
        self._conn.execute("PRAGMA synchronous=NORMAL")  # the syncer makes commits durable
        self._conn.execute("PRAGMA wal_autocheckpoint=0")  # the checkpointer's job
        self._path = path
        self._closing = threading.Event()
        self._db_fd = os.open(path, os.O_RDONLY)
        self._wal = Path(f"{path}-wal")
        self._wal_fd: int | None = None
        self._fd_lock = threading.Lock()
        """Held by the syncer while it fsyncs, and by the writer to swap descriptors."""
        self.writes = Writes(self._conn)
        self.reads = Reads(self._conn, before=self.writes.flush)
        """Reads on the writer's connection: only for use inside jobs."""
        self.stats = CommitStats()
        self._queue: queue.SimpleQueue[_Job[Any] | None] = queue.SimpleQueue()
        self._last_group = 0
        self._synced: queue.SimpleQueue[tuple[list[_Job[Any]], list[Any]] | None]
        self._synced = queue.SimpleQueue()
        self._syncer = threading.Thread(target=self._sync_loop, name="relay-syncer", daemon=True)
        self._syncer.start()
        self._thread = threading.Thread(target=self._run, name="relay-writer", daemon=True)
        self._thread.start()
        self._checkpointer = threading.Thread(
            target=self._checkpoint_loop, name="relay-checkpointer", daemon=True
        )
        self._checkpointer.start()

    async def run(
        self,
        fn: Callable[[Writes], T],
        on_abort: Callable[[], None] | None = None,
        preview: Callable[[T], None] | None = None,
    ) -> T:
        """Queue a job and wait for its durable result.

        ``on_abort`` runs on the writer thread when the job is rolled back (it raised, or
        the group's commit failed): the place to forget in-memory state the job changed.
        ``preview`` gets the job's result on the caller's loop as soon as the job has run,
        while its group is still being committed: for what may be shown before it is
        durable (a live position is not an ack). If the commit then fails, the caller's
        ``run`` raises :class:`CommitFailed` as usual.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Job(fn, loop, future, on_abort, preview))
        return await future

    @property
    def alive(self) -> bool:
        """Whether the writer, syncer and checkpointer threads are running."""
        return self._thread.is_alive() and self._syncer.is_alive() and self._checkpointer.is_alive()

    def close(self) -> None:
        """Finish queued jobs, sync them, stop both threads and close the database."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        if self._syncer.is_alive():
            self._synced.put(None)
            self._syncer.join()
        self._closing.set()
        self._checkpointer.join()
        self._conn.close()
        for fd in (self._db_fd, self._wal_fd):
            if fd is not None:
                os.close(fd)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            job = self._queue.get()
            if job is None:
                break
            stopping = self._group(job)

    def _group(self, first: _Job[Any]) -> bool:
        """One transaction: ``first``, and every job that arrives while it is open.

        Each job runs as soon as the writer takes it and its preview goes out at once,
        while the group stays open for more; under load (the last group was shared) it
        lingers a moment so the requests whose acks were just released can join it: far
        fewer commits and fsyncs. True when the queue said stop.
        """
        group: list[_Job[Any]] = []
        outcomes: list[tuple[bool, Any]] = []
        stopping = False
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            lingers = LINGERS if self._last_group > 1 else 0
            job: _Job[Any] | None = first
            while job is not None:
                outcome = self._one(job)
                group.append(job)
                outcomes.append(outcome)
                _preview([job], [outcome])  # shown while the group goes on, then to disk
                job = None
                while len(group) < MAX_GROUP:
                    try:
                        job = self._queue.get_nowait()
                    except queue.Empty:
                        if lingers == 0:
                            break
                        lingers -= 1
                        time.sleep(LINGER_S)
                        continue
                    if job is None:
                        stopping = True
                    break
            self.writes.flush()
            started = time.perf_counter()
            self._conn.execute("COMMIT")
            self.stats.seconds += time.perf_counter() - started
            self._sync_wal_fd()
        except sqlite3.Error as exc:
            log.error("commit failed", extra={"detail": str(exc), "jobs": len(group)})
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            self.writes.discard()
            self.stats.failures += 1
            failed = CommitFailed(f"the relay could not store: {exc}")
            for job in group:
                if job.on_abort is not None:
                    job.on_abort()
            _settle(group, [(False, failed)] * len(group))
            self._last_group = len(group)
            return stopping
        self._last_group = len(group)
        self.stats.commits += 1
        self.stats.jobs += len(group)
        self.stats.largest_group = max(self.stats.largest_group, len(group))
        self.stats.group_sizes = [*self.stats.group_sizes[-99:], len(group)]
        self._synced.put((group, outcomes))  # answered once the syncer's fsync is done
        return stopping

    def _sync_wal_fd(self) -> None:
        """Keep a descriptor on the WAL file the commits went to (the writer's thread).

        The WAL lives as long as the writer's connection; should SQLite ever replace it,
        the new file is opened before the syncer's next fsync.
        """
        try:
            current = os.stat(self._wal).st_ino
        except FileNotFoundError:
            current = None  # checkpointed into the database file and removed
        if self._wal_fd is not None and current == os.fstat(self._wal_fd).st_ino:
            return
        with self._fd_lock:
            if self._wal_fd is not None:
                os.close(self._wal_fd)
            self._wal_fd = None if current is None else os.open(self._wal, os.O_RDONLY)

    def _sync_loop(self) -> None:
        """fsync the WAL for every group committed before it, then answer those groups."""
        stopping = False
        while not stopping:
            item = self._synced.get()
            if item is None:
                break
            done = [item]
            while True:  # everything committed so far rides on this one fsync
                try:
                    more = self._synced.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    break
                done.append(more)
            started = time.perf_counter()
            try:
                with self._fd_lock:
                    os.fsync(self._wal_fd if self._wal_fd is not None else self._db_fd)
            except OSError as exc:  # committed but maybe not on disk: answer nothing good
                log.error("fsync of the WAL failed", extra={"detail": str(exc)})
                self.stats.failures += len(done)
                failed = CommitFailed(f"the relay could not sync to disk: {exc}")
                for group, _ in done:
                    _settle(group, [(False, failed)] * len(group))
                continue
            self.stats.syncs += 1
            self.stats.sync_seconds += time.perf_counter() - started
            for group, outcomes in done:
                _settle(group, outcomes)

    def _checkpoint_loop(self) -> None:
        """Copy committed WAL pages into the database file, beside the writer."""
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA busy_timeout=1000")
            last: tuple[int, int] = (0, 0)
            while True:
                closing = self._closing.wait(CHECKPOINT_EVERY_S)
                started = time.perf_counter()
                try:
                    row = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error as exc:  # the next round tries again; the WAL just grows
                    log.warning("checkpoint failed", extra={"detail": str(exc)})
                else:
                    progress = (int(row[1]), int(row[2]))  # frames in the WAL, copied
                    if progress[1] > 0 and progress != last:
                        self.stats.checkpoints += 1
                        self.stats.checkpoint_seconds += time.perf_counter() - started
                    last = progress
                if closing:
                    return
        finally:
            conn.close()

    def _one(self, job: _Job[Any]) -> tuple[bool, Any]:
        self.writes.begin_job()
        try:
            value = job.fn(self.writes)
        except GroupWriteFailed:
            raise  # not this job's fault: the whole group fails
        except Exception as exc:  # the job's own failure: undo only this job
            self.writes.end_job(ok=False)
            if job.on_abort is not None:
                job.on_abort()
            return False, exc
        self.writes.end_job(ok=True)
        return True, value


def _settle(group: list[_Job[Any]], outcomes: list[tuple[bool, Any]]) -> None:
    """Complete the group's futures with one callback per event loop (not one per job),
    so the loop resumes every waiting request in one go and their next jobs arrive
    together for the next group."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
    for job, (ok, value) in zip(group, outcomes, strict=True):
        by_loop.setdefault(job.loop, []).append((job.future, ok, value))
    for loop, items in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting
            loop.call_soon_threadsafe(_complete, items)


def _preview(group: list[_Job[Any]], outcomes: list[tuple[bool, Any]]) -> None:
    """Hand the successful jobs' results to their previews, one callback per loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Callable[[Any], None], Any]]] = {}
    for job, (ok, value) in zip(group, outcomes, strict=True):
        if ok and job.preview is not None:
            by_loop.setdefault(job.loop, []).append((job.preview, value))
    for loop, items in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is watching
            loop.call_soon_threadsafe(_show, items)


def _show(items: list[tuple[Callable[[Any], None], Any]]) -> None:
    for preview, value in items:
        try:
            preview(value)
        except Exception:  # a preview is for display: it never fails the upload
            log.exception("preview failed")


def _complete(items: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for future, ok, value in items:
        if future.done():
            continue  # the request was cancelled (its connection went away)
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)
