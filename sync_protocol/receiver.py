"""The receiving end of uploads (relay and cloud), sans-IO.

Per device the receiver keeps *segments*: runs of fixes whose chain hashes it knows at both
ends. The segment that starts at seq 1 is the verified prefix (the cumulative ack); a live
fix sent ahead of a backlog forms a verified segment of its own (it carries ``prev_hash``
and a signature), shown at once and joined to the prefix when the backfill arrives and its
computed head equals that ``prev_hash``. A *provisional* segment holds live fixes checked
only by session MAC, right after the newest verified segment (the live head); the next
signed head, which covers them through the chain, verifies them all at once.

``receive()`` either returns events or raises a RemoteProtocolError; when it raises, the
state is unchanged. The caller stores what the events say, commits, persists
:attr:`Receiver.state` (plain data) in the same transaction, and only then sends
:meth:`Receiver.ack`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .ack import Ack
from .batch import Batch
from .certificate import DeviceCertificate
from .chain import extend_all, genesis, load_public_key, verify_head, verify_mac
from .errors import BadSignature, ChainError, DecodeError, IntegrityError, ProtocolError
from .events import (
    ChainVerified,
    DuplicateReceived,
    Event,
    FixesAccepted,
    GapDetected,
    ProvisionalDiscarded,
)
from .fix import Fix, check_follows
from .ranges import RangeSet
from .wire import pack, unpack_array


@dataclass(frozen=True, slots=True)
class Segment:
    """A run of fixes with known chain hashes at both ends."""

    first_seq: int
    """First fix of the run."""
    prev_hash: bytes
    """Chain hash before ``first_seq``."""
    last_seq: int
    """Last fix of the run."""
    last_hash: bytes
    """Chain hash after ``last_seq``."""
    first_fix: Fix
    """The first fix (continuity checks when a run is joined to the one before it)."""
    last_fix: Fix
    """The last fix (continuity checks for the fix after it)."""

    def as_list(self) -> list[Any]:
        return [
            self.first_seq,
            self.prev_hash,
            self.last_seq,
            self.last_hash,
            _fix_list(self.first_fix),
            _fix_list(self.last_fix),
        ]

    @classmethod
    def from_list(cls, v: list[Any]) -> Segment:
        return cls(v[0], v[1], v[2], v[3], Fix(*v[4]), Fix(*v[5]))


def _fix_list(fix: Fix) -> list[int]:
    return [
        fix.seq,
        fix.t_ms,
        fix.lat_e7,
        fix.lon_e7,
        fix.ele_dm,
        fix.speed_cms,
        fix.heading_dd,
        fix.hacc_dm,
    ]


@dataclass(slots=True)
class ReceiverState:
    """Everything a receiver knows about one device: plain data for the caller to persist."""

    device_id: bytes
    """The device."""
    public_key: bytes
    """Its raw Ed25519 public key, from its certificate."""
    segments: list[Segment] = field(default_factory=list)
    """Verified runs, sorted and disjoint."""
    provisional: Segment | None = None
    """MAC-checked live fixes right after the verified prefix, awaiting a signed head."""
    highest_seen: int = 0
    """Highest seq seen in any accepted batch."""

    def to_bytes(self) -> bytes:
        """Serialize for storage."""
        prov = self.provisional.as_list() if self.provisional else None
        segs = [s.as_list() for s in self.segments]
        return pack([1, self.device_id, self.public_key, segs, prov, self.highest_seen])

    @classmethod
    def from_bytes(cls, data: bytes) -> ReceiverState:
        """Load what :meth:`to_bytes` wrote."""
        v = unpack_array(data, "receiver state", 6, max_bytes=1 << 20)
        try:
            prov = Segment.from_list(v[4]) if v[4] else None
            return cls(v[1], v[2], [Segment.from_list(s) for s in v[3]], prov, v[5])
        except (TypeError, ValueError, IndexError, ProtocolError) as exc:
            raise DecodeError(f"stored receiver state is corrupt: {exc}") from None


class Receiver:
    """Verifies and places one device's batches; see the module docstring."""

    def __init__(self, state: ReceiverState, session_key: bytes | None = None) -> None:
        self.state = state
        self.session_key = session_key
        """Key from this connection's verified hello; None accepts only signed batches."""
        self._public_key: Ed25519PublicKey = load_public_key(state.public_key)

    @classmethod
    def for_certificate(cls, certificate: DeviceCertificate) -> Receiver:
        """A fresh receiver for a device whose certificate the caller has verified."""
        key = certificate.device_public_key
        return cls(ReceiverState(certificate.device_id, key))

    @property
    def acked_seq(self) -> int:
        """Every fix up to here is verified (and, once the caller committed, durable)."""
        segs = self.state.segments
        return segs[0].last_seq if segs and segs[0].first_seq == 1 else 0

    def ack(self) -> Ack:
        """The acknowledgement to send after the caller's commit."""
        st = self.state
        segs, prov = st.segments, st.provisional
        if len(segs) == 1 and segs[0].first_seq == 1:
            # The usual state: one verified prefix, perhaps a provisional run right after.
            head = segs[0].last_seq
            if prov is None or prov.first_seq == head + 1:
                top = head if prov is None else prov.last_seq
                missing = ((top + 1, st.highest_seen),) if st.highest_seen > top else ()
                return Ack(st.device_id, head, (), missing, prov.last_seq if prov else 0)
        verified = RangeSet((s.first_seq, s.last_seq) for s in st.segments)
        prov = st.provisional
        known = RangeSet(verified)
        if prov:
            known.add(prov.first_seq, prov.last_seq)
        acked = self.acked_seq
        return Ack(
            st.device_id,
            acked,
            tuple(r for r in verified if r[0] > 1),
            tuple(known.gaps(1, st.highest_seen)),
            prov.last_seq if prov else 0,
        )

    def receive(self, batch: Batch) -> list[Event]:
        """Verify ``batch`` and fold it in; raises RemoteProtocolError and changes nothing."""
        st = self.state
        if batch.device_id != st.device_id:
            raise IntegrityError(
                "batch belongs to another device than this connection's certificate "
                "(a splice of another rider's fixes)",
                reason="wrong-device",
            )
        try:
            fast = self._fast(batch)
        except ProtocolError:
            fast = None  # the general path decides, and says why
        if fast is not None:
            return fast
        known = RangeSet((s.first_seq, s.last_seq) for s in st.segments)
        if st.provisional and not batch.signed:
            known.add(st.provisional.first_seq, st.provisional.last_seq)
        if known.covers(batch.first_seq, batch.last_seq):
            return [DuplicateReceived(batch.first_seq, batch.last_seq)]
        if not batch.signed and self.session_key is None:
            raise BadSignature("a MAC-only batch needs a session hello first", reason="no-session")
        attempt = self._place(batch, use_provisional=True)
        try:
            return self._verify_and_fold(batch, *attempt)
        except IntegrityError:
            if attempt[0] is not st.provisional or not batch.signed:
                raise
        # The signed batch disagrees with provisional fixes: the signature wins.
        retry = self._place(batch, use_provisional=False)
        events = self._verify_and_fold(batch, *retry)
        if isinstance(events[0], GapDetected) and st.provisional is not None:
            prov, st.provisional = st.provisional, None
            gap = GapDetected(
                tuple(RangeSet([*events[0].missing, (prov.first_seq, prov.last_seq)]))
            )
            return [ProvisionalDiscarded(prov.first_seq, prov.last_seq), gap]
        return events

    def _fast(self, batch: Batch) -> list[Event] | None:
        """The live path, without the general path's bookkeeping: a MAC'd batch continuing
        the live head (the provisional run, or the newest verified segment when there is
        none), or the signed batch that seals a provisional run right after the newest
        verified segment. Returns what the general path would, changing the state the same
        way; None (or a ProtocolError, with nothing changed) leaves the batch to it.
        """
        st = self.state
        prov = st.provisional
        tail: Segment | None
        if batch.signed:
            if prov is None or not st.segments:
                return None
            head = st.segments[-1]
            if head.last_seq + 1 != prov.first_seq or head.last_hash != prov.prev_hash:
                return None
            tail = prov
        elif self.session_key is None:
            return None
        else:
            tail = st.segments[-1] if st.segments else None
            if prov is not None:  # (and no live-ahead segment beyond it)
                tail = None if tail is not None and tail.last_seq > prov.last_seq else prov
        if tail is None or tail.last_seq != batch.first_seq - 1:
            return None
        if batch.prev_hash is not None and batch.prev_hash != tail.last_hash:
            return None
        fixes = batch.fixes
        hashes = extend_all(tail.last_hash, fixes)
        if batch.signed:
            verify_head(self._public_key, st.device_id, batch.last_seq, hashes[-1], batch.auth)
        else:
            assert self.session_key is not None  # checked above
            verify_mac(self.session_key, st.device_id, batch.last_seq, hashes[-1], batch.auth)
        check_follows(tail.last_fix, fixes[0])
        for prev, fix in itertools.pairwise(fixes):
            check_follows(prev, fix)
        st.highest_seen = max(st.highest_seen, batch.last_seq)
        if not batch.signed:
            first, prev_hash, first_fix = (
                (prov.first_seq, prov.prev_hash, prov.first_fix)
                if prov is not None
                else (fixes[0].seq, tail.last_hash, fixes[0])
            )
            st.provisional = Segment(
                first, prev_hash, batch.last_seq, hashes[-1], first_fix, fixes[-1]
            )
            return [FixesAccepted(fixes, False)]
        assert prov is not None  # checked above
        head = st.segments[-1]
        st.segments = [
            *st.segments[:-1],
            Segment(
                head.first_seq,
                head.prev_hash,
                batch.last_seq,
                hashes[-1],
                head.first_fix,
                fixes[-1],
            ),
        ]
        st.provisional = None
        return [
            FixesAccepted(fixes, True),
            ChainVerified(prov.first_seq, batch.last_seq, prov.prev_hash, batch.auth),
        ]

    def _place(
        self, batch: Batch, *, use_provisional: bool
    ) -> tuple[Segment | None, bytes | None, tuple[Fix, ...]]:
        """Find where the batch attaches: (segment it extends, hash before kept fixes, kept).

        A batch extends a segment holding the fix before its first one (fixes the segment
        already has are skipped); failing that it is verifiable alone from genesis (seq 1)
        or from its own ``prev_hash``. ``(None, None, ...)`` means a gap.
        """
        st = self.state
        candidates = list(st.segments)
        if use_provisional and st.provisional:
            candidates.append(st.provisional)
        before = batch.first_seq - 1
        for seg in candidates:
            if not seg.first_seq <= before <= seg.last_seq or seg.last_seq >= batch.last_seq:
                continue  # (a segment holding the whole batch is provisional: verify afresh)
            claimed = batch.prev_hash
            if claimed is not None and before == seg.last_seq and claimed != seg.last_hash:
                if seg is st.provisional:
                    continue  # the provisional fixes are wrong; the signed batch decides
                raise ChainError(
                    f"batch from seq {batch.first_seq} claims a chain that differs "
                    "from the verified one before it (spliced or forged history)"
                )
            return seg, seg.last_hash, batch.fixes[seg.last_seq - before :]
        if batch.first_seq == 1:
            return None, genesis(st.device_id), batch.fixes
        if batch.prev_hash is not None:
            return None, batch.prev_hash, batch.fixes
        for seg in st.segments:
            if seg.first_seq == batch.first_seq:
                return None, seg.prev_hash, batch.fixes
        return None, None, batch.fixes

    def _verify_and_fold(
        self, batch: Batch, seg: Segment | None, start: bytes | None, kept: tuple[Fix, ...]
    ) -> list[Event]:
        st = self.state
        if start is None or (not batch.signed and not self._continues_prefix(seg, batch)):
            st.highest_seen = max(st.highest_seen, batch.last_seq)
            missing = RangeSet((s.first_seq, s.last_seq) for s in st.segments)
            if st.provisional:
                missing.add(st.provisional.first_seq, st.provisional.last_seq)
            return [GapDetected(tuple(missing.gaps(1, batch.first_seq - 1)))]
        hashes = extend_all(start, kept)
        if batch.signed:
            verify_head(self._public_key, st.device_id, batch.last_seq, hashes[-1], batch.auth)
        else:
            assert self.session_key is not None  # checked in receive()
            verify_mac(self.session_key, st.device_id, batch.last_seq, hashes[-1], batch.auth)
        # Authentic, but is it plausible? (An honest tracker checks this before signing.)
        if seg is not None:
            check_follows(seg.last_fix, kept[0])
        for prev, fix in itertools.pairwise(kept):
            check_follows(prev, fix)
        new = Segment(kept[0].seq, start, batch.last_seq, hashes[-1], kept[0], kept[-1])
        return self._fold(batch, seg, new, hashes)

    def _continues_prefix(self, seg: Segment | None, batch: Batch) -> bool:
        """May a MAC-only batch attach here? Only at the live head: after the newest
        verified segment (or the provisional run that already extends it)."""
        st = self.state
        if seg is None:
            return batch.first_seq == 1 and not st.segments and st.provisional is None
        if seg is st.provisional:
            return True
        head = max(st.segments, key=lambda s: s.last_seq, default=None)
        return st.provisional is None and seg is head

    def _fold(
        self, batch: Batch, seg: Segment | None, new: Segment, hashes: list[bytes]
    ) -> list[Event]:
        st = self.state
        fresh = tuple(f for f in batch.fixes if f.seq >= new.first_seq)
        if not batch.signed:  # provisional: extends the live head or the provisional run
            prov = st.provisional
            st.provisional = _extended(prov, new) if seg is prov and prov is not None else new
            st.highest_seen = max(st.highest_seen, batch.last_seq)
            return [FixesAccepted(fresh, False)]
        events: list[Event] = []
        segments = [s for s in st.segments if s is not seg]
        held = RangeSet((s.first_seq, s.last_seq) for s in segments)
        prov = st.provisional
        merged = new if seg is None else _extended(seg, new)
        if prov is not None and prov.first_seq <= new.last_seq and new.first_seq <= prov.last_seq:
            # The signed head covers the provisional fixes: keep them if the chain agrees
            # (equal hashes at the provisional end mean the same fixes all along).
            index = prov.last_seq - new.first_seq
            if 0 <= index < len(hashes) and hashes[index] == prov.last_hash:
                held.add(prov.first_seq, prov.last_seq)
                if prov.first_seq < merged.first_seq:
                    merged = replace(
                        merged,
                        first_seq=prov.first_seq,
                        prev_hash=prov.prev_hash,
                        first_fix=prov.first_fix,
                    )
            else:
                events.append(ProvisionalDiscarded(prov.first_seq, prov.last_seq))
            prov = None
        elif prov is not None and seg is prov:
            prov = None  # the signature covers the provisional fixes through the chain
        verified_from = merged if seg is None or seg is st.provisional else new
        rest: list[Segment] = []
        for other in segments:
            if other.last_seq < merged.first_seq - 1 or other.first_seq > merged.last_seq + 1:
                rest.append(other)
            else:
                merged = self._join(merged, other, new, hashes)
        events.append(FixesAccepted(tuple(f for f in fresh if not held.covers(f.seq, f.seq)), True))
        events.append(
            ChainVerified(
                verified_from.first_seq, new.last_seq, verified_from.prev_hash, batch.auth
            )
        )
        st.segments = sorted([*rest, merged], key=lambda s: s.first_seq)
        st.provisional = prov
        st.highest_seen = max(st.highest_seen, batch.last_seq)
        return [e for e in events if not (isinstance(e, FixesAccepted) and not e.fixes)]

    @staticmethod
    def _join(merged: Segment, other: Segment, new: Segment, hashes: list[bytes]) -> Segment:
        """Join an overlapping or adjacent verified segment, checking the chain agrees."""

        def hash_at(seq: int) -> bytes | None:
            if seq == new.first_seq - 1:
                return new.prev_hash
            index = seq - new.first_seq
            return hashes[index] if 0 <= index < len(hashes) else None

        for seq, expected in (
            (other.first_seq - 1, other.prev_hash),
            (other.last_seq, other.last_hash),
        ):
            actual = hash_at(seq)
            if actual is not None and actual != expected:
                raise ChainError(
                    f"fixes up to seq {seq} do not lead to the chain the device signed for "
                    f"seq {other.first_seq}..{other.last_seq} (equivocation or tampering)"
                )
        if other.first_seq == merged.last_seq + 1:
            check_follows(merged.last_fix, other.first_fix)
        first = merged if merged.first_seq <= other.first_seq else other
        last = merged if merged.last_seq >= other.last_seq else other
        return Segment(
            first.first_seq,
            first.prev_hash,
            last.last_seq,
            last.last_hash,
            first.first_fix,
            last.last_fix,
        )


def _extended(seg: Segment, new: Segment) -> Segment:
    """``seg`` continued by ``new``, which starts right after it."""
    return Segment(
        seg.first_seq, seg.prev_hash, new.last_seq, new.last_hash, seg.first_fix, new.last_fix
    )
