"""``nmea:PATH``: an NMEA 0183 log replayed, or a serial device or FIFO read as it comes."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import stat
import tty
from collections.abc import AsyncGenerator, Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from ._base import Closed, Pacer, SourceBase
from .clock import Clock
from .nmea import NmeaDecoder, NmeaEpoch
from .reading import Reading, SourceError

MAX_LINE = 4096
"""Longest line accepted (a sentence is at most 82 characters): longer is garbage."""
RETRY_MIN_MS, RETRY_MAX_MS = 500, 30_000


def is_stream(path: Path) -> bool:
    """True for a serial device, a FIFO or a socket (read live), False for a regular file."""
    try:
        mode = path.stat().st_mode
    except OSError as e:
        raise SourceError(f"nmea: cannot open {path}: {e.strerror or e}") from None
    if stat.S_ISDIR(mode):
        raise SourceError(f"nmea: {path} is a directory, not an NMEA log or a device")
    return not stat.S_ISREG(mode)


class _NmeaBase(SourceBase):
    def __init__(self, spec: str, path: Path, clock: Clock) -> None:
        super().__init__(spec, clock)
        self._path = path
        utc_today = dt.datetime.fromtimestamp(clock.now_ms() / 1000, dt.UTC).date()
        self._decoder = NmeaDecoder(fallback_date=utc_today)

    def _decode(self, line: bytes | None) -> list[NmeaEpoch]:
        """The epochs ``line`` completes (None: the end of the input), bad lines counted."""
        before = self._decoder.bad_sentences
        epochs = self._decoder.flush() if line is None else self._decoder.feed(line)
        if self._decoder.bad_sentences != before:
            self._bad(self._decoder.bad_sentences - before)
        return epochs

    def _bad(self, count: int = 1) -> None:
        self._update(bad_input=self._stats.bad_input + count)

    def _to_reading(self, epoch: NmeaEpoch, t_ms: int) -> Reading | None:
        if not epoch.fix:
            self._no_fix()
            return None
        return self._reading(
            t_ms=t_ms,
            lat=epoch.lat,
            lon=epoch.lon,
            ele_m=epoch.ele_m,
            speed_ms=epoch.speed_ms,
            heading_deg=epoch.heading_deg,
            hacc_m=epoch.hacc_m,
            quality=epoch.quality,
            satellites=epoch.satellites,
        )


class NmeaFileSource(_NmeaBase):
    """Replays a recorded NMEA log at its own pace (the sentence times), ``speed`` times
    faster; readings are stamped with the clock's time unless ``keep_times``."""

    def __init__(
        self, spec: str, path: Path, clock: Clock, *, speed: float, keep_times: bool
    ) -> None:
        super().__init__(spec, path, clock)
        self._pacer = Pacer(clock, speed=speed, keep_times=keep_times)

    async def readings(self) -> AsyncGenerator[Reading, None]:
        """The log's fixes, paced; ends at the end of the file."""
        self._start()
        try:
            with self._path.open("rb") as file:
                self._update(connected=True)
                for line in _lines(file, self._bad):
                    for epoch in self._decode(line):
                        if epoch.t_ms is None:
                            self._no_fix()
                            continue
                        await self._sleep_until(self._pacer.due_ms(epoch.t_ms))
                        reading = self._to_reading(epoch, self._pacer.stamp(epoch.t_ms))
                        if reading is not None:
                            yield reading
        except Closed:
            return
        except OSError as e:
            raise SourceError(f"nmea: cannot read {self._path}: {e.strerror or e}") from None
        finally:
            self._update(connected=False)


def _lines(file: BinaryIO, bad: Callable[[], None]) -> Iterator[bytes | None]:
    """The file's lines, then None; an over-long run without a newline is one bad line."""
    while line := file.readline(MAX_LINE):
        if len(line) == MAX_LINE and not line.endswith(b"\n"):
            while (rest := file.readline(MAX_LINE)) and not rest.endswith(b"\n"):
                pass
            bad()
            continue
        yield line
    yield None


class NmeaStreamSource(_NmeaBase):
    """Reads a serial GPS (set to raw mode; set its baud rate with ``stty`` beforehand) or a
    FIFO as lines arrive. Readings keep the receiver's times. A device that goes away (a USB
    receiver unplugged) is reopened with backoff."""

    def __init__(self, spec: str, path: Path, clock: Clock) -> None:
        super().__init__(spec, path, clock)
        self._transport: asyncio.ReadTransport | None = None

    def _on_close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    async def readings(self) -> AsyncGenerator[Reading, None]:
        """Fixes as the receiver sends them, until :meth:`close`."""
        self._start()
        failures = 0
        try:
            while True:
                if failures:
                    self._count("reconnects")
                    delay = min(RETRY_MAX_MS, RETRY_MIN_MS << min(failures - 1, 10))
                    await self._sleep_until(self._clock.now_ms() + delay)
                try:
                    reader = await self._open()
                except OSError as e:
                    failures += 1
                    self._update(problem=f"cannot open {self._path}: {e.strerror or e}")
                    continue
                self._update(connected=True, problem=None)
                failures = 0
                try:
                    async with contextlib.aclosing(self._read(reader)) as stream:
                        async for reading in stream:
                            yield reading
                    if self.closed:
                        raise Closed
                    self._update(problem=f"{self._path}: the device closed")
                except OSError as e:
                    if self.closed:
                        raise Closed from None
                    self._update(problem=f"{self._path}: {e.strerror or e}")
                finally:
                    self._update(connected=False)
                    if self._transport is not None:
                        self._transport.close()
                        self._transport = None
                failures += 1
        except Closed:
            return
        finally:
            self._update(connected=False)

    async def _open(self) -> asyncio.StreamReader:
        mode = os.stat(self._path).st_mode
        # A FIFO opened for writing too never reports end-of-file when a writer leaves.
        flags = os.O_RDWR if stat.S_ISFIFO(mode) else os.O_RDONLY
        fd = os.open(self._path, flags | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            if os.isatty(fd):
                tty.setraw(fd)  # no echo, no line editing, no CR/LF translation
            pipe = os.fdopen(fd, "rb", buffering=0)
        except BaseException:
            os.close(fd)
            raise
        reader = asyncio.StreamReader(limit=MAX_LINE)
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(reader), pipe
            )
        except BaseException:
            pipe.close()
            raise
        self._transport = transport
        if self.closed:
            transport.close()
            raise Closed
        return reader

    async def _read(self, reader: asyncio.StreamReader) -> AsyncGenerator[Reading, None]:
        while True:
            try:
                line = await self._wait(reader.readline())
            except ValueError:  # longer than MAX_LINE: the rest of it was dropped
                self._bad()
                continue
            if not line:
                for epoch in self._decode(None):
                    if (reading := self._stream_reading(epoch)) is not None:
                        yield reading
                return
            for epoch in self._decode(line):
                if (reading := self._stream_reading(epoch)) is not None:
                    yield reading

    def _stream_reading(self, epoch: NmeaEpoch) -> Reading | None:
        if epoch.t_ms is None:
            self._no_fix()
            return None
        return self._to_reading(epoch, epoch.t_ms)
