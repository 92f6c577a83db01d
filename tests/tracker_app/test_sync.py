"""The uploader against real relays and a real cloud on loopback (HTTP/3, aioquic).

Each test logs a new racer in to the cloud, records through the tracker's own recorder
(SQLite first) and syncs with the tracker's uploader; what arrived is read back from the
relays' databases and the cloud's history.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from sync_protocol.certificate import DeviceCertificate
from sync_protocol.chain import extend_all, genesis
from sync_protocol.sender import Send
from tests.cloud.conftest import CloudServer
from tests.edge_relay.harness import RelayProcess, setup_relay_race
from tests.tracker_app.tracking import (
    enrol_relay,
    junk_hop,
    launch_relay,
    new_racer,
    readings,
    relay_fixes,
    relay_hop,
    start_h3_cloud,
    tracker_login,
)
from tracker_app.account import Account, race_course
from tracker_app.hops import Backoff, Hop, HopList, Link, wall_ms
from tracker_app.simulate import SimSettings
from tracker_app.sources import ManualClock, Reading, open_source
from tracker_app.store import Budget, FixStore
from tracker_app.tracker import Tracker, cloud_hop

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Race:
    cloud: CloudServer
    admin: httpx.Client
    race_id: int
    relay: RelayProcess
    tmp: Path


@pytest.fixture(scope="module")
def race(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Race]:
    tmp = tmp_path_factory.mktemp("race")
    cloud = start_h3_cloud(tmp / "cloud")
    try:
        # A 50 km circuit (an hour's ride), scheduled: open to registrations.
        admin, race_id, credential = setup_relay_race(cloud, tmp, km=50)
        relay = launch_relay(cloud, tmp / "relay-a", credential)
        yield Race(cloud, admin, race_id, relay, tmp)
        relay.stop()
    finally:
        cloud.stop(signal.SIGKILL)  # its graceful HTTP/3 shutdown takes 5 s; nothing to keep


def login(race: Race, tmp_path: Path) -> Account:
    return tracker_login(race.cloud, new_racer(race.cloud, race.race_id), tmp_path / "tracker")


def make_tracker(acct: Account, data: Path, *hops: Hop, cloud: Hop | None = None) -> Tracker:
    store = FixStore(data / "fixes.db", acct.certificate.device_id)
    return Tracker(
        acct,
        store,
        HopList(relays=hops, cloud=cloud),
        backoff=Backoff(base_s=0.05, max_s=0.5),
        request_timeout_s=5.0,
    )


async def source(items: Iterable[Reading]) -> AsyncIterator[Reading]:
    for reading in items:
        yield reading


def assert_chain_delivered(tracker: Tracker, held: dict[int, tuple], upto: int) -> None:
    """The hop holds fixes 1..upto, verified, identical to what the tracker recorded."""
    assert sorted(held) == list(range(1, upto + 1))
    assert all(verified for _, verified in held.values())
    fixes = [held[s][0] for s in range(1, upto + 1)]
    assert fixes == tracker.store.fixes(1, upto)
    device = tracker.account.certificate.device_id
    assert extend_all(genesis(device), fixes)[-1] == tracker.store.hash_at(upto)


def cloud_fixes(race: Race, acct: Account, expected: int) -> int:
    """The rider's fixes in the cloud's history, once the relays forwarded them (bounded)."""
    client = race.cloud.client()
    client.headers.update(race.admin.headers)
    deadline = time.monotonic() + 30
    count = -1
    while time.monotonic() < deadline:
        season = client.get(f"/api/riders/{acct.racer_id}/season").json()
        count = sum(r["fixes"] for r in season if r["race_id"] == race.race_id)
        if count >= expected:
            return count
        time.sleep(0.1)  # waiting for the relays' store-and-forward, a real event
    return count


def test_an_hour_offline_then_every_fix_once_in_order_newest_first(
    race: Race, tmp_path: Path
) -> None:
    acct = login(race, tmp_path)
    tracker = make_tracker(acct, tmp_path, relay_hop(race.relay))
    plans: list[list[Send]] = []
    tracker.uploader.on_sends = lambda hop, sends: plans.append(sends)
    # The simulated rider on the race's course, on a virtual clock: an hour passes at once.
    course = race_course(tmp_path / "tracker", race.race_id)
    clock = ManualClock(wall_ms(), autojump=True)
    settings = SimSettings(dropouts_per_hour=0)
    sim = open_source("sim", clock=clock, course=course, seed=3, sim_settings=settings)

    async def an_hour_offline() -> AsyncIterator[Reading]:
        count = 0
        async for reading in sim.readings():
            count += 1
            yield replace(reading, coverage=count > 3_600)  # no link for 3,600 fixes
            if count == 3_601:
                return

    asyncio.run(tracker.run(an_hour_offline(), drain_s=30))

    assert tracker.sender.state.recorded_seq == 3_601
    assert tracker.sender.waiting == 0
    assert plans[0][0] == Send(3_601, 3_601, include_prev_hash=True, signed=True)
    assert [(s.first_seq, s.last_seq) for s in plans[0][1:3]] == [(1, 60), (61, 120)]
    assert_chain_delivered(tracker, relay_fixes(race.relay, acct.certificate.device_id), 3_601)
    assert tracker.uploader.radio.wakeups >= 1
    assert cloud_fixes(race, acct, 3_601) == 3_601  # forwarded by the relay, exactly once
    tracker.store.close()


UPLOADER = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from tracker_app import account
    from tracker_app.h3client import Endpoint
    from tracker_app.store import Budget, FixStore
    from tracker_app.hops import Hop, HopList, Link
    from tracker_app.tracker import Tracker, cloud_hop

    data, port, pin = Path(sys.argv[1]), int(sys.argv[2]), bytes.fromhex(sys.argv[3])
    acct = account.load(data)
    store = FixStore(data / "fixes.db", acct.certificate.device_id)
    hop = Hop(Link.RELAY, "relay", Endpoint("127.0.0.1", port, pin_sha256=pin))
    tracker = Tracker(acct, store, HopList(relays=[hop]))
    tracker.uploader.on_sends = lambda hop, sends: print("sending", len(sends), flush=True)
    asyncio.run(tracker.uploader.run())
    """
)


def test_kill_9_mid_upload_then_restart(race: Race, tmp_path: Path) -> None:
    acct = login(race, tmp_path)
    data = tmp_path / "tracker"
    tracker = make_tracker(acct, data, relay_hop(race.relay))
    for reading in readings(3_000, wall_ms()):
        tracker.recorder.record(reading)
    tracker.store.close()

    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            UPLOADER,
            str(data),
            str(race.relay.quic_port),
            race.relay.cert_sha256,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().startswith("sending")  # the upload is on its way
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=10)
    child.stdout.close()

    restarted = make_tracker(acct, data, relay_hop(race.relay))
    assert restarted.sender.state.recorded_seq == 3_000

    async def finish() -> None:
        task = asyncio.create_task(restarted.uploader.run())
        restarted.uploader.wake()
        assert await restarted.uploader.wait_until(lambda: restarted.sender.waiting == 0, 30)
        task.cancel()

    asyncio.run(finish())
    assert_chain_delivered(restarted, relay_fixes(race.relay, acct.certificate.device_id), 3_000)
    restarted.store.close()


def test_switching_relays_mid_race_loses_and_repeats_nothing(race: Race, tmp_path: Path) -> None:
    relay_a = launch_relay(
        race.cloud, tmp_path / "relay-a", enrol_relay(race.admin, race.race_id, "switch-a")
    )
    relay_b = launch_relay(
        race.cloud, tmp_path / "relay-b", enrol_relay(race.admin, race.race_id, "switch-b")
    )
    try:
        acct = login(race, tmp_path)
        tracker = make_tracker(acct, tmp_path, relay_hop(relay_a, "a"), relay_hop(relay_b, "b"))
        up = tracker.uploader
        start = wall_ms()
        device = acct.certificate.device_id

        async def ride() -> None:
            task = asyncio.create_task(up.run())
            for reading in readings(40, start):  # live, one fix at a time, on relay A
                tracker.recorder.record(reading)
                await up.wait_until(lambda: up.link is Link.RELAY, 10)
            assert await up.wait_until(lambda: tracker.sender.state.acked_seq == 40, 10)
            assert up.hop is not None
            assert up.hop.name == "a"
            relay_a.stop(signal.SIGKILL)  # relay A dies mid-race
            for reading in readings(40, start, first=40):
                tracker.recorder.record(reading)
            assert await up.wait_until(lambda: tracker.sender.waiting == 0, 20)
            assert up.hop is not None
            assert up.hop.name == "b"
            task.cancel()

        asyncio.run(ride())
        held_a = relay_fixes(relay_a, device)
        held_b = relay_fixes(relay_b, device)
        assert set(range(1, 41)) <= {s for s, (_, v) in held_a.items() if v}
        assert set(range(41, 81)) <= {s for s, (_, v) in held_b.items() if v}
        assert min(held_b) >= 41  # B was never sent what A had acked
        merged = {**held_b, **{s: v for s, v in held_a.items() if v[1]}}
        assert_chain_delivered(tracker, merged, 80)

        relay_a = relay_a.restart()  # A comes back and forwards what it holds
        assert cloud_fixes(race, acct, 80) == 80
        tracker.store.close()
    finally:
        relay_a.stop()
        relay_b.stop()


def test_a_hop_answering_junk_or_5xx_is_left_for_the_next(race: Race, tmp_path: Path) -> None:
    acct = login(race, tmp_path)

    async def ride() -> tuple[Tracker, list[str], list[str]]:
        async with junk_hop(tmp_path, 200) as junk, junk_hop(tmp_path, 503) as failing:
            hops = (junk.hop, failing.hop, relay_hop(race.relay))
            tracker = make_tracker(acct, tmp_path, *hops)
            start = wall_ms()
            await tracker.run(source(readings(30, start)), drain_s=20)
            return tracker, junk.requests, failing.requests

    tracker, junk_asked, failing_asked = asyncio.run(ride())
    assert junk_asked[:1] == failing_asked[:1] == ["/v1/hello"]  # tried, then left
    assert tracker.sender.waiting == 0
    assert tracker.uploader.failures >= 2
    held = relay_fixes(race.relay, acct.certificate.device_id)
    assert_chain_delivered(tracker, held, 30)
    tracker.store.close()


def test_a_relay_that_takes_the_hello_then_answers_garbage_is_left_for_the_next(
    race: Race, tmp_path: Path
) -> None:
    acct = login(race, tmp_path)
    device = acct.certificate.device_id

    async def ride() -> tuple[Tracker, list[str]]:
        async with junk_hop(tmp_path, 200, hello_device=device) as garbling:
            tracker = make_tracker(acct, tmp_path, garbling.hop, relay_hop(race.relay))
            await tracker.run(source(readings(30, wall_ms())), drain_s=20)
            return tracker, garbling.requests

    tracker, asked = asyncio.run(ride())
    assert asked[:2] == ["/v1/hello", "/v1/batches"]  # a session, then garbage for the upload
    assert tracker.uploader.failures >= 1
    assert tracker.uploader.refusals == 0
    assert tracker.sender.waiting == 0  # nothing counted acked from the garbage ...
    # ... and the real relay holds every fix once, chain intact.
    assert_chain_delivered(tracker, relay_fixes(race.relay, device), 30)
    tracker.store.close()


def test_fixes_are_pruned_only_once_the_relay_says_the_cloud_holds_them(
    race: Race, tmp_path: Path
) -> None:
    acct = login(race, tmp_path)
    device = acct.certificate.device_id
    budget = Budget(max_bytes=None, max_fixes=1_000, warn_at=0.8, prune_at=0.02)  # from 20
    store = FixStore(tmp_path / "fixes.db", device, budget)
    tracker = Tracker(
        acct,
        store,
        HopList(relays=[relay_hop(race.relay)]),
        backoff=Backoff(base_s=0.05, max_s=0.5),
        request_timeout_s=5.0,
    )
    up, start = tracker.uploader, wall_ms()
    recorded = [0]

    def ride_on(count: int) -> None:
        for reading in readings(count, start, first=recorded[0]):
            assert tracker.recorder.record(reading) is not None
        recorded[0] += count

    async def ride() -> None:
        task = asyncio.create_task(up.run())
        ride_on(30)  # past the pruning threshold, before any hop was heard from
        up.flush()
        assert await up.wait_until(lambda: tracker.sender.waiting == 0, 10)
        assert tracker.sender.state.acked_seq == 30  # the relay holds them all ...
        assert store.pruned_seq == 0  # ... but the cloud may not: nothing pruned
        assert store.usage().fixes == 30
        assert await asyncio.to_thread(cloud_fixes, race, acct, 30) == 30  # forwarded
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while tracker.sender.state.cloud_acked_seq < 30:  # the relay says so with an ack
            assert loop.time() < deadline, "the relay never told the tracker"
            ride_on(1)
            up.flush()
            assert await up.wait_until(lambda: tracker.sender.waiting == 0, 10)
        ride_on(1)  # recording makes room: what the cloud holds goes
        assert await up.wait_until(lambda: tracker.sender.waiting == 0, 10)
        task.cancel()

    asyncio.run(ride())
    pruned = store.pruned_seq
    assert 30 <= pruned <= tracker.sender.state.cloud_acked_seq
    assert cloud_fixes(race, acct, pruned) >= pruned  # everything pruned is in the cloud
    assert list(store.held_seqs()) == list(range(pruned + 1, recorded[0] + 1))
    held = relay_fixes(race.relay, device)
    assert sorted(held) == list(range(1, recorded[0] + 1))
    kept = store.fixes(pruned + 1, recorded[0])
    assert [held[f.seq][0] for f in kept] == kept
    assert extend_all(store.hash_before(pruned + 1), kept)[-1] == store.state.head_hash
    store.close()


def test_a_certificate_that_expired_mid_race_keeps_every_fix_for_later(
    race: Race, tmp_path: Path
) -> None:
    saved = login(race, tmp_path)
    cloud_key = load_pem_private_key(
        (race.cloud.data_dir / "keys" / "cloud-ed25519.pem").read_bytes(), password=None
    )
    assert isinstance(cloud_key, Ed25519PrivateKey)
    now = wall_ms()
    cert = saved.certificate
    expired = DeviceCertificate.issue(
        cloud_key, cert.device_public_key, cert.racer_id, cert.race_ids, now - 7_200_000, now - 1
    )
    acct = replace(saved, certificate=expired)  # valid when `run` started, not any more
    tracker = make_tracker(acct, tmp_path, relay_hop(race.relay))

    async def ride() -> None:
        up = tracker.uploader
        task = asyncio.create_task(up.run())
        for reading in readings(10, now):
            assert tracker.recorder.record(reading) is not None  # recording goes on
        assert await up.wait_until(lambda: "expired" in up.last_error, 10), up.last_error
        task.cancel()

    asyncio.run(ride())
    assert "log in again" in tracker.uploader.last_error  # says what to do
    assert tracker.sender.state.acked_seq == 0
    assert tracker.sender.waiting == 10  # kept for a run after logging in again
    assert relay_fixes(race.relay, acct.certificate.device_id) == {}
    tracker.store.close()


def test_a_certificate_other_than_the_pinned_one_gets_nothing(race: Race, tmp_path: Path) -> None:
    acct = login(race, tmp_path)

    async def ride() -> tuple[Tracker, list[str]]:
        async with junk_hop(tmp_path, 200) as impostor:
            real_pin = relay_hop(race.relay).endpoint.pin_sha256
            endpoint = replace(impostor.hop.endpoint, pin_sha256=real_pin)
            fake = replace(impostor.hop, endpoint=endpoint)  # advertised with the relay's hash
            tracker = make_tracker(acct, tmp_path, fake, relay_hop(race.relay))
            await tracker.run(source(readings(12, wall_ms())), drain_s=20)
            return tracker, impostor.requests

    tracker, asked = asyncio.run(ride())
    assert asked == []  # no hello (certificate, session key) ever went to it
    assert tracker.uploader.failures >= 1
    assert tracker.sender.waiting == 0  # the real relay took everything
    assert_chain_delivered(tracker, relay_fixes(race.relay, acct.certificate.device_id), 12)
    tracker.store.close()


def test_coverage_dropout_pauses_the_link_and_reconnects_with_resumption(
    race: Race, tmp_path: Path
) -> None:
    acct = login(race, tmp_path)
    tracker = make_tracker(acct, tmp_path, relay_hop(race.relay))
    up = tracker.uploader
    links: list[Link] = []
    start = wall_ms()

    async def ride() -> None:
        task = asyncio.create_task(up.run())
        for reading in readings(10, start):
            up.set_coverage(reading.coverage)
            tracker.recorder.record(reading)
        assert await up.wait_until(lambda: tracker.sender.waiting == 0, 10)
        links.append(up.link)
        for reading in readings(20, start, first=10, covered=False):
            up.set_coverage(reading.coverage)
            tracker.recorder.record(reading)
        assert await up.wait_until(lambda: up.link is Link.OFFLINE, 10)
        links.append(up.link)
        assert tracker.sender.waiting == 20
        for reading in readings(5, start, first=30):
            up.set_coverage(reading.coverage)
            tracker.recorder.record(reading)
        assert await up.wait_until(lambda: tracker.sender.waiting == 0, 10)
        task.cancel()

    asyncio.run(ride())
    assert links == [Link.RELAY, Link.OFFLINE]
    assert up.connections == 2
    assert up.resumed >= 1  # the second connection resumed the TLS session ...
    assert up.early_data >= 1  # ... and its hello went as 0-RTT data
    assert_chain_delivered(tracker, relay_fixes(race.relay, acct.certificate.device_id), 35)
    tracker.store.close()


def test_relay_down_falls_back_to_the_cloud_then_returns_to_the_relay(
    race: Race, tmp_path: Path
) -> None:
    relay = launch_relay(
        race.cloud, tmp_path / "relay", enrol_relay(race.admin, race.race_id, "fallback")
    )
    started = [relay]  # every process this test starts, stopped at the end
    try:
        acct = login(race, tmp_path)
        tracker = make_tracker(acct, tmp_path, relay_hop(relay), cloud=cloud_hop(acct))
        up = tracker.uploader
        up.rediscover_s = 0.2  # look back at the relay soon once on the cloud
        used: list[str] = []
        up.on_sends = lambda hop, sends: used.append(str(hop.kind))
        total: list[int] = []
        start = wall_ms()

        async def ride() -> None:
            task = asyncio.create_task(up.run())
            for reading in readings(10, start):
                tracker.recorder.record(reading)
            assert await up.wait_until(lambda: tracker.sender.waiting == 0, 10)
            relay.stop(signal.SIGKILL)
            for reading in readings(20, start, first=10):
                tracker.recorder.record(reading)
            up.flush()
            assert await up.wait_until(lambda: tracker.sender.waiting == 0, 20)
            started.append(await asyncio.to_thread(relay.restart))  # same address, no tickets
            seq = 30
            while used[-1] != "relay" and seq < 1_000:  # riding on, a fix a second
                for reading in readings(1, start, first=seq):
                    tracker.recorder.record(reading)
                seq += 1
                arrived = await up.wait_until(
                    lambda n=seq: tracker.sender.state.acked_seq >= n or used[-1] == "relay", 10
                )
                assert arrived, up.last_error
            up.flush()
            assert await up.wait_until(
                lambda: tracker.sender.waiting == 0 and up.link is Link.RELAY, 20
            ), (up.last_error, up.link, tracker.sender.waiting)
            total.append(seq)
            task.cancel()

        asyncio.run(ride())
        assert [k for i, k in enumerate(used) if i == 0 or used[i - 1] != k][:3] == [
            "relay",
            "cloud",
            "relay",
        ]
        assert cloud_fixes(race, acct, total[0]) == total[0]  # direct and forwarded, once
        tracker.store.close()
    finally:
        for process in started:
            process.stop()
