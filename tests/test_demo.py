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


def test_demo_runs_the_whole_system_and_stops_cleanly(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "deploy.cli", "demo", "--data", str(tmp_path / "demo"),
         "--riders", "3", "--cloud-port", "0", "--relay-port", "0", "--page-port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    out: list[str] = []
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            assert line, "demo exited early:\n" + "".join(out)
            out.append(line)
            if "Ctrl-C stops" in line:
                break
        text = "".join(out)
        for n in range(1, 8):
            assert f"[{n}/7]" in text  # progress while it starts
        page = re.search(r"spectator page \(live, from the relay\): (\S+)", text)
        assert page is not None
        assert re.search(r"official\s+official / \S+", text)
        assert re.search(r"spectator\s+spectator / \S+", text)
        race_ids = [int(r) for r in re.findall(r"#race=(\d+)", text)]
        assert len(race_ids) == 2

        def moving() -> bool:
            riders = httpx.get(f"{page[1]}api/races/{race_ids[0]}/standings").json()["riders"]
            return len(riders) == 3 and all((r["progress_m"] or 0) > 0 for r in riders)

        deadline = time.monotonic() + 60
        while not moving():
            assert time.monotonic() < deadline, "riders never moved on the relay"
            time.sleep(0.5)
        saved = json.loads((tmp_path / "demo" / "demo.json").read_text())
        assert {"admin", "official", "spectator"} <= set(saved["people"])
    finally:
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=60)
    assert process.returncode == 0, rest
    assert "stopping: trackers, relay, cloud" in rest
