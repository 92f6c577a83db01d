"""Spectators watch a real relay: WebTransport frames, the WebSocket fallback, actions."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, BytesMessage, Request

from sync_protocol.frames import FrameKind, RaceStatus, RiderStatus, decode_frame, peek_kind
from tests.cloud.conftest import CloudServer, start_cloud
from tests.edge_relay.harness import (
    RelayProcess,
    RelayRider,
    now_ms,
    setup_relay_race,
    start_race,
    start_relay,
)
from tests.edge_relay.test_relay_ingest import configured, upload, wait_for
from tests.edge_relay.wt import spectator


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudServer]:
    server = start_cloud(tmp_path_factory.mktemp("cloud"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def race(
    cloud: CloudServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[httpx.Client, int, list[RelayRider], RelayProcess]]:
    tmp = tmp_path_factory.mktemp("race")
    admin, race_id, credential = setup_relay_race(cloud, tmp)
    start = now_ms() - 61_000  # the last fixes are fresh: riders show as racing
    riders = [
        RelayRider(cloud, admin, race_id, count=60, offset_m=300.0 * i, start_ms=start)
        for i in range(3)
    ]
    start_race(admin, race_id)
    relay = start_relay(tmp / "relay", cloud, credential, "--tick-ms", "200")
    wait_for(lambda: configured(relay, race_id), what="relay configuration")
    for rider in riders:
        asyncio.run(upload(relay.quic_port, rider, rider.batch(1, 60)))
    yield admin, race_id, riders, relay
    relay.stop()


def test_webtransport_spectators_get_a_snapshot_on_a_stream_then_datagrams(
    race: tuple[httpx.Client, int, list[RelayRider], RelayProcess],
) -> None:
    _, race_id, _, relay = race

    async def watch() -> None:
        async with spectator(relay.quic_port, f"/live/{race_id}") as client:
            assert client.status.result() == 200
            first = await client.next_frame()
            assert client.stream_frames, "the first frame must come on a stream"
            assert peek_kind(client.stream_frames[0]) is FrameKind.SNAPSHOT
            assert first.race_id == race_id
            assert first.race_status is RaceStatus.LIVE
            bibs = {r.bib for r in first.riders}
            assert len(bibs) == 3
            # the rider furthest along leads, with no gap; the others have one
            leader = max(first.riders, key=lambda r: r.progress_m)
            assert leader.gap_ds == 0
            # then datagrams, one a tick, decodable against the base
            for _ in range(2):
                await client.next_frame(timeout=5)
            assert client.datagrams
            assert client.stale == 0
            # writing on the server's bidirectional stream asks for a fresh base
            # (the aioquic pitfall: this must not close the connection)
            stream_id = next(iter(client.streams))
            before = len(client.stream_frames)
            client.reply_on(stream_id, b"resync")
            for _ in range(50):
                if len(client.stream_frames) > before:
                    break
                await asyncio.sleep(0.05)
            assert len(client.stream_frames) > before
            assert client.closed_with is None

    asyncio.run(watch())


def test_unknown_race_session_is_refused(
    race: tuple[httpx.Client, int, list[RelayRider], RelayProcess],
) -> None:
    relay = race[3]

    async def watch() -> int:
        async with spectator(relay.quic_port, "/live/999999") as client:
            return client.status.result()

    assert asyncio.run(watch()) == 404


def test_two_hundred_webtransport_sessions_all_receive_frames(
    race: tuple[httpx.Client, int, list[RelayRider], RelayProcess],
) -> None:
    _, race_id, _, relay = race

    async def crowd() -> list[int]:
        async def one() -> int:
            async with spectator(relay.quic_port, f"/live/{race_id}") as client:
                await client.next_frame(timeout=20)
                await client.next_frame(timeout=20)
                return len(client.frames)

        return await asyncio.gather(*(one() for _ in range(200)))

    counts = asyncio.run(crowd())
    assert len(counts) == 200
    assert min(counts) >= 2


def ws_frames(port: int, path: str, count: int) -> list[bytes]:
    """A minimal real WebSocket client (wsproto over a socket)."""
    import socket

    ws = WSConnection(ConnectionType.CLIENT)
    frames: list[bytes] = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(ws.send(Request(host="127.0.0.1", target=path)))
        accepted = False
        while len(frames) < count:
            data = sock.recv(65_536)
            assert data, "connection closed"
            ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, AcceptConnection):
                    accepted = True
                elif isinstance(event, BytesMessage):
                    frames.append(bytes(event.data))
        assert accepted
    return frames


def test_websocket_fallback_gets_snapshots_and_actions_show(
    cloud: CloudServer, race: tuple[httpx.Client, int, list[RelayRider], RelayProcess]
) -> None:
    admin, race_id, riders, relay = race
    frames = ws_frames(relay.http_port, f"/live/{race_id}", 2)
    for data in frames:
        assert peek_kind(data) is FrameKind.SNAPSHOT
        assert len(decode_frame(data).riders) == 3
    # An official's DNF in the cloud reaches the relay's frames over the live stream.
    response = admin.post(
        f"/api/races/{race_id}/actions",
        json={"kind": "dnf", "rider_id": riders[2].id, "reason": "crash"},
    )
    assert response.status_code in (200, 201), response.text

    def dnf_shown() -> bool:
        (data,) = ws_frames(relay.http_port, f"/live/{race_id}", 1)
        frame = decode_frame(data)
        return any(r.bib == riders[2].bib and r.status is RiderStatus.DNF for r in frame.riders)

    wait_for(dnf_shown, what="the DNF in the relay's frames")
    with relay.client() as c:
        standings = c.get(f"/api/races/{race_id}/standings").json()
    assert len(standings["riders"]) == 3


def test_websocket_client_that_never_reads_does_not_grow_memory(
    race: tuple[httpx.Client, int, list[RelayRider], RelayProcess], tmp_path: Path
) -> None:
    import socket

    _, race_id, _, relay = race
    rss_before = _rss_kb(relay.process.pid)
    sockets = []
    for _ in range(20):
        ws = WSConnection(ConnectionType.CLIENT)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", relay.http_port))
        sock.sendall(ws.send(Request(host="127.0.0.1", target=f"/live/{race_id}")))
        sockets.append(sock)
    try:
        # Twenty clients that never read while ~15 frames go out: the relay keeps at most
        # one unsent frame per client (see test_fanout for the mailbox itself).
        asyncio.run(asyncio.sleep(3))
        rss_after = _rss_kb(relay.process.pid)
        with relay.client() as c:
            metrics = c.get("/metrics").text
        assert 'gruppetto_relay_spectators{transport="websocket"} 20.0' in metrics
        assert rss_after - rss_before < 20_000, (rss_before, rss_after)
    finally:
        for sock in sockets:
            sock.close()


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")
