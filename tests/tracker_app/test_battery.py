"""The tracker's battery: sysfs trees written here, the simulated battery, ``--battery``, and
the level reaching a real relay with the uploads (and the cloud when no relay is in reach)."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from sync_protocol.device_status import StatusReporter
from tests.cloud.conftest import CloudServer
from tests.cloud.live import follow, next_of
from tests.edge_relay.harness import RelayProcess, setup_relay_race
from tests.edge_relay.test_relay_ingest import wait_for
from tests.tracker_app.tracking import (
    launch_relay,
    new_racer,
    readings,
    relay_hop,
    start_h3_cloud,
    tracker_login,
)
from tracker_app.battery import BatteryLevel, SimBattery, SysfsBattery, open_battery
from tracker_app.errors import TrackerError
from tracker_app.hops import Backoff, HopList, Link, wall_ms
from tracker_app.status import render
from tracker_app.store import FixStore
from tracker_app.tracker import Tracker, cloud_hop

# -- sysfs ------------------------------------------------------------------------------


def supply(root: Path, name: str, **files: object) -> Path:
    """A power supply directory as Linux shows it: one small text file per attribute."""
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    for key, value in files.items():
        (folder / key).write_text(f"{value}\n")
    return folder


def test_sysfs_battery_level_and_charging(tmp_path: Path) -> None:
    supply(tmp_path, "AC", type="Mains", online=0)
    bat = supply(tmp_path, "BAT0", type="Battery", capacity=74, status="Discharging", present=1)
    battery = SysfsBattery.find(tmp_path)
    assert battery is not None
    assert battery.name == "sysfs BAT0"
    assert battery.read() == BatteryLevel(74, charging=False)
    for status, on_power in (("Charging", True), ("Full", True), ("Not charging", True),
                             ("Unknown", False), ("Discharging", False)):  # fmt: skip
        (bat / "status").write_text(f"{status}\n")
        assert battery.read() == BatteryLevel(74, charging=on_power), status
    (bat / "capacity").write_text("12\n")
    assert battery.read() == BatteryLevel(12, charging=False)


def test_sysfs_one_supply_directory_and_energy_counters(tmp_path: Path) -> None:
    bat = supply(tmp_path, "battery", type="Battery", energy_now=30_000_000, energy_full=40_000_000)
    battery = SysfsBattery.find(bat)  # a supply's own directory
    assert battery is not None
    assert battery.read() == BatteryLevel(75, charging=False)  # no status file: not charging


def test_sysfs_two_batteries_read_as_one_weighted_by_energy(tmp_path: Path) -> None:
    supply(tmp_path, "BAT0", type="Battery", capacity=100, energy_full=60_000_000, status="Full")
    supply(tmp_path, "BAT1", type="Battery", capacity=40, energy_full=20_000_000,
           status="Discharging")  # fmt: skip
    supply(tmp_path, "BAT2", type="Battery", capacity=0, present=0)  # an empty bay
    battery = SysfsBattery.find(tmp_path)
    assert battery is not None
    assert battery.name == "sysfs BAT0+BAT1"
    assert battery.read() == BatteryLevel(85, charging=True)  # (100*60 + 40*20) / 80


def test_sysfs_junk_is_skipped_and_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bat = supply(tmp_path, "BAT0", type="Battery", capacity="n/a", status="Discharging")
    battery = SysfsBattery.find(tmp_path)
    assert battery is not None
    assert battery.read() is None
    assert battery.read() is None
    assert [r.message for r in caplog.records].count(
        f"battery not readable: {bat / 'capacity'} holds 'n/a', not a number"
    ) == 1
    (bat / "capacity").write_text("250\n")  # firmware past 100 %: the most there is
    assert battery.read() == BatteryLevel(100, charging=False)
    (bat / "capacity").unlink()  # the battery went away
    assert battery.read() is None


def test_no_battery_in_a_directory(tmp_path: Path) -> None:
    supply(tmp_path, "AC", type="Mains", online=1)
    supply(tmp_path, "hidpp_battery_0", type="Battery", scope="Device", capacity=50)
    assert SysfsBattery.find(tmp_path / "nowhere") is None
    assert SysfsBattery.find(tmp_path / "AC") is None
    assert SysfsBattery.find(tmp_path) is not None  # a device battery still reads


# -- the simulated battery ------------------------------------------------------------


def test_the_simulated_battery_drains_over_the_ride() -> None:
    now = [1_782_900_000_000]
    battery = SimBattery(seed=3, now_ms=lambda: now[0])
    assert 75 <= battery.start_pct <= 100
    assert 6 <= battery.drain_pct_per_h <= 10
    first = battery.read()
    assert first.percent == int(battery.start_pct)
    assert not first.charging
    levels = []
    for _ in range(12):  # six hours, every half hour
        now[0] += 1_800_000
        levels.append(battery.read().percent)
    assert levels == sorted(levels, reverse=True)
    assert levels[1] == int(battery.start_pct - battery.drain_pct_per_h)  # one hour on
    assert levels[-1] < first.percent - 30  # a mountain stage costs a third of it
    assert battery.level_after(100 * 3_600_000) == 0.0  # and never goes below empty
    # below 20 % the cell sags: the last fifth goes half as fast again
    low = SimBattery(start_pct=30.0, drain_pct_per_h=10.0, now_ms=lambda: now[0])
    assert low.level_after(3_600_000) == pytest.approx(20.0)
    assert low.level_after(4_600_000) == pytest.approx(15.833, abs=0.01)


def test_the_simulated_battery_follows_the_replay_speed_and_the_seed() -> None:
    now = [0]
    slow = SimBattery(seed=5, now_ms=lambda: now[0])
    fast = SimBattery(seed=5, speed=10.0, now_ms=lambda: now[0])
    assert (slow.start_pct, slow.drain_pct_per_h) == (fast.start_pct, fast.drain_pct_per_h)
    assert SimBattery(seed=6, now_ms=lambda: 0).start_pct != slow.start_pct
    slow.read()
    fast.read()
    now[0] = 360_000  # six minutes: an hour of ride at ten times the speed
    assert fast.read().percent == int(fast.level_after(3_600_000))
    assert slow.read().percent == int(slow.level_after(360_000))


# -- --battery ---------------------------------------------------------------------------


def test_battery_option(tmp_path: Path) -> None:
    power = tmp_path / "power"
    supply(power, "BAT0", type="Battery", capacity=60, status="Discharging")
    empty = tmp_path / "empty"
    supply(empty, "AC", type="Mains")

    def now() -> int:
        return 0

    auto = open_battery("auto", source="gpsd", now_ms=now, root=power)
    assert isinstance(auto, SysfsBattery)  # the device's battery first, whatever the source
    assert isinstance(open_battery("auto", source="sim", now_ms=now, root=empty), SimBattery)
    assert open_battery("auto", source="gpx:ride.gpx", now_ms=now, root=empty) is None
    given = open_battery(f"sysfs:{power}", source="gpsd", now_ms=now, root=empty)
    assert isinstance(given, SysfsBattery)
    assert isinstance(open_battery("sysfs", source="gpsd", now_ms=now, root=power), SysfsBattery)
    assert isinstance(open_battery("sim", source="gpsd", now_ms=now), SimBattery)
    assert open_battery("none", source="sim", now_ms=now, root=power) is None
    for spec, message in [
        (f"sysfs:{empty}", "no power supply of type Battery"),
        (f"sysfs:{tmp_path / 'nope'}", "no such directory"),
        ("sysfs:", "needs a directory"),
        ("solar", "unknown --battery 'solar'"),
        ("sim:fast", "unknown --battery"),
    ]:
        with pytest.raises(TrackerError, match=message):
            open_battery(spec, source="gpsd", now_ms=now, root=empty)


def test_the_status_line_shows_the_battery() -> None:
    from tests.tracker_app.test_status import NOW, status

    assert render(status(battery="74%"), NOW).endswith("| radio 3 wake-ups | battery 74%")
    assert render(status(battery="9% charging", warning="x"), NOW).endswith(
        "| battery 9% charging | x"
    )
    assert "battery" not in render(status(), NOW)


# -- to a real relay and a real cloud ----------------------------------------------------


@dataclass
class Event:
    cloud: CloudServer
    admin: httpx.Client
    race_id: int
    credential: str
    tmp: Path


@pytest.fixture(scope="module")
def event(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Event]:
    tmp = tmp_path_factory.mktemp("battery")
    cloud = start_h3_cloud(tmp / "cloud")
    try:
        admin, race_id, credential = setup_relay_race(cloud, tmp)
        yield Event(cloud, admin, race_id, credential, tmp)
    finally:
        cloud.stop(signal.SIGKILL)  # its graceful HTTP/3 shutdown takes 5 s; nothing to keep


def make_tracker(acct: Any, data: Path, hops: HopList, battery: Any) -> Tracker:
    store = FixStore(data / "fixes.db", acct.certificate.device_id)
    return Tracker(
        acct,
        store,
        hops,
        backoff=Backoff(base_s=0.05, max_s=0.5),
        request_timeout_s=5.0,
        battery=battery,
    )


def relay_rider(relay: RelayProcess, race_id: int, rider_id: int) -> dict[str, Any] | None:
    with relay.client() as client:
        riders = client.get(f"/api/races/{race_id}/standings").json().get("riders", [])
    return next((r for r in riders if r["rider_id"] == rider_id), None)


def relay_metric(relay: RelayProcess, line: str) -> float:
    with relay.client() as client:
        text = client.get("/metrics").text
    return sum(float(row.split()[-1]) for row in text.splitlines() if row.startswith(line))


def test_the_uploader_sends_the_battery_to_a_real_relay_with_its_uploads(
    event: Event, tmp_path: Path
) -> None:
    racer = new_racer(event.cloud, event.race_id)
    acct = tracker_login(event.cloud, racer, tmp_path / "tracker")
    relay = launch_relay(event.cloud, tmp_path / "relay", event.credential)  # knows the rider
    try:
        wait_for(lambda: relay_rider(relay, event.race_id, racer.id) is not None, what="config")
        power = tmp_path / "power"
        bat = supply(power, "BAT0", type="Battery", capacity=74, status="Discharging")
        battery = SysfsBattery.find(power)
        tracker = make_tracker(acct, tmp_path / "tracker", HopList(relays=[relay_hop(relay)]),
                               battery)  # fmt: skip
        up = tracker.uploader
        rounds: list[int] = []
        up.on_sends = lambda hop, sends: rounds.append(len(sends))
        shown: list[tuple[object, object]] = []

        def on_relay(pct: int, charging: bool) -> bool:
            rider = relay_rider(relay, event.race_id, racer.id) or {}
            shown.append((rider.get("battery_pct"), rider.get("charging")))
            return shown[-1] == (pct, charging)

        async def ride() -> None:
            task = asyncio.create_task(up.run())
            fixes = iter(readings(150, wall_ms() - 150_000))
            steps = [(74, False, None), (73, False, "73"), (73, True, "Charging")]
            for pct, charging, change in steps:
                if change is not None:  # the phone drains one percent, then is plugged in
                    name = "capacity" if change.isdigit() else "status"
                    (bat / name).write_text(change + "\n")
                for _ in range(50):  # one fix a ~second until the relay shows the level
                    tracker.recorder.record(next(fixes))
                    await up.wait_until(lambda: tracker.sender.waiting == 0, 5)
                    if await asyncio.to_thread(on_relay, pct, charging):
                        break
                    await asyncio.sleep(0.05)
                else:
                    raise AssertionError(f"the relay never showed {pct}% {charging}: {shown}")
            task.cancel()

        asyncio.run(ride())
        assert up.link is Link.OFFLINE
        assert up.statuses_sent == 3  # 74 %, 73 %, then charging: nothing more was due
        assert up.status_refusals == 0
        assert len(rounds) >= up.statuses_sent  # each went with an upload, none alone
        assert relay_metric(relay, 'gruppetto_relay_device_statuses_total{outcome="accepted"}')
        assert tracker.status().battery == "73% charging"
        tracker.store.close()
    finally:
        relay.stop()


def test_straight_to_the_cloud_the_status_is_signed_and_on_the_live_stream(
    event: Event, tmp_path: Path
) -> None:
    racer = new_racer(event.cloud, event.race_id)
    acct = tracker_login(event.cloud, racer, tmp_path / "tracker")
    cloud = cloud_hop(acct)
    assert cloud is not None
    power = tmp_path / "power"
    supply(power, "BAT0", type="Battery", capacity=41, status="Discharging")
    tracker = make_tracker(acct, tmp_path / "tracker", HopList(cloud=cloud),
                           SysfsBattery.find(power))  # fmt: skip
    up = tracker.uploader
    up.reporter = StatusReporter(every_ms=60_000)
    with follow(event.cloud, event.credential, event.race_id) as lines:
        next_of(lines, "snapshot")

        async def ride() -> None:
            task = asyncio.create_task(up.run())
            for reading in readings(5, wall_ms() - 30_000):
                tracker.recorder.record(reading)
            assert await up.wait_until(lambda: up.statuses_sent == 1, 20)
            assert up.hop is not None
            assert up.hop.kind is Link.CLOUD
            task.cancel()

        asyncio.run(ride())
        deadline = time.monotonic() + 10
        battery = next_of(lines, "battery")
        while battery["rider_id"] != racer.id and time.monotonic() < deadline:
            battery = next_of(lines, "battery")
    assert (battery["battery_pct"], battery["charging"], battery["via"]) == (41, False, 0)
    assert battery["device_id"] == acct.certificate.device_id.hex()
    assert up.status_refusals == 0
    tracker.store.close()
