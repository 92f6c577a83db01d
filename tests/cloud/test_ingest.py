"""Relays forward signed batches; the cloud verifies again, stores once, acks when durable."""

from __future__ import annotations

import base64
import signal
import threading
from dataclasses import replace
from pathlib import Path

import duckdb
import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sync_protocol.batch import encode_batch, seal
from sync_protocol.chain import device_id, extend_all, genesis, public_key_bytes
from sync_protocol.course import Course
from sync_protocol.fix import Fix
from sync_protocol.framing import encode_frames
from tests.cloud.conftest import CloudServer, start_cloud
from tests.cloud.helpers import admin_client, loop_gpx, user_client

START_MS = 1_782_900_000_000 + 60_000


class Rider:
    """A racer with an enrolled device riding the race's course at 10 m/s."""

    def __init__(
        self,
        server: CloudServer,
        admin: httpx.Client,
        race_id: int,
        count: int = 300,
        start_ms: int | None = None,
    ) -> None:
        self.client, self.id = user_client(server, "racer")
        assert self.client.post(f"/api/races/{race_id}/registrations", json={}).status_code == 201
        self.key = Ed25519PrivateKey.generate()
        public = public_key_bytes(self.key)
        self.device = device_id(public)
        body = {"public_key": base64.b64encode(public).decode()}
        assert self.client.post("/api/devices", json=body).status_code == 201
        course = Course.from_dict(admin.get(f"/api/races/{race_id}").json()["course"])
        t0 = start_ms or now_ms()
        at = [course.point_at(min(s * 10.0, course.total_length_m)) for s in range(count + 1)]
        self.fixes = [
            Fix.from_degrees(s, t0 + s * 1000, at[s][0], at[s][1], speed_ms=10.0)
            for s in range(1, count + 1)
        ]
        self.hashes = [genesis(self.device), *extend_all(genesis(self.device), self.fixes)]

    def batch(self, first: int, last: int) -> bytes:
        fixes = self.fixes[first - 1 : last]
        return encode_batch(seal(self.device, fixes, self.hashes[first - 1], key=self.key))


def now_ms() -> int:
    import time

    # recorded since enrolment (the certificate starts five minutes back)
    return time.time_ns() // 1_000_000 - 200_000


def setup_race(
    server: CloudServer, tmp_path: Path, starts_at: str | int = "2026-01-01T10:00:00Z"
) -> tuple[httpx.Client, int, str]:
    admin = admin_client(server, tmp_path)
    body = {"name": "Crit", "starts_at": starts_at}
    race_id = admin.post("/api/races", json=body).json()["id"]
    assert admin.put(f"/api/races/{race_id}/course", content=loop_gpx(5.0)).status_code == 200
    relay = admin.post("/api/relays", json={"name": f"relay-{race_id}", "race_ids": [race_id]})
    return admin, race_id, relay.json()["credential"]


def post(server: CloudServer, credential: str, *batches: bytes) -> list[dict]:  # type: ignore[type-arg]
    client = server.client(headers={"Authorization": f"Relay {credential}"})
    response = client.post("/api/ingest", content=encode_frames(batches))
    assert response.status_code == 200, response.text
    return response.json()["results"]  # type: ignore[no-any-return]


def stored(data_dir: Path, device: bytes) -> list[tuple[int, float]]:
    with duckdb.connect(str(data_dir / "history.duckdb"), read_only=True) as conn:
        rows = conn.execute(
            "SELECT seq, progress_m FROM fixes WHERE device_id = ? ORDER BY seq", [device]
        ).fetchall()
    return [(int(s), float(p)) for s, p in rows]


def test_ingest_verifies_stores_once_and_acks(cloud_server: CloudServer, tmp_path: Path) -> None:
    admin, race_id, credential = setup_race(cloud_server, tmp_path)
    rider = Rider(cloud_server, admin, race_id)
    first = post(cloud_server, credential, rider.batch(1, 60), rider.batch(61, 120))
    assert [r["outcome"] for r in first] == ["accepted", "accepted"]
    assert first[-1]["ack"]["acked_seq"] == 120
    again = post(cloud_server, credential, rider.batch(1, 60))
    assert again[0]["outcome"] == "duplicate"
    assert again[0]["ack"]["acked_seq"] == 120
    gap = post(cloud_server, credential, rider.batch(200, 210))
    assert gap[0]["outcome"] == "gap"
    assert gap[0]["ack"]["missing"] == [[121, 210]]
    tampered = bytearray(rider.batch(121, 180))
    tampered[-70] ^= 1
    bad = post(cloud_server, credential, bytes(tampered), rider.batch(121, 180)[:30])
    assert [r["outcome"] for r in bad] == ["rejected", "rejected"]
    assert bad[1]["reason"] == "truncated"
    stranger = Ed25519PrivateKey.generate()
    sid = device_id(public_key_bytes(stranger))
    forged = encode_batch(seal(sid, rider.fixes[:5], genesis(sid), key=stranger))
    assert post(cloud_server, credential, forged)[0]["reason"] == "no-certificate"


def test_relay_credential_required(cloud_server: CloudServer) -> None:
    anonymous = cloud_server.client()
    assert anonymous.post("/api/ingest", content=b"").status_code == 401


def test_concurrent_duplicates_and_kill_9_lose_and_double_nothing(tmp_path: Path) -> None:
    server = start_cloud(tmp_path / "cloud")
    try:
        admin, race_id, credential = setup_race(server, tmp_path)
        rider = Rider(server, admin, race_id)
        body = [rider.batch(s, s + 59) for s in range(1, 301, 60)]
        results: list[list[dict]] = []  # type: ignore[type-arg]
        threads = [
            threading.Thread(target=lambda: results.append(post(server, credential, *body)))
            for _ in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert max(r[-1]["ack"]["acked_seq"] for r in results) == 300
        server.stop(signal.SIGKILL)  # no clean shutdown: only what was committed survives
        server = start_cloud(tmp_path / "cloud")
        again = post(server, credential, *body)
        assert {r["outcome"] for r in again} == {"duplicate"}
    finally:
        server.stop()
    rows = stored(tmp_path / "cloud", rider.device)
    assert [s for s, _ in rows] == list(range(1, 301)), "every fix exactly once"
    progress = [p for _, p in rows]
    assert progress == sorted(progress)
    assert progress[-1] == pytest.approx(3_000, abs=25)  # 300 s at 10 m/s along the course


def test_fixes_before_enrolment_window_are_refused(
    cloud_server: CloudServer, tmp_path: Path
) -> None:
    admin, race_id, credential = setup_race(cloud_server, tmp_path)
    rider = Rider(cloud_server, admin, race_id)
    old = [replace(f, t_ms=f.t_ms - 86_400_000) for f in rider.fixes[:3]]
    batch = encode_batch(seal(rider.device, old, genesis(rider.device), key=rider.key))
    assert post(cloud_server, credential, batch)[0]["reason"] in {
        "not-yet-valid",
        "outside-validity",
    }
