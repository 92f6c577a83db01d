"""Acks mean durable: kill -9 mid-commit loses nothing acked; forwarding survives outages."""

from __future__ import annotations

import asyncio
import random
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from sync_protocol.framing import encode_frames
from sync_protocol.upload import decode_results
from tests.cloud.conftest import CloudServer, start_cloud
from tests.cloud.h3 import h3_client
from tests.cloud.test_ingest import stored
from tests.edge_relay.harness import RelayRider, setup_relay_race, start_race, start_relay
from tests.edge_relay.test_relay_ingest import (
    configured,
    hello_only,
    relay_fixes,
    upload,
    wait_for,
)


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudServer]:
    server = start_cloud(tmp_path_factory.mktemp("cloud"))
    yield server
    server.stop()


async def stream_uploads(port: int, rider: RelayRider, acked: dict[bytes, int]) -> None:
    """Upload 20-fix batches one after another until the relay goes away."""
    try:
        async with h3_client("127.0.0.1", port) as client:
            status, _, _ = await client.request("POST", "/v1/hello", body=rider.hello())
            assert status == 200
            for first in range(1, len(rider.fixes), 20):
                body = encode_frames([rider.batch(first, first + 19)])
                status, _, reply = await client.request("POST", "/v1/batches", body=body)
                assert status == 200
                (result,) = decode_results(reply)
                assert not result.refused, result.reason
                assert result.ack is not None
                acked[rider.device] = result.ack.acked_seq
    except (TimeoutError, ConnectionError, OSError):
        return  # killed under us


def test_kill_9_during_group_commits_loses_no_acked_fix(cloud: CloudServer, tmp_path: Path) -> None:
    admin, race_id, credential = setup_relay_race(cloud, tmp_path)
    riders = [RelayRider(cloud, admin, race_id, count=2_000) for _ in range(4)]
    start_race(admin, race_id)
    relay = start_relay(tmp_path / "relay", cloud, credential)
    wait_for(lambda: configured(relay, race_id), what="relay configuration")
    acked: dict[bytes, int] = {}

    async def uploads_then_kill() -> None:
        tasks = [asyncio.create_task(stream_uploads(relay.quic_port, r, acked)) for r in riders]
        while sum(acked.values()) < 1_000:  # well into the stream of commits
            assert not any(t.done() for t in tasks), [t.result() for t in tasks if t.done()]
            await asyncio.sleep(0.01)
        await asyncio.sleep(random.uniform(0.0, 0.2))
        relay.process.send_signal(signal.SIGKILL)
        await asyncio.wait(tasks, timeout=15)
        for task in tasks:
            task.cancel()

    asyncio.run(uploads_then_kill())
    relay.process.wait()
    snapshot = dict(acked)
    for rider in riders:
        have = {seq for seq, verified in relay_fixes(relay, rider.device) if verified}
        assert set(range(1, snapshot.get(rider.device, 0) + 1)) <= have
    # The restarted relay resumes every device where its durable state says.
    again = relay.restart()
    try:
        for rider in riders:
            done = snapshot.get(rider.device, 0)
            results = asyncio.run(upload(again.quic_port, rider, rider.batch(1, done + 40)))
            assert results[0].ack is not None
            assert results[0].ack.acked_seq == done + 40
    finally:
        again.stop()


def test_live_fixes_after_a_kill_9_come_back_through_the_next_signed_head(
    cloud: CloudServer, tmp_path: Path
) -> None:
    """MAC'd live fixes are provisional (acked as such, not as durable): a relay killed
    right after them may forget them, and the tracker's next signed batch brings them back
    verified, with no stale provisional row left behind."""
    admin, race_id, credential = setup_relay_race(cloud, tmp_path)
    rider = RelayRider(cloud, admin, race_id, count=20)
    start_race(admin, race_id)
    relay = start_relay(tmp_path / "relay", cloud, credential)
    wait_for(lambda: configured(relay, race_id), what="relay configuration")
    live = [rider.batch(1, 1)] + [rider.batch(s, s, mac=True) for s in range(2, 6)]
    results = asyncio.run(upload(relay.quic_port, rider, *live))
    assert results[-1].ack is not None
    assert (results[-1].ack.acked_seq, results[-1].ack.provisional_seq) == (1, 5)
    relay.process.send_signal(signal.SIGKILL)
    relay.process.wait()

    again = relay.restart()
    try:
        # A new session: the next live fix does not follow what the relay holds durably.
        (result,) = asyncio.run(upload(again.quic_port, rider, rider.batch(6, 6, mac=True)))
        assert result.ack is not None
        assert result.ack.acked_seq == 1
        assert result.ack.missing
        assert result.ack.missing[0][0] == 2
        # The tracker answers the gap with a signed batch: all verified, nothing stale.
        (result,) = asyncio.run(upload(again.quic_port, rider, rider.batch(2, 6)))
        assert result.ack is not None
        assert (result.ack.acked_seq, result.ack.provisional_seq) == (6, 0)
        assert relay_fixes(again, rider.device) == [(seq, 1) for seq in range(1, 7)]
    finally:
        again.stop()


def test_forwarding_survives_a_cloud_outage_and_stores_each_fix_once(tmp_path: Path) -> None:
    cloud = start_cloud(tmp_path / "cloud")
    admin, race_id, credential = setup_relay_race(cloud, tmp_path)
    rider = RelayRider(cloud, admin, race_id, count=300)
    start_race(admin, race_id)
    relay = start_relay(tmp_path / "relay", cloud, credential)
    try:
        wait_for(lambda: configured(relay, race_id), what="relay configuration")
        asyncio.run(upload(relay.quic_port, rider, rider.batch(1, 100)))
        wait_for(lambda: cloud_acked(relay.quic_port, rider) == 100, what="forwarding")
        port = int(cloud.url.rsplit(":", 1)[1])
        cloud.stop()  # the uplink is down: the relay still acks, keeps everything
        for first in range(101, 301, 50):
            results = asyncio.run(upload(relay.quic_port, rider, rider.batch(first, first + 49)))
            assert results[0].ack is not None
            assert results[0].ack.acked_seq == first + 49
        with relay.client() as c:
            metrics = c.get("/metrics").text
        assert 'gruppetto_relay_backlog{unit="fixes"} 200.0' in metrics
        assert "gruppetto_relay_uplink_up 0.0" in metrics
        # A relay restart during the outage loses nothing either.
        relay = relay.restart()
        cloud = start_cloud(tmp_path / "cloud", port=port)
        wait_for(lambda: cloud_acked(relay.quic_port, rider) == 300, timeout=60,
                 what="the backlog reaching the cloud")  # fmt: skip
        cloud.stop()  # DuckDB allows one process: read the history once the cloud is down
        seqs = [seq for seq, _ in stored(cloud.data_dir, rider.device)]
        assert seqs == list(range(1, 301))
    finally:
        relay.stop()
        cloud.stop()


def cloud_acked(port: int, rider: RelayRider) -> int:
    """What the relay says the cloud holds of the rider's chain (its hello reply)."""
    return asyncio.run(hello_only(port, rider)).cloud_acked_seq


def test_backoff_is_exponential_with_jitter() -> None:
    from edge_relay.uplink import Backoff

    backoff = Backoff(base_s=0.5, cap_s=30.0)
    delays = [backoff.next_delay() for _ in range(12)]
    assert all(0 < d <= 30.0 for d in delays)
    assert delays[0] <= 1.0
    assert max(delays[-3:]) > 10.0
    backoff.reset()
    assert backoff.next_delay() <= 1.0
