from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync_protocol.errors import DecodeError, LimitExceeded, ProtocolError
from sync_protocol.framing import decode_frames, encode_frames


@given(st.lists(st.binary(min_size=1, max_size=300), max_size=20))
def test_round_trip(messages: list[bytes]) -> None:
    assert decode_frames(encode_frames(messages)) == messages


@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_protocol_errors(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode_frames(data)


def test_limits() -> None:
    with pytest.raises(LimitExceeded, match="more than 2 messages"):
        decode_frames(encode_frames([b"a", b"b", b"c"]), max_frames=2)
    with pytest.raises(LimitExceeded, match="above the limit of 10"):
        decode_frames(encode_frames([b"x" * 11]), max_frame_bytes=10)
    with pytest.raises(DecodeError, match="truncated"):
        decode_frames(encode_frames([b"abc"])[:-1])
    with pytest.raises(DecodeError, match="empty message"):
        decode_frames(b"\x00")
