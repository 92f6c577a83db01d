"""Round trips and fuzzing of the small msgpack messages and the persisted states."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync_protocol.ack import Ack
from sync_protocol.certificate import DeviceCertificate
from sync_protocol.errors import ProtocolError
from sync_protocol.receiver import ReceiverState
from sync_protocol.sender import SenderState
from sync_protocol.session import SessionHello
from sync_protocol.wire import pack
from tracker_app.simulate import realistic_track

ranges = st.lists(
    st.tuples(st.integers(1, 2**40), st.integers(0, 2**20)).map(lambda r: (r[0], r[0] + r[1])),
    max_size=8,
).map(tuple)


@given(
    st.binary(min_size=16, max_size=16),
    st.integers(0, 2**62),
    ranges,
    ranges,
    st.integers(0, 2**62),
)
def test_ack_round_trip(device: bytes, acked: int, held, missing, prov: int) -> None:  # type: ignore[no-untyped-def]
    ack = Ack(device, acked, held, missing, prov)
    assert Ack.decode(ack.encode()) == ack


DECODERS = [
    Ack.decode,
    DeviceCertificate.decode,
    SessionHello.decode,
    ReceiverState.from_bytes,
    SenderState.from_bytes,
]

# msgpack values of every shape, to reach past the first structural checks
values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.binary(max_size=40)
    | st.text(max_size=10)
    | st.floats(),
    lambda children: st.lists(children, max_size=8),
    max_leaves=30,
)


@pytest.mark.parametrize("decode", DECODERS, ids=lambda d: d.__qualname__)
@given(data=st.binary(max_size=300) | values.map(pack))
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_decoders_raise_only_protocol_errors(decode, data: bytes) -> None:  # type: ignore[no-untyped-def]
    with contextlib.suppress(ProtocolError):
        decode(data)


def test_hello_and_states_round_trip(device) -> None:  # type: ignore[no-untyped-def]
    hello = SessionHello.create(device.key, device.cert, b"k" * 32, 1_782_900_000_000)
    assert SessionHello.decode(hello.encode()) == hello
    state = SenderState(device.id)
    from sync_protocol.sender import Sender

    sender = Sender(state)
    for fix in realistic_track(5):
        sender.record(fix)
    state.acked.add(1, 3)
    assert SenderState.from_bytes(state.to_bytes()) == state


def test_oversized_messages_are_refused_before_parsing() -> None:
    with pytest.raises(ProtocolError, match="above the limit"):
        Ack.decode(b"\x96" + bytes(10_000))
