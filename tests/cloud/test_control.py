"""Race control actions and the live stream relays follow."""

from __future__ import annotations

import uuid
from pathlib import Path

from tests.cloud.conftest import CloudServer, start_cloud
from tests.cloud.helpers import staff_client
from tests.cloud.live import follow, next_of
from tests.cloud.riders import Rider, now_ms, post, setup_race


def test_actions_are_idempotent_audited_and_shape_results(
    cloud_server: CloudServer, tmp_path: Path
) -> None:
    gun = now_ms()
    admin, race_id, credential = setup_race(cloud_server, tmp_path, starts_at=gun)
    fast = Rider(cloud_server, admin, race_id, count=520, start_ms=gun)
    post(cloud_server, credential, *[fast.batch(s, min(s + 59, 520)) for s in range(1, 521, 60)])
    other = Rider(cloud_server, admin, race_id, count=5, start_ms=gun)
    official = staff_client(cloud_server, admin, "official")
    url = f"/api/races/{race_id}/actions"
    penalty = {
        "action_id": str(uuid.uuid4()),
        "kind": "penalty",
        "rider_id": fast.id,
        "seconds": 20,
        "reason": "feeding outside the zone",
    }
    first = official.post(url, json=penalty)
    assert first.status_code == 201, first.text
    replay = official.post(url, json=penalty)  # the console's offline queue, replayed
    assert replay.status_code == 200
    assert replay.json()["id"] == first.json()["id"]
    dnf = {"kind": "dnf", "rider_id": other.id, "reason": "crashed at km 2"}
    assert official.post(url, json=dnf).status_code == 201
    assert len(admin.get(url).json()) == 2
    results = {r["rider_id"]: r for r in admin.get(f"/api/races/{race_id}/results").json()}
    assert results[fast.id]["penalty_s"] == 20
    assert results[fast.id]["time_ms"] == 501_000 + 20_000
    assert results[other.id]["status"] == "DNF"
    bad = official.post(url, json={"kind": "teleport", "rider_id": fast.id, "reason": "why"})
    assert bad.json()["error"]["fields"] == {"kind": "unknown kind"}
    outsider = official.post(url, json={**dnf, "rider_id": 999_999})
    assert outsider.status_code == 400
    assert fast.client.post(url, json=dnf).status_code == 403
    audit = [e["action"] for e in admin.get("/api/audit", params={"race_id": race_id}).json()]
    assert audit[:2] == ["action.dnf", "action.penalty"]


def test_relays_follow_snapshot_then_stream_and_after_a_restart(tmp_path: Path) -> None:
    server = start_cloud(tmp_path / "cloud")
    try:
        admin, race_id, credential = setup_race(server, tmp_path)
        rider = Rider(server, admin, race_id)
        admin.post(f"/api/races/{race_id}/state", json={"state": "live"})
        with follow(server, credential, race_id) as lines:
            snapshot = lines.get(timeout=10)
            assert snapshot["type"] == "snapshot"
            assert snapshot["riders"] == []
            post(server, credential, rider.batch(1, 60))
            fix = next_of(lines, "fix")
            assert (fix["rider_id"], fix["seq"], fix["bib"]) == (rider.id, 60, 1)
            assert fix["progress_m"] > 500
            action = {"kind": "penalty", "rider_id": rider.id, "seconds": 10, "reason": "drafting"}
            admin.post(f"/api/races/{race_id}/actions", json=action)
            assert next_of(lines, "action")["seconds"] == 10
            admin.post(f"/api/races/{race_id}/state", json={"state": "neutralised"})
            assert next_of(lines, "race")["state"] == "neutralised"
        other = admin.post("/api/races", json={"name": "x", "starts_at": "2026-07-01T10:00:00Z"})
        with server.client(headers={"Authorization": f"Relay {credential}"}) as relay:
            assert relay.get(f"/api/races/{other.json()['id']}/live").status_code == 403
        server.stop()
        server = start_cloud(tmp_path / "cloud")  # the bus starts again from history
        with follow(server, credential, race_id) as lines:
            snapshot = lines.get(timeout=10)
            assert [(r["rider_id"], r["seq"]) for r in snapshot["riders"]] == [(rider.id, 60)]
            assert snapshot["race"]["state"] == "neutralised"
            (penalty,) = snapshot["actions"]  # the actions so far, from the system of record
            assert (penalty["kind"], penalty["seconds"], penalty["bib"]) == ("penalty", 10, 1)
    finally:
        server.stop()
