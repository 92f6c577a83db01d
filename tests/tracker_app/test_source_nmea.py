"""``nmea:PATH``: the sentence decoder, log replay, and live streams (a FIFO, a serial pty)."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from pathlib import Path

import pynmea2  # type: ignore[import-untyped]
import pytest

from tracker_app.simulate import START_MS
from tracker_app.sources import ManualClock, Quality, open_source
from tracker_app.sources.nmea import KNOT_MS, NmeaDecoder

from .gpsd_setup import RIDE_NMEA, collect, utc_ms, wait_for

LOG_START = utc_ms("2026-07-01T08:00:00")
LOG_LINES = RIDE_NMEA.read_text().splitlines()


def log_fixes() -> dict[int, tuple[float, float, float, float, float]]:
    """Straight from the log (pynmea2): time → (lat, lon, elevation, speed m/s, course)."""
    fixes: dict[int, list[float]] = {}
    for line in LOG_LINES:
        msg = pynmea2.parse(line)
        if msg.sentence_type not in ("GGA", "RMC") or not msg.lat:
            continue
        t = msg.timestamp
        t_ms = LOG_START + ((t.hour - 8) * 3600 + t.minute * 60 + t.second) * 1000
        fix = fixes.setdefault(t_ms, [msg.latitude, msg.longitude, 0.0, 0.0, 0.0])
        if msg.sentence_type == "GGA":
            fix[2] = msg.altitude
        else:
            fix[3], fix[4] = msg.spd_over_grnd * KNOT_MS, msg.true_course
    return {t: (f[0], f[1], f[2], f[3], f[4]) for t, f in fixes.items()}


FIXES = log_fixes()


def sentence(body: str) -> str:
    """``$BODY*CS`` with the right checksum."""
    checksum = 0
    for char in body:
        checksum ^= ord(char)
    return f"${body}*{checksum:02X}"


# --- the decoder -------------------------------------------------------------------------


def test_an_epoch_goes_out_as_soon_as_its_sentences_are_all_in() -> None:
    decoder = NmeaDecoder(fallback_date=dt.date(2026, 7, 1))
    out = [(i, epoch) for i, line in enumerate(LOG_LINES) for epoch in decoder.feed(line)]
    out += [(len(LOG_LINES), epoch) for epoch in decoder.flush()]
    # The first epoch closes when the next one starts; from then on each epoch goes out on
    # the last sentence of the previous epoch's set (no second of delay). The first fix's
    # GST (line 9) comes after its RMC completed it: late, but the set learns it.
    assert [i for i, _ in out][:4] == [3, 5, 8, 13]
    assert LOG_LINES[-1].startswith("$GPGST")
    assert out[-1][0] == len(LOG_LINES) - 1
    assert [e.fix for _, e in out] == [False, False] + [True] * 20
    assert [e.t_ms for _, e in out] == [LOG_START + s * 1000 for s in range(22)]
    assert decoder.bad_sentences == 0
    first, later = out[2][1], out[3][1]
    assert first.hacc_m == pytest.approx(0.9 * 5.0)  # its GST came late: HDOP x UERE
    assert later.hacc_m == pytest.approx((2.4**2 + 2.5**2) ** 0.5)  # from GST
    assert (later.quality, later.satellites) == (Quality.FIX_3D, 9)


def test_a_receiver_without_rmc_uses_the_fallback_date_and_passes_midnight() -> None:
    decoder = NmeaDecoder(fallback_date=dt.date(2026, 6, 30))
    times = []
    for hhmmss in ("235958.00", "235959.00", "000000.00", "000001.00"):
        body = f"GNGGA,{hhmmss},4503.3180,N,00601.8720,E,1,12,0.7,742.0,M,47.6,M,,"
        times += [e.t_ms for e in decoder.feed(sentence(body))]
    times += [e.t_ms for e in decoder.flush()]
    midnight = utc_ms("2026-07-01T00:00:00")
    assert times == [midnight - 2000, midnight - 1000, midnight, midnight + 1000]


def test_fix_quality_from_gga_gsa_and_rmc() -> None:
    def epoch(*bodies: str) -> tuple[bool, Quality, float | None]:
        decoder = NmeaDecoder(fallback_date=dt.date(2026, 7, 1))
        for body in bodies:
            decoder.feed(sentence(body))
        (only,) = decoder.flush()
        return only.fix, only.quality, only.ele_m

    gga = "GPGGA,080000.00,4503.3180,N,00601.8720,E,{q},05,1.2,742.0,M,47.6,M,,"
    rmc = "GPRMC,080000.00,{s},4503.3180,N,00601.8720,E,10.0,48.0,010726,,,{m}"
    assert epoch(gga.format(q=1)) == (True, Quality.FIX_3D, 742.0)
    assert epoch(gga.format(q=2)) == (True, Quality.DGPS, 742.0)
    assert epoch(gga.format(q=0))[0] is False
    assert epoch(gga.format(q=6))[0] is False  # dead reckoning is not a GPS fix
    assert epoch("GPGSA,A,2,02,05,07,,,,,,,,,,3.1,2.0,2.4", gga.format(q=1)) == (
        True,
        Quality.FIX_2D,
        None,
    )
    assert epoch(rmc.format(s="A", m="A")) == (True, Quality.FIX_2D, None)
    assert epoch(rmc.format(s="V", m="N"))[0] is False
    assert epoch(rmc.format(s="A", m="D"))[1] is Quality.DGPS


def test_bad_sentences_are_counted_not_raised() -> None:
    decoder = NmeaDecoder(fallback_date=dt.date(2026, 7, 1))
    good = LOG_LINES[6]
    bad: list[str | bytes] = [
        good[:-2] + ("00" if good[-2:] != "00" else "01"),  # wrong checksum
        good.rsplit("*", 1)[0],  # no checksum
        sentence("GPGGA,08x002.00,4503.3180,N,00601.8720,E,1,09,0.9,742.0,M,47.6,M,,"),
        sentence("GPRMC,080002.00,A,4503.3180,Q,00601.8720,E,1.0,48.0,010726,,,A"),
        sentence("GPRMC,080002.00,A,4503.3180,N,00601.8720,E,1.0,48.0,320726,,,A"),
        "hello",
        b"\xff\xfe$GPGGA",
    ]
    for line in bad:
        assert decoder.feed(line) == []
    assert decoder.bad_sentences == len(bad)
    for line in ("", "   ", "# a comment from a gpsd log", sentence("GPGSV,1,1,00")):
        assert decoder.feed(line) == []
    assert decoder.bad_sentences == len(bad)


# --- replaying a log ---------------------------------------------------------------------


def test_a_log_replays_fast_on_a_virtual_clock_with_times_shifted_to_now() -> None:
    clock = ManualClock(START_MS, autojump=True)
    source = open_source(f"nmea:{RIDE_NMEA}", clock=clock, speed=20)
    readings = asyncio.run(collect(source))
    assert len(readings) == 20
    assert clock.now_ms() == START_MS + 21_000 // 20  # 21 s of log at 20x
    for r in readings:
        lat, lon, ele, speed, course = FIXES[r.t_ms - START_MS + LOG_START]
        assert r.lat == pytest.approx(lat)
        assert r.lon == pytest.approx(lon)
        assert r.ele_m == ele
        assert r.speed_ms == pytest.approx(speed)
        assert r.heading_deg == course
        assert r.quality is Quality.FIX_3D
        assert r.coverage
    assert [r.t_ms for r in readings] == [START_MS + s * 1000 for s in range(2, 22)]
    stats = source.stats
    assert (stats.readings, stats.no_fix, stats.bad_input, stats.skipped) == (20, 2, 0, 2)
    assert stats.quality is Quality.FIX_3D
    assert not stats.connected


def test_a_log_replays_at_its_own_pace() -> None:
    async def scenario() -> list[int]:
        clock = ManualClock(START_MS)
        source = open_source(f"nmea:{RIDE_NMEA}", clock=clock, speed=2)
        counts = []
        task = asyncio.create_task(collect(source))
        for _ in range(4):
            await clock.sleepers()
            counts.append(source.stats.readings)
            clock.advance(500)  # one second of the log at 2x
        source.close()
        await task
        return counts

    # 08:00:00 and :01 have no fix; the first fix (:02) is due 1 s after the start at 2x.
    assert asyncio.run(scenario()) == [0, 0, 1, 2]


def test_keep_times_replays_the_recorded_times() -> None:
    clock = ManualClock(START_MS, autojump=True)
    source = open_source(f"nmea:{RIDE_NMEA}", clock=clock, speed=100, keep_times=True)
    readings = asyncio.run(collect(source))
    assert [r.t_ms for r in readings] == sorted(FIXES)


def test_a_damaged_log_skips_and_counts_what_it_cannot_read(tmp_path: Path) -> None:
    lines = list(LOG_LINES)
    damaged = 0
    for i, line in enumerate(lines):
        if line.startswith("$GPRMC") and i % 3 == 0:  # a flipped bit: checksum mismatch
            lines[i] = line.replace(",A,", ",B,", 1)
            damaged += 1
    lines.insert(10, "$GPGGA,garbage*00")
    lines.insert(20, "x" * 10_000)  # a run of noise with no line end in sight
    log = tmp_path / "damaged.nmea"
    log.write_bytes("\r\n".join(lines).encode() + b"\r\n\x00\xff")
    source = open_source(f"nmea:{log}", clock=ManualClock(START_MS, autojump=True), speed=50)
    readings = asyncio.run(collect(source))
    assert damaged >= 5
    assert source.stats.bad_input == damaged + 3
    assert len(readings) == 20  # each epoch still has its GGA
    assert sum(r.speed_ms is None for r in readings) == damaged  # ... but not its RMC


def test_an_empty_log_gives_nothing(tmp_path: Path) -> None:
    log = tmp_path / "empty.nmea"
    log.write_bytes(b"")
    assert asyncio.run(collect(open_source(f"nmea:{log}", clock=ManualClock(START_MS)))) == []


# --- live streams ------------------------------------------------------------------------


def test_a_fifo_is_read_as_lines_come_with_the_receivers_times(tmp_path: Path) -> None:
    fifo = tmp_path / "gps.fifo"
    os.mkfifo(fifo)

    async def scenario() -> list[int]:
        source = open_source(f"nmea:{fifo}", clock=ManualClock(START_MS))
        task = asyncio.create_task(collect(source, limit=20))
        await wait_for(source, "the FIFO open", lambda s: s.connected)
        writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        try:
            os.write(writer, ("\r\n".join(LOG_LINES) + "\r\n").encode())
        finally:
            os.close(writer)  # the writer leaving does not end the source
        readings = await asyncio.wait_for(task, 60)
        source.close()
        return [r.t_ms for r in readings]

    assert asyncio.run(scenario()) == sorted(FIXES)


def test_a_serial_device_is_read_raw_and_reopened_when_it_goes(tmp_path: Path) -> None:
    master, slave = os.openpty()
    device = os.ttyname(slave)

    async def scenario() -> tuple[list[int], str | None, int]:
        clock = ManualClock(START_MS)
        source = open_source(f"nmea:{device}", clock=clock)
        readings = []

        async def read() -> None:
            async for reading in source.readings():
                readings.append(reading.t_ms)

        task = asyncio.create_task(read())
        await wait_for(source, "the device open", lambda s: s.connected)
        os.close(slave)  # only the source holds the device now
        os.write(master, ("\r\n".join(LOG_LINES) + "\r\n").encode())
        await wait_for(source, "the whole log", lambda s: s.readings == 20)
        os.close(master)  # unplugged: the source backs off on its clock, then retries
        await clock.sleepers()
        problem, reconnects = source.stats.problem, source.stats.reconnects
        source.close()
        await task
        return readings, problem, reconnects

    readings, problem, reconnects = asyncio.run(scenario())
    assert readings == sorted(FIXES)  # the receiver's own times
    assert device in str(problem)
    assert reconnects == 1
