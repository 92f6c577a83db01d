"""``gpsd[:HOST:PORT]``: positions from the gpsd daemon over its JSON protocol.

The client sends ``?WATCH={"enable":true,"json":true}`` and reads one JSON object a line
(https://gpsd.gitlab.io/gpsd/gpsd_json.html). TPV reports carry the fix; SKY reports the
satellites used. gpsd may send several TPVs for one epoch, each adding what the latest
sentence told it (an NMEA receiver's GGA brings the elevation, its RMC the course): they
are merged, and the epoch is handed out as soon as it is complete (position, speed,
course and, for a 3D fix, elevation) or :data:`HOLD_MS` after its first report. When gpsd
goes away the source reconnects with exponential backoff, counting each attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import math
from collections.abc import AsyncGenerator
from typing import Any

from ._base import Closed, SourceBase
from .clock import Clock
from .reading import Quality, Reading

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 2947
WATCH = b'?WATCH={"enable":true,"json":true}\n'
HOLD_MS = 300
"""Longest wait for the rest of an incomplete epoch before handing it out as it is."""
RETRY_MIN_MS, RETRY_MAX_MS = 500, 30_000
MAX_LINE = 256 * 1024
"""Longest JSON line accepted (a SKY report with every satellite is ~10 KB)."""
_NO_FIX_STATUS = frozenset({5, 7})  # dead reckoning only, time only
_DGPS_STATUS = frozenset({2, 3, 4})  # DGPS, RTK fixed, RTK float


class GpsdSource(SourceBase):
    """A gpsd client: TPV reports become readings; reconnects when gpsd goes away."""

    def __init__(self, spec: str, host: str, port: int, clock: Clock) -> None:
        super().__init__(spec, clock)
        self._host, self._port = host, port
        self._writer: asyncio.StreamWriter | None = None
        self._satellites: int | None = None
        self._watching = False

    def _on_close(self) -> None:
        if self._writer is not None:
            self._writer.close()

    async def readings(self) -> AsyncGenerator[Reading, None]:
        """Fixes as gpsd reports them, until :meth:`close`."""
        self._start()
        failures = 0
        where = f"gpsd at {self._host}:{self._port}"
        try:
            while True:
                if failures:
                    self._count("reconnects")
                    delay = min(RETRY_MAX_MS, RETRY_MIN_MS << min(failures - 1, 10))
                    await self._sleep_until(self._clock.now_ms() + delay)
                try:
                    reader, writer = await self._wait(
                        asyncio.open_connection(self._host, self._port, limit=MAX_LINE)
                    )
                except OSError as e:
                    failures += 1
                    self._update(problem=f"{where} is unreachable: {e.strerror or e}")
                    continue
                self._writer, self._watching = writer, False
                try:
                    writer.write(WATCH)
                    await self._wait(writer.drain())
                    async with contextlib.aclosing(self._session(reader)) as session:
                        async for reading in session:
                            yield reading
                    if self.closed:
                        raise Closed
                    self._update(problem=f"{where} closed the connection")
                except OSError as e:
                    if self.closed:
                        raise Closed from None
                    self._update(problem=f"{where} connection lost: {e.strerror or e}")
                finally:
                    writer.close()
                    self._writer = None
                    self._update(connected=False)
                failures = 1 if self._watching else failures + 1
        except Closed:
            return
        finally:
            self._update(connected=False)

    async def _session(self, reader: asyncio.StreamReader) -> AsyncGenerator[Reading, None]:
        merger = TpvMerger()
        while True:
            deadline = merger.deadline_ms
            try:
                line = await self._wait(_readline(reader, self._clock, deadline))
            except ValueError:  # longer than MAX_LINE
                self._count("bad_input")
                continue
            if line is None:  # waited long enough for the rest of the epoch
                ready = merger.expire()
            elif not line:
                ready = merger.expire()
                for tpv in ready:
                    if (reading := self._to_reading(tpv)) is not None:
                        yield reading
                return
            else:
                ready = self._report(line, merger)
            for tpv in ready:
                if (reading := self._to_reading(tpv)) is not None:
                    yield reading

    def _report(self, line: bytes, merger: TpvMerger) -> list[dict[str, Any]]:
        try:
            report = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            report = None
        if not isinstance(report, dict):
            self._count("bad_input")
            return []
        kind = report.get("class")
        if kind == "WATCH":
            self._watching = True
            self._update(connected=True, problem=None)
        elif kind == "DEVICES" and not report.get("devices"):
            self._update(problem="gpsd has no GPS device")
        elif kind == "ERROR":
            self._update(problem=f"gpsd: {report.get('message', 'error')}")
        elif kind == "SKY":
            self._sky(report)
        elif kind == "TPV":
            mode = report.get("mode", 0)
            if type(mode) is not int:
                self._count("bad_input")
                return []
            if mode < 2 or report.get("status") in _NO_FIX_STATUS:
                ready = merger.expire()
                self._no_fix()
                return ready
            t_ms = _time_ms(report.get("time"))
            if t_ms is None:
                self._count("invalid")
                return []
            return merger.add(report, t_ms, self._clock.now_ms())
        return []

    def _sky(self, report: dict[str, Any]) -> None:
        used = report.get("uSat")
        if used is None and isinstance(report.get("satellites"), list):
            used = sum(1 for s in report["satellites"] if isinstance(s, dict) and s.get("used"))
        if type(used) is int:
            self._satellites = used

    def _to_reading(self, tpv: dict[str, Any]) -> Reading | None:
        mode, status = tpv.get("mode"), tpv.get("status")
        if status in _DGPS_STATUS:
            quality = Quality.DGPS
        elif status == 8:
            quality = Quality.SIM
        else:
            quality = Quality.FIX_3D if mode == 3 else Quality.FIX_2D
        ele = None
        if mode == 3:
            ele = next((tpv[k] for k in ("altMSL", "alt", "altHAE") if k in tpv), None)
        hacc = tpv.get("eph")
        if hacc is None and _number(tpv.get("epx")) and _number(tpv.get("epy")):
            hacc = math.hypot(tpv["epx"], tpv["epy"])
        self._update(problem=None)
        return self._reading(
            t_ms=tpv["_t_ms"],
            lat=tpv.get("lat"),
            lon=tpv.get("lon"),
            ele_m=ele,
            speed_ms=tpv.get("speed"),
            heading_deg=tpv.get("track"),
            hacc_m=hacc,
            quality=quality,
            satellites=self._satellites,
        )


class TpvMerger:
    """Merges the TPV reports of one epoch; hands an epoch out once complete, when the next
    epoch starts, or at :attr:`deadline_ms` (no I/O: time comes in as an argument)."""

    def __init__(self, hold_ms: int = HOLD_MS) -> None:
        self._hold_ms = hold_ms
        self._held: dict[str, Any] | None = None
        self._deadline: int | None = None
        self._done_t_ms: int | None = None

    @property
    def deadline_ms(self) -> int | None:
        """When the held epoch must go out even if incomplete; None when nothing is held."""
        return self._deadline

    def add(self, tpv: dict[str, Any], t_ms: int, now_ms: int) -> list[dict[str, Any]]:
        """Take a TPV with a fix; return the epochs ready to go out."""
        ready = []
        if self._held is not None and self._held["_t_ms"] == t_ms:
            self._held.update(tpv)
        else:
            ready = self.expire()
            if t_ms == self._done_t_ms:
                return ready  # more about an epoch already handed out
            self._held = {**tpv, "_t_ms": t_ms}
            self._deadline = now_ms + self._hold_ms
        if _complete(self._held):
            ready += self.expire()
        return ready

    def expire(self) -> list[dict[str, Any]]:
        """Hand out the held epoch, if any, as it is."""
        held, self._held, self._deadline = self._held, None, None
        if held is None:
            return []
        self._done_t_ms = held["_t_ms"]
        return [held]


def _complete(tpv: dict[str, Any]) -> bool:
    has = all(k in tpv for k in ("lat", "lon", "speed", "track"))
    return has and (tpv.get("mode") != 3 or any(k in tpv for k in ("altMSL", "alt", "altHAE")))


def _number(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _time_ms(value: object) -> int | None:
    if not isinstance(value, str):
        return None
    try:
        stamp = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    return round(stamp.timestamp() * 1000)


async def _readline(
    reader: asyncio.StreamReader, clock: Clock, deadline_ms: int | None
) -> bytes | None:
    """The next line, or None if the clock reaches ``deadline_ms`` first."""
    if deadline_ms is None:
        return await reader.readline()
    line = asyncio.ensure_future(reader.readline())
    timer = asyncio.ensure_future(clock.sleep_until(deadline_ms))
    try:
        await asyncio.wait((line, timer), return_when=asyncio.FIRST_COMPLETED)
    finally:
        timer.cancel()
        if not line.done():
            line.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await line
    return None if line.cancelled() else line.result()
