"""The sending end of uploads (the tracker), sans-IO.

The sender decides *what* to send; the caller loads those fixes from its store, seals them
(:func:`sync_protocol.batch.seal`), sends the bytes and feeds acks back. Policy:

* **Live first.** When more than ``live_backlog`` fixes wait (a long offline stretch), the
  newest fix goes out first as a self-verifying 1-fix batch (with ``prev_hash``) so
  spectators see where the rider is now; the backlog follows oldest-first in catch-up
  batches of ``batch_size``.
* **Cheap live fixes.** In live mode each new fix is sent alone. With a session key it
  carries only a MAC, and every ``seal_every``-th fix is signed, which verifies the
  provisional ones before it through the chain: one Ed25519 verify per ``seal_every`` fixes.
* **At-least-once.** Unacked sends are retried after ``rto_ms``, doubling up to
  ``max_rto_ms``; provisional fixes are re-sent signed if no seal got acked in time. Acks
  from any receiver count (switching relays never resends what another relay acked), and a
  batch carries ``prev_hash`` whenever this connection's receiver may lack the fix before it.

Only :class:`SenderState` needs persisting (plain data); in-flight bookkeeping is per
connection and starts empty after a restart, which at worst resends something (the
receiver answers "duplicate").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .ack import Ack
from .chain import extend, genesis
from .errors import DecodeError, LocalProtocolError, ProtocolError
from .fix import Fix, check_follows
from .ranges import RangeSet
from .wire import pack, unpack_array


@dataclass(frozen=True, slots=True)
class Send:
    """One batch to build and send: fixes ``first_seq..last_seq``."""

    first_seq: int
    """First fix to include."""
    last_seq: int
    """Last fix to include (its chain head is signed or MACed)."""
    include_prev_hash: bool
    """Carry the chain hash before ``first_seq`` (the receiver may not have that fix)."""
    signed: bool
    """Ed25519-sign the head; False means MAC it with the session key."""


@dataclass(slots=True)
class SenderState:
    """What the tracker persists next to its fixes."""

    device_id: bytes
    """This device."""
    recorded_seq: int = 0
    """Last fix recorded (durably stored) by the tracker."""
    head_hash: bytes = b""
    """Chain hash after ``recorded_seq``."""
    last_fix: Fix | None = None
    """The last recorded fix (the next one must follow it plausibly)."""
    acked: RangeSet = field(default_factory=RangeSet)
    """Ranges some receiver acked as durable (and verified)."""
    cloud_acked_seq: int = 0
    """Fixes up to here are in the cloud: the tracker may prune them."""

    def __post_init__(self) -> None:
        if not self.head_hash:
            self.head_hash = genesis(self.device_id)

    @property
    def acked_seq(self) -> int:
        """Fixes 1..acked_seq are acked."""
        return self.acked.prefix_end()

    def to_bytes(self) -> bytes:
        """Serialize for storage."""
        last = self.last_fix
        fix = None if last is None else [getattr(last, f) for f in Fix.__slots__]
        return pack(
            [
                1,
                self.device_id,
                self.recorded_seq,
                self.head_hash,
                fix,
                self.acked.to_list(),
                self.cloud_acked_seq,
            ]
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> SenderState:
        """Load what :meth:`to_bytes` wrote."""
        v = unpack_array(data, "sender state", 7, max_bytes=1 << 20)
        try:
            fix = Fix(*v[4]) if v[4] else None
            acked = RangeSet((int(a), int(b)) for a, b in v[5])
            return cls(v[1], int(v[2]), bytes(v[3]), fix, acked, int(v[6]))
        except (TypeError, ValueError, ProtocolError) as exc:
            raise DecodeError(f"stored sender state is corrupt: {exc}") from None


@dataclass(slots=True)
class _InFlight:
    send: Send
    sent_ms: int
    rto_ms: int


class Sender:
    """Plans uploads for one device; see the module docstring."""

    def __init__(
        self,
        state: SenderState,
        *,
        batch_size: int = 60,
        live_backlog: int = 5,
        seal_every: int = 10,
        rto_ms: int = 3_000,
        max_rto_ms: int = 60_000,
    ) -> None:
        if batch_size < 1 or seal_every < 1 or rto_ms < 1:
            raise LocalProtocolError("batch_size, seal_every and rto_ms must be positive")
        self.state = state
        self.batch_size = batch_size
        self.live_backlog = live_backlog
        self.seal_every = seal_every
        self.rto_ms = rto_ms
        self.max_rto_ms = max_rto_ms
        self._in_flight: list[_InFlight] = []
        self._peer = RangeSet()
        self._provisional_seq = 0
        self._provisional_ms = 0
        self._rto = rto_ms
        self._session = False
        self._connection = 0

    def record(self, fix: Fix) -> bytes:
        """Take the next fix (after the caller stored it) and return its chain hash.

        Raises InvalidFixError when it cannot follow the previous fix (time going back,
        a teleport) and LocalProtocolError when its seq is not the next one.
        """
        st = self.state
        if fix.seq != st.recorded_seq + 1:
            raise LocalProtocolError(f"expected fix {st.recorded_seq + 1}, got {fix.seq}")
        if st.last_fix is not None:
            check_follows(st.last_fix, fix)
        st.head_hash = extend(st.head_hash, fix)
        st.recorded_seq, st.last_fix = fix.seq, fix
        return st.head_hash

    def connected(self, *, session: bool) -> int:
        """A new connection (to the same or another receiver): start its bookkeeping.

        Returns the connection's number: pass it to :meth:`on_ack` so an ack that arrives
        late from an earlier connection still counts as durable, but says nothing about
        what the current receiver holds.
        """
        self._in_flight.clear()
        self._peer = RangeSet()
        self._provisional_seq = 0
        self._session = session
        self._connection += 1
        return self._connection

    @property
    def waiting(self) -> int:
        """Fixes recorded but not acked by any receiver."""
        st = self.state
        return sum(b - a + 1 for a, b in st.acked.gaps(1, st.recorded_seq))

    def next_sends(self, now_ms: int) -> list[Send]:
        """What to send now; the returned sends count as in flight from ``now_ms``."""
        st = self.state
        busy = RangeSet()
        kept: list[_InFlight] = []
        for flight in self._in_flight:
            if now_ms - flight.sent_ms < flight.rto_ms:
                kept.append(flight)
                busy.add(flight.send.first_seq, flight.send.last_seq)
        expired = len(kept) < len(self._in_flight)
        self._in_flight = kept
        if expired:
            self._rto = min(self.max_rto_ms, self._rto * 2)
        if self._provisional_seq and now_ms - self._provisional_ms >= self._rto * self.seal_every:
            self._provisional_seq, expired = 0, True  # no seal came: resend them signed
        if self._provisional_seq:
            busy.add(st.acked_seq + 1, self._provisional_seq)
        todo = [g for a, b in st.acked.gaps(1, st.recorded_seq) for g in busy.gaps(a, b)]
        if not todo:
            return []
        sends: list[Send] = []
        newest = st.recorded_seq
        backlog = sum(b - a + 1 for a, b in todo)  # provisional and in-flight fixes excluded
        if backlog > self.live_backlog and todo[-1][1] == newest:
            sends.append(Send(newest, newest, include_prev_hash=True, signed=True))
            todo[-1] = (todo[-1][0], newest - 1)
        elif backlog <= self.live_backlog and len(todo) == 1 and todo[0][0] == todo[0][1] == newest:
            prev = self._needs_prev(newest)
            mac = self._session and newest % self.seal_every != 0 and not expired and not prev
            return self._launch([Send(newest, newest, prev, not mac)], now_ms)
        for first, last in todo:
            for start in range(first, last + 1, self.batch_size):
                end = min(last, start + self.batch_size - 1)
                sends.append(Send(start, end, self._needs_prev(start, sends), signed=True))
        return self._launch(sends, now_ms)

    def _needs_prev(self, first: int, planned: Sequence[Send] = ()) -> bool:
        """Will the receiver lack fix ``first - 1``? (Not if it holds it or it is on its way.)"""
        if first == 1:
            return False
        before = first - 1
        on_the_way = [f.send for f in self._in_flight] + list(planned)
        return not (
            self._peer.covers(before, before)
            or any(s.first_seq <= before <= s.last_seq for s in on_the_way)
            or (self._provisional_seq and before <= self._provisional_seq)
        )

    def _launch(self, sends: list[Send], now_ms: int) -> list[Send]:
        for send in sends:
            rto = self._rto if send.signed else self._rto * self.seal_every
            self._in_flight.append(_InFlight(send, now_ms, rto))
        return sends

    def on_ack(self, ack: Ack, now_ms: int, connection: int | None = None) -> None:
        """Fold in a receiver's ack; a foreign or impossible ack is ignored.

        ``connection`` (from :meth:`connected`) marks where the ack came from; an ack from
        an earlier connection only records what is durable there.
        """
        st = self.state
        if ack.device_id != st.device_id or ack.acked_seq > st.recorded_seq:
            return
        if connection is not None and connection != self._connection:
            for first, last in RangeSet([(1, ack.acked_seq), *ack.held]):
                if first <= last <= st.recorded_seq:
                    st.acked.add(first, last)
            return
        if ack.acked_seq > st.acked_seq:
            self._rto = self.rto_ms  # progress: back to the base timeout
        received = RangeSet([(1, ack.acked_seq), *ack.held])
        for first, last in received:
            if last <= st.recorded_seq and first <= last:
                st.acked.add(first, last)
                self._peer.add(first, last)
        if ack.provisional_seq > ack.acked_seq and ack.provisional_seq <= st.recorded_seq:
            if ack.provisional_seq != self._provisional_seq:
                self._provisional_ms = now_ms
            self._provisional_seq = ack.provisional_seq
            self._peer.add(ack.acked_seq + 1, ack.provisional_seq)
        else:
            self._provisional_seq = 0
        missing = RangeSet(ack.missing)
        for flight in self._in_flight:
            send = flight.send
            gone = st.acked.covers(send.first_seq, send.last_seq)
            lost = any(missing.covers(s, s) for s in (send.first_seq, send.last_seq))
            if lost and not gone:
                flight.rto_ms = 0  # resend on the next call
        self._in_flight = [
            f
            for f in self._in_flight
            if f.rto_ms
            and not st.acked.covers(f.send.first_seq, f.send.last_seq)
            and not (not f.send.signed and f.send.last_seq <= self._provisional_seq)
        ]

    def on_cloud_ack(self, seq: int) -> None:
        """The cloud holds every fix up to ``seq``: they may be pruned locally."""
        self.state.cloud_acked_seq = max(self.state.cloud_acked_seq, min(seq, self.state.acked_seq))
