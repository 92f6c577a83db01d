"""Trackers upload straight to the cloud (``/v1/hello``, ``/v1/batches``) when no relay is in
reach: over HTTP/1.1 (httpx) and over HTTP/3 (aioquic), through the same ingest as relays."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud.keys import load_or_create
from sync_protocol.ack import Ack
from sync_protocol.batch import encode_batch, seal
from sync_protocol.certificate import DeviceCertificate
from sync_protocol.chain import device_id, genesis, public_key_bytes
from sync_protocol.framing import encode_frames
from sync_protocol.session import SessionHello
from sync_protocol.upload import (
    BATCHES_PATH,
    CONTENT_TYPE,
    HELLO_PATH,
    HelloReply,
    UploadResult,
    decode_results,
)
from tests.cloud.conftest import CloudServer, free_udp_port, start_cloud
from tests.cloud.h3 import BlockingH3
from tests.cloud.live import follow, next_of
from tests.cloud.riders import Rider, post, setup_race

Reply = tuple[int, dict[str, str], bytes]
HEADERS = {"content-type": CONTENT_TYPE}


class Tracker:
    """Sends the tracker's requests over one transport; returns (status, headers, body)."""

    def __init__(self, send: Callable[[str, bytes, dict[str, str]], Reply]) -> None:
        self.send = send

    def hello(self, body: bytes) -> HelloReply:
        status, headers, data = self.send(HELLO_PATH, body, HEADERS)
        assert status == 200, data
        assert headers["content-type"] == CONTENT_TYPE
        return HelloReply.decode(data)

    def upload(self, *batches: bytes) -> list[UploadResult]:
        status, headers, data = self.send(BATCHES_PATH, encode_frames(batches), HEADERS)
        assert status == 200, data
        assert headers["content-type"] == CONTENT_TYPE
        results = decode_results(data)
        assert len(results) == len(batches)
        return results

    def refused(self, path: str, body: bytes, headers: dict[str, str] = HEADERS) -> Reply:
        status, headers, data = self.send(path, body, headers)
        assert 400 <= status < 500, (status, data)
        assert set(json.loads(data)) == {"error", "message"}
        return status, headers, data


@pytest.fixture(scope="module")
def quic_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[CloudServer, int]]:
    port = free_udp_port()
    server = start_cloud(tmp_path_factory.mktemp("direct"), "--quic-bind", f"127.0.0.1:{port}")
    yield server, port
    server.stop()


@contextmanager
def tracker_on(server: CloudServer, quic_port: int, transport: str) -> Iterator[Tracker]:
    """A tracker talking to ``server`` over HTTP/1.1 (httpx) or HTTP/3 (aioquic)."""
    if transport == "http1":
        client = server.client()

        def send_http1(path: str, body: bytes, headers: dict[str, str]) -> Reply:
            response = client.post(path, content=body, headers=headers)
            assert response.http_version == "HTTP/1.1"
            return response.status_code, dict(response.headers), response.content

        yield Tracker(send_http1)
        return
    connection = BlockingH3("127.0.0.1", quic_port)

    def send_http3(path: str, body: bytes, headers: dict[str, str]) -> Reply:
        return connection.request("POST", path, body=body, headers=headers)

    try:
        yield Tracker(send_http3)
    finally:
        connection.close()


@pytest.fixture(params=["http1", "http3"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def tracker(transport: str, quic_server: tuple[CloudServer, int]) -> Iterator[Tracker]:
    with tracker_on(*quic_server, transport) as tracker:
        yield tracker


def test_a_tracker_uploads_straight_to_the_cloud(
    tracker: Tracker, quic_server: tuple[CloudServer, int], tmp_path: Path
) -> None:
    server, _ = quic_server
    admin, race_id, _ = setup_race(server, tmp_path)
    rider = Rider(server, admin, race_id)

    reply = tracker.hello(rider.hello())
    assert (reply.ack.device_id, reply.ack.acked_seq) == (rider.device, 0)
    assert reply.cloud_acked_seq == 0
    assert reply.live_mac is False  # the cloud keeps no session: every batch signed

    accepted = tracker.upload(rider.batch(1, 60), rider.batch(61, 120))
    assert [r.refused for r in accepted] == [False, False]
    assert [r.ack for r in accepted] == [Ack(rider.device, 120)] * 2
    assert [r.cloud_acked_seq for r in accepted] == [120, 120]

    duplicate = tracker.upload(rider.batch(1, 60))[0]
    assert not duplicate.refused
    assert duplicate.ack == Ack(rider.device, 120)

    gap = tracker.upload(rider.batch(200, 210))[0]
    assert not gap.refused
    assert gap.ack == Ack(rider.device, 120, missing=((121, 210),))

    tampered = bytearray(rider.batch(121, 180))
    tampered[-1] ^= 1  # the signature
    forged, mac, stranger = tracker.upload(
        bytes(tampered), rider.mac_batch(121, 121, b"k" * 32), strangers_batch(rider)
    )
    assert (forged.reason, forged.cloud_acked_seq) == ("bad-signature", 120)
    assert forged.ack == gap.ack  # what the cloud holds, unchanged
    assert forged.message
    assert mac.reason == "no-session"  # MAC'd batches need a session the cloud never arms
    assert (stranger.reason, stranger.ack, stranger.cloud_acked_seq) == ("no-certificate", None, 0)

    status, _, body = tracker.refused(BATCHES_PATH, b"\x05\x01")
    assert status == 400
    assert json.loads(body)["error"] == "truncated"
    status, _, body = tracker.refused(HELLO_PATH, b"not a hello")
    assert status == 400
    status, _, body = tracker.refused(HELLO_PATH, strangers_hello(rider))
    assert (status, json.loads(body)["error"]) == (403, "unknown-issuer")
    status, _, body = tracker.refused(HELLO_PATH, unenrolled_hello(server))
    assert (status, json.loads(body)["error"]) == (403, "no-certificate")
    status, _, body = tracker.refused(BATCHES_PATH, b"{}", {"content-type": "application/json"})
    assert (status, json.loads(body)["error"]) == (415, "content-type")

    again = tracker.hello(rider.hello())
    assert (again.ack.acked_seq, again.cloud_acked_seq) == (120, 120)
    assert fixes_stored(admin, race_id) == 120  # every fix once (the rider is alone)


def test_fixes_from_a_tracker_then_from_a_relay_are_stored_once(
    tracker: Tracker, quic_server: tuple[CloudServer, int], tmp_path: Path
) -> None:
    server, _ = quic_server
    admin, race_id, credential = setup_race(server, tmp_path)
    rider = Rider(server, admin, race_id)
    assert admin.post(f"/api/races/{race_id}/state", json={"state": "live"}).status_code == 200
    with follow(server, credential, race_id) as lines:
        assert lines.get(timeout=10)["type"] == "snapshot"
        live = tracker.upload(rider.batch(121, 121, prev_hash=True))  # the newest first
        assert live[0].ack == Ack(rider.device, 0, held=((121, 121),), missing=((1, 120),))
        fix = next_of(lines, "fix")
        assert (fix["seq"], fix["via"]) == (121, 0)  # 0: straight from the tracker
    tracker.upload(rider.batch(1, 60), rider.batch(61, 120))

    # The event relay caught the same fixes and forwards them later: all duplicates.
    forwarded = post(
        server,
        credential,
        rider.batch(1, 60),
        rider.batch(61, 120, prev_hash=True),
        rider.batch(1, 121),
        rider.batch(121, 121, prev_hash=True),
    )
    assert [r["outcome"] for r in forwarded] == ["duplicate"] * 4
    assert forwarded[-1]["ack"]["acked_seq"] == 121
    fresh = post(server, credential, rider.batch(122, 180))
    assert fresh[0]["outcome"] == "accepted"
    reply = tracker.hello(rider.hello())  # one chain per device, whichever way it came
    assert reply.cloud_acked_seq == 180
    assert tracker.upload(rider.batch(150, 180))[0].cloud_acked_seq == 180
    assert fixes_stored(admin, race_id) == 180


def test_direct_uploads_are_rate_limited_per_address(transport: str, tmp_path: Path) -> None:
    port = free_udp_port()
    server = start_cloud(
        tmp_path / "cloud",
        *("--quic-bind", f"127.0.0.1:{port}", "--tracker-window", "3600"),
        env={"GRUPPETTO_TRACKER_UPLOADS": "3"},
    )
    try:
        with tracker_on(server, port, transport) as tracker:
            for _ in range(3):
                assert tracker.refused(BATCHES_PATH, b"\x05\x01")[0] == 400
            status, headers, body = tracker.refused(HELLO_PATH, b"")
            assert status == 429
            assert json.loads(body)["error"] == "rate-limited"
            assert 3590 <= int(headers["retry-after"]) <= 3600
        with server.client() as other:  # the /api side is not limited by it
            assert other.get("/healthz/live").status_code == 200
    finally:
        server.stop()


def fixes_stored(admin: httpx.Client, race_id: int) -> int:
    """How many fixes history holds for the race (DuckDB is the running server's)."""
    summary = admin.get(f"/api/races/{race_id}/summary")
    assert summary.status_code == 200, summary.text
    return int(summary.json()["fixes"])


def strangers_batch(rider: Rider) -> bytes:
    """A well-signed batch from a device this cloud never enrolled."""
    key = Ed25519PrivateKey.generate()
    device = device_id(public_key_bytes(key))
    return encode_batch(seal(device, rider.fixes[:5], genesis(device), key=key))


def strangers_hello(rider: Rider) -> bytes:
    """A hello whose certificate another issuer signed for the rider's own key."""
    other = Ed25519PrivateKey.generate()
    cert = rider.certificate
    forged = DeviceCertificate.issue(
        other,
        cert.device_public_key,
        cert.racer_id,
        cert.race_ids,
        cert.not_before_ms,
        cert.not_after_ms,
    )
    hello = SessionHello.decode(rider.hello())
    return SessionHello.create(rider.key, forged, hello.session_key, hello.t_ms).encode()


def unenrolled_hello(server: CloudServer) -> bytes:
    """A hello with a certificate the cloud's own key signed for a device never enrolled."""
    key = Ed25519PrivateKey.generate()
    now = time.time_ns() // 1_000_000
    cert = DeviceCertificate.issue(
        load_or_create(server.data_dir).private,
        public_key_bytes(key),
        racer_id=1,
        race_ids=(1,),
        not_before_ms=now - 60_000,
        not_after_ms=now + 3_600_000,
    )
    return SessionHello.create(key, cert, b"s" * 32, now).encode()
