"""A relay times checkpoint passages in fixes other relays forwarded after a gap.

A real cloud and a real relay B on loopback; relay A is a second enrolled relay posting
its riders' original signed batches to the cloud (``POST /api/ingest``), as a relay's
uplink does. Two trackers went quiet for more than the longest bracket the race model
times a passage over (300 s), so the sprint line is crossed only in the fixes they
missed: one catches up in order through relay A, the other sent its newest fix first and
backfills. Relay B, following the cloud's live stream, gets every one of those fixes
(``fixes`` then ``fix`` messages) and times both riders at the sprint
(``GET /api/races/{id}/splits``), within a fraction of a second of the true crossing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cloud.conftest import CloudServer, start_cloud
from tests.cloud.helpers import admin_client, loop_gpx
from tests.cloud.riders import Rider, post
from tests.edge_relay.harness import RelayProcess, now_ms, start_race, start_relay
from tests.edge_relay.test_relay_ingest import configured, wait_for

SPRINT_M = 1000.0
"""Riders ride 10 m a fix (one a second): the sprint is between their fixes 99 and 100."""
TOLERANCE_MS = 500


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudServer]:
    server = start_cloud(tmp_path_factory.mktemp("cloud"))
    yield server
    server.stop()


def sprint(relay: RelayProcess, race_id: int) -> dict[int, int]:
    """Who relay B has through the sprint, and when."""
    with relay.client() as client:
        response = client.get(f"/api/races/{race_id}/splits")
    assert response.status_code == 200, response.text
    (line,) = response.json()["checkpoints"]
    assert line["name"] == "Sprint"
    return {a["rider_id"]: a["t_ms"] for a in line["arrivals"]}


def progress(relay: RelayProcess, race_id: int) -> dict[int, Any]:
    with relay.client() as client:
        riders = client.get(f"/api/races/{race_id}/standings").json()["riders"]
    return {r["rider_id"]: r["progress_m"] for r in riders}


def test_relay_times_passages_in_fixes_another_relay_backfilled(
    cloud: CloudServer, tmp_path: Path
) -> None:
    admin = admin_client(cloud, tmp_path)
    race_id = admin.post("/api/races", json={"name": "Crit", "starts_at": now_ms()}).json()["id"]
    assert admin.put(f"/api/races/{race_id}/course", content=loop_gpx(5.0)).status_code == 200
    line = {"name": "Sprint", "kind": "sprint", "distance_m": SPRINT_M}
    response = admin.put(f"/api/races/{race_id}/checkpoints", json={"checkpoints": [line]})
    assert response.status_code == 200, response.text
    credentials = []
    for name in ("relay-a", "relay-b"):
        enrolled = admin.post("/api/relays", json={"name": name, "race_ids": [race_id]})
        assert enrolled.status_code == 201, enrolled.text
        credentials.append(enrolled.json()["credential"])
    relay_a, relay_b_credential = credentials
    t0 = now_ms() - 280_000  # certificates start five minutes before enrolment
    in_order = Rider(cloud, admin, race_id, count=480, start_ms=t0)
    newest_first = Rider(cloud, admin, race_id, count=400, start_ms=t0)
    start_race(admin, race_id)

    relay_b = start_relay(tmp_path / "relay-b", cloud, relay_b_credential)
    try:
        wait_for(lambda: configured(relay_b, race_id), what="the race on relay B")
        post(cloud, relay_a, in_order.batch(1, 5), newest_first.batch(1, 5))
        # Relay B follows the cloud's stream (snapshot or stream: it is subscribed).
        wait_for(
            lambda: all(progress(relay_b, race_id).get(r.id) for r in (in_order, newest_first)),
            what="both riders on relay B",
        )

        # Catch-up in order, in one upload, after 7 minutes without a signal.
        batches = [in_order.batch(s, min(s + 59, 480), prev_hash=True) for s in range(6, 481, 60)]
        assert {r["outcome"] for r in post(cloud, relay_a, *batches)} == {"accepted"}
        # Newest first (the sprint line is 395 s behind: too far to time it from)...
        post(cloud, relay_a, newest_first.batch(400, 400, prev_hash=True))
        wait_for(
            lambda: progress(relay_b, race_id)[newest_first.id] > 3_900,
            what="the newest fix on relay B",
        )
        wait_for(lambda: in_order.id in sprint(relay_b, race_id), what="the in-order sprint")
        assert newest_first.id not in sprint(relay_b, race_id)
        # ... then the fixes it missed.
        post(cloud, relay_a, newest_first.batch(6, 399, prev_hash=True))
        wait_for(lambda: len(sprint(relay_b, race_id)) == 2, what="the backfilled sprint")
        crossings = sprint(relay_b, race_id)
        for rider in (in_order, newest_first):
            exact = rider.fixes[0].t_ms + round((SPRINT_M / 10.0 - 1) * 1000)
            assert abs(crossings[rider.id] - exact) <= TOLERANCE_MS
        # Backfill refines history; it never moves a rider back.
        assert progress(relay_b, race_id)[newest_first.id] > 3_900
    finally:
        relay_b.stop()
