"""Benchmark of the tracker's resync: an hour of buffered fixes over loopback HTTP/3.

    python -m bench.sync --json     # 3,600 fixes, 3 riders per path
    python -m bench.sync --quick    # 1,200 fixes, 1 rider per path (under 30 s)

Starts a real cloud (``gruppetto cloud`` with HTTP/3) and a real relay (``gruppetto
relay``) on 127.0.0.1, logs racers in with the tracker's own login, records an hour of
1 Hz fixes into each tracker's SQLite buffer with no link, then times the tracker's
uploader from the moment coverage returns until every fix is acked:

* ``resync_s``: a first connection (full QUIC + TLS handshake, session hello, batches).
* ``resync_resumed_s``: the usual case, a tracker that spoke to the relay before the
  outage: the connection resumes the TLS session and sends the hello as 0-RTT data.
* ``cloud_resync_s``: straight to the cloud (no relay in reach; every batch signed).

Bytes on the wire are UDP payloads both ways (QUIC packets: handshake, certificates,
headers, acks, the hello, the batches and their signatures, the replies), per fix.
Prints one JSON object: {"bench": "sync", "quick": bool, "figures": {...},
"targets": {...}, "met": bool}. Figures are the median over the riders.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sync_protocol.course import Course
from sync_protocol.fix import Fix
from sync_protocol.gpx import course_to_gpx
from tracker_app import account
from tracker_app.h3client import Endpoint, Tickets
from tracker_app.hops import Backoff, Hop, HopList, Link, wall_ms
from tracker_app.simulate import realistic_track
from tracker_app.store import FixStore
from tracker_app.tracker import Tracker, cloud_hop

TARGETS = {"resync_s": 1.0, "bytes_per_fix": 24.0}
PASSWORD = "bench password 1"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sync", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    parser.add_argument("--quick", action="store_true", help="smaller run (under 30 s)")
    args = parser.parse_args(argv)
    fixes = 1_200 if args.quick else 3_600
    riders = 1 if args.quick else 3

    def log(message: str) -> None:
        if not args.json:
            print(message, file=sys.stderr)

    with tempfile.TemporaryDirectory(prefix="bench-sync-") as tmp, _servers(Path(tmp), log) as env:
        runs: dict[str, list[tuple[float, float]]] = {"relay": [], "resumed": [], "cloud": []}
        for rider in range(riders):
            log(f"rider {rider + 1}/{riders}: {fixes} fixes over the relay ...")
            runs["relay"].append(env.resync(fixes, relay=True, warm=False))
            log("... over the relay, resuming the session ...")
            runs["resumed"].append(env.resync(fixes, relay=True, warm=True))
            log("... straight to the cloud ...")
            runs["cloud"].append(env.resync(fixes, relay=False, warm=False))

    def median(name: str, index: int) -> float:
        return statistics.median(run[index] for run in runs[name])

    figures = {
        "fixes": float(fixes),
        "resync_s": round(median("relay", 0), 3),
        "bytes_per_fix": round(median("relay", 1), 2),
        "resync_resumed_s": round(median("resumed", 0), 3),
        "bytes_per_fix_resumed": round(median("resumed", 1), 2),
        "cloud_resync_s": round(median("cloud", 0), 3),
        "cloud_bytes_per_fix": round(median("cloud", 1), 2),
    }
    met = (
        figures["resync_s"] <= TARGETS["resync_s"]
        and figures["bytes_per_fix"] <= TARGETS["bytes_per_fix"]
    )
    result = {
        "bench": "sync",
        "quick": args.quick,
        "figures": figures,
        "targets": {
            "resync_s": f"<= {TARGETS['resync_s']:g}",
            "bytes_per_fix": f"<= {TARGETS['bytes_per_fix']:g}",
        },
        "met": met,
    }
    print(json.dumps(result, indent=None if args.json else 2))
    return 0


class _Env:
    """A running cloud and relay, and what it takes to log racers in."""

    def __init__(self, tmp: Path, cloud: str, cafile: Path, race_id: int, relay: Hop) -> None:
        self.tmp, self.cloud, self.cafile = tmp, cloud, cafile
        self.race_id, self.relay = race_id, relay
        self.riders = 0

    def resync(self, count: int, *, relay: bool, warm: bool) -> tuple[float, float]:
        """Seconds until ``count`` buffered fixes are acked, and wire bytes per fix."""
        self.riders += 1
        name = f"rider{self.riders}"
        _call(
            self.cloud,
            self.cafile,
            "POST",
            "/api/auth/register",
            None,
            {"username": name, "password": PASSWORD, "role": "racer"},
        )
        token = _login(self.cloud, self.cafile, name)
        _call(
            self.cloud, self.cafile, "POST", f"/api/races/{self.race_id}/registrations", token, {}
        )
        data = self.tmp / name
        acct = account.login(self.cloud, name, PASSWORD, data, cafile=self.cafile)
        store = FixStore(data / "fixes.db", acct.certificate.device_id)
        hops = HopList(relays=[self.relay]) if relay else HopList(cloud=cloud_hop(acct))
        tickets = Tickets()
        track = iter(realistic_track(count + 1))
        start = wall_ms()
        if warm:  # the tracker spoke to this hop before the outage: it holds a ticket
            before = Tracker(acct, store, hops, tickets=tickets)
            _buffer(before, store, [next(track)], start)
            asyncio.run(_upload(before))
        tracker = Tracker(acct, store, hops, tickets=tickets, backoff=Backoff(0.05, 0.5))
        _buffer(tracker, store, list(track)[:count], start)  # recorded offline (not timed)
        seconds = asyncio.run(_upload(tracker))
        radio = tracker.uploader.radio
        if warm and not tracker.uploader.resumed:
            raise SystemExit("the relay did not resume the TLS session")
        store.close()
        return seconds, (radio.bytes_sent + radio.bytes_received) / count


def _buffer(tracker: Tracker, store: FixStore, track: list[Fix], start_ms: int) -> None:
    """Record ``track`` as the tracker's next fixes, 1 Hz from ``start_ms``, in one commit."""
    items = []
    for fix in track:
        seq = tracker.sender.state.recorded_seq + 1
        moved = Fix(
            seq,
            start_ms + seq * 1000,
            fix.lat_e7,
            fix.lon_e7,
            fix.ele_dm,
            fix.speed_cms,
            fix.heading_dd,
            fix.hacc_dm,
        )
        items.append((moved, tracker.sender.record(moved)))
    store.record_many(items, tracker.sender.state)


async def _upload(tracker: Tracker) -> float:
    """Run the uploader until nothing waits; the time it took."""
    started = time.perf_counter()
    task = asyncio.create_task(tracker.uploader.run())
    tracker.uploader.flush()  # a lone live fix would wait for its seal
    done = await tracker.uploader.wait_until(lambda: tracker.sender.waiting == 0, 60)
    elapsed = time.perf_counter() - started
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    if not done:
        raise SystemExit(f"not every fix was acked: {tracker.uploader.last_error}")
    return elapsed


@contextlib.contextmanager
def _servers(tmp: Path, log: Any) -> Iterator[_Env]:
    log("starting the cloud and a relay on 127.0.0.1 ...")
    cloud_dir = tmp / "cloud"
    tcp, udp = _free_port(socket.SOCK_STREAM), _free_port(socket.SOCK_DGRAM)
    url = f"https://127.0.0.1:{tcp}"
    processes: list[subprocess.Popen[bytes]] = []
    try:
        processes.append(
            _spawn(
                [
                    "cloud",
                    "--data",
                    str(cloud_dir),
                    "--bind",
                    f"127.0.0.1:{tcp}",
                    "--quic-bind",
                    f"127.0.0.1:{udp}",
                ],
                tmp / "cloud.log",
            )
        )
        cafile = cloud_dir / "tls" / "cert.pem"
        _wait_ready(url, cafile, processes[0])
        secret = tmp / "admin.pw"
        secret.write_text(PASSWORD + "\n")
        subprocess.run(
            [
                sys.executable,
                "-m",
                "deploy.cli",
                "cloud",
                "--data",
                str(cloud_dir),
                "create-admin",
                "--username",
                "admin",
                "--password-file",
                str(secret),
            ],
            check=True,
            capture_output=True,
        )
        admin = _login(url, cafile, "admin")
        race = _call(
            url,
            cafile,
            "POST",
            "/api/races",
            admin,
            {"name": "Bench", "starts_at": "2026-07-01T10:00:00Z"},
        )
        _put_course(url, cafile, admin, race["id"])
        relay = _call(
            url, cafile, "POST", "/api/relays", admin, {"name": "bench", "race_ids": [race["id"]]}
        )
        credential = tmp / "relay.credential"
        credential.write_text(relay["credential"] + "\n")
        relay_process = _spawn(
            [
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
                "--cloud-ca",
                str(cafile),
            ],
            tmp / "relay.log",
            stdout=subprocess.PIPE,
        )
        processes.append(relay_process)
        ready = _relay_ready(relay_process)
        pin = bytes.fromhex(ready["cert_sha256"])
        hop = Hop(Link.RELAY, "bench", Endpoint("127.0.0.1", ready["quic_port"], pin_sha256=pin))
        yield _Env(tmp, url, cafile, race["id"], hop)
    finally:
        for process in reversed(processes):
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def _spawn(args: list[str], log: Path, stdout: int | None = None) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "deploy.cli", *args],
            stdout=stdout if stdout is not None else out,
            stderr=out,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


def _wait_ready(url: str, cafile: Path, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("the cloud exited at start (see its log)")
        try:
            _call(url, cafile, "GET", "/healthz/ready", None, None)
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the cloud did not become ready in 60 s")


def _relay_ready(process: subprocess.Popen[bytes]) -> dict[str, Any]:
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith(b"relay ready "):
            ready: dict[str, Any] = json.loads(line[len(b"relay ready ") :])
            return ready
    raise SystemExit("the relay exited at start (see its log)")


def _put_course(url: str, cafile: Path, token: str, race_id: int) -> None:
    radius = 5_000 / (2 * math.pi)
    points = [
        (
            45.0 + radius * math.sin(2 * math.pi * i / 120) / 111_195,
            6.0 + radius * math.cos(2 * math.pi * i / 120) / 78_600,
            500.0,
        )
        for i in range(121)
    ]
    gpx = course_to_gpx(Course.from_points(points, name="circuit"))
    _call(url, cafile, "PUT", f"/api/races/{race_id}/course", token, gpx)


def _login(url: str, cafile: Path, name: str) -> str:
    body = _call(
        url, cafile, "POST", "/api/auth/login", None, {"username": name, "password": PASSWORD}
    )
    return str(body["access_token"])


def _call(
    url: str, cafile: Path, method: str, path: str, token: str | None, body: Any
) -> dict[str, Any]:
    data = body if isinstance(body, bytes) else None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url + path, data=data, method=method, headers=headers)
    context = ssl.create_default_context(cafile=str(cafile))
    with urllib.request.urlopen(request, timeout=30, context=context) as response:
        raw = response.read()
    value = json.loads(raw) if raw else {}
    return value if isinstance(value, dict) else {"items": value}


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


if __name__ == "__main__":
    raise SystemExit(main())
