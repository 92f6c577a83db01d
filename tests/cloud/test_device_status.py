"""Trackers' battery statuses on a real cloud: a tracker's own signed ``/v1/status``, and the
newest statuses a relay reports with ``POST /api/relay/status``, onto the live stream."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import httpx

from sync_protocol.device_status import DeviceStatus
from sync_protocol.session import MAX_CLOCK_SKEW_MS
from sync_protocol.upload import CONTENT_TYPE, STATUS_PATH
from tests.cloud.conftest import CloudServer
from tests.cloud.live import follow, next_of
from tests.cloud.riders import Rider, setup_race

HEADERS = {"content-type": CONTENT_TYPE}


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


def signed(rider: Rider, pct: int, charging: bool = False, at_ms: int | None = None) -> bytes:
    t = wall_ms() if at_ms is None else at_ms
    return DeviceStatus.create(rider.device, t, pct, charging, key=rider.key).encode()


def metric(server: CloudServer, name: str) -> float:
    text = server.client().get("/metrics").text
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))


def test_a_trackers_own_signed_status_goes_on_the_live_stream(
    cloud_server: CloudServer, tmp_path: Path
) -> None:
    admin, race_id, credential = setup_race(cloud_server, tmp_path)
    rider, other = Rider(cloud_server, admin, race_id), Rider(cloud_server, admin, race_id)
    tracker = cloud_server.client()
    with follow(cloud_server, credential, race_id) as lines:
        assert next_of(lines, "snapshot")["batteries"] == []
        response = tracker.post(STATUS_PATH, content=signed(rider, 41), headers=HEADERS)
        assert response.status_code == 204, response.text
        battery = next_of(lines, "battery")
    assert battery["rider_id"] == rider.id
    assert (battery["battery_pct"], battery["charging"], battery["via"]) == (41, False, 0)
    assert battery["device_id"] == rider.device.hex()
    assert battery["race_id"] == race_id
    # a later subscriber (the console joining, a relay reconnecting) gets it in the snapshot
    with follow(cloud_server, credential, race_id) as lines:
        (kept,) = next_of(lines, "snapshot")["batteries"]
    assert (kept["rider_id"], kept["battery_pct"]) == (rider.id, 41)

    mac = DeviceStatus.create(rider.device, wall_ms(), 40, False, session_key=os.urandom(32))
    forged = bytearray(signed(rider, 99))
    forged[-1] ^= 1
    stranger = DeviceStatus.create(os.urandom(16), wall_ms(), 50, False, key=rider.key)
    refusals = {
        "no-session": mac.encode(),
        "bad-signature": bytes(forged),
        "no-certificate": stranger.encode(),
        "stale-status": signed(rider, 40, at_ms=wall_ms() - MAX_CLOCK_SKEW_MS - 60_000),
    }
    for reason, body in refusals.items():
        response = tracker.post(STATUS_PATH, content=body, headers=HEADERS)
        assert (response.status_code, response.json()["error"]) == (403, reason), response.text
    spoof = DeviceStatus.create(rider.device, wall_ms(), 3, False, key=other.key)
    response = tracker.post(STATUS_PATH, content=spoof.encode(), headers=HEADERS)
    assert (response.status_code, response.json()["error"]) == (403, "bad-signature")
    response = tracker.post(STATUS_PATH, content=b"\x96junk", headers=HEADERS)
    assert (response.status_code, response.json()["error"]) == (400, "malformed")
    response = tracker.post(STATUS_PATH, content=signed(rider, 5), headers={"content-type": "x/y"})
    assert response.status_code == 415
    response = tracker.post(STATUS_PATH, content=bytes(2_000), headers=HEADERS)
    assert response.status_code == 413
    with follow(cloud_server, credential, race_id) as lines:
        (kept,) = next_of(lines, "snapshot")["batteries"]
    assert kept["battery_pct"] == 41  # nothing refused reached the stream
    assert metric(cloud_server, 'gruppetto_device_statuses_total{outcome="accepted",via="direct"}')
    assert (
        metric(
            cloud_server, 'gruppetto_device_statuses_total{outcome="bad-signature",via="direct"}'
        )
        >= 2
    )


def relay_report(server: CloudServer, credential: str, devices: Any) -> httpx.Response:
    relay = server.client(headers={"Authorization": f"Relay {credential}"})
    return relay.post("/api/relay/status", json={"name": "finish", "devices": devices})


def test_statuses_a_relay_reports_go_on_the_live_stream(
    cloud_server: CloudServer, tmp_path: Path
) -> None:
    admin, race_id, credential = setup_race(cloud_server, tmp_path)
    rider = Rider(cloud_server, admin, race_id)
    _, elsewhere, _ = setup_race(cloud_server, tmp_path)  # a race this relay does not serve
    outsider = Rider(cloud_server, admin, elsewhere)
    now = wall_ms()
    entry = {"device_id": rider.device.hex(), "t_ms": now, "battery_pct": 18, "charging": False}
    with follow(cloud_server, credential, race_id) as lines:
        next_of(lines, "snapshot")
        unknown = {**entry, "device_id": os.urandom(16).hex()}
        foreign = {**entry, "device_id": outsider.device.hex()}
        response = relay_report(cloud_server, credential, [entry, unknown, foreign])
        assert response.status_code == 200, response.text
        assert response.json() == {"ok": True, "devices": 1}
        battery = next_of(lines, "battery")
        assert (battery["rider_id"], battery["battery_pct"], battery["charging"]) == (
            rider.id,
            18,
            False,
        )
        assert battery["via"] >= 1  # the relay's id
        # the same report again, and an older level, are no news; a newer one is
        assert relay_report(cloud_server, credential, [entry]).status_code == 200
        older = {**entry, "t_ms": now - 30_000, "battery_pct": 25}
        assert relay_report(cloud_server, credential, [older]).status_code == 200
        newer = {**entry, "t_ms": now + 1_000, "battery_pct": 17, "charging": True}
        assert relay_report(cloud_server, credential, [newer]).status_code == 200
        battery = next_of(lines, "battery")
        assert (battery["battery_pct"], battery["charging"]) == (17, True)

    bad_reports: list[tuple[Any, str]] = [
        ("nope", "devices must be a list"),
        ([entry] * 1_001, "at most 1,000"),
        ([{**entry, "battery_pct": 101}], "devices[0]: battery level"),
        ([entry, {**entry, "charging": "yes"}], "devices[1]: charging"),
        ([{**entry, "device_id": "zz"}], "devices[0].device_id"),
        ([{"device_id": rider.device.hex()}], "devices[0] has no 't_ms'"),
        ([{**entry, "t_ms": now + 3_600_000}], "in the future"),
        ([7], "devices[0] must be an object"),
    ]
    for devices, message in bad_reports:
        response = relay_report(cloud_server, credential, devices)
        assert response.status_code == 400, (devices, response.text)
        assert message in response.json()["error"]["message"], response.text
    with follow(cloud_server, credential, race_id) as lines:
        (kept,) = next_of(lines, "snapshot")["batteries"]
    assert (kept["battery_pct"], kept["charging"]) == (17, True)  # no bad report changed it
