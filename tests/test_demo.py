"""``gruppetto demo`` brings up the whole system, riders move, Ctrl-C stops it cleanly."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from deploy.demo import CHECKPOINTS, COURSE
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
        assert "6/6 racer accounts" in text
        page = banner(text)["page"]
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
