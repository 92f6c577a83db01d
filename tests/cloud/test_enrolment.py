"""Device certificates for racers; relay credentials and offline race definitions."""

from __future__ import annotations

import base64

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sync_protocol.certificate import DeviceCertificate
from sync_protocol.chain import public_key_bytes
from tests.cloud.conftest import CloudServer
from tests.cloud.helpers import admin_client, loop_gpx, user_client


@pytest.fixture(scope="module")
def admin(cloud_server: CloudServer, tmp_path_factory: pytest.TempPathFactory) -> httpx.Client:
    return admin_client(cloud_server, tmp_path_factory.mktemp("admin"))


def race_with_course(admin: httpx.Client) -> int:
    race = admin.post("/api/races", json={"name": "Crit", "starts_at": "2026-07-01T10:00:00Z"})
    race_id: int = race.json()["id"]
    assert admin.put(f"/api/races/{race_id}/course", content=loop_gpx()).status_code == 200
    return race_id


def test_device_certificate_covers_the_racers_races(
    cloud_server: CloudServer, admin: httpx.Client
) -> None:
    race_id = race_with_course(admin)
    racer, racer_id = user_client(cloud_server, "racer")
    assert racer.post(f"/api/races/{race_id}/registrations", json={}).status_code == 201
    key = Ed25519PrivateKey.generate()
    public = base64.b64encode(public_key_bytes(key)).decode()
    response = racer.post("/api/devices", json={"public_key": public})
    assert response.status_code == 201, response.text
    body = response.json()
    cert = DeviceCertificate.decode(base64.b64decode(body["certificate"]))
    issuer = Ed25519PublicKey.from_public_bytes(base64.b64decode(body["issuer_public_key"]))
    cert.verify(issuer, cert.not_before_ms + 60_000, race_id=race_id)  # offline, no round trip
    assert (cert.racer_id, body["race_ids"]) == (racer_id, [race_id])
    other, _ = user_client(cloud_server, "racer")
    taken = other.post("/api/devices", json={"public_key": public})
    assert taken.status_code == 409
    bad = racer.post("/api/devices", json={"public_key": "not a key"})
    assert bad.status_code == 400
    assert "public_key" in bad.json()["error"]["fields"]
    spectator, _ = user_client(cloud_server, "spectator")
    assert spectator.post("/api/devices", json={"public_key": public}).status_code == 403


def test_relay_enrolment_and_offline_config(cloud_server: CloudServer, admin: httpx.Client) -> None:
    race_id = race_with_course(admin)
    racer, racer_id = user_client(cloud_server, "racer")
    racer.post(f"/api/races/{race_id}/registrations", json={"bib": 12})
    created = admin.post("/api/relays", json={"name": "finish-line", "race_ids": [race_id]})
    assert created.status_code == 201, created.text
    credential = created.json()["credential"]
    assert "credential" not in admin.get("/api/relays").json()[0]
    with cloud_server.client(headers={"Authorization": f"Relay {credential}"}) as relay:
        config = relay.get("/api/relay/config").json()
        (race,) = config["races"]
        assert race["id"] == race_id
        assert race["course"]["laps"] == 1
        assert [(r["bib"], r["rider_id"]) for r in race["riders"]] == [(12, racer_id)]
        assert base64.b64decode(config["issuer_public_key"])
        assert relay.get("/api/races").status_code == 403  # a relay is not a person
    with cloud_server.client(headers={"Authorization": f"Relay {credential}x"}) as forged:
        assert forged.get("/api/relay/config").status_code == 401
    relay_id = created.json()["id"]
    assert admin.patch(f"/api/relays/{relay_id}", json={"disabled": True}).json()["disabled"]
    with cloud_server.client(headers={"Authorization": f"Relay {credential}"}) as disabled:
        assert disabled.get("/api/relay/config").status_code == 401
    assert admin.post("/api/relays", json={"name": "x", "race_ids": [999999]}).status_code == 400


def test_racers_see_only_their_own_devices(cloud_server: CloudServer, admin: httpx.Client) -> None:
    (first, first_id), (second, second_id) = (user_client(cloud_server, "racer") for _ in range(2))
    for racer in (first, second):
        public = base64.b64encode(public_key_bytes(Ed25519PrivateKey.generate())).decode()
        assert racer.post("/api/devices", json={"public_key": public}).status_code == 201
    assert [d["user_id"] for d in first.get("/api/devices").json()] == [first_id]
    assert [d["user_id"] for d in second.get("/api/devices").json()] == [second_id]
    everyone = {d["user_id"] for d in admin.get("/api/devices").json()}
    assert {first_id, second_id} <= everyone


def test_relays_get_official_actions_and_relay_changes_are_audited_and_whole(
    cloud_server: CloudServer, admin: httpx.Client
) -> None:
    race_id, other_id = race_with_course(admin), race_with_course(admin)
    racer, racer_id = user_client(cloud_server, "racer")
    racer.post(f"/api/races/{race_id}/registrations", json={"bib": 3})
    action = {"kind": "dns", "rider_id": racer_id, "reason": "did not sign on"}
    assert admin.post(f"/api/races/{race_id}/actions", json=action).status_code == 201
    created = admin.post("/api/relays", json={"name": "start-line", "race_ids": [race_id]})
    relay_id, credential = created.json()["id"], created.json()["credential"]
    with cloud_server.client(headers={"Authorization": f"Relay {credential}"}) as relay:
        (race,) = relay.get("/api/relay/config").json()["races"]
    assert [(a["kind"], a["rider_id"]) for a in race["actions"]] == [("dns", racer_id)]

    url = f"/api/relays/{relay_id}"
    bad = admin.patch(url, json={"race_ids": [race_id, other_id], "disabled": "yes"})
    assert bad.status_code == 400
    assert bad.json()["error"]["fields"] == {"disabled": "must be true or false"}
    unknown = admin.patch(url, json={"race_ids": [other_id], "name": "renamed"})
    assert unknown.json()["error"]["fields"] == {"name": "unknown field"}
    (listed,) = [r for r in admin.get("/api/relays").json() if r["id"] == relay_id]
    assert (listed["race_ids"], listed["disabled"]) == ([race_id], False)  # nothing changed
    changed = admin.patch(url, json={"race_ids": [race_id, other_id]})
    assert changed.json()["race_ids"] == [race_id, other_id]

    log = [e for e in admin.get("/api/audit").json() if e["object_type"] == "relay"]
    mine = [(e["action"], e["detail"]) for e in log if e["object_id"] == relay_id]
    assert mine == [
        ("relay.update", {"race_ids": [race_id, other_id]}),
        ("relay.create", {"name": "start-line", "race_ids": [race_id]}),
    ]
    assert credential.split("_", 2)[2] not in str(log)  # never the secret
