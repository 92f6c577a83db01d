"""The relay's group committer on a real SQLite file: what a failing job undoes, what it
leaves alone, and that every result arrives only once the group is on disk."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edge_relay.commit import CommitFailed, GroupCommitter
from edge_relay.store import Reads, Writes, connect
from sync_protocol.fix import Fix

T0 = 1_750_000_000_000


def fix(seq: int) -> Fix:
    return Fix(seq, T0 + seq * 1_000, 450_000_000 + seq * 10, 60_000_000, 1_000, 800, 900, 40)


def device(n: int) -> bytes:
    return bytes([n]) * 16


class Boom(RuntimeError):
    """A job's own failure."""


def run_group(committer: GroupCommitter, jobs: list[Callable[[Writes], Any]]) -> list[Any]:
    """Run ``jobs`` as one group: a first job holds the writer until all are queued."""
    gate = threading.Event()

    async def go() -> list[Any]:
        held = asyncio.ensure_future(committer.run(lambda w: gate.wait(5)))
        await asyncio.sleep(0.05)  # the writer is inside the holding job
        queued = [asyncio.ensure_future(committer.run(job)) for job in jobs]
        await asyncio.sleep(0.05)
        gate.set()
        await held
        return await asyncio.gather(*queued, return_exceptions=True)

    return asyncio.run(go())


@pytest.fixture
def committer(tmp_path: Path) -> GroupCommitter:
    c = GroupCommitter(tmp_path / "relay.db")

    def enrol(w: Writes) -> None:
        for n in range(1, 5):
            w.put_device(device(n), b"cert", n)

    asyncio.run(c.run(enrol))
    return c


def stored(path: Path) -> list[tuple[bytes, int, int]]:
    """(device, seq, verified) rows as another connection sees them."""
    reads = Reads(connect(path, writer=False))
    try:
        return reads.conn.execute(
            "SELECT device_id, seq, verified FROM fixes ORDER BY device_id, seq"
        ).fetchall()
    finally:
        reads.conn.close()


def test_a_failing_job_undoes_only_its_own_writes(
    committer: GroupCommitter, tmp_path: Path
) -> None:
    def good(n: int) -> Callable[[Writes], str]:
        def job(w: Writes) -> str:
            w.put_fixes(device(n), [fix(1), fix(2)], verified=False)
            w.put_receiver(device(n), b"state-%d" % n)
            return f"ok {n}"

        return job

    def bad_buffered(w: Writes) -> None:
        w.put_fixes(device(3), [fix(1)], verified=True)
        w.put_receiver(device(3), b"never")
        raise Boom("after buffered writes")

    def bad_after_statement(w: Writes) -> None:
        # A statement of its own flushes the earlier jobs' rows (outside this job's
        # savepoint) and its own (inside it); failing must undo only the latter.
        w.put_fixes(device(4), [fix(1)], verified=True)
        w.queue_command(("a-4", 1, "dnf", "{}", "{}", T0))
        raise Boom("after a statement")

    results = run_group(committer, [good(1), bad_buffered, bad_after_statement, good(2)])
    assert results[0] == "ok 1"
    assert results[3] == "ok 2"
    assert isinstance(results[1], Boom)
    assert isinstance(results[2], Boom)
    committer.close()

    assert stored(tmp_path / "relay.db") == [
        (device(1), 1, 0),
        (device(1), 2, 0),
        (device(2), 1, 0),
        (device(2), 2, 0),
    ]
    conn = sqlite3.connect(tmp_path / "relay.db")
    receivers = dict(conn.execute("SELECT racer_id, receiver FROM devices").fetchall())
    assert receivers == {1: b"state-1", 2: b"state-2", 3: None, 4: None}
    assert conn.execute("SELECT COUNT(*) FROM control").fetchone() == (0,)
    assert committer.stats.failures == 0


def test_writes_keep_their_order_within_a_group(committer: GroupCommitter, tmp_path: Path) -> None:
    """Provisional fixes, then the signed head that verifies them, then the next live fix,
    all buffered in one group: the marks apply to the rows written before them only."""

    def provisional(w: Writes) -> None:
        w.put_fixes(device(1), [fix(1), fix(2)], verified=False)

    def signed(w: Writes) -> None:
        w.put_fixes(device(1), [fix(3)], verified=True)
        w.mark_verified(device(1), 1, 3)
        w.queue_run(device(1), 1, 3, b"p" * 32, b"s" * 64)

    def next_live(w: Writes) -> int:
        w.put_fixes(device(1), [fix(4)], verified=False)
        # Reads on the writer's connection see the group's writes so far.
        return committer.reads.count_fixes(device(1))

    results = run_group(committer, [provisional, signed, next_live])
    assert results == [None, None, 4]
    committer.close()
    assert stored(tmp_path / "relay.db") == [
        (device(1), 1, 1),
        (device(1), 2, 1),
        (device(1), 3, 1),
        (device(1), 4, 0),
    ]
    runs = Reads(connect(tmp_path / "relay.db", writer=False)).pending_runs(10)
    assert [(r.first_seq, r.last_seq) for r in runs] == [(1, 3)]


def test_results_arrive_after_the_commit_and_groups_share_one(
    committer: GroupCommitter, tmp_path: Path
) -> None:
    seen: list[int] = []

    def job(n: int) -> Callable[[Writes], int]:
        def write(w: Writes) -> int:
            w.put_fixes(device(1), [fix(n)], verified=False)
            return n

        return write

    async def go() -> None:
        async def one(n: int) -> None:
            await committer.run(job(n))
            seen.append(len(stored(tmp_path / "relay.db")))  # visible to another reader

        await asyncio.gather(*(one(n) for n in range(1, 201)))

    commits = committer.stats.commits
    asyncio.run(go())
    assert all(count >= 1 for count in seen)
    assert len(stored(tmp_path / "relay.db")) == 200
    assert committer.stats.commits - commits < 200  # grouped
    committer.close()


def test_a_group_that_cannot_be_written_fails_every_job(
    committer: GroupCommitter, tmp_path: Path
) -> None:
    """A row the table refuses fails the group's write: no job of it is acked."""
    aborted: list[int] = []

    def job(n: int, seq: int) -> Callable[[Writes], int]:
        def write(w: Writes) -> int:
            w.put_fixes(device(n), [Fix(seq, T0, 0, 0)], verified=False)
            return n

        return write

    conn = sqlite3.connect(tmp_path / "relay.db")
    conn.execute(
        "CREATE TRIGGER refuse BEFORE INSERT ON fixes WHEN NEW.seq = 99"
        " BEGIN SELECT RAISE(ABORT, 'disk says no'); END"
    )
    conn.commit()
    conn.close()

    async def go() -> list[Any]:
        gate = threading.Event()
        held = asyncio.ensure_future(committer.run(lambda w: gate.wait(5)))
        await asyncio.sleep(0.05)
        jobs = [
            asyncio.ensure_future(committer.run(job(1, 1), on_abort=lambda: aborted.append(1))),
            asyncio.ensure_future(committer.run(job(2, 99), on_abort=lambda: aborted.append(2))),
        ]
        await asyncio.sleep(0.05)
        gate.set()  # the two queued jobs join the open group of the held one
        return await asyncio.gather(held, *jobs, return_exceptions=True)

    results = asyncio.run(go())
    assert all(isinstance(r, CommitFailed) for r in results), results
    assert "disk says no" in str(results[0])
    assert sorted(aborted) == [1, 2]
    assert committer.stats.failures == 1
    # The writer carries on: the next group commits.
    assert asyncio.run(committer.run(job(3, 5))) == 3
    committer.close()
    assert stored(tmp_path / "relay.db") == [(device(3), 5, 0)]


def test_a_preview_comes_before_the_durable_result(committer: GroupCommitter) -> None:
    """What may be shown before it is durable (a live position) is handed over as soon as
    the job has run, ahead of the result; a job that failed previews nothing."""
    order: list[str] = []

    def job(n: int) -> Callable[[Writes], int]:
        def write(w: Writes) -> int:
            if n == 2:
                raise Boom("no")
            w.put_fixes(device(1), [fix(n)], verified=False)
            return n

        return write

    async def one(n: int) -> None:
        try:
            value = await committer.run(job(n), preview=lambda v: order.append(f"preview {v}"))
        except Boom:
            order.append(f"failed {n}")
        else:
            order.append(f"durable {value}")

    async def go() -> None:
        await asyncio.gather(one(1), one(2), one(3))

    asyncio.run(go())
    committer.close()
    assert sorted(order) == ["durable 1", "durable 3", "failed 2", "preview 1", "preview 3"]
    assert order.index("preview 1") < order.index("durable 1")
    assert order.index("preview 3") < order.index("durable 3")


def test_a_preview_does_not_wait_for_the_rest_of_its_group(committer: GroupCommitter) -> None:
    """Under load a group stays open for the jobs that keep arriving: each job's preview
    goes out as soon as it has run, not when its group closes. Here the second job of the
    group waits for the first one's preview, which could never come otherwise."""
    shown = threading.Event()

    def second(w: Writes) -> int:
        assert shown.wait(5), "the first job's preview waited for its group"
        w.put_fixes(device(2), [fix(1)], verified=False)
        return 2

    def first(w: Writes) -> int:
        w.put_fixes(device(1), [fix(1)], verified=False)
        return 1

    async def go() -> list[int]:
        gate = threading.Event()
        held = asyncio.ensure_future(committer.run(lambda w: gate.wait(5)))
        await asyncio.sleep(0.05)  # the writer is inside `held`: the next two queue up
        jobs = [
            asyncio.ensure_future(committer.run(first, preview=lambda v: shown.set())),
            asyncio.ensure_future(committer.run(second)),
        ]
        await asyncio.sleep(0.05)
        gate.set()  # both join the group `held` opened, and run in order
        await held
        return list(await asyncio.gather(*jobs))

    assert asyncio.run(go()) == [1, 2]
    assert committer.stats.largest_group == 3


def test_an_answer_waits_for_the_fsync_that_covers_its_commit(committer: GroupCommitter) -> None:
    """Commits do not wait for the disk, answers do: between a job's preview (before its
    commit) and its answer, the syncer has fsynced the WAL at least once more."""
    seen: dict[str, int] = {}

    def write(w: Writes) -> None:
        w.put_fixes(device(2), [fix(1)], verified=False)

    def previewed(_: None) -> None:
        seen.setdefault("preview", committer.stats.syncs)

    async def go() -> None:
        await committer.run(write, preview=previewed)
        seen["answer"] = committer.stats.syncs

    for _ in range(5):
        seen.clear()
        asyncio.run(go())
        assert seen["answer"] > seen["preview"], seen
    committer.close()


def test_the_checkpointer_copies_the_wal_beside_the_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer's COMMIT never checkpoints (it would stall every live position behind
    the database file's fsync); the checkpointer thread copies the WAL's pages into the
    database file on its own connection, and what it copied is what was committed."""
    monkeypatch.setattr("edge_relay.commit.CHECKPOINT_EVERY_S", 0.05)
    path = tmp_path / "relay.db"
    c = GroupCommitter(path)
    assert c.reads.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0

    def enrol(w: Writes) -> None:
        w.put_device(device(1), b"cert", 1)

    async def go() -> None:
        await c.run(enrol)
        for seq in range(1, 201):
            await c.run(lambda w, seq=seq: w.put_fixes(device(1), [fix(seq)], verified=False))
        for _ in range(100):  # up to 5 s
            if c.stats.checkpoints:
                break
            await asyncio.sleep(0.05)

    asyncio.run(go())
    assert c.stats.checkpoints >= 1
    assert c.alive
    c.close()
    assert not c.alive
    rows = stored(path)
    assert [seq for _, seq, _ in rows] == list(range(1, 201))
