"""Support for the position-source tests: the real gpsd, the data files, small helpers.

The real gpsd is Debian's ``gpsd`` daemon fed by ``gpsfake`` (package gpsd-clients).

:func:`ensure_gpsd` installs both when missing (as root, non-interactively; it runs
``apt-get update`` only if the first install fails) and returns None, or the reason they
cannot be had (the tests then skip with it). :class:`GpsFake` runs gpsfake on a loopback
port in single-step mode, so the log is fed only once the client under test is watching:
no sentence is lost to a race with the client's connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tracker_app.sources import PositionSource, Reading, SourceStats

DATA = Path(__file__).parent / "data"
RIDE_NMEA = DATA / "ride.nmea"
"""22 epochs at 1 Hz from 2026-07-01T08:00:00Z: two without a fix, then a rider climbing
(GGA, GSA, RMC and GST each second)."""
DESCENT_GPX = DATA / "descent.gpx"
"""12 track points of a descent, with a 2-second gap and a repeated time."""

PACKAGES = ("gpsd", "gpsd-clients")
"""Debian packages: the daemon, and gpsfake (with python3-gps)."""
_PATH = os.pathsep.join((os.environ.get("PATH", ""), "/usr/sbin", "/sbin"))


def _installed() -> bool:
    return bool(shutil.which("gpsd", path=_PATH) and shutil.which("gpsfake", path=_PATH))


def ensure_gpsd() -> str | None:
    """Install gpsd and gpsfake if needed. None when ready, else why not (a skip reason)."""
    if _installed():
        return None
    if not shutil.which("apt-get"):
        return "gpsd and gpsfake are not installed and there is no apt-get to install them"
    if os.geteuid() != 0:
        return (
            "gpsd and gpsfake are not installed and installing needs root: "
            f"sudo apt-get install --no-install-recommends {' '.join(PACKAGES)}"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES]
    for attempt in (install, ["apt-get", "update", "-q"], install):
        subprocess.run(attempt, env=env, stdin=subprocess.DEVNULL, capture_output=True, check=False)
        if _installed():
            return None
    return f"apt-get could not install {' '.join(PACKAGES)}"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class GpsFake:
    """gpsfake serving ``log`` once through a gpsd on 127.0.0.1:``port``.

    gpsfake starts gpsd (listening on loopback only) and holds every sentence until
    :meth:`feed` says go (``-i``, one newline a sentence); ``-1`` plays the log once.
    """

    def __init__(self, log: Path, port: int, workdir: Path) -> None:
        self.log, self.port = log, port
        self.stderr = workdir / f"gpsfake-{port}.log"
        with self.stderr.open("wb") as errors:
            self._process = subprocess.Popen(
                ["gpsfake", "-1", "-i", "-n", "-q", "-P", str(port), str(log)],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=errors,
                env={**os.environ, "PATH": _PATH, "TMPDIR": str(workdir)},
                start_new_session=True,  # its own process group: gpsfake and its gpsd
            )

    def feed(self) -> None:
        """Let gpsfake write the whole log to gpsd's device."""
        lines = len(self.log.read_bytes().splitlines())
        assert self._process.stdin is not None
        self._process.stdin.write(b"\n" * (lines + 2))
        self._process.stdin.flush()

    def stop(self) -> None:
        """Kill gpsfake and its gpsd (the process group this object started) and remove the
        shared-memory segment that gpsd made for this port.

        SIGKILL, because gpsfake handles SIGTERM by killing gpsd and then goes on writing
        the log to a device nobody reads any more.
        """
        if self._process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, signal.SIGKILL)
        self._process.wait()
        if self._process.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                self._process.stdin.close()
        if shutil.which("ipcrm"):
            shm_key = f"0x4770{self.port:04X}"  # gpsfake's GPSD_SHM_KEY for this port
            subprocess.run(["ipcrm", "-M", shm_key], capture_output=True, check=False)

    def __enter__(self) -> GpsFake:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def collect(source: PositionSource, limit: int | None = None) -> list[Reading]:
    """Every reading (or the first ``limit``), closing the iterator properly."""
    out: list[Reading] = []
    async with contextlib.aclosing(source.readings()) as readings:
        async for reading in readings:
            out.append(reading)
            if limit is not None and len(out) >= limit:
                break
    return out


async def wait_for(
    source: PositionSource, what: str, ok: Callable[[SourceStats], bool], limit_s: float = 60
) -> None:
    """Wait (bounded) until the source's stats satisfy ``ok``: a real event, such as the
    source having connected to gpsd or opened a device."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while not ok(source.stats):
        if loop.time() > deadline:
            pytest.fail(f"the source never got {what}: {source.stats}")
        await asyncio.sleep(0.01)


def utc_ms(text: str) -> int:
    """Milliseconds since the epoch of an ISO 8601 UTC time."""
    return round(dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp() * 1000)
