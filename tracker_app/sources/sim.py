"""``sim``: the simulated rider of :mod:`tracker_app.simulate`, paced by the clock."""

from __future__ import annotations

from collections.abc import AsyncGenerator

from sync_protocol.course import Course

from ..simulate import SimSettings, ride
from ._base import Closed, SourceBase
from .clock import Clock
from .reading import Quality, Reading


class SimSource(SourceBase):
    """Rides ``course`` from the start at the clock's time, a reading a second (``speed``
    times faster), to the finish. Seconds of GPS loss give no reading and count as no fix;
    readings in a coverage dropout say ``coverage=False``."""

    def __init__(
        self,
        spec: str,
        course: Course,
        clock: Clock,
        *,
        speed: float,
        seed: int,
        settings: SimSettings | None = None,
    ) -> None:
        super().__init__(spec, clock)
        self._course = course
        self._speed = speed
        self._seed = seed
        self._settings = settings or SimSettings()

    async def readings(self) -> AsyncGenerator[Reading, None]:
        """The ride, paced; ends at the finish line."""
        self._start()
        start = self._clock.now_ms()
        self._update(connected=True)
        try:
            for sample in ride(self._course, seed=self._seed, settings=self._settings):
                await self._sleep_until(start + round(sample.t_offset_ms / self._speed))
                if not sample.gps:
                    self._no_fix()
                    continue
                reading = self._reading(
                    t_ms=start + sample.t_offset_ms,
                    lat=sample.lat,
                    lon=sample.lon,
                    ele_m=sample.ele_m,
                    speed_ms=sample.speed_ms,
                    heading_deg=sample.heading_deg,
                    hacc_m=sample.hacc_m,
                    quality=Quality.SIM,
                    satellites=sample.satellites,
                    coverage=sample.coverage,
                )
                if reading is not None:
                    yield reading
        except Closed:
            return
        finally:
            self._update(connected=False)
