"""Results and statistics computed from ingested fixes, as JSON and CSV."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import sqlite3
from pathlib import Path

import httpx
import pytest

from sync_protocol.chain import extend_all, genesis
from tests.cloud.conftest import CloudServer, start_cloud
from tests.cloud.helpers import login
from tests.cloud.riders import Rider, now_ms, post, setup_race


def test_results_stats_and_csv_after_a_ridden_race(
    cloud_server: CloudServer, tmp_path: Path
) -> None:
    admin, race_id, credential = setup_race(cloud_server, tmp_path, starts_at=now_ms())
    rider = Rider(cloud_server, admin, race_id, count=560)  # rides on past the line
    from_gun(rider, go_live(admin, race_id))
    batches = [rider.batch(s, min(s + 59, 560)) for s in range(1, 561, 60)]
    assert {r["outcome"] for r in post(cloud_server, credential, *batches)} == {"accepted"}
    finish_m = admin.get(f"/api/races/{race_id}").json()["course"]
    results = admin.get(f"/api/races/{race_id}/results").json()
    (winner,) = results
    assert winner["rider_id"] == rider.id
    assert winner["status"] == "finished"
    length = sum(1 for _ in finish_m["points"])  # the course round-trips with its points
    assert length > 100
    expected_s = admin.get(f"/api/races/{race_id}/summary").json()
    assert expected_s["riders"] == 1
    (stats,) = admin.get(f"/api/races/{race_id}/stats").json()
    assert stats["distance_m"] == pytest.approx(4_990, rel=0.01)  # stopped at the finish
    assert stats["max_speed_kmh"] == pytest.approx(36.0, abs=0.5)
    finish_s = winner["time_ms"] / 1000
    assert finish_s == pytest.approx(500, abs=3)  # ~5 km at 10 m/s from the gun
    text = admin.get(f"/api/races/{race_id}/results", params={"format": "csv"}).text
    (row,) = list(csv.DictReader(io.StringIO(text)))
    assert int(row["rider_id"]) == rider.id
    season = rider.client.get(f"/api/riders/{rider.id}/season").json()
    assert [s["race_id"] for s in season] == [race_id]
    compared = admin.get("/api/races/compare", params={"race_ids": f"{race_id}"}).json()
    assert compared[0]["race_id"] == race_id
    assert admin.get("/api/races/compare", params={"race_ids": "x"}).status_code == 400
    for path, params in (  # every analytics answer also comes as CSV
        (f"/api/races/{race_id}/stats", {}),
        (f"/api/races/{race_id}/summary", {}),
        (f"/api/riders/{rider.id}/season", {}),
        ("/api/races/compare", {"race_ids": f"{race_id}"}),
    ):
        response = admin.get(path, params={**params, "format": "csv"})
        assert response.headers["content-type"].startswith("text/csv"), path
        (row,) = list(csv.DictReader(io.StringIO(response.text)))
        assert row["race_id" if "race_id" in row else "rider_id"], path
    assert admin.get(f"/api/races/{race_id}/results", params={"format": "xml"}).status_code == 400
    finished = admin.post(f"/api/races/{race_id}/state", json={"state": "finished"})
    assert finished.status_code == 200  # finishing seals the race's history
    assert admin.get(f"/api/races/{race_id}/results").json() == results


def go_live(admin: httpx.Client, race_id: int) -> int:
    """Start the race now; returns the gun (``started_ms``): the riders' first fixes come
    one second after it (the bug this guards against counted from the schedule)."""
    response = admin.post(f"/api/races/{race_id}/state", json={"state": "live"})
    assert response.status_code == 200, response.text
    started = response.json()["started_ms"]
    assert isinstance(started, int)
    return started


def from_gun(rider: Rider, gun: int) -> None:
    """Re-time the rider's track (made when they registered) to begin one second after
    ``gun``: a rider registers before the race goes live."""
    shift = gun + 1_000 - rider.fixes[0].t_ms
    rider.fixes = [dataclasses.replace(f, t_ms=f.t_ms + shift) for f in rider.fixes]
    rider.hashes = [genesis(rider.device), *extend_all(genesis(rider.device), rider.fixes)]


SPRINT = {"name": "Sprint", "kind": "sprint", "distance_m": 2_000.0}


def ride(server: CloudServer, tmp_path: Path, starts_at: int) -> tuple[httpx.Client, int, int]:
    """A race scheduled at ``starts_at``, started now, ridden past the line at 10 m/s."""
    admin, race_id, credential = setup_race(server, tmp_path, starts_at=starts_at)
    cps = {"checkpoints": [SPRINT]}
    assert admin.put(f"/api/races/{race_id}/checkpoints", json=cps).status_code == 200
    rider = Rider(server, admin, race_id, count=560)
    gun = go_live(admin, race_id)
    from_gun(rider, gun)
    batches = [rider.batch(s, min(s + 59, 560)) for s in range(1, 561, 60)]
    assert {r["outcome"] for r in post(server, credential, *batches)} == {"accepted"}
    return admin, race_id, gun


def check_times(admin: httpx.Client, race_id: int, gun: int) -> None:
    """Finish times and splits count from the gun, in JSON and in CSV."""
    results = admin.get(f"/api/races/{race_id}/results").json()
    winner = next(r for r in results if r["time_ms"] is not None)
    assert winner["start_ms"] == gun
    assert winner["time_ms"] == winner["finish_ms"] - gun
    assert winner["time_ms"] / 1000 == pytest.approx(500, abs=3)  # ~5 km at 10 m/s
    text = admin.get(f"/api/races/{race_id}/results", params={"format": "csv"}).text
    row = next(r for r in csv.DictReader(io.StringIO(text)) if r["time_ms"])
    assert (int(row["start_ms"]), int(row["time_ms"])) == (gun, winner["time_ms"])
    stats = admin.get(f"/api/races/{race_id}/stats").json()
    rider = next(s for s in stats if s["rider_id"] == winner["rider_id"])
    (split,) = rider["splits"]
    assert rider["start_ms"] == gun
    assert split["elapsed_ms"] == split["t_ms"] - gun
    assert split["elapsed_ms"] / 1000 == pytest.approx(200, abs=2)  # 2 km at 10 m/s
    text = admin.get(f"/api/races/{race_id}/stats", params={"format": "csv"}).text
    row = next(
        r for r in csv.DictReader(io.StringIO(text)) if int(r["rider_id"]) == rider["rider_id"]
    )
    assert int(row["start_ms"]) == gun
    assert json.loads(row["splits"])[0]["elapsed_ms"] == split["elapsed_ms"]


@pytest.mark.parametrize(
    "offset_ms",
    [-600_000, 3_600_000],
    ids=["started-10-minutes-late", "started-an-hour-early"],
)
def test_times_count_from_the_real_start_not_the_schedule(
    cloud_server: CloudServer, tmp_path: Path, offset_ms: int
) -> None:
    scheduled = now_ms() + 200_000 + offset_ms  # now_ms() is 200 s back
    admin, race_id, gun = ride(cloud_server, tmp_path, scheduled)
    race = admin.get(f"/api/races/{race_id}").json()
    assert (race["starts_at_ms"], race["started_ms"]) == (scheduled, gun)
    assert abs(gun - scheduled - (-offset_ms)) < 60_000
    check_times(admin, race_id, gun)
    summary = admin.get(f"/api/races/{race_id}/summary").json()
    assert (summary["starts_at_ms"], summary["started_ms"]) == (scheduled, gun)
    compared = admin.get("/api/races/compare", params={"race_ids": f"{race_id}"}).json()
    assert compared[0]["started_ms"] == gun
    results = admin.get(f"/api/races/{race_id}/results").json()
    stats = admin.get(f"/api/races/{race_id}/stats").json()
    for state in ("neutralised", "live", "neutralised", "live", "finished"):
        response = admin.post(f"/api/races/{race_id}/state", json={"state": state})
        assert response.status_code == 200, response.text
        assert response.json()["started_ms"] == gun  # neutralising does not move the gun
    assert admin.get(f"/api/races/{race_id}/results").json() == results
    assert admin.get(f"/api/races/{race_id}/stats").json() == stats


def test_a_race_not_yet_live_counts_from_its_scheduled_start(
    cloud_server: CloudServer, tmp_path: Path
) -> None:
    planned = now_ms()
    admin, race_id, credential = setup_race(cloud_server, tmp_path, starts_at=planned)
    rider = Rider(cloud_server, admin, race_id, count=560, start_ms=planned)
    batches = [rider.batch(s, min(s + 59, 560)) for s in range(1, 561, 60)]
    assert {r["outcome"] for r in post(cloud_server, credential, *batches)} == {"accepted"}
    assert admin.get(f"/api/races/{race_id}").json()["started_ms"] is None
    (result,) = admin.get(f"/api/races/{race_id}/results").json()
    assert result["start_ms"] == planned
    assert result["time_ms"] / 1000 == pytest.approx(500, abs=3)


def test_races_started_before_the_upgrade_get_their_start_from_the_audit_log(
    tmp_path: Path,
) -> None:
    server = start_cloud(tmp_path / "cloud")
    try:
        admin, race_id, gun = ride(server, tmp_path, now_ms() + 200_000 - 600_000)
        for state in ("neutralised", "live", "finished"):
            assert admin.post(f"/api/races/{race_id}/state", json={"state": state}).is_success
        results = admin.get(f"/api/races/{race_id}/results").json()
        name = str(admin.get("/api/me").json()["user"]["username"])
    finally:
        server.stop()
    db = sqlite3.connect(server.data_dir / "gruppetto.db")  # as an older version left it
    db.execute("ALTER TABLE races DROP COLUMN started_ms")
    db.commit()
    db.close()
    server = start_cloud(server.data_dir)
    try:
        admin = login(server, name)
        assert admin.get(f"/api/races/{race_id}").json()["started_ms"] == gun
        assert admin.get(f"/api/races/{race_id}/results").json() == results
        check_times(admin, race_id, gun)
    finally:
        server.stop()
