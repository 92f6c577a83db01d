"""Racers with enrolled devices riding a race's course, and relays posting their batches."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import duckdb
import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sync_protocol.batch import encode_batch, seal
from sync_protocol.certificate import DeviceCertificate
from sync_protocol.chain import device_id, extend_all, genesis, public_key_bytes
from sync_protocol.course import Course
from sync_protocol.fix import Fix
from sync_protocol.framing import encode_frames
from sync_protocol.session import SessionHello
from tests.cloud.conftest import CloudServer
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
        enrolled = self.client.post("/api/devices", json=body)
        assert enrolled.status_code == 201, enrolled.text
        self.certificate = DeviceCertificate.decode(
            base64.b64decode(enrolled.json()["certificate"])
        )
        course = Course.from_dict(admin.get(f"/api/races/{race_id}").json()["course"])
        t0 = start_ms or now_ms()
        at = [course.point_at(min(s * 10.0, course.total_length_m)) for s in range(count + 1)]
        self.fixes = [
            Fix.from_degrees(s, t0 + s * 1000, at[s][0], at[s][1], speed_ms=10.0)
            for s in range(1, count + 1)
        ]
        self.hashes = [genesis(self.device), *extend_all(genesis(self.device), self.fixes)]

    def batch(self, first: int, last: int, *, prev_hash: bool = False) -> bytes:
        """Fixes first..last, signed by the device (with ``prev_hash`` when asked)."""
        fixes = self.fixes[first - 1 : last]
        return encode_batch(
            seal(
                self.device,
                fixes,
                self.hashes[first - 1],
                key=self.key,
                include_prev_hash=prev_hash,
            )
        )

    def mac_batch(self, first: int, last: int, session_key: bytes) -> bytes:
        """Fixes first..last under a session MAC instead of a signature."""
        fixes = self.fixes[first - 1 : last]
        return encode_batch(
            seal(self.device, fixes, self.hashes[first - 1], session_key=session_key)
        )

    def hello(self, session_key: bytes = b"k" * 32) -> bytes:
        """A session hello made now (the server checks it is fresh)."""
        made = time.time_ns() // 1_000_000
        return SessionHello.create(self.key, self.certificate, session_key, made).encode()


def now_ms() -> int:
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
