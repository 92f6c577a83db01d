"""The fix buffer: durable before recorded, survives kill -9, resumes, bounded, prunes safely."""

from __future__ import annotations

import contextlib
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sync_protocol.ack import Ack
from sync_protocol.chain import device_id, extend_all, genesis, public_key_bytes
from sync_protocol.sender import Sender, SenderState
from tracker_app.errors import StorageFull, StoreError
from tracker_app.simulate import realistic_track
from tracker_app.store import Budget, FixStore

ROOT = Path(__file__).resolve().parents[2]
DEVICE = device_id(public_key_bytes(Ed25519PrivateKey.generate()))
TRACK = realistic_track(500)

WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from sync_protocol.sender import Sender, SenderState
    from tracker_app.simulate import realistic_track
    from tracker_app.store import FixStore

    path, device = Path(sys.argv[1]), bytes.fromhex(sys.argv[2])
    store = FixStore(path, device)
    sender = Sender(SenderState.from_bytes(store.state.to_bytes()))
    start = sender.state.recorded_seq + 1
    for fix in realistic_track(5_000)[start - 1 :]:
        store.record(fix, sender.record(fix), sender.state)
        print(fix.seq, flush=True)
    """
)


def record(store: FixStore, sender: Sender, count: int) -> None:
    start = sender.state.recorded_seq
    for fix in TRACK[start : start + count]:
        store.record(fix, sender.record(fix), sender.state)


def check_chain(store: FixStore, device: bytes = DEVICE) -> list[int]:
    """Every held fix hashes onto the one before it, up to the stored head; returns the seqs."""
    seqs = list(store.held_seqs())
    assert seqs == list(range(store.pruned_seq + 1, store.state.recorded_seq + 1))
    if seqs:
        fixes = store.fixes(seqs[0], seqs[-1])
        hashes = extend_all(store.hash_before(seqs[0]), fixes)
        assert hashes == [store.hash_at(s) for s in seqs]
        assert hashes[-1] == store.state.head_hash
    if store.pruned_seq == 0:
        assert store.hash_at(0) == genesis(device)
    return seqs


def test_fixes_and_state_persist_and_the_sequence_resumes(tmp_path: Path) -> None:
    path = tmp_path / "fixes.db"
    store = FixStore(path, DEVICE)
    sender = Sender(SenderState.from_bytes(store.state.to_bytes()))
    record(store, sender, 25)
    with contextlib.closing(sqlite3.connect(path)) as other:  # a WAL, seen by any reader
        assert other.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert other.execute("SELECT count(*) FROM fixes").fetchone() == (25,)  # committed
    store.close()

    store = FixStore(path, DEVICE)
    assert store.state.recorded_seq == 25
    assert store.state.head_hash == sender.state.head_hash
    resumed = Sender(SenderState.from_bytes(store.state.to_bytes()))
    record(store, resumed, 5)
    assert check_chain(store) == list(range(1, 31))
    assert store.fixes(26, 30) == TRACK[25:30]
    store.close()


def test_kill_9_at_a_random_instant_loses_nothing_recorded(tmp_path: Path) -> None:
    rng = random.Random(5)
    path = tmp_path / "fixes.db"
    reported = 0
    for _ in range(3):
        child = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), DEVICE.hex()],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        stop_after = reported + rng.randint(20, 300)
        while reported < stop_after:
            line = child.stdout.readline()  # the child prints each seq after its commit
            assert line, "writer exited early"
            reported = int(line)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        child.stdout.close()

        store = FixStore(path, DEVICE)  # reopens cleanly: fix and state are one commit
        assert store.state.recorded_seq >= reported  # everything reported recorded is there
        assert store.state.recorded_seq <= reported + 1  # at most the one being printed
        check_chain(store)
        reported = store.state.recorded_seq
        store.close()


def test_budget_warns_then_refuses_until_the_cloud_holds_fixes(tmp_path: Path) -> None:
    budget = Budget(max_bytes=None, max_fixes=100, warn_at=0.8, prune_at=0.5)
    store = FixStore(tmp_path / "fixes.db", DEVICE, budget)
    sender = Sender(SenderState.from_bytes(store.state.to_bytes()))
    for fix in TRACK[:100]:
        usage = store.make_room()
        assert bool(usage.warning) == (fix.seq > 80)
        store.record(fix, sender.record(fix), sender.state)
    with pytest.raises(StorageFull, match="storage budget reached: 100 fixes held"):
        store.make_room()

    # A relay acks everything; the cloud holds 1..70: only those may go.
    sender.connected(session=False)
    sender.on_ack(Ack(DEVICE, 100), 0, None)
    sender.on_cloud_ack(70)
    store.save_state(sender.state)
    usage = store.make_room()
    assert store.pruned_seq == 70
    assert usage.fixes == 30
    assert not usage.warning
    assert check_chain(store) == list(range(71, 101))
    with pytest.raises(StoreError, match="not all in the buffer"):
        store.fixes(60, 75)
    # The next batch can still name the hash before its first fix.
    assert store.hash_before(71) == extend_all(genesis(DEVICE), TRACK[:70])[-1]
    record(store, sender, 10)
    assert check_chain(store) == list(range(71, 111))


def test_pruning_never_goes_past_what_the_cloud_holds(tmp_path: Path) -> None:
    store = FixStore(tmp_path / "fixes.db", DEVICE)
    sender = Sender(SenderState.from_bytes(store.state.to_bytes()))
    record(store, sender, 20)
    sender.on_ack(Ack(DEVICE, 20), 0, None)  # a relay has them, the cloud does not
    store.save_state(sender.state)
    assert store.prune() == 0
    sender.on_cloud_ack(12)
    store.save_state(sender.state)
    assert store.prune() == 12
    assert check_chain(store) == list(range(13, 21))
    store.close()
    reopened = FixStore(tmp_path / "fixes.db", DEVICE)
    assert reopened.pruned_seq == 12
    assert check_chain(reopened) == list(range(13, 21))


def test_a_buffer_of_another_device_is_refused(tmp_path: Path) -> None:
    FixStore(tmp_path / "fixes.db", DEVICE).close()
    other = device_id(public_key_bytes(Ed25519PrivateKey.generate()))
    with pytest.raises(StoreError, match="belongs to device"):
        FixStore(tmp_path / "fixes.db", other)


def test_a_bad_budget_is_refused() -> None:
    with pytest.raises(StoreError, match="must be positive"):
        Budget(max_bytes=0)
