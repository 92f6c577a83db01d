"""``gpsd:HOST:PORT`` against the real gpsd daemon, fed an NMEA log by gpsfake."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from tracker_app.sources import Quality, Reading, SystemClock, open_source
from tracker_app.sources.gpsd import TpvMerger

from .gpsd_setup import RIDE_NMEA, GpsFake, collect, ensure_gpsd, free_port, wait_for
from .test_source_nmea import FIXES, LOG_LINES

FIX_TIMES = sorted(FIXES)


@pytest.fixture(scope="module")
def gpsd() -> None:
    reason = ensure_gpsd()
    if reason is not None:
        pytest.skip(reason)


def check_against_log(readings: list[Reading]) -> None:
    for r in readings:
        lat, lon, ele, speed, course = FIXES[r.t_ms]
        assert r.lat == pytest.approx(lat, abs=1e-8)
        assert r.lon == pytest.approx(lon, abs=1e-8)
        assert r.ele_m == pytest.approx(ele)  # gpsd's altMSL: the GGA altitude
        assert r.speed_ms == pytest.approx(speed, abs=0.01)
        assert r.heading_deg == pytest.approx(course)
        assert r.quality is Quality.FIX_3D
        assert r.hacc_m is not None
        assert r.hacc_m > 0
    times = [r.t_ms for r in readings]
    assert times == sorted(set(times))


def test_readings_through_gpsd_match_the_log(gpsd: None, tmp_path: Path) -> None:
    port = free_port()

    async def scenario() -> tuple[list[Reading], int, int]:
        with GpsFake(RIDE_NMEA, port, tmp_path) as fake:
            source = open_source(f"gpsd:127.0.0.1:{port}", clock=SystemClock())
            last = FIX_TIMES[-1]
            readings: list[Reading] = []

            async def read() -> None:
                async with contextlib.aclosing(source.readings()) as stream:
                    async for reading in stream:
                        readings.append(reading)
                        if reading.t_ms == last:
                            return

            task = asyncio.create_task(read())
            await wait_for(source, "a WATCH from gpsd", lambda s: s.connected)
            fake.feed()  # only now: every sentence reaches a watching client
            await asyncio.wait_for(task, 60)
            source.close()
            return readings, source.stats.no_fix, source.stats.readings

    readings, no_fix, counted = asyncio.run(scenario())
    check_against_log(readings)
    # gpsd reports the first fix before it has a date (no time: counted invalid), so the
    # readings start with the second fix at the latest and run to the log's last one.
    assert [r.t_ms for r in readings] == FIX_TIMES[-len(readings) :]
    assert len(readings) >= len(FIX_TIMES) - 1
    assert counted == len(readings)
    assert no_fix >= 2  # the two epochs before the receiver had a fix


def test_the_source_waits_for_gpsd_and_reconnects_when_it_goes(gpsd: None, tmp_path: Path) -> None:
    port = free_port()
    # Two halves of the log at 08:00:10: gpsd goes away between them, and a new gpsd
    # comes up on the same port.
    split = next(i for i, line in enumerate(LOG_LINES) if line.startswith("$GPGGA,080011"))
    first, second = tmp_path / "first.nmea", tmp_path / "second.nmea"
    first.write_text("\r\n".join(LOG_LINES[:split]) + "\r\n")
    second.write_text("\r\n".join(LOG_LINES[split:]) + "\r\n")

    async def scenario() -> tuple[list[Reading], list[str | None], int]:
        source = open_source(f"gpsd:127.0.0.1:{port}", clock=SystemClock())
        readings: list[Reading] = []

        async def read() -> None:
            async for reading in source.readings():
                readings.append(reading)

        task = asyncio.create_task(read())
        await wait_for(source, "a failed connection", lambda s: s.problem is not None)
        problems = [source.stats.problem]  # nothing listens yet
        with GpsFake(first, port, tmp_path) as fake:
            await wait_for(source, "a WATCH from gpsd", lambda s: s.connected)
            fake.feed()
            await wait_for(source, "the first half", lambda s: s.readings >= 8)
            reconnects = source.stats.reconnects
        await wait_for(source, "the connection lost", lambda s: not s.connected)
        problems.append(source.stats.problem)
        with GpsFake(second, port, tmp_path) as fake:
            await wait_for(source, "a WATCH from the new gpsd", lambda s: s.connected)
            fake.feed()
            await wait_for(
                source,
                "the second half",
                lambda s: bool(readings) and readings[-1].t_ms == FIX_TIMES[-1],
            )
        source.close()
        await task
        return readings, problems, source.stats.reconnects - reconnects

    readings, problems, reconnects_after_loss = asyncio.run(scenario())
    check_against_log(readings)
    halves = {t: t < FIX_TIMES[9] for t in FIX_TIMES}  # 08:00:02..10 | 08:00:11..21
    assert {halves[r.t_ms] for r in readings} == {True, False}
    assert sum(not halves[r.t_ms] for r in readings) >= 9
    assert f"127.0.0.1:{port} is unreachable" in str(problems[0])
    assert f"gpsd at 127.0.0.1:{port}" in str(problems[1])
    assert reconnects_after_loss >= 1


# --- merging gpsd's reports of one epoch (no daemon needed) --------------------------------


def test_reports_of_one_epoch_are_merged_and_go_out_once_complete() -> None:
    merger = TpvMerger(hold_ms=300)
    gga = {"mode": 3, "lat": 45.0, "lon": 6.0, "altMSL": 700.0, "speed": 6.4}
    rmc = {"mode": 3, "lat": 45.0, "lon": 6.0, "speed": 6.5, "track": 48.0}
    assert merger.add(gga, 1_000, now_ms=50) == []  # no course yet: held
    assert merger.deadline_ms == 350
    (epoch,) = merger.add(rmc, 1_000, now_ms=60)
    assert (epoch["altMSL"], epoch["track"], epoch["speed"]) == (700.0, 48.0, 6.5)
    assert merger.deadline_ms is None
    assert merger.add(gga, 1_000, now_ms=70) == []  # more about an epoch already out
    assert merger.add(gga, 2_000, now_ms=1_050) == []
    (held,) = merger.add(gga, 3_000, now_ms=2_050)  # the next epoch flushes an incomplete one
    assert held["_t_ms"] == 2_000
    assert "track" not in held
    assert merger.expire()[0]["_t_ms"] == 3_000  # the deadline passed: out as it is
    assert merger.expire() == []


def test_bad_reports_from_gpsd_are_counted(gpsd: None, tmp_path: Path) -> None:
    """A fake 'gpsd' (a plain TCP server on loopback) sends garbage between good reports."""

    async def scenario() -> tuple[list[Reading], int, int]:
        lines = [
            b'{"class":"VERSION","release":"3.22"}',
            b'{"class":"WATCH","enable":true,"json":true}',
            b"not json",
            b"[1, 2]",
            b'{"class":"TPV","mode":"three"}',
            b'{"class":"TPV","mode":3,"lat":45.0,"lon":6.0}',  # no time
            b'{"class":"TPV","mode":1,"time":"2026-07-01T08:00:00.000Z"}',
            b'{"class":"SKY","uSat":8}',
            b'{"class":"TPV","mode":2,"time":"2026-07-01T08:00:01.000Z","lat":45.0,'
            b'"lon":6.0,"speed":5.0,"track":10.0,"eph":4.2}',
            b'{"class":"TPV","mode":3,"time":"2026-07-01T08:00:02.000Z","lat":95.0,'
            b'"lon":6.0,"speed":5.0,"track":10.0,"altMSL":1.0}',
        ]

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            assert await reader.readline() == b'?WATCH={"enable":true,"json":true}\n'
            writer.write(b"\n".join(lines) + b"\n")
            await writer.drain()
            await reader.read()  # until the client leaves
            writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            source = open_source(f"gpsd:127.0.0.1:{port}", clock=SystemClock())
            task = asyncio.create_task(collect(source))
            await wait_for(source, "the 95° latitude", lambda s: s.invalid == 2)
            source.close()
            readings = await task
        return readings, source.stats.bad_input, source.stats.no_fix

    readings, bad, no_fix = asyncio.run(scenario())
    assert len(readings) == 1
    r = readings[0]
    assert (r.quality, r.ele_m, r.hacc_m, r.satellites) == (Quality.FIX_2D, None, 4.2, 8)
    assert (bad, no_fix) == (3, 1)
