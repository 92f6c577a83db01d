"""The device status message (sync_protocol.device_status): sealing, the wire, verifying,
the receiver's board and the tracker's reporting policy. No sockets, no clock."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync_protocol.device_status import (
    MAX_STATUS_BYTES,
    DeviceStatus,
    StatusBoard,
    StatusReporter,
)
from sync_protocol.errors import (
    BadSignature,
    CertificateError,
    DecodeError,
    IntegrityError,
    LimitExceeded,
    LocalProtocolError,
)
from sync_protocol.fix import MAX_T_MS, MIN_T_MS
from sync_protocol.session import MAX_CLOCK_SKEW_MS
from sync_protocol.wire import pack
from tests.sync_protocol.conftest import Device
from tracker_app.simulate import START_MS

SESSION = bytes(range(32))
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def mac_status(
    device: Device, pct: int = 74, charging: bool = False, *, t_ms: int = START_MS
) -> DeviceStatus:
    return DeviceStatus.create(device.id, t_ms, pct, charging, session_key=SESSION)


# -- round trips ----------------------------------------------------------------------


@FAST
@given(
    device_id=st.binary(min_size=16, max_size=16),
    t_ms=st.integers(MIN_T_MS, MAX_T_MS),
    pct=st.integers(0, 100),
    charging=st.booleans(),
    session_key=st.binary(min_size=32, max_size=32),
)
def test_mac_status_round_trips_and_verifies(
    device_id: bytes, t_ms: int, pct: int, charging: bool, session_key: bytes
) -> None:
    status = DeviceStatus.create(device_id, t_ms, pct, charging, session_key=session_key)
    data = status.encode()
    assert len(data) <= MAX_STATUS_BYTES
    decoded = DeviceStatus.decode(data)
    assert decoded == status
    assert decoded.mac
    decoded.verify(now_ms=t_ms, session_key=session_key)


def test_signed_status_round_trips_and_verifies(device: Device) -> None:
    status = DeviceStatus.create(device.id, START_MS, 12, True, key=device.key)
    data = status.encode()
    assert len(data) <= MAX_STATUS_BYTES
    decoded = DeviceStatus.decode(data)
    assert decoded == status
    assert not decoded.mac
    assert (decoded.battery_pct, decoded.charging, decoded.t_ms) == (12, True, START_MS)
    decoded.verify(now_ms=START_MS + 1_000, public_key=device.key.public_key())


def test_a_mac_status_is_small(device: Device) -> None:
    assert len(mac_status(device).encode()) < 50  # one more request on an open connection


# -- tampering, wrong keys, stale times ----------------------------------------------


@pytest.mark.parametrize("offset", range(3, 33))
def test_any_altered_byte_of_a_mac_status_is_refused(device: Device, offset: int) -> None:
    data = bytearray(mac_status(device, 74).encode())
    data[offset] ^= 0x01
    try:
        altered = DeviceStatus.decode(bytes(data))
    except DecodeError:
        return  # the structure broke: refused before any key is used
    with pytest.raises((BadSignature, IntegrityError)):
        altered.verify(now_ms=START_MS, session_key=SESSION)


def test_another_battery_level_under_the_same_mac_is_refused(device: Device) -> None:
    honest = mac_status(device, 74)
    forged = DeviceStatus(device.id, honest.t_ms, 99, False, honest.auth)
    with pytest.raises(BadSignature) as info:
        forged.verify(now_ms=START_MS, session_key=SESSION)
    assert info.value.reason == "bad-signature"


def test_a_mac_under_another_session_key_is_refused(device: Device) -> None:
    status = DeviceStatus.create(device.id, START_MS, 50, False, session_key=os.urandom(32))
    with pytest.raises(BadSignature, match="another session") as info:
        status.verify(now_ms=START_MS, session_key=SESSION)
    assert info.value.reason == "bad-signature"


def test_another_devices_signature_is_refused(device: Device, other_device: Device) -> None:
    spoofed = DeviceStatus.create(device.id, START_MS, 3, False, key=other_device.key)
    with pytest.raises(BadSignature, match="another device") as info:
        spoofed.verify(now_ms=START_MS, public_key=device.key.public_key())
    assert info.value.reason == "bad-signature"


def test_a_mac_with_no_session_armed_asks_for_a_hello(device: Device) -> None:
    with pytest.raises(BadSignature, match="session hello") as info:
        mac_status(device).verify(now_ms=START_MS, public_key=device.key.public_key())
    assert info.value.reason == "no-session"


def test_a_signature_with_no_device_key_is_refused(device: Device) -> None:
    status = DeviceStatus.create(device.id, START_MS, 50, False, key=device.key)
    with pytest.raises(CertificateError) as info:
        status.verify(now_ms=START_MS, session_key=SESSION)
    assert info.value.reason == "no-certificate"


@pytest.mark.parametrize("skew", [MAX_CLOCK_SKEW_MS + 1, -MAX_CLOCK_SKEW_MS - 1, 86_400_000])
def test_a_status_far_from_the_receivers_clock_is_stale(device: Device, skew: int) -> None:
    status = mac_status(device)
    status.verify(now_ms=START_MS + (MAX_CLOCK_SKEW_MS if skew > 0 else -MAX_CLOCK_SKEW_MS),
                  session_key=SESSION)  # fmt: skip
    with pytest.raises(IntegrityError, match="10 minutes") as info:
        status.verify(now_ms=START_MS + skew, session_key=SESSION)
    assert info.value.reason == "stale-status"


# -- bad input: clear errors ---------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "reason", "match"),
    [
        ([1, b"d" * 16, START_MS, 101, False, b"m" * 16], "out-of-range", "0..100"),
        ([1, b"d" * 16, START_MS, -1, False, b"m" * 16], "out-of-range", "0..100"),
        ([1, b"d" * 16, 5, 50, False, b"m" * 16], "out-of-range", "between 2000 and 2100"),
        ([1, b"d" * 15, START_MS, 50, False, b"m" * 16], "out-of-range", "16 bytes"),
        ([2, b"d" * 16, START_MS, 50, False, b"m" * 16], "version", "version 2"),
        ([1, b"d" * 16, START_MS, 50, 1, b"m" * 16], "malformed", "charging must be bool"),
        ([1, b"d" * 16, START_MS, 50.0, False, b"m" * 16], "malformed", "battery level"),
        ([1, b"d" * 16, START_MS, True, False, b"m" * 16], "malformed", "battery level"),
        ([1, b"d" * 16, START_MS, 50, False, b""], "malformed", "neither"),
        ([1, b"d" * 16, START_MS, 50, False, b"m" * 20], "malformed", "neither"),
        ([1, b"d" * 16, START_MS, 50, False], "malformed", "array of 6"),
    ],
)
def test_malformed_statuses_are_decode_errors_with_reasons(
    fields: list[object], reason: str, match: str
) -> None:
    with pytest.raises(DecodeError, match=match) as info:
        DeviceStatus.decode(pack(fields))
    assert info.value.reason == reason


def test_truncated_trailing_and_oversized_statuses_are_refused(device: Device) -> None:
    data = mac_status(device).encode()
    for end in range(len(data)):
        with pytest.raises(DecodeError):
            DeviceStatus.decode(data[:end])
    with pytest.raises(DecodeError):
        DeviceStatus.decode(data + b"\x00")
    with pytest.raises(LimitExceeded):
        DeviceStatus.decode(pack([1, device.id, START_MS, 50, False, b"m" * 200]))


@FAST
@given(st.binary(max_size=200))
def test_arbitrary_bytes_only_raise_decode_error(data: bytes) -> None:
    try:
        status = DeviceStatus.decode(data)
    except DecodeError:
        return
    assert DeviceStatus.decode(status.encode()) == status


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"battery_pct": 101}, "0..100"),
        ({"battery_pct": 50.5}, "0..100"),
        ({"charging": "yes"}, "True or False"),
        ({"t_ms": MAX_T_MS + 1}, "between 2000 and 2100"),
        ({"device_id": b"short"}, "16 bytes"),
        ({"auth": b"x" * 10}, "MAC"),
    ],
)
def test_building_a_bad_status_is_a_local_error(changes: dict[str, object], match: str) -> None:
    fields: dict[str, object] = {
        "device_id": b"d" * 16,
        "t_ms": START_MS,
        "battery_pct": 50,
        "charging": False,
    }
    fields.update(changes)
    with pytest.raises(LocalProtocolError, match=match) as info:
        DeviceStatus(**fields)  # type: ignore[arg-type]
    assert info.value.reason == "invalid-status"


def test_sealing_needs_exactly_one_key_and_encoding_needs_a_seal(device: Device) -> None:
    with pytest.raises(LocalProtocolError, match="exactly one"):
        DeviceStatus.create(device.id, START_MS, 50, False)
    with pytest.raises(LocalProtocolError, match="exactly one"):
        DeviceStatus.create(device.id, START_MS, 50, False, session_key=SESSION, key=device.key)
    with pytest.raises(LocalProtocolError, match="32 bytes"):
        DeviceStatus.create(device.id, START_MS, 50, False, session_key=b"short")
    with pytest.raises(LocalProtocolError, match="seal"):
        DeviceStatus(device.id, START_MS, 50, False).encode()


# -- the receiver's board ----------------------------------------------------------------


def test_the_board_keeps_only_the_newest_status_of_each_device(
    device: Device, other_device: Device
) -> None:
    board = StatusBoard()
    first = mac_status(device, 80, t_ms=START_MS)
    assert board.offer(first)
    assert not board.offer(first)  # a retry
    assert board.offer(mac_status(device, 79, t_ms=START_MS + 60_000))
    assert not board.offer(mac_status(device, 90, t_ms=START_MS + 30_000))  # overtaken
    assert board.offer(mac_status(other_device, 10))
    assert board.latest[device.id].battery_pct == 79
    assert board.latest[other_device.id].battery_pct == 10


# -- the tracker's policy ----------------------------------------------------------------


def test_reporter_sends_on_change_on_charging_and_every_minute(device: Device) -> None:
    reporter = StatusReporter()
    t = START_MS
    assert reporter.due(80, False, t)  # nothing sent on this connection yet
    reporter.sent(mac_status(device, 80, t_ms=t))
    assert not reporter.due(80, False, t + 1_000)
    assert reporter.due(79, False, t + 1_000)  # 1 % less
    assert reporter.due(80, True, t + 1_000)  # plugged in
    assert not reporter.due(80, False, t + 59_999)
    assert reporter.due(80, False, t + 60_000)  # at least every 60 s
    reporter.sent(mac_status(device, 79, t_ms=t + 60_000))
    reporter.connected()  # a new hop knows nothing of this device
    assert reporter.due(79, False, t + 61_000)


def test_reporter_waits_after_a_refusal(device: Device) -> None:
    reporter = StatusReporter(min_change_pct=5, every_ms=30_000)
    reporter.refused(START_MS)
    assert not reporter.due(10, False, START_MS + 29_999)
    assert reporter.due(10, False, START_MS + 30_000)
    reporter.sent(mac_status(device, 10, t_ms=START_MS + 30_000))
    assert not reporter.due(14, False, START_MS + 31_000)  # less than 5 %
    assert reporter.due(15, False, START_MS + 31_000)


@pytest.mark.parametrize("kwargs", [{"min_change_pct": 0}, {"every_ms": 0}, {"every_ms": 1.5}])
def test_reporter_settings_are_checked(kwargs: dict[str, object]) -> None:
    with pytest.raises(LocalProtocolError):
        StatusReporter(**kwargs)  # type: ignore[arg-type]


def test_a_status_signed_by_a_fresh_key_is_not_the_devices(device: Device) -> None:
    stranger = Ed25519PrivateKey.generate()
    status = DeviceStatus.create(device.id, START_MS, 50, False, key=stranger)
    with pytest.raises(BadSignature):
        status.verify(now_ms=START_MS, public_key=device.key.public_key())
