"""``gruppetto demo`` brings up the whole system, riders move, Ctrl-C stops it cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from deploy.demo import CHECKPOINTS, COURSE, Demo, DemoOptions
from sync_protocol.gpx import course_from_gpx


def test_the_bundled_course_is_a_realistic_circuit() -> None:
    course = course_from_gpx(COURSE.read_bytes(), laps=2)  # laps: a closed circuit
    assert 30_000 <= course.lap_length_m <= 31_500  # "the bundled 30.7 km circuit"
    elevation = {d: course.point_at(d)[2] or 0.0 for d in range(0, int(course.lap_length_m), 100)}
    grades = [abs(elevation[d + 100] - elevation[d]) for d in list(elevation)[:-1]]
    assert max(grades) <= 12, "steeper than 12% over 100 m: not a road race course"
    climb = CHECKPOINTS[0]
    start_m, end_m = climb["distance_m"], climb["end_m"]
    assert climb["kind"] == "climb"
    assert isinstance(start_m, int)
    assert isinstance(end_m, int)
    rise = elevation[end_m] - elevation[start_m]
    assert 0.05 <= rise / (end_m - start_m) <= 0.10, "the climb averages 5-10%, like a real col"
    for checkpoint in CHECKPOINTS:
        distance = checkpoint["distance_m"]
        assert isinstance(distance, int)
        assert 0 < distance < course.lap_length_m


def start(data: Path, *args: str) -> tuple[subprocess.Popen[str], str]:
    """Start the demo on free ports; its output up to the banner's last line."""
    process = subprocess.Popen(
        [sys.executable, "-m", "deploy.cli", "demo", "--data", str(data),
         "--cloud-port", "0", "--relay-port", "0", "--page-port", "0", *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    out: list[str] = []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            process.kill()
            pytest.fail("demo exited early:\n" + "".join(out))
        out.append(line)
        if "Ctrl-C stops" in line:
            return process, "".join(out)
    process.kill()
    pytest.fail("no banner in 240 s:\n" + "".join(out))


def read_until(process: subprocess.Popen[str], text: str) -> str:
    """The demo's next lines, up to the first that contains ``text``."""
    assert process.stdout is not None
    out: list[str] = []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            pytest.fail(f"demo exited before {text!r}:\n" + "".join(out))
        out.append(line)
        if text in line:
            return "".join(out)
    pytest.fail(f"no {text!r} in 240 s:\n" + "".join(out))


def banner(text: str) -> dict[str, str]:
    """The URLs and the credentials the demo printed."""
    found = {}
    for key, pattern in [
        ("page", r"spectator page \(live, from the relay\): (\S+)"),
        ("cloud", r"cloud API:\s+(\S+)"),
        ("admin", r"admin\s+admin / (\S+)"),
        ("official", r"official\s+official / (\S+)"),
        ("spectator", r"spectator\s+spectator / (\S+)"),
    ]:
        match = re.search(pattern, text)
        assert match is not None, f"no {key} in:\n{text}"
        found[key] = match[1]
    return found


def stop(process: subprocess.Popen[str], how: signal.Signals) -> str:
    process.send_signal(how)
    rest, _ = process.communicate(timeout=60)
    assert process.returncode == 0, rest
    assert "stopping: trackers, relay, cloud" in rest
    return rest


def test_demo_runs_the_whole_system_and_stops_cleanly(tmp_path: Path) -> None:
    process, text = start(tmp_path / "demo", "--riders", "3")
    try:
        for n in range(1, 8):
            assert f"[{n}/7]" in text  # progress while it starts
        page = banner(text)["page"]
        text += read_until(process, "riders on the road: 6/6")  # the start goes on after it
        assert "6/6 racer accounts" in text
        race_ids = [int(r) for r in re.findall(r"#race=(\d+)", text)]
        assert len(race_ids) == 2

        def moving() -> bool:
            riders = httpx.get(f"{page}api/races/{race_ids[0]}/standings").json()["riders"]
            return len(riders) == 3 and all((r["progress_m"] or 0) > 0 for r in riders)

        deadline = time.monotonic() + 60
        while not moving():
            assert time.monotonic() < deadline, "riders never moved on the relay"
            time.sleep(0.5)
        saved = json.loads((tmp_path / "demo" / "demo.json").read_text())
        assert {"admin", "official", "spectator"} <= set(saved["people"])
    finally:
        stop(process, signal.SIGINT)


def test_data_dir_keeps_state_and_sigterm_stops_every_process(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    first, text = start(data, "--riders", "2")
    before = banner(text)
    first_races = {int(r) for r in re.findall(r"#race=(\d+)", text)}
    stop(first, signal.SIGINT)

    second, text = start(data, "--riders", "2")
    try:
        after = banner(text)
        for role in ("admin", "official", "spectator"):
            assert after[role] == before[role], f"the {role} account was not kept"
        assert "racer accounts" not in text  # the racers were kept too
        new_races = {int(r) for r in re.findall(r"#race=(\d+)", text)}
        assert len(new_races) == 2
        assert not new_races & first_races
        with httpx.Client(base_url=after["cloud"]) as cloud:
            login = {"username": "spectator", "password": after["spectator"]}
            token = cloud.post("/api/auth/login", json=login).json()["access_token"]
            races = cloud.get("/api/races", headers={"Authorization": f"Bearer {token}"})
            assert first_races | new_races <= {race["id"] for race in races.json()}
    finally:
        # SIGTERM (kill, systemd, timeout) stops the cloud and relay too: no port left held
        stop(second, signal.SIGTERM)
    for url in (after["cloud"] + "/healthz/live", after["page"] + "healthz/live"):
        with pytest.raises(httpx.TransportError):
            httpx.get(url, timeout=2)


def test_first_riders_ride_before_the_last_accounts_exist(tmp_path: Path) -> None:
    """The start is a pipeline: race 1's riders move on the relay while race 2's accounts
    are still to be made. Race 2's account creations are held until a rider of race 1 is
    seen moving; a start that made every account first would never get there."""
    riders = 2
    options = DemoOptions(
        tmp_path / "demo", races=2, riders=riders, cloud_port=0, quic_port=0, page_port=0
    )
    lines: list[str] = []
    seen: dict[str, Any] = {}
    moving: asyncio.Task[None] | None = None

    async def race_one_moving() -> None:
        async with httpx.AsyncClient(timeout=5) as client:
            while True:
                await asyncio.sleep(0.2)
                if not demo.run.page_url:
                    continue  # the relay starts once race 1's start list is complete
                url = f"{demo.run.page_url}api/races/{demo.run.race_ids[0]}/standings"
                with contextlib.suppress(httpx.TransportError):
                    standings = (await client.get(url)).json()
                    if standings["status"] == "live" and any(
                        (r["progress_m"] or 0) > 0 for r in standings["riders"]
                    ):
                        break
        assert demo.admin is not None
        racers = await demo.admin.get("/api/users", params={"role": "racer"})
        seen["racer accounts"] = len(racers.json())  # the cloud's own count, at that moment
        seen["lines"] = list(lines)

    async def hold(index: int) -> None:
        nonlocal moving
        if index < riders:
            return  # race 1's accounts go ahead
        if moving is None:
            moving = asyncio.create_task(race_one_moving())
        await asyncio.shield(moving)

    demo = Demo(options, lines.append, hold=hold)

    async def scenario() -> None:
        running = asyncio.create_task(demo.main())
        while demo.on_road < 2 * riders:  # and then race 2 goes on the road too
            if running.done():
                running.result()
                pytest.fail("the demo stopped:\n" + "\n".join(lines))
            await asyncio.sleep(0.2)
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running

    asyncio.run(asyncio.wait_for(scenario(), timeout=240))
    assert seen["racer accounts"] == riders, "race 2's accounts were made before riders moved"
    assert any("Ctrl-C stops" in line for line in seen["lines"])  # the banner was out
    assert "stopping: trackers, relay, cloud" in lines
    assert all(process.poll() is not None for _, process in demo.run.processes)


def test_a_start_cut_short_stops_cleanly_and_resumes(tmp_path: Path) -> None:
    """SIGTERM in the middle of the start (accounts being made, trackers logging in) stops
    every part; the next run on the same --data picks up where it stopped."""
    data = tmp_path / "demo"
    process = subprocess.Popen(
        [sys.executable, "-m", "deploy.cli", "demo", "--data", str(data), "--riders", "3",
         "--cloud-port", "0", "--relay-port", "0", "--page-port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        text = read_until(process, "[4/7]")
    finally:
        rest = stop(process, signal.SIGTERM)
    cloud = re.search(r"starting the cloud on (\S+)", text)
    assert cloud is not None
    with pytest.raises(httpx.TransportError):
        httpx.get(cloud[1] + "/healthz/live", timeout=2)
    assert "Traceback" not in rest

    again, text = start(data, "--riders", "3")
    try:
        assert (
            banner(text)["admin"]
            == json.loads((data / "demo.json").read_text())["people"]["admin"]["password"]
        )
        read_until(again, "riders on the road: 6/6")
    finally:
        stop(again, signal.SIGINT)
