from __future__ import annotations

import contextlib
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync_protocol.batch import (
    MAX_BATCH_BYTES,
    Batch,
    _decode_full,
    _decode_plain,
    decode_batch,
    encode_batch,
    seal,
)
from sync_protocol.chain import genesis
from sync_protocol.errors import DecodeError, LimitExceeded, LocalProtocolError, ProtocolError
from sync_protocol.fix import Fix
from sync_protocol.wire import put_uvarint
from tracker_app.simulate import START_MS, realistic_track

fixes_strategy = st.builds(
    lambda t0, rows: [
        Fix(i + 1, t0 + sum(r[0] for r in rows[: i + 1]), *r[1:]) for i, r in enumerate(rows)
    ],
    st.integers(946_684_800_000, 3_000_000_000_000),
    st.lists(
        st.tuples(
            st.integers(1, 100_000_000),
            st.integers(-900_000_000, 900_000_000),
            st.integers(-1_800_000_000, 1_800_000_000),
            st.integers(-5_000, 90_000),
            st.integers(0, 4_167),
            st.integers(0, 3_599),
            st.integers(0, 100_000),
        ),
        min_size=1,
        max_size=80,
    ),
)


@given(fixes_strategy, st.booleans(), st.booleans())
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
def test_round_trip(fixes: list[Fix], signed: bool, with_prev: bool) -> None:
    auth = b"s" * 64 if signed else b"m" * 16
    batch = Batch(b"d" * 16, tuple(fixes), auth, b"p" * 32 if with_prev else None)
    assert decode_batch(encode_batch(batch)) == batch


def test_realistic_track_costs_at_most_12_bytes_per_fix(device) -> None:  # type: ignore[no-untyped-def]
    track = realistic_track(3_600)
    total = 0
    for start in range(0, len(track), 60):
        chunk = track[start : start + 60]
        prev = genesis(device.id)
        total += len(encode_batch(seal(device.id, chunk, prev, key=device.key)))
    per_fix = total / len(track)
    print(f"60-fix signed batches: {per_fix:.2f} bytes/fix")
    assert per_fix <= 12


def test_decode_rejects_each_kind_of_bad_header(device) -> None:  # type: ignore[no-untyped-def]
    good = encode_batch(seal(device.id, realistic_track(3), genesis(device.id), key=device.key))
    cases = {
        b"XX" + good[2:]: "bad magic",
        good[:2] + b"\x09" + good[3:]: "version 9 is not supported",
        good[:3] + b"\x80" + good[4:]: "unknown flags",
        good + b"\x00": "trailing",
        good[:-1]: "truncated",
    }
    for data, words in cases.items():
        with pytest.raises(DecodeError, match=words):
            decode_batch(data)


def test_every_truncation_is_a_clean_error(device) -> None:  # type: ignore[no-untyped-def]
    good = encode_batch(seal(device.id, realistic_track(30), genesis(device.id), key=device.key))
    for cut in range(len(good)):
        with pytest.raises(DecodeError):
            decode_batch(good[:cut])


def test_oversized_input_and_declared_counts_are_limited() -> None:
    with pytest.raises(LimitExceeded, match="above the limit"):
        decode_batch(b"GB" + bytes(MAX_BATCH_BYTES))
    head = bytearray(b"GB\x01\x00" + b"d" * 16)
    put_uvarint(head, 1)
    put_uvarint(head, 1_000_000)  # a million fixes declared
    with pytest.raises(LimitExceeded, match="fix count is 1000000"):
        decode_batch(bytes(head))


def test_deflate_bomb_is_bounded() -> None:
    bomb = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = bomb.compress(bytes(1_000_000)) + bomb.flush()
    data = bytearray(b"GB\x01\x04" + b"d" * 16)
    put_uvarint(data, 1)
    put_uvarint(data, 20)
    put_uvarint(data, len(body))
    assert len(body) <= 20 * 70  # passes the declared-length check, then inflates huge
    data += body + b"s" * 64
    with pytest.raises(LimitExceeded, match="inflates beyond"):
        decode_batch(bytes(data))


@given(st.binary(max_size=400))
@settings(max_examples=500)
def test_fuzz_arbitrary_bytes_raise_only_protocol_errors(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode_batch(data)


@given(st.data())
@settings(max_examples=300)
def test_fuzz_mutated_batches_raise_only_protocol_errors(data: st.DataObject) -> None:
    fixes = realistic_track(20, seed=3)
    good = bytearray(encode_batch(Batch(b"d" * 16, tuple(fixes), b"s" * 64, b"p" * 32)))
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(good) - 1))
        good[pos] = data.draw(st.integers(0, 255))
    with contextlib.suppress(ProtocolError):
        decode_batch(bytes(good))


@given(st.data())
@settings(max_examples=300)
def test_the_fast_parser_agrees_with_the_full_one(data: st.DataObject) -> None:
    """Whatever the fast path accepts, field-by-field parsing reads the same; whatever it
    passes over, the full parser decides (and explains)."""
    count = data.draw(st.integers(1, 12))
    mac = data.draw(st.booleans())
    auth = b"m" * 16 if mac else b"s" * 64
    prev = data.draw(st.sampled_from([None, b"p" * 32]))
    good = bytearray(encode_batch(Batch(b"d" * 16, tuple(realistic_track(count)), auth, prev)))
    for _ in range(data.draw(st.integers(0, 3))):
        pos = data.draw(st.integers(0, len(good) - 1))
        good[pos] = data.draw(st.integers(0, 255))
    raw = bytes(good)
    try:
        fast = _decode_plain(raw)
    except ProtocolError as exc:  # a bad body: the full parser must refuse it the same way
        with pytest.raises(type(exc)):
            _decode_full(raw)
        return
    if fast is not None:
        assert _decode_full(raw) == fast


def test_batch_validates_its_own_shape() -> None:
    track = realistic_track(3)
    with pytest.raises(LocalProtocolError, match="consecutive"):
        Batch(b"d" * 16, (track[0], track[2]), b"s" * 64)
    with pytest.raises(LocalProtocolError, match=r"1\.\.4096"):
        Batch(b"d" * 16, (), b"s" * 64)
    with pytest.raises(LocalProtocolError, match="exactly one of"):
        seal(b"d" * 16, track, b"p" * 32)
    assert Fix.from_degrees(1, START_MS, 0, 0).seq == 1
