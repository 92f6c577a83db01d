"""Races, courses, state changes, registrations and the audit log, over real HTTP."""

from __future__ import annotations

import httpx
import pytest

from tests.cloud.conftest import CloudServer
from tests.cloud.helpers import admin_client, loop_gpx, staff_client, user_client


@pytest.fixture(scope="module")
def admin(cloud_server: CloudServer, tmp_path_factory: pytest.TempPathFactory) -> httpx.Client:
    return admin_client(cloud_server, tmp_path_factory.mktemp("admin"))


def new_race(admin: httpx.Client, **extra: object) -> dict:  # type: ignore[type-arg]
    body = {"name": "Stage 1", "starts_at": "2026-07-01T10:00:00Z", **extra}
    response = admin.post("/api/races", json=body)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def test_admin_creates_edits_and_deletes_a_scheduled_race(admin: httpx.Client) -> None:
    race = new_race(admin)
    assert race["state"] == "scheduled"
    assert race["starts_at_ms"] == 1_782_900_000_000
    edited = admin.patch(f"/api/races/{race['id']}", json={"name": "Stage 1 (short)"}).json()
    assert edited["name"] == "Stage 1 (short)"
    assert admin.delete(f"/api/races/{race['id']}").status_code == 204
    assert admin.get(f"/api/races/{race['id']}").status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"starts_at": "2026-07-01T10:00:00Z"}, "name"),
        ({"name": "x", "starts_at": "tomorrow"}, "starts_at"),
        ({"name": "x", "starts_at": "2026-07-01T10:00:00"}, "starts_at"),
        ({"name": "x", "starts_at": "2026-07-01T10:00:00Z", "max_riders": 51}, "max_riders"),
    ],
)
def test_bad_race_input_names_the_field(admin: httpx.Client, body: dict, field: str) -> None:  # type: ignore[type-arg]
    response = admin.post("/api/races", json=body)
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]


def test_bad_json_is_a_clear_400(admin: httpx.Client) -> None:
    response = admin.post(
        "/api/races", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]["message"]


def test_course_upload_and_the_race_state_machine(
    cloud_server: CloudServer, admin: httpx.Client
) -> None:
    race = new_race(admin)
    url = f"/api/races/{race['id']}"
    assert admin.post(f"{url}/state", json={"state": "live"}).json()["error"]["code"] == "no-course"
    bad = admin.put(f"{url}/course", content=b"<html>not gpx</html>")
    assert bad.status_code == 400
    assert bad.json()["error"]["fields"]["file"] == "not-gpx"
    course = admin.put(f"{url}/course?laps=3", content=loop_gpx(5.0)).json()["course"]
    assert course["laps"] == 3
    files = {"file": ("circuit.gpx", loop_gpx(4.0), "application/gpx+xml")}
    assert admin.put(f"{url}/course?laps=2", files=files).status_code == 200
    cps = [
        {"name": "Sprint", "kind": "sprint", "distance_m": 2000.0},
        {"name": "Hill", "kind": "climb", "distance_m": 1000.0, "end_m": 1500.0},
    ]
    saved = admin.put(f"{url}/checkpoints", json={"checkpoints": cps}).json()
    assert [c["name"] for c in saved["course"]["checkpoints"]] == ["Hill", "Sprint"]
    official = staff_client(cloud_server, admin, "official")
    assert admin.get(url).json()["started_ms"] is None  # scheduled: only the planned start
    started = []
    for state in ("live", "neutralised", "live", "finished", "published"):
        response = official.post(f"{url}/state", json={"state": state})
        assert response.status_code == 200, response.text
        assert response.json()["state"] == state
        started.append(response.json()["started_ms"])
    assert len(set(started)) == 1  # the first change to live; resuming does not move it
    assert started[0] != race["starts_at_ms"]
    refused = admin.post(f"{url}/state", json={"state": "live"})
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "bad-transition"
    assert admin.patch(url, json={"name": "late edit"}).status_code == 409
    assert admin.delete(url).json()["error"]["code"] == "race-not-scheduled"
    log = admin.get("/api/audit", params={"race_id": race["id"]}).json()
    assert [e["action"] for e in log][:2] == ["race.state", "race.state"]
    assert log[0]["detail"] == {"old": "finished", "new": "published"}
    went_live = [e["t_ms"] for e in log if e["detail"].get("new") == "live"]
    assert min(went_live) == started[0]  # the audit log and the race agree
    listed = admin.get("/api/races").json()
    assert next(r for r in listed if r["id"] == race["id"])["started_ms"] == started[0]


def test_registrations_bibs_limit_and_withdrawal(
    cloud_server: CloudServer, admin: httpx.Client
) -> None:
    race = new_race(admin, max_riders=2)
    url = f"/api/races/{race['id']}"
    (r1, id1), (r2, id2), (r3, _) = (user_client(cloud_server, "racer") for _ in range(3))
    assert r1.post(f"{url}/registrations", json={}).json()["bib"] == 1
    assert r2.post(f"{url}/registrations", json={"bib": 7}).json()["bib"] == 7
    full = r3.post(f"{url}/registrations", json={})
    assert full.status_code == 409
    assert "holds up to 2" in full.json()["error"]["message"]
    assert r1.delete(f"{url}/registrations/{id2}").status_code == 403
    assert r2.delete(f"{url}/registrations/{id2}").status_code == 204
    assert r3.post(f"{url}/registrations", json={"bib": 1}).json()["error"]["code"] == "bib-taken"
    riders = admin.get(f"{url}/riders").json()
    assert [(r["bib"], r["rider_id"]) for r in riders] == [(1, id1)]
    spectator, sid = user_client(cloud_server, "spectator")
    assert spectator.post(f"{url}/registrations", json={}).status_code == 403
    assert admin.post(f"{url}/registrations", json={"user_id": sid}).status_code == 400


def test_admins_add_and_remove_riders_racers_only_join_open_races(
    cloud_server: CloudServer, admin: httpx.Client
) -> None:
    race = new_race(admin, registration_open=False)
    url = f"/api/races/{race['id']}"
    racer, racer_id = user_client(cloud_server, "racer")
    closed = racer.post(f"{url}/registrations", json={})
    assert (closed.status_code, closed.json()["error"]["code"]) == (409, "registration-closed")
    added = admin.post(f"{url}/registrations", json={"user_id": racer_id, "bib": 21})
    assert added.status_code == 201, added.text
    assert [(r["bib"], r["rider_id"]) for r in racer.get(f"{url}/riders").json()] == [
        (21, racer_id)
    ]
    assert admin.delete(f"{url}/registrations/{racer_id}").status_code == 204
    assert admin.get(f"{url}/riders").json() == []
    log = admin.get("/api/audit", params={"race_id": race["id"]}).json()
    assert [(e["action"], e["actor"]) for e in log][:2] == [
        ("registration.remove", admin.get("/api/me").json()["user"]["username"]),
        ("registration.add", admin.get("/api/me").json()["user"]["username"]),
    ]


def _gpx_points(count: int) -> bytes:
    points = "".join(f'<trkpt lat="{45 + i * 1e-5:.5f}" lon="6.00000"/>' for i in range(count))
    return f'<gpx version="1.1"><trk><trkseg>{points}</trkseg></trk></gpx>'.encode()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "not-xml"),
        (b"<gpx><trk><trkseg>", "not-xml"),
        (b'<gpx version="1.1"><wpt lat="45" lon="6"/></gpx>', "no-points"),
        (b'<kml xmlns="http://www.opengis.net/kml/2.2"></kml>', "not-gpx"),
        (_gpx_points(200_001), "too-large"),  # over the point limit (a bigger file: 20 MB)
    ],
    ids=["empty", "malformed", "no-points", "not-gpx", "too-many-points"],
)
def test_a_bad_course_is_a_clear_400_and_changes_nothing(
    admin: httpx.Client, body: bytes, reason: str
) -> None:
    race = new_race(admin)
    url = f"/api/races/{race['id']}"
    response = admin.put(f"{url}/course", content=body)
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"file": reason}
    assert response.json()["error"]["message"]
    assert admin.get(url).json()["course"] is None


def test_roles_guard_race_endpoints(cloud_server: CloudServer, admin: httpx.Client) -> None:
    race = new_race(admin)
    racer, _ = user_client(cloud_server, "racer")
    with cloud_server.client() as anonymous:
        assert anonymous.get("/api/races").status_code == 401
    assert racer.get("/api/races").status_code == 200
    assert racer.post("/api/races", json={"name": "mine", "starts_at": 1}).status_code == 403
    assert racer.post(f"/api/races/{race['id']}/state", json={"state": "live"}).status_code == 403
    assert racer.get("/api/audit").status_code == 403
