"""Trackers upload to a real relay over HTTP/3; acks only after durable commits; forwarding."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sync_protocol.framing import encode_frames
from sync_protocol.upload import HelloReply, decode_results
from tests.cloud.conftest import CloudServer, start_cloud
from tests.cloud.h3 import h3_client
from tests.edge_relay.harness import (
    RelayProcess,
    RelayRider,
    now_ms,
    setup_relay_race,
    start_race,
    start_relay,
)


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudServer]:
    server = start_cloud(tmp_path_factory.mktemp("cloud"))
    yield server
    server.stop()


def wait_for(check, timeout: float = 20.0, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def configured(relay: RelayProcess, race_id: int) -> bool:
    with relay.client() as c:
        return any(r["id"] == race_id for r in c.get("/api/info").json()["races"])


def relay_fixes(relay: RelayProcess, device: bytes) -> list[tuple[int, int]]:
    with sqlite3.connect(relay.data_dir / "relay.db") as conn:
        rows = conn.execute(
            "SELECT seq, verified FROM fixes WHERE device_id = ? ORDER BY seq", (device,)
        ).fetchall()
    return [(int(s), int(v)) for s, v in rows]


async def upload(port: int, rider: RelayRider, *batches: bytes, hello: bool = True) -> list:  # type: ignore[type-arg]
    async with h3_client("127.0.0.1", port) as client:
        if hello:
            status, _, body = await client.request("POST", "/v1/hello", body=rider.hello())
            assert status == 200, body
            HelloReply.decode(body)
        status, _, body = await client.request("POST", "/v1/batches", body=encode_frames(batches))
        assert status == 200, body
        return decode_results(body)


def test_upload_ack_duplicate_gap_forgery_and_forwarding(
    cloud: CloudServer, tmp_path: Path
) -> None:
    admin, race_id, credential = setup_relay_race(cloud, tmp_path)
    rider = RelayRider(cloud, admin, race_id, count=120)
    start_race(admin, race_id)
    relay = start_relay(tmp_path / "relay", cloud, credential)
    try:
        wait_for(lambda: configured(relay, race_id), what="relay configuration")
        first = asyncio.run(upload(relay.quic_port, rider, rider.batch(1, 60)))
        assert [r.refused for r in first] == [False]
        assert first[0].ack is not None
        assert first[0].ack.acked_seq == 60
        assert relay_fixes(relay, rider.device) == [(s, 1) for s in range(1, 61)]

        forged = bytearray(rider.batch(61, 70))
        forged[-1] ^= 1
        results = asyncio.run(
            upload(
                relay.quic_port,
                rider,
                rider.batch(1, 60),  # duplicate
                rider.batch(91, 100),  # gap: 61..90 missing
                bytes(forged),
                b"\x00not a batch at all\x00\x00",
            )
        )
        duplicate, gap, bad, junk = results
        assert not duplicate.refused
        assert duplicate.ack is not None
        assert duplicate.ack.acked_seq == 60
        assert gap.ack is not None
        assert gap.ack.missing == ((61, 100),)
        assert bad.reason == "bad-signature"
        assert junk.refused
        assert junk.ack is None
        assert relay_fixes(relay, rider.device)[-1] == (60, 1)

        # A MAC'd live fix after the head is provisional, then sealed by a signed one.
        results = asyncio.run(
            upload(relay.quic_port, rider, rider.batch(61, 61, mac=True), rider.batch(62, 62))
        )
        assert results[0].ack is not None
        assert results[0].ack.provisional_seq == 61
        assert results[1].ack is not None
        assert results[1].ack.acked_seq == 62
        assert relay_fixes(relay, rider.device)[-2:] == [(61, 1), (62, 1)]

        # Forwarded to the cloud: the cloud acks, the relay's hello reports it.
        def cloud_has_all() -> bool:
            reply = asyncio.run(hello_only(relay.quic_port, rider))
            return reply.cloud_acked_seq == 62

        wait_for(cloud_has_all, what="forwarding to the cloud")
        with relay.client() as c:
            metrics = c.get("/metrics").text
        assert 'gruppetto_relay_backlog{unit="fixes"} 0.0' in metrics
        assert 'gruppetto_relay_refused_total{reason="refused:bad-signature"} 1.0' in metrics
    finally:
        relay.stop()


async def hello_only(port: int, rider: RelayRider) -> HelloReply:
    async with h3_client("127.0.0.1", port) as client:
        status, _, body = await client.request("POST", "/v1/hello", body=rider.hello())
        assert status == 200, body
        return HelloReply.decode(body)


def test_bad_hello_and_unknown_device_are_refused_with_reasons(
    cloud: CloudServer, tmp_path: Path
) -> None:
    admin, race_id, credential = setup_relay_race(cloud, tmp_path)
    rider = RelayRider(cloud, admin, race_id, count=10)
    relay = start_relay(tmp_path / "relay", cloud, credential)

    async def scenario() -> None:
        async with h3_client("127.0.0.1", relay.quic_port) as client:
            status, _, body = await client.request("POST", "/v1/hello", body=b"\x93garbage")
            assert status == 400
            assert b'"error"' in body
            stale = rider.hello(at_ms=int(time.time() * 1000) - 3_600_000)
            status, _, body = await client.request("POST", "/v1/hello", body=stale)
            assert status == 403
            assert b"stale-hello" in body
            status, _, body = await client.request(
                "POST", "/v1/batches", body=encode_frames([rider.batch(1, 5)])
            )
            assert status == 200
            (result,) = decode_results(body)
            assert result.reason == "no-certificate"
            status, _, _ = await client.request("GET", "/v1/nothing")
            assert status == 404

    try:
        wait_for(lambda: configured(relay, race_id), what="relay configuration")
        asyncio.run(scenario())
    finally:
        relay.stop()


def test_restart_without_uplink_keeps_serving_from_saved_configuration(
    cloud: CloudServer, tmp_path: Path
) -> None:
    admin, race_id, credential = setup_relay_race(cloud, tmp_path)
    rider = RelayRider(cloud, admin, race_id, count=30)
    relay = start_relay(tmp_path / "relay", cloud, credential)
    try:
        wait_for(lambda: configured(relay, race_id), what="relay configuration")
        asyncio.run(upload(relay.quic_port, rider, rider.batch(1, 10)))
    finally:
        relay.stop()
    # No cloud this time: the saved configuration is enough, and a device whose
    # certificate is stored is re-admitted on a signed batch without a new hello.
    alone = start_relay(tmp_path / "relay")
    try:
        results = asyncio.run(upload(alone.quic_port, rider, rider.batch(11, 20), hello=False))
        assert results[0].ack is not None
        assert results[0].ack.acked_seq == 20
    finally:
        alone.stop()


def test_starting_with_no_configuration_and_no_cloud_says_what_to_do(tmp_path: Path) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "deploy.cli", "relay", "--data", str(tmp_path / "r"),
         "--quic-bind", "127.0.0.1:0", "--http-bind", "127.0.0.1:0", "--no-advertise"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert "--cloud" in result.stderr
    assert "Traceback" not in result.stderr


def test_half_open_upload_is_reset_after_the_request_timeout(
    cloud: CloudServer, tmp_path: Path
) -> None:
    from aioquic.asyncio.client import connect
    from aioquic.quic.events import QuicEvent, StreamReset

    from tests.cloud.h3 import H3Client
    from tests.edge_relay.wt import client_config

    class Watcher(H3Client):
        reset: asyncio.Future[int] | None = None

        def quic_event_received(self, event: QuicEvent) -> None:
            if isinstance(event, StreamReset) and self.reset is not None:
                self.reset.set_result(event.error_code)
            super().quic_event_received(event)

    _, race_id, credential = setup_relay_race(cloud, tmp_path)
    relay = start_relay(tmp_path / "relay", cloud, credential, "--request-timeout", "1")

    async def half_open() -> int:
        async with connect(
            "127.0.0.1", relay.quic_port, configuration=client_config(), create_protocol=Watcher
        ) as client:
            assert isinstance(client, Watcher)
            client.reset = asyncio.get_running_loop().create_future()
            stream = client._quic.get_next_available_stream_id()
            client.http.send_headers(
                stream,
                [(b":method", b"POST"), (b":scheme", b"https"), (b":authority", b"relay"),
                 (b":path", b"/v1/batches")],
            )  # fmt: skip
            client.http.send_data(stream, b"\x05par", end_stream=False)  # and never the rest
            client.transmit()
            return await asyncio.wait_for(client.reset, timeout=10)

    try:
        wait_for(lambda: configured(relay, race_id), what="relay configuration")
        assert asyncio.run(half_open()) == 0x10C  # H3_REQUEST_CANCELLED
    finally:
        relay.stop()


def test_relay_reports_its_health_and_addresses_to_the_cloud(
    cloud: CloudServer, tmp_path: Path
) -> None:
    admin, race_id, credential = setup_relay_race(cloud, tmp_path)
    relay = start_relay(tmp_path / "relay", cloud, credential, "--public-host", "127.0.0.1")
    try:

        def reported() -> bool:
            relays = admin.get(f"/api/races/{race_id}/relays").json()
            return len(relays) == 1 and not relays[0]["stale"]

        wait_for(reported, what="the relay's status report")
        (entry,) = admin.get(f"/api/races/{race_id}/relays").json()
        assert entry["page_url"] == f"http://127.0.0.1:{relay.http_port}/"
        assert entry["webtransport_url"] == f"https://127.0.0.1:{relay.quic_port}/live/"
        assert entry["cert_sha256"] == relay.cert_sha256
        days_left = (entry["cert_not_after_ms"] - now_ms()) / 86_400_000
        assert 10 < days_left <= 13  # its own certificate: ≤ 13 days, renewed 3 days ahead
        assert entry["uplink"] == "up"
        overview = admin.get("/api/relays").json()
        assert any(r["status"] and r["status"]["page_url"] == entry["page_url"] for r in overview)
    finally:
        relay.stop()
