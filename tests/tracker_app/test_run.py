"""``gruppetto tracker run`` end to end: a simulated ride through a real relay."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from deploy.cli import main
from sync_protocol.chain import extend_all, genesis
from tests.cloud.conftest import CloudServer
from tests.edge_relay.harness import RelayProcess, setup_relay_race, start_relay
from tests.tracker_app.tracking import (
    cafile,
    launch_relay,
    new_racer,
    relay_fixes,
    start_h3_cloud,
    tracker_login,
)
from tracker_app import account
from tracker_app.discovery import find_relays
from tracker_app.store import FixStore

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Event:
    cloud: CloudServer
    admin: httpx.Client
    race_id: int
    credential: str
    tmp: Path


@pytest.fixture(scope="module")
def event(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Event]:
    tmp = tmp_path_factory.mktemp("event")
    cloud = start_h3_cloud(tmp / "cloud")
    try:
        admin, race_id, credential = setup_relay_race(cloud, tmp)
        yield Event(cloud, admin, race_id, credential, tmp)
    finally:
        cloud.stop(signal.SIGKILL)  # its graceful HTTP/3 shutdown takes 5 s; nothing to keep


def delivered(relay: RelayProcess, data: Path) -> int:
    """Everything the tracker recorded is on the relay, verified, chain intact."""
    acct = account.load(data)
    store = FixStore(data / "fixes.db", acct.certificate.device_id)
    try:
        recorded = store.state.recorded_seq
        held = relay_fixes(relay, acct.certificate.device_id)
        assert sorted(held) == list(range(1, recorded + 1))
        assert all(verified for _, verified in held.values())
        fixes = [held[s][0] for s in range(1, recorded + 1)]
        assert fixes == store.fixes(1, recorded)
        head = extend_all(genesis(acct.certificate.device_id), fixes)[-1]
        assert head == store.state.head_hash
        return recorded
    finally:
        store.close()


def test_run_rides_the_course_through_a_discovered_relay(event: Event, tmp_path: Path) -> None:
    relay = start_relay(
        tmp_path / "relay",
        event.cloud,
        event.credential,
        "--cloud-ca",
        str(cafile(event.cloud)),
        "--advertise",
        "--name",
        "finish line",
    )
    # Started again on its saved configuration, its advert lists its races at once (on a
    # first start the advert goes out before the configuration arrives from the cloud).
    relay = relay.restart()
    try:
        found = asyncio.run(
            find_relays(race_id=event.race_id, timeout_s=10, interfaces=["127.0.0.1"])
        )
        # Announced before we ride. Other relays on this machine (another cloud's, serving
        # a race with the same id) may advertise on loopback too: the tracker tries them,
        # is refused (a certificate from another cloud) and leaves them for this one.
        assert relay.quic_port in [a.quic_port for a in found]
        data = tmp_path / "tracker"
        tracker_login(event.cloud, new_racer(event.cloud, event.race_id), data)
        args = ["tracker", "run", "--race", str(event.race_id), "--source", "sim"]
        args += ["--speed", "150", "--interface", "127.0.0.1", "--data", str(data)]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
        last = result.output.strip().splitlines()[-1]
        assert "link relay finish line" in result.output, result.output  # found by zeroconf
        assert "| waiting 0 |" in last
        assert "GPS sim 9 sats" in last or "GPS sim" in last
        recorded = delivered(relay, data)
        assert recorded > 300  # a 5 km lap at racing speed, one fix a second
        assert f"recorded {recorded:,}" in last

        status = CliRunner().invoke(main, ["tracker", "status", "--data", str(data)])
        assert status.exit_code == 0, status.output
        assert f"{recorded:,} fixes recorded, 0 waiting" in status.output
    finally:
        relay.stop()


def test_run_killed_mid_ride_resumes_the_sequence(event: Event, tmp_path: Path) -> None:
    relay = launch_relay(event.cloud, tmp_path / "relay", event.credential)
    try:
        data = tmp_path / "tracker"
        tracker_login(event.cloud, new_racer(event.cloud, event.race_id), data)
        args = ["tracker", "run", "--race", str(event.race_id), "--source", "sim"]
        args += ["--relay", f"https://127.0.0.1:{relay.quic_port}"]
        args += ["--relay-pin", relay.cert_sha256, "--no-discover", "--data", str(data)]
        child = subprocess.Popen(
            [sys.executable, "-m", "deploy.cli", *args, "--speed", "100"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        for line in child.stdout:  # one status line a second
            match = re.search(r"recorded ([\d,]+)", line)
            if match and int(match.group(1).replace(",", "")) > 0:
                break
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        child.stdout.close()
        acct = account.load(data)
        store = FixStore(data / "fixes.db", acct.certificate.device_id)
        before = store.state.recorded_seq
        store.close()
        assert before > 0

        result = CliRunner().invoke(main, [*args, "--speed", "500"])
        assert result.exit_code == 0, result.output
        assert delivered(relay, data) > before  # the same chain, continued
    finally:
        relay.stop()
