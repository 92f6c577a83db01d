"""``gruppetto demo``: the whole system on one machine.

Brings up the real pieces as they run in production — the cloud (``gruppetto cloud``) and
an event relay (``gruppetto relay``) as their own processes on loopback — then, through
the cloud's API, an admin, an official and a spectator account, two races on the bundled
course (``deploy/demo/course.gpx``) with 50 riders each, and one tracker per rider
(``tracker_app``: login, device key and certificate, a simulated ride of the course,
signed fixes buffered in SQLite and uploaded over HTTP/3 to the relay), all in this
process. Prints the URLs and credentials, progress lines while it starts and a status
line while it runs, and stops everything cleanly on Ctrl-C, SIGTERM or SIGHUP (or after
``--duration``); if the cloud or the relay dies, it stops with the path of its log.

The start is a pipeline, race by race, so the first riders are on the road long before
the last account exists. Every account costs the cloud an Argon2id hash and every
tracker's login an Argon2id verify (a few tenths of a second each here); a race takes
registrations only while it is scheduled, so each race goes live once its own start list
is complete and the relay has it. Then each of its trackers starts riding as soon as it
has logged in, while the next race's accounts are made. :data:`IN_FLIGHT` account
creations and logins run at once, first race first (a priority queue of jobs).

With ``--data DIR`` the state is kept between runs: accounts are reused (their passwords
are in ``DIR/demo.json``, written before each account is created, so a start cut short
resumes), each run adds two new races, past races stay browsable.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
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
IN_FLIGHT = 8
"""Account creations and tracker logins under way at once. The cloud hashes and verifies
passwords in worker threads, 4 at a time (``cloud/routes/accounts.py``); the other
requests are meanwhile in the rest of their round trips (registration, device enrolment,
the race, token revocation), so a hash is always waiting for a free core. Measured here
(``bench.startup``, a second run: logins only): 100 riders on the road in ~35 s with
8, ~65 s with 4."""

Say = Callable[[str], None]
Hold = Callable[[int], Awaitable[None]]
Job = tuple[tuple[int, int, int], Callable[[], Coroutine[Any, Any, None]]]
"""A start job: its priority (race, phase, index; lowest first) and what to run."""


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
    """Stop by itself this long after the banner (None: run until Ctrl-C)."""


@dataclass(slots=True)
class Person:
    """An account the demo made (``id`` 0: not confirmed by the cloud yet)."""

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

    def __init__(self, options: DemoOptions, say: Say, *, hold: Hold | None = None) -> None:
        self.options = options
        self.say = say
        self.hold = hold
        """Awaited before racer account ``index`` is created (tests pause the start here)."""
        self.run = Running()
        self.people: dict[str, Person] = {}
        self.riders: list[Person] = []
        self.data = options.data_dir.resolve()
        self.steps = 7
        self.on_the_road = False
        """Started: a process that stops now has crashed, not failed to start."""
        self.want = options.races * options.riders
        self.jobs: asyncio.PriorityQueue[Job] = asyncio.PriorityQueue()
        self.tasks: set[asyncio.Task[None]] = set()
        self.outcome: asyncio.Future[None] | None = None
        self.admin: httpx.AsyncClient | None = None
        self.registered = [0] * options.races
        self.ready = [asyncio.Event() for _ in range(options.races)]
        """Race ``n``'s start list is complete."""
        self.live = [asyncio.Event() for _ in range(options.races)]
        """Race ``n`` is live: its logged-in trackers ride."""
        self.staff = asyncio.Event()
        """The official and spectator accounts exist."""
        self.first_rider = asyncio.Event()
        self.accounts = 0
        """Racer accounts that exist."""
        self.on_road = 0
        """Trackers riding."""
        self.finished = 0
        """Trackers that rode to the finish."""
        self.lines: dict[str, str] = {}
        """Each tracker's last status line."""

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
        self.outcome = loop.create_future()
        try:
            self._watch(self._start())
            await self.outcome  # every rider finished, --duration, or the first failure
        finally:
            await self._stop_tasks()
            self._stop_processes()

    # -- the start, a pipeline ------------------------------------------------------------

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
        self._watch(self._status_loop())
        self.step(2, "accounts: admin, official, spectator")
        self._load()
        await self._admin_account()
        self.step(3, f"{o.races} races on the bundled 30.7 km circuit, {o.riders} riders each")
        await self._races()
        self.step(
            4,
            f"racers: accounts, registrations, tracker logins; race by race, {IN_FLIGHT} at a "
            "time (a race starts once its start list is complete)",
        )
        self._plan()
        for _ in range(IN_FLIGHT):
            self._watch(self._worker())
        self._watch(self._go_live())
        self._watch(self._announce())

    def _load(self) -> None:
        saved = self.data / "demo.json"
        if saved.exists():
            doc = json.loads(saved.read_text())
            self.people = {k: Person(**v) for k, v in doc["people"].items()}
            self.riders = [Person(**r) for r in doc["riders"]]

    def _save(self) -> None:
        """demo.json, owner-only, replaced atomically; written before an account is made."""
        doc = {
            "people": {k: _plain(v) for k, v in self.people.items()},
            "riders": [_plain(r) for r in self.riders],
        }
        path = self.data / "demo.json"
        partial = path.with_name("demo.json.partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(doc, out, indent=1)
        os.replace(partial, path)

    def _plan(self) -> None:
        """Every account the run needs, passwords chosen and saved; the missing ones queued."""
        for role in ("official", "spectator"):
            if role not in self.people:
                self.people[role] = Person(role, secrets.token_urlsafe(9), role)
        while len(self.riders) < self.want:
            name = f"rider{len(self.riders) + 1:03d}"
            self.riders.append(Person(name, secrets.token_urlsafe(9), "racer"))
        self._save()
        self.accounts = sum(1 for r in self.riders[: self.want] if r.id)
        self.jobs.put_nowait(((0, 0, -1), self._staff))
        for index in range(self.want):
            key = (index // self.options.riders, 0, index)
            self.jobs.put_nowait((key, functools.partial(self._racer, index)))

    async def _worker(self) -> None:
        while True:
            _, job = await self.jobs.get()
            await job()

    async def _staff(self) -> None:
        for role in ("official", "spectator"):
            person = self.people[role]
            if not person.id:
                await self._create(person)
        self.staff.set()

    async def _racer(self, index: int) -> None:
        """Racer ``index``: its account if new, its registration; then its login is queued."""
        o, person = self.options, self.riders[index]
        race = index // o.riders
        if not person.id:
            if self.hold is not None:
                await self.hold(index)
            await self._create(person)
            self.accounts += 1
            if self.accounts % 20 == 0 or self.accounts == self.want:
                self.say(f"      {self.accounts}/{self.want} racer accounts")
        race_id = self.run.race_ids[race]
        response = await self._api().post(
            f"/api/races/{race_id}/registrations", json={"user_id": person.id}
        )
        _check(response, f"register {person.username}")
        self.registered[race] += 1
        if self.registered[race] == o.riders:
            self.ready[race].set()
        self.jobs.put_nowait(((race, 1, index), functools.partial(self._login, index)))

    async def _login(self, index: int) -> None:
        """The tracker's own login: Argon2id verify, device key, certificate; then it rides."""
        from tracker_app.account import login
        from tracker_app.errors import TrackerError

        rider = self.riders[index]
        try:
            await asyncio.to_thread(
                login, self.run.cloud_url, rider.username, rider.password, self._tracker_dir(rider)
            )
        except TrackerError as exc:
            raise DemoError(f"the tracker of {rider.username} could not log in: {exc}") from None
        self._watch(self._ride(index))

    async def _go_live(self) -> None:
        """Each race in turn: start list complete and on the relay, then live."""
        for n, race_id in enumerate(self.run.race_ids):
            await self.ready[n].wait()
            if n == 0:  # its first configuration holds race 1's start list
                self.step(5, "enrolling and starting the event relay")
                await self._relay()
            await self._wait_start_list(race_id, self.options.riders)
            response = await self._api().post(f"/api/races/{race_id}/state", json={"state": "live"})
            _check(response, f"start race {race_id}")
            if n == 0:
                self.step(6, "race 1 is live: each of its trackers rides once it has logged in")
            else:
                self.say(f"      race {n + 1} is live")
            self.live[n].set()

    async def _announce(self) -> None:
        """The banner, as soon as the spectator app has a rider to show."""
        await self.first_rider.wait()
        await self.staff.wait()
        self.step(7, "riders are on the road")
        self.on_the_road = True
        self._banner()
        if self.options.duration_s is not None:
            asyncio.get_running_loop().call_later(self.options.duration_s, self._finish)

    async def _ride(self, index: int) -> None:
        from tracker_app.errors import TrackerError
        from tracker_app.tracker import RunOptions, run_tracker

        rider = self.riders[index]
        race = index // self.options.riders
        await self.live[race].wait()
        self.on_road += 1
        self.first_rider.set()
        if self.on_road % 10 == 0 or self.on_road == self.want:
            self.say(f"      riders on the road: {self.on_road}/{self.want}")
        options = RunOptions(
            race_id=self.run.race_ids[race],
            source="sim",
            data_dir=self._tracker_dir(rider),
            relay=self.run.relay_quic,
            relay_pin=self.run.cert_sha256,
            seed=index + 1,
            interfaces=(),  # no zeroconf: the relay is given (it announces on 127.0.0.1)
        )
        try:
            await run_tracker(options, functools.partial(self.lines.__setitem__, rider.username))
        except TrackerError as exc:
            raise DemoError(f"the tracker of {rider.username} stopped: {exc}") from None
        self.finished += 1
        if self.finished == self.want:
            self._finish()

    def _tracker_dir(self, rider: Person) -> Path:
        return self.data / "trackers" / f"{rider.username}-{self.run.race_ids[0]}"

    # -- tasks --------------------------------------------------------------------------

    def _watch(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` as a task that the stop cancels; its failure stops the demo."""
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is None or self.outcome is None or self.outcome.done():
            return
        if isinstance(error, httpx.HTTPError):  # most likely the cloud or the relay died
            try:
                self._check_alive()
                error = DemoError(
                    f"the cloud or the relay did not answer ({error}): see {self.data}"
                )
            except DemoError as dead:
                error = dead
        self.outcome.set_exception(error)

    def _finish(self) -> None:
        if self.outcome is not None and not self.outcome.done():
            self.outcome.set_result(None)

    async def _stop_tasks(self) -> None:
        """Cancel every task (a tracker started a moment ago too) and wait for them."""
        while self.tasks:
            tasks = list(self.tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if self.admin is not None:
            await self.admin.aclose()
        self.say("stopping: trackers, relay, cloud")

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

    def _api(self) -> httpx.AsyncClient:
        if self.admin is None:
            raise RuntimeError("the admin is not logged in yet")
        return self.admin

    async def _admin_account(self) -> None:
        """The admin (made offline with ``cloud create-admin`` on a fresh --data), logged in."""
        admin = self.people.get("admin")
        if admin is None:
            admin = self.people["admin"] = Person("admin", secrets.token_urlsafe(9), "admin")
            self._save()
        if not admin.id:
            await self._create_admin(admin)
        self.admin = httpx.AsyncClient(base_url=self.run.cloud_url, timeout=30)
        response = await self.admin.post(
            "/api/auth/login", json={"username": admin.username, "password": admin.password}
        )
        _check(response, f"log in as {admin.username}")
        body = response.json()
        self.admin.headers["Authorization"] = f"Bearer {body['access_token']}"
        if not admin.id:
            admin.id = int(body["user"]["id"])
            self._save()

    async def _create_admin(self, admin: Person) -> None:
        secret = self.data / "admin.password"
        secret.write_text(admin.password + "\n")
        secret.chmod(0o600)
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "deploy.cli", "cloud", "--data", str(self.data / "cloud"),
                "create-admin", "--username", admin.username, "--password-file", str(secret),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            try:
                _, err = await asyncio.wait_for(process.communicate(), timeout=READY_TIMEOUT_S)
            except BaseException:  # stopped (Ctrl-C) or timed out: it goes too
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                raise
        finally:
            secret.unlink()
        error = err.decode(errors="replace").strip()
        # "already exists": an earlier run stopped after making it, with this saved password
        if process.returncode != 0 and "already exists" not in error:
            raise DemoError(f"could not create the admin: {error}")

    async def _create(self, person: Person) -> None:
        """Create ``person`` (saved with its password beforehand) and note its id."""
        response = await self._api().post(
            "/api/users",
            json={"username": person.username, "password": person.password, "role": person.role},
        )
        if response.status_code == 409:  # made by a run that stopped before saving the id
            listed = await self._api().get("/api/users", params={"role": person.role})
            _check(listed, "list the accounts")
            ids = [u["id"] for u in listed.json() if u["username"] == person.username]
            if not ids:
                _check(response, f"create {person.username}")
            person.id = int(ids[0])
        else:
            _check(response, f"create {person.username}")
            person.id = int(response.json()["id"])
        self._save()

    async def _races(self) -> None:
        o, api = self.options, self._api()
        gpx = COURSE.read_bytes()
        stamp = time.strftime("%H:%M")
        for n in range(o.races):
            body = {"name": f"Demo {stamp} - race {n + 1}", "starts_at": _now_ms()}
            race = await api.post("/api/races", json=body)
            _check(race, "create a race")
            race_id = int(race.json()["id"])
            course = await api.put(f"/api/races/{race_id}/course?laps={o.laps}", content=gpx)
            _check(course, "upload the course")
            checkpoints = await api.put(
                f"/api/races/{race_id}/checkpoints", json={"checkpoints": CHECKPOINTS}
            )
            _check(checkpoints, "set the checkpoints")
            self.run.race_ids.append(race_id)

    async def _relay(self) -> None:
        o = self.options
        response = await self._api().post(
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
        if process.stdout is None:
            raise RuntimeError("the relay's stdout is not a pipe")
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

    async def _wait_start_list(self, race_id: int, riders: int) -> None:
        """Until the relay serves the race with its whole start list (it refreshes its
        configuration from the cloud every 15 s: a fix of a rider it does not know yet
        would be stored, but not shown)."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        async with httpx.AsyncClient(timeout=2) as client:
            while time.monotonic() < deadline:
                self._check_alive()
                with contextlib.suppress(httpx.TransportError, ValueError, KeyError):
                    info = (await client.get(f"{self.run.page_url}api/info")).json()
                    if any(r["id"] == race_id and r["riders"] >= riders for r in info["races"]):
                        return
                await asyncio.sleep(0.2)
        raise DemoError(f"the relay did not get race {race_id}'s start list from the cloud")

    # -- running ------------------------------------------------------------------------

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
        """Checks the cloud and relay every second (DemoError as soon as one dies); once
        riders are on the road, a status line every 10 s."""
        async with httpx.AsyncClient(timeout=5) as client:
            while True:
                for _ in range(10):
                    await asyncio.sleep(1)
                    self._check_alive()
                if not self.on_the_road:
                    continue
                with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
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
