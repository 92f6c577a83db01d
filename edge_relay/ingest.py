"""Tracker uploads: verify offline, store durably in group commits, then ack.

Both requests of :mod:`sync_protocol.upload` end up here. Each runs as one job of the
writer (:class:`~edge_relay.commit.GroupCommitter`), so every decision (the protocol
:class:`~sync_protocol.inbox.Inbox` and its receivers) is taken on the writer thread, in
the order the data is committed. The reply — acks computed from the receiver state the
job persisted — is released to the tracker only after the group's commit is on disk.

The receiver state is stored with every signed batch, not with every MAC'd live fix: the
provisional run (fixes checked by session MAC only, not yet acked as durable) is soft
state. A restart forgets it along with the session keys; the tracker says hello again and
its next signed head, or the gap it is told about, brings those fixes back.

A device is admitted by its session hello (certificate checked against the cloud's key,
no round trip). After a relay restart a device whose certificate is stored is re-admitted
on its first signed batch; a MAC'd batch then gets ``no-session`` and the tracker says
hello again.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from sync_protocol.certificate import DeviceCertificate
from sync_protocol.errors import CertificateError, ProtocolError
from sync_protocol.events import (
    ChainVerified,
    DuplicateReceived,
    FixesAccepted,
    GapDetected,
    ProvisionalDiscarded,
)
from sync_protocol.fix import Fix
from sync_protocol.framing import decode_frames
from sync_protocol.inbox import Inbox
from sync_protocol.receiver import Receiver, ReceiverState
from sync_protocol.upload import HelloReply, UploadResult

from .commit import GroupCommitter
from .store import Writes

log = logging.getLogger("gruppetto.relay.ingest")

DEVICE_ID_SLICE = slice(4, 20)
"""Where a batch carries its device id (see docs/protocol.md)."""


@dataclass(frozen=True, slots=True)
class LiveFix:
    """A rider's newest fix from one upload, for live scoring (after the commit)."""

    racer_id: int
    """The rider, from the device certificate."""
    race_ids: tuple[int, ...]
    """Races the certificate covers."""
    fix: Fix
    """The fix."""
    verified: bool
    """False while provisional (MAC'd, awaiting its signed head)."""
    history: tuple[Fix, ...] = ()
    """The upload's other accepted fixes of the device, oldest first: a catch-up's
    backfill, which may time checkpoint passages the rider made while out of coverage."""


@dataclass(frozen=True, slots=True)
class UploadOutcome:
    """What one ``/v1/batches`` request produced."""

    results: list[UploadResult]
    """One result per batch, in order."""
    live: list[LiveFix]
    """Each device's newest accepted fix (with the upload's other fixes of it)."""
    fixes: int
    """Fixes newly stored."""


class RelayIngest:
    """The relay's receiving hop."""

    def __init__(
        self,
        committer: GroupCommitter,
        issuer: Ed25519PublicKey,
        race_ids: frozenset[int],
        clock_ms: Callable[[], int],
    ) -> None:
        self.committer = committer
        self.inbox = Inbox(issuer, race_ids, load_state=self._stored_state)
        self.clock_ms = clock_ms
        self.counters: Counter[str] = Counter()
        """Batch outcomes and refusal reasons (exported as metrics)."""

    def serve(self, race_ids: frozenset[int], issuer: Ed25519PublicKey) -> None:
        """Update the races served (configuration refreshed from the cloud)."""
        self.inbox.race_ids = race_ids
        self.inbox.issuer = issuer

    async def hello(self, data: bytes) -> HelloReply:
        """Admit a device; raises ProtocolError (the caller answers 4xx)."""
        now = self.clock_ms()
        return await self.committer.run(lambda w: self._hello(w, data, now))

    async def upload(
        self, body: bytes, preview: Callable[[UploadOutcome], None] | None = None
    ) -> UploadOutcome:
        """Store a framed upload; raises ProtocolError when the body itself is malformed.

        ``preview`` gets the outcome as soon as the batches are verified, before their
        group commit is on disk (the live view need not wait for the fsync); the returned
        outcome, and so the ack, comes only after it.
        """
        frames = decode_frames(body)
        now = self.clock_ms()
        touched: set[bytes] = set()
        return await self.committer.run(
            lambda w: self._upload(w, frames, now, touched),
            lambda: self._forget(touched),
            preview,
        )

    # -- on the writer thread ---------------------------------------------------------

    def _stored_state(self, device_id: bytes) -> ReceiverState | None:
        row = self.committer.reads.device(device_id)
        if row is None or row[1] is None:
            return None
        return ReceiverState.from_bytes(row[1])

    def _hello(self, w: Writes, data: bytes, now: int) -> HelloReply:
        try:
            receiver = self.inbox.hello(data, now)
        except ProtocolError as exc:
            self.counters[f"hello-refused:{exc.reason}"] += 1
            raise
        device = receiver.state.device_id
        cert = self.inbox.certificates[device]
        w.put_device(device, cert.encode(), cert.racer_id)
        w.put_receiver(device, receiver.state.to_bytes())
        self.counters["hello"] += 1
        return HelloReply(receiver.ack(), w.cloud_acked_seq(device), live_mac=True)

    def _upload(
        self, w: Writes, frames: list[bytes], now: int, touched: set[bytes]
    ) -> UploadOutcome:
        results: list[UploadResult] = []
        newest: dict[bytes, LiveFix] = {}
        accepted: dict[bytes, list[Fix]] = {}
        stored = 0
        for data in frames:
            device = bytes(data[DEVICE_ID_SLICE]) if len(data) >= 20 else b""
            try:
                receiver = self._receiver_for(device, now)
                touched.add(device)
                _, batch, events = self.inbox.receive(data)
            except ProtocolError as exc:
                self.counters[f"refused:{exc.reason}"] += 1
                log.info("batch refused", extra={"reason": exc.reason, "device": device.hex()})
                known = self.inbox.receivers.get(device)
                ack = known.ack() if known is not None else None
                cloud = w.cloud_acked_seq(device) if known is not None else 0
                results.append(UploadResult(ack, cloud, exc.reason, exc.message))
                continue
            cert = self.inbox.certificates[device]
            outcome = "accepted"
            for event in events:
                if isinstance(event, FixesAccepted):
                    w.put_fixes(device, event.fixes, verified=event.verified)
                    stored += len(event.fixes)
                    accepted.setdefault(device, []).extend(event.fixes)
                    last = event.fixes[-1]
                    if device not in newest or newest[device].fix.seq < last.seq:
                        newest[device] = LiveFix(
                            cert.racer_id, cert.race_ids, last, verified=event.verified
                        )
                elif isinstance(event, ChainVerified):
                    w.mark_verified(device, event.first_seq, event.last_seq)
                    w.queue_run(
                        device, event.first_seq, event.last_seq, event.prev_hash, event.signature
                    )
                elif isinstance(event, ProvisionalDiscarded):
                    w.delete_fixes(device, event.first_seq, event.last_seq)
                elif isinstance(event, DuplicateReceived):
                    outcome = "duplicate"
                elif isinstance(event, GapDetected):
                    outcome = "gap"
            if batch.signed:
                # Only signed batches change what is durably verified; a MAC'd one only
                # grows the provisional run, which is soft state (see the module notes).
                w.put_receiver(device, receiver.state.to_bytes())
            self.counters[outcome] += 1
            results.append(UploadResult(receiver.ack(), w.cloud_acked_seq(device)))
            del batch
        return UploadOutcome(results, _with_history(newest, accepted), stored)

    def _receiver_for(self, device: bytes, now: int) -> Receiver:
        """The admitted receiver, re-admitting a device whose certificate is stored."""
        receiver = self.inbox.receivers.get(device)
        if receiver is not None:
            return receiver
        row = self.committer.reads.device(device) if device else None
        if row is None:
            raise CertificateError(
                "batch from a device with no valid certificate here: open the connection "
                "with a session hello",
                reason="no-certificate",
            )
        return self.inbox.admit(DeviceCertificate.decode(row[0]), now)

    def _forget(self, devices: set[bytes]) -> None:
        """The job did not commit: drop in-memory receivers so they reload from disk."""
        for device in devices:
            self.inbox.receivers.pop(device, None)
            self.inbox.certificates.pop(device, None)


def _with_history(newest: dict[bytes, LiveFix], accepted: dict[bytes, list[Fix]]) -> list[LiveFix]:
    """Each device's newest fix, carrying the upload's other accepted fixes, oldest first."""
    out = []
    for device, live in newest.items():
        fixes = accepted[device]
        if len(fixes) > 1:
            history = sorted((f for f in fixes if f.seq != live.fix.seq), key=lambda f: f.seq)
            live = replace(live, history=tuple(history))
        out.append(live)
    return out
