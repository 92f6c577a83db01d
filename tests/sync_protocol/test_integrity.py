"""Each attack on a rider's track is rejected with the right error and changes nothing."""

from __future__ import annotations

from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sync_protocol.ack import Ack
from sync_protocol.batch import Batch, decode_batch, encode_batch, seal
from sync_protocol.certificate import DeviceCertificate
from sync_protocol.chain import extend_all, genesis, public_key_bytes
from sync_protocol.errors import (
    BadSignature,
    CertificateError,
    ChainError,
    DecodeError,
    IntegrityError,
    InvalidFixError,
)
from sync_protocol.events import (
    ChainVerified,
    DuplicateReceived,
    FixesAccepted,
    GapDetected,
)
from sync_protocol.inbox import Inbox
from sync_protocol.receiver import Receiver, ReceiverState
from sync_protocol.session import SessionHello
from tracker_app.simulate import START_MS

NOW = START_MS


def signed(device, fixes, prev=None, include_prev=False) -> Batch:  # type: ignore[no-untyped-def]
    start = prev if prev is not None else genesis(device.id)
    return seal(device.id, fixes, start, key=device.key, include_prev_hash=include_prev)


def hash_before(device, track, seq: int) -> bytes:  # type: ignore[no-untyped-def]
    return extend_all(genesis(device.id), track[: seq - 1])[-1] if seq > 1 else genesis(device.id)


def test_honest_batches_are_accepted_and_acked(device) -> None:  # type: ignore[no-untyped-def]
    track = device.track(120)
    rx = Receiver.for_certificate(device.cert)
    events = rx.receive(signed(device, track[:60]))
    assert events[0] == FixesAccepted(tuple(track[:60]), verified=True)
    assert isinstance(events[1], ChainVerified)
    assert (events[1].first_seq, events[1].last_seq) == (1, 60)
    rx.receive(signed(device, track[60:], prev=hash_before(device, track, 61)))
    assert rx.ack() == Ack(device.id, 120)


def test_tampered_fix_is_rejected_and_changes_nothing(device) -> None:  # type: ignore[no-untyped-def]
    track = device.track(60)
    good = signed(device, track)
    moved = replace(track[30], lat_e7=track[30].lat_e7 + 10)
    tampered = replace(good, fixes=(*track[:30], moved, *track[31:]))
    rx = Receiver.for_certificate(device.cert)
    before = rx.state.to_bytes()
    with pytest.raises(BadSignature, match="does not verify"):
        rx.receive(decode_batch(encode_batch(tampered)))
    assert rx.state.to_bytes() == before
    assert rx.ack().acked_seq == 0


def test_reordered_fixes_are_rejected(device) -> None:  # type: ignore[no-untyped-def]
    track = device.track(10)
    good = signed(device, track)
    a, b = track[3], track[4]
    swapped = (*track[:3], replace(b, seq=4), replace(a, seq=5), *track[5:])
    rx = Receiver.for_certificate(device.cert)
    with pytest.raises(IntegrityError):
        rx.receive(replace(good, fixes=swapped))


def test_time_going_backwards_in_a_signed_batch_is_rejected(device) -> None:  # type: ignore[no-untyped-def]
    track = device.track(10)
    bad = [*track[:5], replace(track[5], t_ms=track[3].t_ms), *track[6:]]
    rx = Receiver.for_certificate(device.cert)
    with pytest.raises(InvalidFixError, match="time goes backwards"):
        rx.receive(signed(device, bad))


def test_teleport_is_rejected(device) -> None:  # type: ignore[no-untyped-def]
    track = device.track(10)
    bad = [*track[:5], replace(track[5], lat_e7=track[5].lat_e7 + 100_000), *track[6:]]
    rx = Receiver.for_certificate(device.cert)
    with pytest.raises(InvalidFixError, match="impossible on a bicycle"):
        rx.receive(signed(device, bad))


def test_gap_is_reported_and_nothing_stored(device) -> None:  # type: ignore[no-untyped-def]
    track = device.track(120)
    rx = Receiver.for_certificate(device.cert)
    rx.receive(signed(device, track[:30]))
    events = rx.receive(signed(device, track[60:], prev=hash_before(device, track, 61)))
    assert events == [GapDetected(((31, 60),))]
    assert rx.ack() == Ack(device.id, 30, missing=((31, 120),))


def test_replay_is_a_duplicate_and_counted_once(device) -> None:  # type: ignore[no-untyped-def]
    track = device.track(60)
    batch = signed(device, track)
    rx = Receiver.for_certificate(device.cert)
    rx.receive(batch)
    assert rx.receive(batch) == [DuplicateReceived(1, 60)]
    assert rx.receive(signed(device, track[10:20], hash_before(device, track, 11))) == [
        DuplicateReceived(11, 20)
    ]


def test_splice_of_another_devices_fixes_is_rejected(device, other_device) -> None:  # type: ignore[no-untyped-def]
    mine, theirs = device.track(60), other_device.track(60, seed=9)
    rx = Receiver.for_certificate(device.cert)
    rx.receive(signed(device, mine[:30]))
    # their batch, re-labelled with my device id: the chain and signature do not match
    spliced = replace(
        signed(other_device, theirs[30:], hash_before(other_device, theirs, 31)),
        device_id=device.id,
    )
    with pytest.raises(IntegrityError):
        rx.receive(spliced)
    # their authentic batch sent on my receiver
    with pytest.raises(IntegrityError, match="another device") as e:
        rx.receive(signed(other_device, theirs[:10]))
    assert e.value.reason == "wrong-device"
    # a batch claiming a different history before it than the one already verified
    forged = signed(device, mine[30:40], prev=b"x" * 32, include_prev=True)
    with pytest.raises(ChainError, match="differs from the verified one"):
        rx.receive(forged)
    assert rx.ack() == Ack(device.id, 30)


def test_key_without_certificate_is_refused(cloud_key, device) -> None:  # type: ignore[no-untyped-def]
    inbox = Inbox(cloud_key.public_key(), race_ids=[42])
    data = encode_batch(signed(device, device.track(5)))
    with pytest.raises(CertificateError, match="no valid certificate") as e:
        inbox.receive(data)
    assert e.value.reason == "no-certificate"
    inbox.admit(device.cert, NOW)
    _, _, events = inbox.receive(data)
    assert isinstance(events[0], FixesAccepted)


def test_batch_signed_by_an_uncertified_key_is_refused(device) -> None:  # type: ignore[no-untyped-def]
    rogue = Ed25519PrivateKey.from_private_bytes(b"r" * 32)
    track = device.track(5)
    forged = seal(device.id, track, genesis(device.id), key=rogue)
    with pytest.raises(BadSignature):
        Receiver.for_certificate(device.cert).receive(forged)


def test_certificates_verify_offline_and_fail_clearly(cloud_key, device) -> None:  # type: ignore[no-untyped-def]
    issuer = cloud_key.public_key()
    cert = DeviceCertificate.decode(device.cert.encode())
    assert cert == device.cert
    cert.verify(issuer, NOW, race_id=42)
    checks = [
        (lambda: cert.verify(issuer, NOW + 2 * 86_400_000), "expired"),
        (lambda: cert.verify(issuer, NOW - 2 * 86_400_000), "not-yet-valid"),
        (lambda: cert.verify(issuer, NOW, race_id=43), "wrong-race"),
        (lambda: replace(cert, racer_id=99).verify(issuer, NOW), "forged-certificate"),
        (
            lambda: cert.verify(Ed25519PrivateKey.from_private_bytes(b"z" * 32).public_key(), NOW),
            "unknown-issuer",
        ),
    ]
    for check, reason in checks:
        with pytest.raises(CertificateError) as e:
            check()
        assert e.value.reason == reason
    with pytest.raises(DecodeError):
        DeviceCertificate.decode(b"\x93\x01\x02\x03")


def test_session_hello_arms_mac_batches(cloud_key, device) -> None:  # type: ignore[no-untyped-def]
    inbox = Inbox(cloud_key.public_key(), race_ids=[42])
    session = b"k" * 32
    hello = SessionHello.create(device.key, device.cert, session, NOW)
    rx = inbox.hello(SessionHello.decode(hello.encode()).encode(), NOW)
    track = device.track(12)
    rx.receive(signed(device, track[:10]))
    live = seal(device.id, track[10:11], hash_before(device, track, 11), session_key=session)
    assert rx.receive(live) == [FixesAccepted((track[10],), verified=False)]
    assert rx.ack() == Ack(device.id, 10, provisional_seq=11)
    with pytest.raises(BadSignature):
        rx.receive(
            seal(device.id, track[11:], hash_before(device, track, 12), session_key=b"q" * 32)
        )
    rx.receive(signed(device, track[11:], hash_before(device, track, 12)))
    assert rx.ack() == Ack(device.id, 12)


def test_stale_or_forged_hello_is_refused(cloud_key, device, other_device) -> None:  # type: ignore[no-untyped-def]
    inbox = Inbox(cloud_key.public_key())
    stale = SessionHello.create(device.key, device.cert, b"k" * 32, NOW - 3_600_000)
    with pytest.raises(CertificateError, match="stale"):
        inbox.hello(stale.encode(), NOW)
    stolen = SessionHello.create(other_device.key, device.cert, b"k" * 32, NOW)
    with pytest.raises(BadSignature, match="not signed by the certified device key"):
        inbox.hello(stolen.encode(), NOW)
    assert inbox.receivers == {}


def test_mac_batch_without_session_is_refused(device) -> None:  # type: ignore[no-untyped-def]
    track = device.track(1)
    live = seal(device.id, track, genesis(device.id), session_key=b"k" * 32)
    with pytest.raises(BadSignature, match="session hello first"):
        Receiver.for_certificate(device.cert).receive(live)


def test_receiver_state_round_trips(device) -> None:  # type: ignore[no-untyped-def]
    track = device.track(100)
    rx = Receiver.for_certificate(device.cert)
    rx.receive(signed(device, track[:40]))
    rx.receive(signed(device, track[90:], hash_before(device, track, 91), include_prev=True))
    restored = Receiver(ReceiverState.from_bytes(rx.state.to_bytes()))
    assert restored.ack() == rx.ack() == Ack(device.id, 40, held=((91, 100),), missing=((41, 90),))
    with pytest.raises(DecodeError, match="corrupt"):
        ReceiverState.from_bytes(b"\x96\x01\x02\x03\x04\x05\x06")
    assert public_key_bytes(device.key) == device.public


def test_equivocation_is_refused_and_changes_nothing(device) -> None:  # type: ignore[no-untyped-def]
    track = device.track(40)
    rx = Receiver.for_certificate(device.cert)
    rx.receive(signed(device, track[:30]))
    rx.receive(signed(device, track[35:], hash_before(device, track, 36), include_prev=True))
    before = rx.state.to_bytes()
    other = [replace(f, ele_dm=f.ele_dm + 1) for f in track[30:35]]  # a second history
    with pytest.raises(ChainError, match="equivocation"):
        rx.receive(signed(device, other, hash_before(device, track, 31)))
    assert rx.state.to_bytes() == before


def test_fixes_outside_the_certificate_window_are_refused(cloud_key, device) -> None:  # type: ignore[no-untyped-def]
    inbox = Inbox(cloud_key.public_key())
    inbox.admit(device.cert, NOW)
    late = [replace(f, t_ms=f.t_ms + 2 * 86_400_000) for f in device.track(3)]
    with pytest.raises(CertificateError) as e:
        inbox.receive(encode_batch(signed(device, late)))
    assert e.value.reason == "outside-validity"
