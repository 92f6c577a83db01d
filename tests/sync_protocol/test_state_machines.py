"""Sender and receiver driven through loss, duplication, reordering, outages and restarts.

The link is a fake in the manner of h11's ConnectionPair: messages are bytes; each one can
be dropped, duplicated or delayed; both ends restart from their persisted plain-data state.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync_protocol.ack import Ack
from sync_protocol.batch import Batch, decode_batch, encode_batch, seal
from sync_protocol.chain import genesis
from sync_protocol.events import (
    ChainVerified,
    DuplicateReceived,
    FixesAccepted,
    GapDetected,
    ProvisionalDiscarded,
)
from sync_protocol.fix import Fix
from sync_protocol.receiver import Receiver, ReceiverState
from sync_protocol.sender import Sender, SenderState
from tracker_app.simulate import START_MS, realistic_track

SESSION = b"s" * 32


class Tracker:
    """The tracker's side: a durable store of fixes and hashes plus the sender."""

    def __init__(self, device, *, session: bool = False, **policy: int) -> None:  # type: ignore[no-untyped-def]
        self.device = device
        self.session = session
        self.policy = policy
        self.store: dict[int, tuple[Fix, bytes]] = {}
        self.saved = SenderState(device.id).to_bytes()
        self.restart()

    def restart(self) -> None:
        self.sender = Sender(SenderState.from_bytes(self.saved), **self.policy)
        self.reconnect()

    def reconnect(self) -> None:
        self.connection = self.sender.connected(session=self.session)

    def record(self, fix: Fix) -> None:
        chain_hash = self.sender.record(fix)
        self.store[fix.seq] = (fix, chain_hash)  # the fix and the state commit together
        self.saved = self.sender.state.to_bytes()

    def sends(self, now_ms: int) -> list[bytes]:
        out = []
        for send in self.sender.next_sends(now_ms):
            fixes = [self.store[s][0] for s in range(send.first_seq, send.last_seq + 1)]
            prev = (
                self.store[send.first_seq - 1][1] if send.first_seq > 1 else genesis(self.device.id)
            )
            key = {"key": self.device.key} if send.signed else {"session_key": SESSION}
            batch = seal(
                self.device.id, fixes, prev, include_prev_hash=send.include_prev_hash, **key
            )
            out.append(encode_batch(batch))
        return out

    def on_ack(self, data: bytes, now_ms: int, connection: int | None = None) -> None:
        self.sender.on_ack(Ack.decode(data), now_ms, connection)
        self.saved = self.sender.state.to_bytes()


@dataclass
class Relay:
    """A receiving hop: stores fixes, counts every insert, persists state with them."""

    cert: object
    session: bool = False
    stored: dict[int, Fix] = field(default_factory=dict)
    inserts: Counter[int] = field(default_factory=Counter)
    verified: list[ChainVerified] = field(default_factory=list)
    signed_batches: int = 0
    fixes_in: int = 0
    saved: bytes = b""

    def __post_init__(self) -> None:
        self.rx = Receiver.for_certificate(self.cert)  # type: ignore[arg-type]
        self.rx.session_key = SESSION if self.session else None
        self.saved = self.rx.state.to_bytes()

    def restart(self) -> None:
        self.rx = Receiver(ReceiverState.from_bytes(self.saved))  # a new connection follows
        self.rx.session_key = SESSION if self.session else None

    def handle(self, data: bytes) -> bytes:
        batch = decode_batch(data)
        self.signed_batches += batch.signed
        self.fixes_in += len(batch.fixes)
        for event in self.rx.receive(batch):
            if isinstance(event, FixesAccepted):
                for fix in event.fixes:
                    self.inserts[fix.seq] += 1
                    self.stored[fix.seq] = fix
            elif isinstance(event, ProvisionalDiscarded):
                for seq in range(event.first_seq, event.last_seq + 1):
                    self.inserts[seq] -= 1
                    del self.stored[seq]
            elif isinstance(event, ChainVerified):
                self.verified.append(event)
        self.saved = self.rx.state.to_bytes()  # commit, then ack
        return self.rx.ack().encode()


class Link:
    """Delivers messages after a random delay; may drop or duplicate them; may be down."""

    def __init__(self, rng: random.Random, loss: float, dup: float, max_delay: int) -> None:
        self.rng, self.loss, self.dup, self.max_delay = rng, loss, dup, max_delay
        self.queue: list[tuple[int, int, tuple[int, bytes]]] = []
        self.up = True
        self.order = 0

    def send(self, now: int, data: tuple[int, bytes]) -> None:
        if not self.up or self.rng.random() < self.loss:
            return
        copies = 2 if self.rng.random() < self.dup else 1
        for _ in range(copies):
            self.order += 1
            self.queue.append((now + self.rng.randint(0, self.max_delay), self.order, data))

    def due(self, now: int) -> list[tuple[int, bytes]]:
        ready = sorted(m for m in self.queue if m[0] <= now)
        self.queue = [m for m in self.queue if m[0] > now]
        return [m[2] for m in ready]


def run(
    tracker: Tracker,
    relay: Relay,
    track: list[Fix],
    rng: random.Random,
    *,
    loss: float = 0.0,
    dup: float = 0.0,
    max_delay: int = 0,
    restarts: float = 0.0,
    outage: tuple[int, int] = (0, 0),
) -> int:
    """Ride ``track`` at 1 Hz through a hostile link, then heal it; return seconds taken."""
    up = Link(rng, loss, dup, max_delay)
    down = Link(rng, loss, dup, max_delay)
    step_ms = 250
    i = next(
        (n for n, f in enumerate(track) if f.seq > tracker.sender.state.recorded_seq), len(track)
    )
    now = track[i].t_ms if i < len(track) else track[-1].t_ms
    limit = START_MS + (len(track) + 1_000) * 1_000
    while now < limit:
        healing = i >= len(track)
        if healing:
            up.loss = down.loss = up.dup = down.dup = 0.0
        up.up = down.up = healing or not outage[0] <= i < outage[1]
        if not healing and now >= track[i].t_ms:
            tracker.record(track[i])
            i += 1
        if not healing and rng.random() < restarts:
            if rng.random() < 0.5:
                tracker.restart()
            else:
                relay.restart()
                tracker.reconnect()
        for data in tracker.sends(now):
            up.send(now, (tracker.connection, data))
        for connection, data in up.due(now):
            down.send(now, (connection, relay.handle(data)))
        for connection, data in down.due(now):
            tracker.on_ack(data, now, connection)
        if healing and tracker.sender.waiting == 0 and not up.queue and not down.queue:
            return (now - track[-1].t_ms) // 1000
        now += step_ms
    raise AssertionError(f"never converged: {tracker.sender.waiting} fixes waiting")


def assert_exactly_once(relay: Relay, track: list[Fix]) -> None:
    assert relay.stored == {f.seq: f for f in track}
    assert set(relay.inserts.values()) == {1}, "a fix was stored twice"
    assert relay.rx.acked_seq == len(track)
    assert relay.rx.state.provisional is None


@given(
    seed=st.integers(0, 2**32),
    loss=st.sampled_from([0.0, 0.1, 0.3]),
    dup=st.sampled_from([0.0, 0.2]),
    max_delay=st.sampled_from([0, 2_000, 8_000]),
    restarts=st.sampled_from([0.0, 0.01]),
    session=st.booleans(),
    outage_start=st.integers(0, 150),
    outage_len=st.sampled_from([0, 30, 120]),
)
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
def test_every_fix_arrives_exactly_once_through_a_hostile_link(  # type: ignore[no-untyped-def]
    device, seed, loss, dup, max_delay, restarts, session, outage_start, outage_len
) -> None:
    track = realistic_track(200, seed=seed % 1000)
    tracker = Tracker(device, session=session)
    relay = Relay(device.cert, session=session)
    outage = (outage_start, outage_start + outage_len)
    run(
        tracker,
        relay,
        track,
        random.Random(seed),
        loss=loss,
        dup=dup,
        max_delay=max_delay,
        restarts=restarts,
        outage=outage,
    )
    assert_exactly_once(relay, track)
    assert tracker.sender.state.acked_seq == len(track)


def test_live_fix_first_after_an_hour_offline_then_backfill(device) -> None:  # type: ignore[no-untyped-def]
    track = realistic_track(3_601)
    tracker = Tracker(device)
    for fix in track:
        tracker.record(fix)  # an hour in a valley with no coverage
    relay = Relay(device.cert)
    first, *rest = tracker.sends(track[-1].t_ms)
    batch = decode_batch(first)
    assert (batch.first_seq, batch.last_seq, batch.prev_hash is not None) == (3_601, 3_601, True)
    ack = Ack.decode(relay.handle(first))
    assert relay.stored == {3_601: track[-1]}, "the newest position is shown at once"
    assert ack.held == ((3_601, 3_601),)
    assert ack.missing == ((1, 3_600),)
    assert len(rest) == 60
    assert all(len(decode_batch(d).fixes) == 60 for d in rest)
    for data in rest:
        tracker.on_ack(relay.handle(data), track[-1].t_ms)
    assert_exactly_once(relay, track)
    assert tracker.sender.state.acked_seq == 3_601
    covered = sorted((v.first_seq, v.last_seq) for v in relay.verified)
    assert covered[0] == (1, 60)
    assert (3_601, 3_601) in covered


def test_live_mode_verifies_one_signature_per_ten_fixes(device) -> None:  # type: ignore[no-untyped-def]
    track = realistic_track(300)
    tracker = Tracker(device, session=True, seal_every=10)
    relay = Relay(device.cert, session=True)
    run(tracker, relay, track, random.Random(1))
    assert_exactly_once(relay, track)
    assert relay.fixes_in == 300
    assert relay.signed_batches == 30  # 270 live fixes were checked by MAC only


def test_switching_relays_mid_race_loses_and_duplicates_nothing(device) -> None:  # type: ignore[no-untyped-def]
    track = realistic_track(300)
    tracker = Tracker(device)
    relay_a, relay_b = Relay(device.cert), Relay(device.cert)
    run(tracker, relay_a, track[:150], random.Random(2), loss=0.2)
    tracker.reconnect()  # the rider rolls out of relay A's range into B's
    run(tracker, relay_b, track, random.Random(3), loss=0.2)
    assert set(relay_a.stored) == set(range(1, 151))
    assert set(relay_b.stored) == set(range(151, 301)), "B got only what A had not acked"
    # Both relays forward their verified runs to the cloud, in any order, more than once.
    cloud = Relay(device.cert)
    forwarded = []
    for relay in (relay_b, relay_a, relay_b):
        for v in relay.verified:
            fixes = tuple(relay.stored[s] for s in range(v.first_seq, v.last_seq + 1))
            forwarded.append(encode_batch(Batch(device.id, fixes, v.signature, v.prev_hash)))
    for data in forwarded:
        cloud.handle(data)
    assert_exactly_once(cloud, track)


def test_gap_at_receiver_is_answered_with_missing_range(device) -> None:  # type: ignore[no-untyped-def]
    track = realistic_track(130)
    tracker = Tracker(device)
    for fix in track[:3]:
        tracker.record(fix)
    relay = Relay(device.cert)
    lost = tracker.sends(START_MS)  # 1..3, lost on the way
    assert len(lost) == 1
    for fix in track[3:4]:
        tracker.record(fix)
    (data,) = tracker.sends(START_MS + 100)
    events = relay.rx.receive(decode_batch(data))
    assert events == [GapDetected(((1, 3),))]
    tracker.on_ack(relay.rx.ack().encode(), START_MS + 200)
    resent = [decode_batch(d) for d in tracker.sends(START_MS + 300)]
    assert [(b.first_seq, b.last_seq) for b in resent] == [(1, 4)]
    relay.handle(encode_batch(resent[0]))
    assert relay.stored == {f.seq: f for f in track[:4]}
    assert relay.rx.receive(decode_batch(data)) == [DuplicateReceived(4, 4)]


def test_switching_relays_keeps_the_cheap_live_path(device) -> None:  # type: ignore[no-untyped-def]
    track = realistic_track(300)
    tracker = Tracker(device, session=True)
    relay_a, relay_b = Relay(device.cert, session=True), Relay(device.cert, session=True)
    run(tracker, relay_a, track[:150], random.Random(4))
    tracker.reconnect()
    run(tracker, relay_b, track, random.Random(5))
    assert set(relay_b.stored) == set(range(151, 301))
    assert relay_b.fixes_in == 150, "nothing resent after the switch"
    assert relay_b.signed_batches <= 16  # the first fix, then one seal per 10 live fixes


def test_a_late_ack_from_the_old_connection_does_not_stall_the_new_one(device) -> None:  # type: ignore[no-untyped-def]
    track = realistic_track(40)
    tracker = Tracker(device)
    relay_a, relay_b = Relay(device.cert), Relay(device.cert)
    old = tracker.connection
    for fix in track[:20]:
        tracker.record(fix)
    late_ack = [relay_a.handle(d) for d in tracker.sends(track[19].t_ms)][-1]
    tracker.reconnect()
    tracker.on_ack(late_ack, track[19].t_ms, old)  # arrives after the switch
    assert tracker.sender.state.acked_seq == 20  # still durable at relay A
    run(tracker, relay_b, track, random.Random(6))
    assert set(relay_b.stored) == set(range(21, 41))
