"""Results and statistics computed from ingested fixes, as JSON and CSV."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from tests.cloud.conftest import CloudServer
from tests.cloud.riders import Rider, now_ms, post, setup_race


def test_results_stats_and_csv_after_a_ridden_race(
    cloud_server: CloudServer, tmp_path: Path
) -> None:
    gun = now_ms()  # the rider's first fix comes one second after the gun
    admin, race_id, credential = setup_race(cloud_server, tmp_path, starts_at=gun)
    rider = Rider(cloud_server, admin, race_id, count=560, start_ms=gun)  # rides on past the line
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
    for state in ("live", "finished"):  # finishing seals the race's history
        assert admin.post(f"/api/races/{race_id}/state", json={"state": state}).status_code == 200
    assert admin.get(f"/api/races/{race_id}/results").json() == results
