"""One rider's day through the real protocol core, in one process.

Until the relay and cloud services land, ``gruppetto demo`` runs this: a simulated rider
records signed fixes, sends them live (session MACs, a signature every 10 fixes), loses
coverage for an hour, then reconnects — the newest position goes first, the backlog
follows in catch-up batches — and the relay forwards its verified runs to the cloud's
receiver. Storage here is the caller's dictionaries: the protocol leaves persistence to
its caller, and the SQLite stores arrive with the tracker and relay.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sync_protocol.ack import Ack
from sync_protocol.batch import Batch, decode_batch, encode_batch, seal
from sync_protocol.certificate import DeviceCertificate
from sync_protocol.chain import genesis, public_key_bytes
from sync_protocol.events import ChainVerified, FixesAccepted
from sync_protocol.fix import Fix
from sync_protocol.receiver import Receiver
from sync_protocol.sender import Sender, SenderState
from sync_protocol.session import SessionHello
from tracker_app.simulate import START_MS, realistic_track

SESSION_KEY_BYTES = 32


@dataclass
class Hop:
    """A receiving hop (relay or cloud) keeping what its receiver accepts."""

    receiver: Receiver
    fixes: dict[int, Fix] = field(default_factory=dict)
    runs: list[ChainVerified] = field(default_factory=list)
    bytes_in: int = 0

    def take(self, data: bytes) -> tuple[Ack, list[Fix]]:
        self.bytes_in += len(data)
        new: list[Fix] = []
        for event in self.receiver.receive(decode_batch(data)):
            if isinstance(event, FixesAccepted):
                new += event.fixes
                self.fixes.update((f.seq, f) for f in event.fixes)
            elif isinstance(event, ChainVerified):
                self.runs.append(event)
        return self.receiver.ack(), new


def run(live_s: int, offline_s: int, say: Callable[[str], None], seed: int = 1) -> dict[str, float]:
    """Ride, go offline, come back; return the figures the demo reports."""
    cloud_key, device_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    public = public_key_bytes(device_key)
    total = live_s + offline_s + live_s
    cert = DeviceCertificate.issue(
        cloud_key, public, 1, (1,), START_MS - 60_000, START_MS + (total + 3_600) * 1000
    )
    session_key = bytes(range(SESSION_KEY_BYTES))
    hello = SessionHello.create(device_key, cert, session_key, START_MS)
    hello.verify(cloud_key.public_key(), START_MS, race_id=1)
    say(f"device {cert.device_id.hex()[:12]} certified for race 1 by the cloud key (offline check)")

    relay = Hop(Receiver.for_certificate(cert))
    relay.receiver.session_key = session_key
    store: dict[int, tuple[Fix, bytes]] = {}
    sender = Sender(SenderState(cert.device_id))
    sender.connected(session=True)

    def send_all(now_ms: int) -> tuple[list[Fix], int]:
        """Send what the sender plans; return the fixes the relay took and the first seq sent."""
        shown: list[Fix] = []
        plans = sender.next_sends(now_ms)
        for plan in plans:
            fixes = [store[s][0] for s in range(plan.first_seq, plan.last_seq + 1)]
            prev = store[plan.first_seq - 1][1] if plan.first_seq > 1 else genesis(cert.device_id)
            auth = {"key": device_key} if plan.signed else {"session_key": session_key}
            batch = seal(
                cert.device_id, fixes, prev, include_prev_hash=plan.include_prev_hash, **auth
            )
            ack, new = relay.take(encode_batch(batch))
            sender.on_ack(Ack.decode(ack.encode()), now_ms)
            shown += new
        return shown, plans[0].first_seq if plans else 0

    track = realistic_track(total, seed=seed)
    for fix in track[:live_s]:
        store[fix.seq] = (fix, sender.record(fix))
        send_all(fix.t_ms)
    say(f"live: {live_s} fixes sent one per second; relay acked {relay.receiver.acked_seq}")
    for fix in track[live_s : live_s + offline_s]:
        store[fix.seq] = (fix, sender.record(fix))  # no coverage: recorded, not sent
    say(f"offline for {offline_s // 60} min: {sender.waiting} fixes recorded and waiting")

    sender.connected(session=True)
    back = track[live_s + offline_s]
    store[back.seq] = (back, sender.record(back))
    started = time.perf_counter()
    shown, first_seq = send_all(back.t_ms)
    elapsed = time.perf_counter() - started
    say(
        f"back in coverage: first batch carried fix {first_seq} (the newest) so "
        f"spectators saw the rider at once; then {len(shown) - 1} backlog fixes in "
        f"{elapsed * 1000:.0f} ms of protocol work"
    )
    for fix in track[live_s + offline_s + 1 :]:
        store[fix.seq] = (fix, sender.record(fix))
        send_all(fix.t_ms)

    cloud = Hop(Receiver.for_certificate(cert))
    for v in relay.runs:  # store-and-forward of the relay's verified runs
        fixes = tuple(relay.fixes[s] for s in range(v.first_seq, v.last_seq + 1))
        cloud.take(encode_batch(Batch(cert.device_id, fixes, v.signature, v.prev_hash)))
    exact = cloud.fixes == {f.seq: f for f in track}
    say(f"cloud verified {len(cloud.fixes)} of {total} fixes again: exactly once: {exact}")
    return {
        "fixes": total,
        "relay_bytes_per_fix": round(relay.bytes_in / total, 2),
        "cloud_bytes_per_fix": round(cloud.bytes_in / total, 2),
        "catch_up_ms": round(elapsed * 1000, 1),
        "exactly_once": float(exact),
    }
