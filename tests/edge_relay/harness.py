"""A real ``gruppetto relay`` process on loopback, and riders that talk to it over HTTP/3.

``start_relay`` runs the relay as a subprocess (ports chosen by the OS, zeroconf off
unless asked) and waits for its ``relay ready {json}`` line. ``RelayRider`` is a racer
registered in a real cloud, with a device key and certificate, who records fixes along
the race's course and uploads them with the protocol's own session hello and batches.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sync_protocol.batch import encode_batch, seal
from sync_protocol.certificate import DeviceCertificate
from sync_protocol.chain import device_id, extend_all, genesis, public_key_bytes
from sync_protocol.course import Course
from sync_protocol.device_status import DeviceStatus
from sync_protocol.fix import Fix
from sync_protocol.session import SessionHello
from tests.cloud.conftest import CloudServer
from tests.cloud.helpers import admin_client, loop_gpx, user_client


@dataclass
class RelayProcess:
    """A running ``gruppetto relay``."""

    process: subprocess.Popen[bytes]
    data_dir: Path
    quic_port: int
    http_port: int
    cert_sha256: str
    args: list[str]
    clients: list[httpx.Client] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def client(self) -> httpx.Client:
        client = httpx.Client(base_url=self.url, timeout=10)
        self.clients.append(client)
        return client

    def stop(self, sig: int = signal.SIGTERM) -> None:
        for client in self.clients:
            client.close()
        if self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=30)
        if self.process.stdout is not None:
            self.process.stdout.close()

    def restart(self, *, same_ports: bool = True) -> RelayProcess:
        """Start the relay again on the same data directory (and ports)."""
        self.stop()
        args = list(self.args)
        if same_ports:
            args = _replace_flag(args, "--quic-bind", f"127.0.0.1:{self.quic_port}")
            args = _replace_flag(args, "--http-bind", f"127.0.0.1:{self.http_port}")
        return _launch(args, self.data_dir)


def start_relay(
    data_dir: Path,
    cloud: CloudServer | None = None,
    credential: str | None = None,
    *extra: str,
) -> RelayProcess:
    """Start ``gruppetto relay`` on loopback with OS-chosen ports."""
    data_dir.mkdir(parents=True, exist_ok=True)
    args = [
        "--data",
        str(data_dir),
        "--quic-bind",
        "127.0.0.1:0",
        "--http-bind",
        "127.0.0.1:0",
    ]
    if "--advertise" not in extra:
        args.append("--no-advertise")
    if cloud is not None and credential is not None:
        secret = data_dir.parent / f"{data_dir.name}.credential"
        secret.write_text(credential + "\n")
        args += ["--cloud", cloud.url, "--credential", str(secret)]
    return _launch([*args, *extra], data_dir)


def _launch(args: list[str], data_dir: Path) -> RelayProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with (data_dir / "relay.log").open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "deploy.cli", "relay", *args],
            stdout=subprocess.PIPE,
            stderr=log,
            env=env,
        )
    assert process.stdout is not None
    ready = _ready_line(process, process.stdout, data_dir)
    return RelayProcess(
        process, data_dir, ready["quic_port"], ready["http_port"], ready["cert_sha256"], args
    )


def _ready_line(process: subprocess.Popen[bytes], out: IO[bytes], data_dir: Path) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = out.readline()
        if not line:
            break
        if line.startswith(b"relay ready "):
            return json.loads(line[len(b"relay ready ") :])  # type: ignore[no-any-return]
    process.kill()
    process.wait()
    out.close()
    log = (data_dir / "relay.log").read_text(errors="replace")[-3000:]
    raise AssertionError(f"relay did not start (exit {process.poll()}):\n{log}")


def _replace_flag(args: list[str], flag: str, value: str) -> list[str]:
    out = list(args)
    out[out.index(flag) + 1] = value
    return out


def setup_relay_race(
    cloud: CloudServer, tmp_path: Path, *, km: float = 5.0, state: str | None = "live"
) -> tuple[httpx.Client, int, str]:
    """An admin, a race on a circuit, a relay enrolled for it (credential returned)."""
    admin = admin_client(cloud, tmp_path)
    race_id = admin.post("/api/races", json={"name": "Crit", "starts_at": now_ms()}).json()["id"]
    assert admin.put(f"/api/races/{race_id}/course", content=loop_gpx(km)).status_code == 200
    relay = admin.post("/api/relays", json={"name": f"relay-{race_id}", "race_ids": [race_id]})
    assert relay.status_code == 201, relay.text
    return admin, race_id, relay.json()["credential"]


def start_race(admin: httpx.Client, race_id: int) -> None:
    response = admin.post(f"/api/races/{race_id}/state", json={"state": "live"})
    assert response.status_code == 200, response.text


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class RelayRider:
    """A racer with an enrolled device, riding the race's course at ``speed`` m/s."""

    def __init__(
        self,
        cloud: CloudServer,
        admin: httpx.Client,
        race_id: int,
        count: int = 120,
        *,
        speed: float = 10.0,
        start_ms: int | None = None,
        offset_m: float = 0.0,
    ) -> None:
        self.client, self.id = user_client(cloud, "racer")
        response = self.client.post(f"/api/races/{race_id}/registrations", json={})
        assert response.status_code == 201, response.text
        self.bib = int(response.json().get("bib", 0)) if response.content else 0
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
        # certificates start five minutes before enrolment: record from four minutes back
        t0 = start_ms if start_ms is not None else now_ms() - 240_000
        length = course.total_length_m
        at = [course.point_at(min(offset_m + s * speed, length - 1)) for s in range(count + 1)]
        self.fixes = [
            Fix.from_degrees(s, t0 + s * 1000, at[s][0], at[s][1], speed_ms=speed)
            for s in range(1, count + 1)
        ]
        self.hashes = [genesis(self.device), *extend_all(genesis(self.device), self.fixes)]
        self.session_key = os.urandom(32)

    def hello(self, at_ms: int | None = None) -> bytes:
        t = at_ms if at_ms is not None else now_ms()
        return SessionHello.create(self.key, self.certificate, self.session_key, t).encode()

    def status(
        self,
        battery_pct: int,
        charging: bool = False,
        *,
        at_ms: int | None = None,
        mac: bool = True,
    ) -> bytes:
        """A device status (battery), MAC'd with the session key or signed by the device."""
        t = at_ms if at_ms is not None else now_ms()
        if mac:
            made = DeviceStatus.create(
                self.device, t, battery_pct, charging, session_key=self.session_key
            )
        else:
            made = DeviceStatus.create(self.device, t, battery_pct, charging, key=self.key)
        return made.encode()

    def batch(self, first: int, last: int, *, mac: bool = False, prev: bool = False) -> bytes:
        fixes = self.fixes[first - 1 : last]
        kwargs = {"session_key": self.session_key} if mac else {"key": self.key}
        return encode_batch(
            seal(
                self.device,
                fixes,
                self.hashes[first - 1],
                include_prev_hash=prev,
                **kwargs,  # type: ignore[arg-type]
            )
        )
