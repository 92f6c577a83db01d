"""Fan-out worker processes: spectators on their own UDP port, frames from the main one,
and tracker uploads taken in on the shared tracker port and answered by the main one."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from pathlib import Path

import pytest

from sync_protocol.frames import FrameKind, peek_kind
from tests.cloud.conftest import CloudServer
from tests.edge_relay.harness import (
    RelayRider,
    now_ms,
    setup_relay_race,
    start_race,
    start_relay,
)
from tests.edge_relay.test_relay_ingest import configured, relay_fixes, upload, wait_for
from tests.edge_relay.test_relay_live import cloud  # noqa: F401  (the module's cloud)
from tests.edge_relay.wt import spectator


def children(pid: int) -> set[int]:
    """Processes whose parent is ``pid`` (from /proc)."""
    out = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.add(int(entry))
    return out


def running(pid: int) -> bool:
    """Alive and not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_spectators_on_fan_out_workers_get_the_main_process_frames(
    cloud: CloudServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    admin, race_id, credential = setup_relay_race(cloud, tmp_path)
    start = now_ms() - 61_000
    riders = [
        RelayRider(cloud, admin, race_id, count=60, offset_m=250.0 * i, start_ms=start)
        for i in range(3)
    ]
    start_race(admin, race_id)
    relay = start_relay(
        tmp_path / "relay", cloud, credential, "--tick-ms", "200", "--fanout-workers", "2"
    )
    workers: set[int] = set()
    try:
        wait_for(lambda: configured(relay, race_id), what="relay configuration")
        with relay.client() as c:
            info = c.get("/api/info").json()
        port = info["spectator_port"]
        assert port
        assert port != relay.quic_port
        workers = children(relay.process.pid)
        assert len(workers) >= 2  # (plus multiprocessing's resource tracker)
        for rider in riders:
            asyncio.run(upload(relay.quic_port, rider, rider.batch(1, 60)))

        async def crowd() -> list[tuple[int, int, bool]]:
            async def one() -> tuple[int, int, bool]:
                async with spectator(port, f"/live/{race_id}") as client:
                    first = await client.next_frame(timeout=20)
                    await client.next_frame(timeout=20)
                    on_stream = peek_kind(client.stream_frames[0]) is FrameKind.SNAPSHOT
                    return len(first.riders), len(client.frames), on_stream

            return await asyncio.gather(*(one() for _ in range(40)))

        seen = asyncio.run(crowd())
        assert all(riders_shown == 3 for riders_shown, _, _ in seen)
        assert all(frames >= 2 for _, frames, _ in seen)
        assert all(on_stream for _, _, on_stream in seen)

        # The main process counts the workers' sessions (frame budget, info, metrics).
        async def hold() -> int:
            async with spectator(port, f"/live/{race_id}") as client:
                await client.next_frame(timeout=20)
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    with relay.client() as c:
                        count = int(c.get("/api/info").json()["spectators"])
                    if count >= 1:
                        return count
                    await asyncio.sleep(0.2)
                return 0

        assert asyncio.run(hold()) >= 1
        with relay.client() as c:
            metrics = c.get("/metrics").text
        assert 'gruppetto_relay_spectators{transport="webtransport"}' in metrics

        # An unknown race is refused on the workers' port too.
        async def refused() -> int:
            async with spectator(port, "/live/999999") as client:
                return client.status.result()

        assert asyncio.run(refused()) == 404
    finally:
        relay.stop(signal.SIGKILL)  # the workers must not outlive a killed relay
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(running(w) for w in workers):
        time.sleep(0.1)
    alive = {w for w in workers if running(w)}
    assert not alive, f"workers outlived the relay: {alive}"


def test_a_spectator_port_taken_stops_the_relay_with_a_reason(
    cloud: CloudServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    _, _, credential = setup_relay_race(cloud, tmp_path)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))  # without SO_REUSEPORT: nobody may share it
        port = taken.getsockname()[1]
        with pytest.raises(AssertionError, match="could not serve WebTransport on UDP"):
            start_relay(
                tmp_path / "relay",
                cloud,
                credential,
                "--fanout-workers",
                "1",
                "--spectator-port",
                str(port),
            )


def test_a_fan_out_worker_that_dies_is_started_again(
    cloud: CloudServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    admin, race_id, credential = setup_relay_race(cloud, tmp_path)
    rider = RelayRider(cloud, admin, race_id, count=30, start_ms=now_ms() - 31_000)
    start_race(admin, race_id)
    relay = start_relay(tmp_path / "relay", cloud, credential, "--fanout-workers", "1")
    try:
        wait_for(lambda: configured(relay, race_id), what="relay configuration")
        with relay.client() as c:
            port = c.get("/api/info").json()["spectator_port"]
        asyncio.run(upload(relay.quic_port, rider, rider.batch(1, 30)))
        first = {w for w in children(relay.process.pid) if b"spawn_main" in cmdline(w)}
        assert len(first) == 1, first
        os.kill(first.pop(), signal.SIGKILL)  # a crash: the relay carries on

        def restarted() -> bool:
            with relay.client() as c:
                return "gruppetto_relay_fanout_worker_restarts_total 1.0" in c.get("/metrics").text

        wait_for(restarted, what="the worker started again")
        again = {w for w in children(relay.process.pid) if b"spawn_main" in cmdline(w)}
        assert len(again) == 1, again
        assert all(running(w) for w in again)

        async def watch() -> int:  # the new worker serves the port, with the race's frames
            async with spectator(port, f"/live/{race_id}") as client:
                frame = await client.next_frame(timeout=20)
                return len(frame.riders)

        assert asyncio.run(watch()) == 1
    finally:
        relay.stop()


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_uploads_landing_on_workers_are_verified_stored_and_acked_by_the_main_process(
    cloud: CloudServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The workers share the tracker port: the kernel spreads the trackers' connections
    over every process, a worker hands each request to the main process, and the
    tracker gets the main process's answer (acks only once stored, gaps, refusals)."""
    admin, race_id, credential = setup_relay_race(cloud, tmp_path)
    rider = RelayRider(cloud, admin, race_id, count=60, start_ms=now_ms() - 61_000)
    start_race(admin, race_id)
    relay = start_relay(tmp_path / "relay", cloud, credential, "--fanout-workers", "2")
    try:
        wait_for(lambda: configured(relay, race_id), what="relay configuration")
        acked = []
        for first in range(1, 61, 5):  # 12 connections from 12 source ports
            results = asyncio.run(upload(relay.quic_port, rider, rider.batch(first, first + 4)))
            assert [r.refused for r in results] == [False]
            assert results[0].ack is not None
            acked.append(results[0].ack.acked_seq)
        assert acked == list(range(5, 61, 5))
        assert relay_fixes(relay, rider.device) == [(s, 1) for s in range(1, 61)]
        gap = asyncio.run(upload(relay.quic_port, rider, rider.batch(1, 5)))[0]
        assert gap.ack is not None
        assert gap.ack.acked_seq == 60  # a duplicate, acked again

        with relay.client() as c:
            metrics = c.get("/metrics").text
        forwarded = [
            float(line.split()[-1])
            for line in metrics.splitlines()
            if line.startswith("gruppetto_relay_forwarded_requests_total")
        ]
        # 26 requests over 13 connections and 3 processes: all on the main one would be
        # a (1/3)^13 chance.
        assert forwarded
        assert forwarded[0] > 0
    finally:
        relay.stop()
