"""Trackers' battery statuses on a real relay: ``/v1/status`` verified with the session key,
shown in standings, alerts and live frames (WebTransport and WebSocket), refused and
counted when forged, and forwarded to the cloud's live stream with the status report."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from sync_protocol.device_status import DeviceStatus
from sync_protocol.frames import LiveFrame, decode_frame
from sync_protocol.session import MAX_CLOCK_SKEW_MS
from sync_protocol.upload import CONTENT_TYPE, STATUS_PATH
from sync_protocol.wire import pack
from tests.cloud.conftest import CloudServer, start_cloud
from tests.cloud.h3 import h3_client
from tests.cloud.live import follow, next_of
from tests.edge_relay.harness import (
    RelayProcess,
    RelayRider,
    now_ms,
    setup_relay_race,
    start_race,
    start_relay,
)
from tests.edge_relay.test_relay_ingest import configured, upload, wait_for
from tests.edge_relay.test_relay_live import ws_frames
from tests.edge_relay.wt import spectator

Reply = tuple[int, bytes]


@dataclass
class Race:
    cloud: CloudServer
    admin: httpx.Client
    race_id: int
    credential: str
    riders: list[RelayRider]
    relay: RelayProcess


@pytest.fixture(scope="module")
def race(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Race]:
    tmp = tmp_path_factory.mktemp("battery")
    cloud = start_cloud(tmp / "cloud")
    relay = None
    try:
        admin, race_id, credential = setup_relay_race(cloud, tmp)
        start = now_ms() - 61_000  # the last fixes are fresh: riders show as racing
        riders = [
            RelayRider(cloud, admin, race_id, count=60, offset_m=300.0 * i, start_ms=start)
            for i in range(4)
        ]
        start_race(admin, race_id)
        relay = start_relay(tmp / "relay", cloud, credential, "--tick-ms", "200")
        wait_for(lambda: configured(relay, race_id), what="relay configuration")
        for rider in riders:  # each says hello (arming its session key) and uploads
            asyncio.run(upload(relay.quic_port, rider, rider.batch(1, 60)))
        yield Race(cloud, admin, race_id, credential, riders, relay)
    finally:
        if relay is not None:
            relay.stop()
        cloud.stop()


async def post_statuses(port: int, rider: RelayRider | None, *bodies: bytes) -> list[Reply]:
    """``POST /v1/status`` with each body on one connection to a relay, after the rider's
    hello (which arms its session key) when a rider is given."""
    async with h3_client("127.0.0.1", port) as client:
        if rider is not None:
            status, _, body = await client.request("POST", "/v1/hello", body=rider.hello())
            assert status == 200, body
        out = []
        for data in bodies:
            status, _, body = await client.request(
                "POST", STATUS_PATH, body=data, headers={"content-type": CONTENT_TYPE}
            )
            out.append((status, body))
        return out


def send(race: Race, rider: RelayRider | None, *bodies: bytes) -> list[Reply]:
    """Status bodies on one connection (after the rider's hello, when one is given)."""
    return asyncio.run(post_statuses(race.relay.quic_port, rider, *bodies))


def standings(race: Race) -> dict[int, dict[str, object]]:
    with race.relay.client() as c:
        riders = c.get(f"/api/races/{race.race_id}/standings").json()["riders"]
    return {int(r["rider_id"]): r for r in riders}


def metrics(race: Race) -> dict[str, float]:
    with race.relay.client() as c:
        text = c.get("/metrics").text
    out = {}
    for line in text.splitlines():
        if line.startswith(("gruppetto_relay_device_statuses", "gruppetto_relay_refused")):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def battery_of(frame: LiveFrame, bib: int) -> tuple[int | None, bool]:
    rider = next(r for r in frame.riders if r.bib == bib)
    return rider.battery_pct, rider.charging


def test_a_good_status_shows_in_standings_alerts_and_frames(race: Race) -> None:
    full, low, _, silent = race.riders
    assert send(race, full, full.status(74)) == [(204, b"")]
    assert send(race, low, low.status(12)) == [(204, b"")]
    board = standings(race)
    assert (board[full.id]["battery_pct"], board[full.id]["charging"]) == (74, False)
    assert (board[low.id]["battery_pct"], board[low.id]["charging"]) == (12, False)
    assert board[silent.id]["battery_pct"] is None  # no status: unknown, not empty
    with race.relay.client() as c:
        alerts = c.get(f"/api/races/{race.race_id}/alerts").json()
    low_alerts = [a for a in alerts if a["kind"] == "low-battery"]
    assert [(a["rider_id"], a["detail"]) for a in low_alerts] == [
        (low.id, "tracker battery at 12%")
    ]

    async def watch() -> LiveFrame:
        async with spectator(race.relay.quic_port, f"/live/{race.race_id}") as client:
            assert client.status.result() == 200
            await client.next_frame()
            return await client.next_frame()  # a datagram after the snapshot

    frame = asyncio.run(watch())
    assert battery_of(frame, full.bib) == (74, False)
    assert battery_of(frame, low.bib) == (12, False)
    assert battery_of(frame, silent.bib) == (None, False)
    (data,) = ws_frames(race.relay.http_port, f"/live/{race.race_id}", 1)
    assert battery_of(decode_frame(data), low.bib) == (12, False)

    # plugged in: the frames say so, the alert clears
    assert send(race, low, low.status(12, charging=True)) == [(204, b"")]
    wait_for(lambda: standings(race)[low.id]["charging"] is True, what="charging")
    (data,) = ws_frames(race.relay.http_port, f"/live/{race.race_id}", 1)
    assert battery_of(decode_frame(data), low.bib) == (12, True)
    with race.relay.client() as c:
        kinds = {a["kind"] for a in c.get(f"/api/races/{race.race_id}/alerts").json()}
    assert "low-battery" not in kinds
    assert metrics(race)['gruppetto_relay_device_statuses_total{outcome="accepted"}'] >= 3


def test_forged_stale_unknown_and_malformed_statuses_are_refused_and_counted(
    race: Race,
) -> None:
    rider, other = race.riders[0], race.riders[1]
    before = metrics(race)
    assert send(race, rider, rider.status(60)) == [(204, b"")]
    forged = bytearray(rider.status(99))
    forged[-1] ^= 0x01  # the last byte of the MAC
    another_session = DeviceStatus.create(
        rider.device, now_ms(), 5, False, session_key=other.session_key
    ).encode()
    signed_by_another = DeviceStatus.create(rider.device, now_ms(), 5, False, key=other.key)
    stranger = DeviceStatus.create(os.urandom(16), now_ms(), 50, False, session_key=os.urandom(32))
    stale = rider.status(40, at_ms=now_ms() - MAX_CLOCK_SKEW_MS - 60_000)
    out_of_range = pack([1, rider.device, now_ms(), 101, False, b"m" * 16])
    replies = send(
        race,
        rider,
        bytes(forged),
        another_session,
        signed_by_another.encode(),
        stranger.encode(),
        stale,
        b"\x00 not a status",
        out_of_range,
    )
    refused = [(status, json.loads(body)["error"]) for status, body in replies]
    assert refused == [
        (403, "bad-signature"),
        (403, "bad-signature"),
        (403, "bad-signature"),
        (403, "no-certificate"),
        (403, "stale-status"),
        (400, "malformed"),
        (400, "out-of-range"),
    ]
    assert standings(race)[rider.id]["battery_pct"] == 60  # nothing changed
    # an older status than the newest is taken, and ignored; a signed one is fine too
    assert send(race, rider, rider.status(90, at_ms=now_ms() - 5_000)) == [(204, b"")]
    assert standings(race)[rider.id]["battery_pct"] == 60
    assert send(race, rider, rider.status(59, mac=False)) == [(204, b"")]
    assert standings(race)[rider.id]["battery_pct"] == 59
    after = metrics(race)

    def grew(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    assert grew('gruppetto_relay_device_statuses_total{outcome="refused"}') == 7
    assert grew('gruppetto_relay_device_statuses_total{outcome="old"}') == 1
    assert grew('gruppetto_relay_device_statuses_total{outcome="accepted"}') == 2
    assert grew('gruppetto_relay_refused_total{reason="status:bad-signature"}') == 3
    assert grew('gruppetto_relay_refused_total{reason="status:stale-status"}') == 1
    assert grew('gruppetto_relay_refused_total{reason="status:no-certificate"}') == 1
    # the relay keeps serving: uploads go on
    results = asyncio.run(upload(race.relay.quic_port, rider, rider.batch(1, 60)))
    assert not results[0].refused


def test_the_relay_forwards_the_newest_status_to_the_clouds_live_stream(race: Race) -> None:
    rider = race.riders[3]
    with follow(race.cloud, race.credential, race.race_id) as lines:
        snapshot = next_of(lines, "snapshot")
        assert "batteries" in snapshot
        assert send(race, rider, rider.status(55, charging=True)) == [(204, b"")]
        # it goes with the relay's next status report (every configuration refresh, 15 s)
        deadline = time.monotonic() + 40
        while True:
            message = next_of_within(lines, "battery", deadline)
            if message["rider_id"] == rider.id:
                break
    assert (message["battery_pct"], message["charging"], message["bib"]) == (55, True, rider.bib)
    assert message["via"] >= 1  # the relay's id: relays skip their own riders' echo
    assert message["device_id"] == rider.device.hex()


def next_of_within(lines: queue.Queue[Any], kind: str, deadline: float) -> dict[str, Any]:
    """The next ``kind`` message before ``deadline`` (the stream may be quiet a while)."""
    while time.monotonic() < deadline:
        try:
            return next_of(lines, kind)
        except queue.Empty:  # ten seconds of nothing: the relay's report is still to come
            continue
    raise AssertionError(f"no {kind} message before the deadline")
