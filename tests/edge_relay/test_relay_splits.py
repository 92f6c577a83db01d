"""Checkpoint splits on a real relay: ``GET /api/races/{id}/splits`` as riders cross lines.

A real cloud and relay on loopback; three riders on a 5 km circuit with a sprint at
600 m and a climb from 900 m to 1,300 m upload their fixes over HTTP/3 a few at a time
(the relay scores each rider's newest fix of an upload), so each line is crossed
between two scored fixes and timed by interpolation.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from sync_protocol.framing import encode_frames
from tests.cloud.conftest import CloudServer, start_cloud
from tests.cloud.h3 import BlockingH3
from tests.cloud.helpers import admin_client, loop_gpx
from tests.edge_relay.harness import RelayProcess, RelayRider, now_ms, start_race, start_relay
from tests.edge_relay.test_relay_ingest import configured, wait_for

SPEED = 10.0
"""Metres a second: every rider rides one fix a second at this speed."""
CHECKPOINTS = [
    {"name": "Sprint", "kind": "sprint", "distance_m": 600.0},
    {"name": "Côte", "kind": "climb", "distance_m": 900.0, "end_m": 1300.0},
]
OFFSETS = (450.0, 350.0, 100.0)
"""Where the riders start: Sprint after 15, 25 and 50 s; the climb's foot after 45 and
55 s; its top out of reach of a minute's fixes."""
TOLERANCE_MS = 250
"""How far an interpolated crossing may be from the exact one (the course's points are
projected, not the riders' exact distances)."""


@dataclass
class Race:
    admin: httpx.Client
    race_id: int
    bare_id: int
    """A race on the same relay with no course."""
    flat_id: int
    """A race on the same relay whose course has no checkpoints."""
    riders: list[RelayRider]
    t0: int
    relay: RelayProcess


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudServer]:
    server = start_cloud(tmp_path_factory.mktemp("cloud"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def race(cloud: CloudServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Race]:
    tmp = tmp_path_factory.mktemp("splits")
    admin = admin_client(cloud, tmp)

    def new_race(name: str) -> int:
        response = admin.post("/api/races", json={"name": name, "starts_at": now_ms()})
        assert response.status_code == 201, response.text
        return int(response.json()["id"])

    race_id, bare_id, flat_id = new_race("Crit"), new_race("No course"), new_race("Flat")
    for rid in (race_id, flat_id):
        assert admin.put(f"/api/races/{rid}/course", content=loop_gpx(5.0)).status_code == 200
    response = admin.put(f"/api/races/{race_id}/checkpoints", json={"checkpoints": CHECKPOINTS})
    assert response.status_code == 200, response.text
    enrolled = admin.post(
        "/api/relays", json={"name": "splits", "race_ids": [race_id, bare_id, flat_id]}
    )
    assert enrolled.status_code == 201, enrolled.text
    t0 = now_ms() - 240_000
    riders = [
        RelayRider(cloud, admin, race_id, count=60, speed=SPEED, start_ms=t0, offset_m=offset)
        for offset in OFFSETS
    ]
    start_race(admin, race_id)
    relay = start_relay(tmp / "relay", cloud, enrolled.json()["credential"])
    try:
        for rid in (race_id, bare_id, flat_id):
            wait_for(lambda rid=rid: configured(relay, rid), what=f"race {rid} on the relay")
        yield Race(admin, race_id, bare_id, flat_id, riders, t0, relay)
    finally:
        relay.stop()


def splits(relay: RelayProcess, race_id: int) -> dict[str, Any]:
    with relay.client() as client:
        response = client.get(f"/api/races/{race_id}/splits")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    return response.json()  # type: ignore[no-any-return]


def ride(race: Race, connection: BlockingH3, first: int, last: int, step: int = 5) -> None:
    """Upload fixes ``first..last`` of every rider, ``step`` fixes a rider an upload."""
    for start in range(first, last + 1, step):
        end = min(start + step - 1, last)
        batches = [rider.batch(start, end) for rider in race.riders]
        status, _, reply = connection.request("POST", "/v1/batches", body=encode_frames(batches))
        assert status == 200, reply


def crossing_ms(race: Race, rider: int, distance_m: float) -> int:
    """When rider ``rider`` (their index) really crossed race distance ``distance_m``."""
    return race.t0 + round((distance_m - OFFSETS[rider]) / SPEED * 1000)


def arrivals(line: dict[str, Any]) -> list[tuple[int, int]]:
    return [(a["position"], a["bib"]) for a in line["arrivals"]]


def test_splits_fill_in_course_order_as_riders_cross_each_line(race: Race) -> None:
    bibs = [rider.bib for rider in race.riders]
    before = splits(race.relay, race.race_id)
    assert before["race_id"] == race.race_id
    assert before["status"] == "live"
    assert before["course"] is True
    assert isinstance(before["start_ms"], int)
    # Every checkpoint, and the climb's top as a line of its own, in course order.
    lines = [(c["name"], c["kind"], c["distance_m"], c["top"]) for c in before["checkpoints"]]
    assert lines == [
        ("Sprint", "sprint", 600.0, False),
        ("Côte", "climb", 900.0, False),
        ("Côte", "climb", 1300.0, True),
    ]
    assert all(c["arrivals"] == [] for c in before["checkpoints"])

    connection = BlockingH3("127.0.0.1", race.relay.quic_port)
    try:
        for rider in race.riders:
            status, _, body = connection.request("POST", "/v1/hello", body=rider.hello())
            assert status == 200, body
        ride(race, connection, 1, 30)  # 30 s: two riders through the sprint
        sprint, foot, top = splits(race.relay, race.race_id)["checkpoints"]
        assert arrivals(sprint) == [(1, bibs[0]), (2, bibs[1])]
        assert foot["arrivals"] == []
        assert top["arrivals"] == []

        ride(race, connection, 31, 60)  # a minute: everyone through, two at the foot
        after = splits(race.relay, race.race_id)
    finally:
        connection.close()
    sprint, foot, top = after["checkpoints"]
    assert arrivals(sprint) == [(1, bibs[0]), (2, bibs[1]), (3, bibs[2])]
    assert arrivals(foot) == [(1, bibs[0]), (2, bibs[1])]
    assert top["arrivals"] == []

    with race.relay.client() as client:
        standings = client.get(f"/api/races/{race.race_id}/standings").json()
    names = {r["bib"]: r["name"] for r in standings["riders"]}
    ids = {r["bib"]: r["rider_id"] for r in standings["riders"]}
    for line in (sprint, foot):
        first = line["arrivals"][0]
        assert first["gap_ms"] == 0
        for arrival in line["arrivals"]:
            rider = bibs.index(arrival["bib"])
            assert arrival["name"] == names[arrival["bib"]]
            assert arrival["rider_id"] == ids[arrival["bib"]]
            assert abs(arrival["t_ms"] - crossing_ms(race, rider, line["distance_m"])) <= (
                TOLERANCE_MS
            )
            assert arrival["gap_ms"] == arrival["t_ms"] - first["t_ms"]
            assert arrival["elapsed_ms"] == arrival["t_ms"] - after["start_ms"]
    assert abs(sprint["arrivals"][1]["gap_ms"] - 10_000) <= TOLERANCE_MS
    assert abs(sprint["arrivals"][2]["gap_ms"] - 35_000) <= TOLERANCE_MS
    assert abs(foot["arrivals"][1]["gap_ms"] - 10_000) <= TOLERANCE_MS


def test_a_race_without_checkpoints_or_course_answers_with_no_lines(race: Race) -> None:
    flat = splits(race.relay, race.flat_id)
    assert flat == flat | {"race_id": race.flat_id, "course": True, "checkpoints": []}
    bare = splits(race.relay, race.bare_id)
    assert bare == bare | {"race_id": race.bare_id, "course": False, "checkpoints": []}


def test_a_race_the_relay_does_not_serve_is_not_found(race: Race) -> None:
    with race.relay.client() as client:
        response = client.get("/api/races/999999/splits")
    assert response.status_code == 404
    assert response.json() == {
        "error": "not-found",
        "message": "this relay does not serve race 999999",
    }


def test_splits_count_from_when_the_race_went_live_not_its_schedule(
    cloud: CloudServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    tmp = tmp_path_factory.mktemp("late")
    admin = admin_client(cloud, tmp)
    scheduled = now_ms() + 3_600_000  # officials start an hour early (or the clock was off)
    created = admin.post("/api/races", json={"name": "Early", "starts_at": scheduled})
    race_id = int(created.json()["id"])
    assert admin.put(f"/api/races/{race_id}/course", content=loop_gpx(5.0)).status_code == 200
    enrolled = admin.post("/api/relays", json={"name": "early", "race_ids": [race_id]})
    assert enrolled.status_code == 201, enrolled.text
    start_race(admin, race_id)
    started = admin.get(f"/api/races/{race_id}").json()["started_ms"]
    assert abs(started - now_ms()) < 60_000
    relay = start_relay(tmp / "relay", cloud, enrolled.json()["credential"])
    try:  # the relay learns the race from its configuration, already live
        wait_for(lambda: configured(relay, race_id), what="the race on the relay")
        with relay.client() as c:
            assert c.get(f"/api/races/{race_id}/splits").json()["start_ms"] == started
    finally:
        relay.stop()


def test_a_catch_up_in_one_upload_times_the_passages_made_out_of_coverage(
    cloud: CloudServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    tmp = tmp_path_factory.mktemp("catch-up")
    admin = admin_client(cloud, tmp)
    race_id = int(
        admin.post("/api/races", json={"name": "Gap", "starts_at": now_ms()}).json()["id"]
    )
    assert admin.put(f"/api/races/{race_id}/course", content=loop_gpx(5.0)).status_code == 200
    response = admin.put(f"/api/races/{race_id}/checkpoints", json={"checkpoints": CHECKPOINTS})
    assert response.status_code == 200, response.text
    enrolled = admin.post("/api/relays", json={"name": "gap", "race_ids": [race_id]})
    assert enrolled.status_code == 201, enrolled.text
    t0 = now_ms() - 120_000
    rider = RelayRider(cloud, admin, race_id, count=60, speed=SPEED, start_ms=t0, offset_m=450.0)
    start_race(admin, race_id)
    relay = start_relay(tmp / "relay", cloud, enrolled.json()["credential"])
    connection = BlockingH3("127.0.0.1", relay.quic_port)
    try:
        wait_for(lambda: configured(relay, race_id), what="the race on the relay")
        status, _, body = connection.request("POST", "/v1/hello", body=rider.hello())
        assert status == 200, body
        # A minute out of coverage, then everything at once: the newest fix moves the
        # rider, the 59 before it are history, and the sprint at 600 m is among them.
        status, _, body = connection.request(
            "POST", "/v1/batches", body=encode_frames([rider.batch(1, 60)])
        )
        assert status == 200, body

        def timed() -> bool:
            sprint = splits(relay, race_id)["checkpoints"][0]
            return [a["bib"] for a in sprint["arrivals"]] == [rider.bib]

        wait_for(timed, what="the sprint passage from the catch-up")
        (arrival,) = splits(relay, race_id)["checkpoints"][0]["arrivals"]
        assert abs(arrival["t_ms"] - (t0 + round((600.0 - 450.0) / SPEED * 1000))) <= TOLERANCE_MS
    finally:
        connection.close()
        relay.stop()
