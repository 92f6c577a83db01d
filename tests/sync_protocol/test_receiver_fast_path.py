"""The receiver's live fast path decides exactly as its general path would.

Two receivers take the same arbitrary stream of batches — signed or MAC'd, with or without
``prev_hash``, in order, repeated, out of order, ahead of a gap, forged, or altered — one
as shipped, one with the fast path switched off. Their events, errors, states and acks
must be the same after every batch.
"""

from __future__ import annotations

from dataclasses import replace

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync_protocol.batch import Batch, seal
from sync_protocol.chain import device_id, extend_all, genesis, public_key_bytes
from sync_protocol.errors import ProtocolError
from sync_protocol.events import Event
from sync_protocol.receiver import Receiver, ReceiverState
from tracker_app.simulate import realistic_track

KEY = Ed25519PrivateKey.from_private_bytes(b"k" * 32)
DEVICE = device_id(public_key_bytes(KEY))
SESSION = b"s" * 32
FIXES = realistic_track(60, seed=5)
HASHES = [genesis(DEVICE), *extend_all(genesis(DEVICE), FIXES)]


class GeneralOnly(Receiver):
    """The receiver with its fast path switched off."""

    def _fast(self, batch: Batch) -> list[Event] | None:
        return None


def batch(first: int, last: int, kind: str, prev: bool, tamper: str) -> Batch:
    fixes = list(FIXES[first - 1 : last])
    if tamper == "moved":  # a fix altered after sealing: the chain no longer matches
        fixes[-1] = replace(fixes[-1], lat_e7=fixes[-1].lat_e7 + 1)
    key = KEY if kind == "signed" and tamper != "other-session" else None
    session = None if key is not None else SESSION
    if tamper == "other-session":
        session = b"x" * 32
    sealed = seal(
        DEVICE,
        FIXES[first - 1 : last],
        HASHES[first - 1],
        include_prev_hash=prev,
        key=key,
        session_key=session,
    )
    if tamper == "wrong-prev" and prev:
        return Batch(DEVICE, sealed.fixes, sealed.auth, b"\0" * 32)
    return Batch(DEVICE, tuple(fixes), sealed.auth, sealed.prev_hash)


def outcome(receiver: Receiver, b: Batch) -> tuple[str, object]:
    try:
        return "events", receiver.receive(b)
    except ProtocolError as exc:
        return "refused", (type(exc), exc.reason)


sends = st.lists(
    st.tuples(
        st.integers(1, 58),  # first seq
        st.integers(0, 3),  # extra fixes
        st.sampled_from(["signed", "mac", "mac", "mac"]),
        st.booleans(),  # with prev_hash
        st.sampled_from(["none"] * 8 + ["moved", "other-session", "wrong-prev"]),
    ),
    min_size=1,
    max_size=40,
)


@given(sends, st.integers(0, 6))
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_fast_and_general_paths_agree(
    plan: list[tuple[int, int, str, bool, str]], live_from: int
) -> None:
    state = ReceiverState(DEVICE, public_key_bytes(KEY))
    fast = Receiver(ReceiverState.from_bytes(state.to_bytes()), SESSION)
    general = GeneralOnly(ReceiverState.from_bytes(state.to_bytes()), SESSION)
    # Mostly a live rider: consecutive 1-fix sends, a signed one every ten; then the plan.
    live = [
        (s, 0, "signed" if s % 10 == 0 or s == 1 else "mac", False, "none")
        for s in range(1, live_from * 5 + 1)
    ]
    for first, extra, kind, prev, tamper in [*live, *plan]:
        last = min(first + extra, len(FIXES))
        b = batch(first, last, kind, prev, tamper)
        assert outcome(fast, b) == outcome(general, b), (first, last, kind, prev, tamper)
        assert fast.state == general.state
        assert fast.ack() == general.ack()


def test_the_live_path_is_taken_for_a_live_rider() -> None:
    """The fast path is not dead code: a live rider's sends all go through it."""
    taken: list[int] = []

    class Counting(Receiver):
        def _fast(self, batch: Batch) -> list[Event] | None:
            events = super()._fast(batch)
            if events is not None:
                taken.append(batch.first_seq)
            return events

    receiver = Counting(ReceiverState(DEVICE, public_key_bytes(KEY)), SESSION)
    receiver.receive(batch(1, 1, "signed", False, "none"))
    for seq in range(2, 31):
        receiver.receive(batch(seq, seq, "signed" if seq % 10 == 0 else "mac", False, "none"))
    assert taken == list(range(2, 31))
    assert receiver.ack().acked_seq == 30
