"""The servers of ``bench.fanout``: a real cloud and a real relay on loopback, a live race.

:func:`servers` starts ``gruppetto cloud`` (plain HTTP) and ``gruppetto relay`` as
subprocesses with OS-chosen ports, makes an admin, a race on a circuit, enrols the relay
for it, registers the riders (each a racer account with an enrolled device key and the
certificate the cloud signs), starts the race, and stops everything on the way out — on an
error, Ctrl-C or SIGTERM too. The children are told to die with this process
(``PR_SET_PDEATHSIG``) so even a killed benchmark leaves nothing running.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sync_protocol.chain import public_key_bytes
from sync_protocol.course import Course
from sync_protocol.gpx import course_to_gpx

PASSWORD = "bench password 1"
CIRCUIT_KM = 40.0
"""Long enough that no rider reaches the finish during a run."""

Log = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class RiderSpec:
    """One registered rider with an enrolled device (picklable: it goes to a process)."""

    bib: int
    """Race number (what the frames carry)."""
    key: bytes
    """The device's Ed25519 private key, raw."""
    certificate: bytes
    """The device certificate the cloud issued."""
    offset_m: float
    """Where on the course the rider is at the race's start."""
    speed_ms: float
    """Constant speed along the course."""


@dataclass(frozen=True, slots=True)
class Servers:
    """What the benchmark talks to."""

    race_id: int
    relay_pid: int
    relay_quic_port: int
    relay_spectator_port: int
    """Where the sessions go: the QUIC port, or the fan-out workers' port."""
    relay_workers: int
    """The relay's fan-out worker processes."""
    relay_http_port: int
    cloud_pid: int
    riders: tuple[RiderSpec, ...]
    start_ms: int
    """When the riders were at their ``offset_m`` (wall clock)."""


def circuit_points(km: float = CIRCUIT_KM) -> list[tuple[float, float, float]]:
    """A closed circle of about ``km`` kilometres near 45° N, 6° E."""
    radius = km * 1000 / (2 * math.pi)
    points = [
        (
            45.0 + radius * math.sin(2 * math.pi * i / 240) / 111_195,
            6.0 + radius * math.cos(2 * math.pi * i / 240) / 78_600,
            500.0,
        )
        for i in range(240)
    ]
    return [*points, points[0]]


def circuit() -> Course:
    return Course.from_points(circuit_points(), name="bench circuit")


@contextlib.contextmanager
def servers(
    tmp: Path, riders: int, log: Log, profile: str | None = None, relay_workers: int = 0
) -> Iterator[Servers]:
    """A cloud, a live race of ``riders`` riders, and a relay serving it (with
    ``relay_workers`` fan-out worker processes)."""
    processes: list[subprocess.Popen[bytes]] = []
    previous = signal.signal(signal.SIGTERM, _sigterm)
    try:
        log("starting the cloud on 127.0.0.1 ...")
        cloud_dir = tmp / "cloud"
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        processes.append(
            _spawn(
                ["cloud", "--data", str(cloud_dir), "--bind", f"127.0.0.1:{port}"],
                tmp / "cloud.log",
                env={"GRUPPETTO_REGISTRATIONS": str(riders + 100)},
            )
        )
        _wait_ready(url, processes[0], tmp / "cloud.log")
        with httpx.Client(base_url=url, timeout=60) as http:
            admin = _admin(http, cloud_dir, tmp)
            race = _ok(
                http.post(
                    "/api/races", json={"name": "Bench", "starts_at": _now_ms()}, headers=admin
                )
            )
            race_id = int(race["id"])
            gpx = course_to_gpx(circuit())
            _ok(http.put(f"/api/races/{race_id}/course", content=gpx, headers=admin))
            relay = _ok(
                http.post(
                    "/api/relays", json={"name": "bench", "race_ids": [race_id]}, headers=admin
                )
            )
            log(f"registering {riders} riders and enrolling their devices ...")
            with ThreadPoolExecutor(8) as pool:
                specs = list(pool.map(lambda i: _rider(url, race_id, i), range(riders)))
            _ok(http.post(f"/api/races/{race_id}/state", json={"state": "live"}, headers=admin))
        credential = tmp / "relay.credential"
        credential.write_text(str(relay["credential"]) + "\n")
        log("starting the relay ...")
        relay_args = [
            "relay",
            "--data",
            str(tmp / "relay"),
            "--quic-bind",
            "127.0.0.1:0",
            "--http-bind",
            "127.0.0.1:0",
            "--no-advertise",
            "--cloud",
            url,
            "--credential",
            str(credential),
        ]
        if relay_workers:
            relay_args += ["--fanout-workers", str(relay_workers)]
        relay_process = _spawn(relay_args, tmp / "relay.log", stdout=True, profile=profile)
        processes.append(relay_process)
        ready = _relay_ready(relay_process, tmp / "relay.log")
        _wait_configured(ready["http_port"], race_id, len(specs))
        yield Servers(
            race_id=race_id,
            relay_pid=relay_process.pid,
            relay_quic_port=int(ready["quic_port"]),
            relay_spectator_port=int(ready.get("spectator_port") or ready["quic_port"]),
            relay_workers=relay_workers,
            relay_http_port=int(ready["http_port"]),
            cloud_pid=processes[0].pid,
            riders=tuple(sorted(specs, key=lambda s: s.bib)),
            start_ms=_now_ms(),
        )
    finally:
        for process in reversed(processes):
            stop(process)
        signal.signal(signal.SIGTERM, previous)


def stop(process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """SIGTERM, wait, SIGKILL if it lingers."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)
    if process.stdout is not None:
        process.stdout.close()


def _sigterm(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt  # unwinds through every ``finally``: teardown runs


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the benchmark dies (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _spawn(
    args: list[str],
    log: Path,
    *,
    stdout: bool = False,
    env: dict[str, str] | None = None,
    profile: str | None = None,
) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "deploy.cli", *args]
    if profile:
        command = [sys.executable, "-m", "cProfile", "-o", profile, "-m", "deploy.cli", *args]
    with log.open("ab") as out:
        return subprocess.Popen(
            command,
            stdout=subprocess.PIPE if stdout else out,
            stderr=out,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            start_new_session=True,  # Ctrl-C reaches the benchmark only; it stops them
            preexec_fn=_die_with_parent,
        )


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the cloud exited at start:\n{_tail(log)}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/healthz/ready", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise SystemExit("the cloud did not become ready in 60 s")


def _relay_ready(process: subprocess.Popen[bytes], log: Path) -> dict[str, Any]:
    assert process.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        if line.startswith(b"relay ready "):
            ready: dict[str, Any] = json.loads(line[len(b"relay ready ") :])
            return ready
    raise SystemExit(f"the relay did not start:\n{_tail(log)}")


def _wait_configured(http_port: int, race_id: int, riders: int) -> None:
    """Until the relay serves the race with its whole start list."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError, ValueError):
            info = httpx.get(f"http://127.0.0.1:{http_port}/api/info", timeout=2).json()
            if any(r["id"] == race_id and r["riders"] >= riders for r in info["races"]):
                return
        time.sleep(0.2)
    raise SystemExit("the relay did not get the race's configuration in 60 s")


def _admin(http: httpx.Client, cloud_dir: Path, tmp: Path) -> dict[str, str]:
    secret = tmp / "admin.pw"
    secret.write_text(PASSWORD + "\n")
    subprocess.run(
        [
            *(sys.executable, "-m", "deploy.cli", "cloud", "--data", str(cloud_dir)),
            *("create-admin", "--username", "admin", "--password-file", str(secret)),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return _login(http, "admin")


def _login(http: httpx.Client, name: str) -> dict[str, str]:
    body = _ok(http.post("/api/auth/login", json={"username": name, "password": PASSWORD}))
    return {"Authorization": f"Bearer {body['access_token']}"}


def _rider(url: str, race_id: int, index: int) -> RiderSpec:
    """Register racer ``index``, enter the race, enrol a device key."""
    name = f"rider{index:03d}"
    with httpx.Client(base_url=url, timeout=60) as http:
        account = {"username": name, "password": PASSWORD, "role": "racer"}
        _ok(http.post("/api/auth/register", json=account))
        auth = _login(http, name)
        entry = _ok(http.post(f"/api/races/{race_id}/registrations", json={}, headers=auth))
        key = Ed25519PrivateKey.generate()
        public = base64.b64encode(public_key_bytes(key)).decode()
        device = _ok(http.post("/api/devices", json={"public_key": public}, headers=auth))
    # a bunch of 40 riders and a few ahead, 9-13 m/s: frames change every second
    offset = 200.0 + (index % 40) * 12.0 + (600.0 if index >= 40 else 0.0)
    return RiderSpec(
        bib=int(entry["bib"]),
        key=key.private_bytes_raw(),
        certificate=base64.b64decode(device["certificate"]),
        offset_m=offset,
        speed_ms=9.0 + (index * 7 % 40) / 10,
    )


def _ok(response: httpx.Response) -> dict[str, Any]:
    if response.status_code >= 400:
        raise SystemExit(
            f"{response.request.method} {response.request.url.path}: "
            f"{response.status_code} {response.text[:300]}"
        )
    body: dict[str, Any] = response.json() if response.content else {}
    return body


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-2_000:] if log.exists() else "(no log)"
