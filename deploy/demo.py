"""``gruppetto demo``: the whole system on one machine.

Brings up the real pieces as they run in production — the cloud (``gruppetto cloud``) and
an event relay (``gruppetto relay``) as their own processes on loopback — then, through
the cloud's API, an admin, an official and a spectator account, two races on the bundled
course (``deploy/demo/course.gpx``) with 50 riders each, and one tracker per rider
(``tracker_app``: login, device key and certificate, a simulated ride of the course,
signed fixes buffered in SQLite and uploaded over HTTP/3 to the relay), all in this
process. Prints the URLs and credentials, a progress line while it starts and a status
line while it runs, and stops everything cleanly on Ctrl-C, SIGTERM or SIGHUP (or after
``--duration``); if the cloud or the relay dies, it stops with the path of its log.

With ``--data DIR`` the state is kept between runs: accounts are reused (their passwords
are in ``DIR/demo.json``), each run adds two new races, past races stay browsable.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

COURSE = Path(__file__).parent / "demo" / "course.gpx"
CHECKPOINTS = [
    {"name": "Col du Semnoz", "kind": "climb", "distance_m": 5_500, "end_m": 8_500},
    {"name": "Sprint de Vieugy", "kind": "sprint", "distance_m": 16_000},
    {"name": "Ravitaillement", "kind": "feed", "distance_m": 20_000},
]
READY_TIMEOUT_S = 60.0

Say = Callable[[str], None]


class DemoError(RuntimeError):
    """Something the person running the demo can fix (a busy port, a dead process)."""


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """What ``gruppetto demo`` was asked for."""

    data_dir: Path
    """Where every part keeps its state."""
    races: int = 2
    """Races run at once."""
    riders: int = 50
    """Riders per race."""
    cloud_port: int = 8000
    """TCP port of the cloud (0: any free port)."""
    quic_port: int = 4433
    """UDP port of the relay (0: any free port)."""
    page_port: int = 8080
    """TCP port of the relay's spectator page (0: any free port)."""
    laps: int = 1
    """Laps of the 30.7 km circuit."""
    duration_s: float | None = None
    """Stop by itself after this long (None: run until Ctrl-C)."""


@dataclass(slots=True)
class Person:
    """An account the demo made."""

    username: str
    password: str
    role: str
    id: int = 0


@dataclass(slots=True)
class Running:
    """The processes and facts of a running demo."""

    cloud_url: str = ""
    page_url: str = ""
    relay_quic: str = ""
    cert_sha256: str = ""
    processes: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    race_ids: list[int] = field(default_factory=list)


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A free loopback port."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Demo:
    """One run of the demo."""

    def __init__(self, options: DemoOptions, say: Say) -> None:
        self.options = options
        self.say = say
        self.run = Running()
        self.people: dict[str, Person] = {}
        self.riders: list[Person] = []
        self.data = options.data_dir.resolve()
        self.steps = 7
        self.on_the_road = False
        """Started: a process that stops now has crashed, not failed to start."""

    def step(self, n: int, text: str) -> None:
        """A progress line."""
        self.say(f"[{n}/{self.steps}] {text}")

    async def main(self) -> None:
        """Start everything, run until stopped, stop everything."""
        self.data.mkdir(parents=True, exist_ok=True)
        # SIGTERM (kill, systemd, timeout) and SIGHUP (a closed terminal) stop the demo like
        # Ctrl-C does: the cloud and the relay run in their own sessions and would be left
        # holding their ports otherwise.
        loop, task = asyncio.get_running_loop(), asyncio.current_task()
        if task is not None:
            for sig in (signal.SIGTERM, signal.SIGHUP):
                loop.add_signal_handler(sig, task.cancel)
        try:
            await self._start()
            await self._ride()
        finally:
            self._stop_processes()

    async def _start(self) -> None:
        o = self.options
        cloud_port = o.cloud_port or free_port()
        self.step(1, f"starting the cloud on http://127.0.0.1:{cloud_port}")
        self.run.cloud_url = f"http://127.0.0.1:{cloud_port}"
        self._spawn(
            "cloud",
            ["cloud", "--data", str(self.data / "cloud"), "--bind", f"127.0.0.1:{cloud_port}"],
        )
        await self._wait_http(f"{self.run.cloud_url}/healthz/ready", "the cloud")
        self.step(2, "accounts: admin, official, spectator and the racers")
        await asyncio.to_thread(self._accounts)
        self.step(3, f"{o.races} races on the bundled 30.7 km circuit, {o.riders} riders each")
        await asyncio.to_thread(self._races)
        self.step(4, "enrolling and starting the event relay")
        await self._relay()
        self.step(5, f"{len(self.riders)} trackers log in, make device keys, get certificates")
        await self._trackers_login()
        self.step(6, "starting the races")
        await asyncio.to_thread(self._go)

    # -- processes -----------------------------------------------------------------------

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = (self.data / f"{name}.log").open("ab")
        with log:
            process = subprocess.Popen(  # noqa: S603 - our own command
                [sys.executable, "-m", "deploy.cli", *args],
                stdout=subprocess.PIPE if name == "relay" else log,
                stderr=log,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                start_new_session=True,  # Ctrl-C reaches us; we stop them in order
            )
        self.run.processes.append((name, process))
        return process

    async def _wait_http(self, url: str, what: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        async with httpx.AsyncClient(timeout=2) as client:
            while time.monotonic() < deadline:
                self._check_alive()
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(url)).status_code == 200:
                        return
                await asyncio.sleep(0.2)
        raise DemoError(f"{what} did not become ready in {READY_TIMEOUT_S:.0f} s: see {self.data}")

    def _check_alive(self) -> None:
        for name, process in self.run.processes:
            if process.poll() is not None:
                hint = (
                    ""
                    if self.on_the_road
                    else " (a port in use? pass --cloud-port 0 --relay-port 0 --page-port 0 "
                    "to pick free ones)"
                )
                raise DemoError(
                    f"the {name} process stopped (exit {process.returncode}); its log is "
                    f"{self.data / (name + '.log')}{hint}"
                )

    def _stop_processes(self) -> None:
        for _, process in reversed(self.run.processes):  # relay first, then the cloud
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            if process.stdout is not None:
                process.stdout.close()

    # -- the cloud's API -----------------------------------------------------------------

    @contextlib.contextmanager
    def _client(self, person: Person) -> Iterator[httpx.Client]:
        """An API client logged in as ``person``."""
        with httpx.Client(base_url=self.run.cloud_url, timeout=30) as client:
            response = client.post(
                "/api/auth/login", json={"username": person.username, "password": person.password}
            )
            _check(response, f"log in as {person.username}")
            client.headers["Authorization"] = f"Bearer {response.json()['access_token']}"
            yield client

    def _accounts(self) -> None:
        saved = self.data / "demo.json"
        if saved.exists():
            doc = json.loads(saved.read_text())
            self.people = {k: Person(**v) for k, v in doc["people"].items()}
            self.riders = [Person(**r) for r in doc["riders"]]
        else:
            self._create_admin()
        with self._client(self.people["admin"]) as admin:
            for role in ("official", "spectator"):
                if role not in self.people:
                    self.people[role] = self._create(admin, role, role)
            want = self.options.races * self.options.riders
            while len(self.riders) < want:
                self.riders.append(self._create(admin, f"rider{len(self.riders) + 1:03d}", "racer"))
                if len(self.riders) % 20 == 0 or len(self.riders) == want:
                    self.say(f"      {len(self.riders)}/{want} racer accounts")
        doc = {
            "people": {k: _plain(v) for k, v in self.people.items()},
            "riders": [_plain(r) for r in self.riders],
        }
        saved.write_text(json.dumps(doc, indent=1))
        saved.chmod(0o600)

    def _create_admin(self) -> None:
        admin = Person("admin", secrets.token_urlsafe(9), "admin")
        secret = self.data / "admin.password"
        secret.write_text(admin.password + "\n")
        secret.chmod(0o600)
        result = subprocess.run(  # noqa: S603 - our own command
            [sys.executable, "-m", "deploy.cli", "cloud", "--data", str(self.data / "cloud"),
             "create-admin", "--username", admin.username, "--password-file", str(secret)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        secret.unlink()
        if result.returncode != 0:
            raise DemoError(f"could not create the admin: {result.stderr.strip()}")
        self.people["admin"] = admin

    def _create(self, admin: httpx.Client, username: str, role: str) -> Person:
        person = Person(username, secrets.token_urlsafe(9), role)
        response = admin.post(
            "/api/users", json={"username": username, "password": person.password, "role": role}
        )
        _check(response, f"create {username}")
        person.id = int(response.json()["id"])
        return person

    def _races(self) -> None:
        o = self.options
        gpx = COURSE.read_bytes()
        stamp = time.strftime("%H:%M")
        with self._client(self.people["admin"]) as admin:
            for n in range(o.races):
                body = {"name": f"Demo {stamp} - race {n + 1}", "starts_at": _now_ms()}
                race = admin.post("/api/races", json=body)
                _check(race, "create a race")
                race_id = int(race.json()["id"])
                _check(
                    admin.put(f"/api/races/{race_id}/course?laps={o.laps}", content=gpx),
                    "upload the course",
                )
                _check(
                    admin.put(
                        f"/api/races/{race_id}/checkpoints", json={"checkpoints": CHECKPOINTS}
                    ),
                    "set the checkpoints",
                )
                for rider in self.riders[n * o.riders : (n + 1) * o.riders]:
                    _check(
                        admin.post(
                            f"/api/races/{race_id}/registrations", json={"user_id": rider.id}
                        ),
                        f"register {rider.username}",
                    )
                self.run.race_ids.append(race_id)

    async def _relay(self) -> None:
        o = self.options
        with self._client(self.people["admin"]) as admin:
            response = admin.post(
                "/api/relays", json={"name": f"demo relay {time.strftime('%H:%M:%S')}",
                                     "race_ids": self.run.race_ids},
            )  # fmt: skip
            _check(response, "enrol the relay")
        secret = self.data / "relay.credential"
        secret.write_text(response.json()["credential"] + "\n")
        secret.chmod(0o600)
        quic, page = o.quic_port or free_port(socket.SOCK_DGRAM), o.page_port or free_port()
        process = self._spawn(
            "relay",
            ["relay", "--cloud", self.run.cloud_url, "--credential", str(secret),
             "--data", str(self.data / "relay"), "--quic-bind", f"127.0.0.1:{quic}",
             "--http-bind", f"127.0.0.1:{page}", "--interface", "127.0.0.1",
             "--name", "gruppetto-demo"],
        )  # fmt: skip
        assert process.stdout is not None
        line = await asyncio.wait_for(
            asyncio.to_thread(process.stdout.readline), timeout=READY_TIMEOUT_S
        )
        if not line.startswith(b"relay ready "):
            self._check_alive()
            raise DemoError(f"the relay did not start: see {self.data / 'relay.log'}")
        ready = json.loads(line[len(b"relay ready ") :])
        self.run.page_url = ready["page"]
        self.run.relay_quic = f"https://127.0.0.1:{ready['quic_port']}"
        self.run.cert_sha256 = ready["cert_sha256"]
        await self._wait_races_on_relay()

    async def _wait_races_on_relay(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        async with httpx.AsyncClient(timeout=2) as client:
            while time.monotonic() < deadline:
                self._check_alive()
                with contextlib.suppress(httpx.TransportError, ValueError):
                    info = (await client.get(f"{self.run.page_url}api/info")).json()
                    if {r["id"] for r in info["races"]} >= set(self.run.race_ids):
                        return
                await asyncio.sleep(0.2)
        raise DemoError("the relay did not get its races from the cloud")

    async def _trackers_login(self) -> None:
        from tracker_app.account import login

        async def one(index: int, rider: Person) -> None:
            await asyncio.to_thread(
                login, self.run.cloud_url, rider.username, rider.password, self._tracker_dir(rider)
            )
            done[0] += 1
            if done[0] % 20 == 0 or done[0] == len(self.riders):
                self.say(f"      {done[0]}/{len(self.riders)} trackers enrolled")

        done = [0]
        gate = asyncio.Semaphore(8)

        async def gated(index: int, rider: Person) -> None:
            async with gate:
                await one(index, rider)

        await asyncio.gather(*(gated(i, r) for i, r in enumerate(self.riders)))

    def _tracker_dir(self, rider: Person) -> Path:
        return self.data / "trackers" / f"{rider.username}-{self.run.race_ids[0]}"

    def _go(self) -> None:
        with self._client(self.people["admin"]) as admin:
            for race_id in self.run.race_ids:
                _check(admin.post(f"/api/races/{race_id}/state", json={"state": "live"}), "start")

    # -- riding -----------------------------------------------------------------------------

    async def _ride(self) -> None:
        from tracker_app.tracker import RunOptions, run_tracker

        o = self.options
        self.step(7, "riders are on the road")
        self.on_the_road = True
        self._banner()
        lines: dict[str, str] = {}

        async def ride(index: int, rider: Person) -> None:
            race_id = self.run.race_ids[index // o.riders]
            options = RunOptions(
                race_id=race_id,
                source="sim",
                data_dir=self._tracker_dir(rider),
                relay=self.run.relay_quic,
                relay_pin=self.run.cert_sha256,
                seed=index + 1,
                interfaces=(),
            )
            await run_tracker(options, lambda line: lines.__setitem__(rider.username, line))

        tasks = [asyncio.create_task(ride(i, r)) for i, r in enumerate(self.riders)]
        riding = asyncio.gather(*tasks)
        status = asyncio.create_task(self._status_loop())
        watched: set[asyncio.Future[Any]] = {riding, status}
        try:
            done, _ = await asyncio.wait(
                watched, timeout=o.duration_s, return_when=asyncio.FIRST_COMPLETED
            )
            for finished in done:
                finished.result()  # a process that died (DemoError), a tracker that failed
        finally:
            riding.cancel()
            status.cancel()
            for task in tasks:
                task.cancel()
            await asyncio.gather(riding, *tasks, status, return_exceptions=True)
            self.say("stopping: trackers, relay, cloud")

    def _banner(self) -> None:
        p = self.people
        races = ", ".join(f"{self.run.page_url}#race={r}" for r in self.run.race_ids)
        self.say("")
        self.say(f"  spectator page (live, from the relay): {self.run.page_url}")
        self.say(f"  races:                                 {races}")
        self.say(f"  spectator app (cloud, log in):         {self.run.cloud_url}/watch")
        self.say(f"  back office (admin, official):         {self.run.cloud_url}/admin")
        self.say(f"  cloud API:                             {self.run.cloud_url}")
        for role in ("admin", "official", "spectator"):
            self.say(f"  {role:<10} {p[role].username} / {p[role].password}")
        self.say(f"  (accounts are kept in {self.data / 'demo.json'}; Ctrl-C stops)")
        self.say("")

    async def _status_loop(self) -> None:
        """A status line every 10 s; raises DemoError as soon as the cloud or relay dies."""
        async with httpx.AsyncClient(timeout=5) as client:
            while True:
                for _ in range(10):
                    await asyncio.sleep(1)
                    self._check_alive()
                with contextlib.suppress(httpx.HTTPError, ValueError):
                    info = (await client.get(f"{self.run.page_url}api/info")).json()
                    self.say(
                        f"  relay: {info['trackers']} trackers, {info['spectators']} spectators,"
                        f" {info['backlog_fixes']} fixes to forward, uplink {info['uplink']}"
                    )


def _check(response: httpx.Response, what: str) -> None:
    if response.status_code >= 400:
        raise DemoError(f"could not {what}: {response.status_code} {response.text[:300]}")


def _plain(person: Person) -> dict[str, Any]:
    return {"username": person.username, "password": person.password, "role": person.role,
            "id": person.id}  # fmt: skip


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def run_demo(options: DemoOptions, say: Say) -> None:
    """Run the demo in the foreground; Ctrl-C stops it cleanly."""
    demo = Demo(options, say)
    try:
        asyncio.run(demo.main())
    except (KeyboardInterrupt, asyncio.CancelledError):  # Ctrl-C; SIGTERM or SIGHUP
        say("stopped")
