"""The tracker's battery: read from Linux sysfs, simulated for ``--source sim``, or none.

``gruppetto tracker run --battery BATTERY``, where BATTERY is one of

- ``auto`` (the default): the machine's battery when sysfs shows one, else the simulated
  one with ``--source sim``, else none;
- ``sysfs`` or ``sysfs:DIR``: Linux power supplies, ``/sys/class/power_supply`` unless
  DIR names another such directory, or one supply's own directory. Every supply whose
  ``type`` reads ``Battery`` (and whose ``present``, when there is one, is not ``0``)
  counts: ``capacity`` is its level in % (else ``energy_now``/``energy_full`` or
  ``charge_now``/``charge_full``), ``status`` says whether it is on external power
  (``Charging``, ``Full`` or ``Not charging``). Several batteries (a laptop's two) read as
  one: their levels weighted by their full energy when every one says it, else averaged;
- ``sim``: a phone's battery over a ride: it starts between 75 and 100 % and drains 6 to
  10 % an hour (GPS and radio on, screen off; by ``--seed``), a little faster once low,
  and as many times faster as ``--speed`` replays the ride;
- ``none``: no battery level is sent.

The uploader reads the battery when an upload goes out (:class:`~tracker_app.sync.Uploader`)
and sends a device status with it when it is due (:mod:`sync_protocol.device_status`).
A reading that fails (a file vanished, junk in it) is logged once and skipped.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .errors import TrackerError

log = logging.getLogger("gruppetto.tracker.battery")

POWER_SUPPLY = Path("/sys/class/power_supply")
"""Where Linux lists power supplies."""
FORMS = "auto, sysfs[:DIR], sim or none"
ON_POWER = frozenset({"charging", "full", "not charging"})
"""sysfs ``status`` values of a battery on external power."""


@dataclass(frozen=True, slots=True)
class BatteryLevel:
    """One reading of the battery."""

    percent: int
    """Level, 0..100 %."""
    charging: bool
    """Whether the device is on external power."""

    def __post_init__(self) -> None:
        if type(self.percent) is not int or not 0 <= self.percent <= 100:
            raise ValueError(f"a battery level is 0..100 %, not {self.percent!r}")


class Battery(Protocol):
    """Something that tells the battery level."""

    @property
    def name(self) -> str:
        """What it is, for people ("sysfs BAT0", "simulated")."""

    def read(self) -> BatteryLevel | None:
        """The level now; None when it cannot be read."""


class SysfsBattery:
    """The batteries of a Linux power-supply directory (see the module doc)."""

    def __init__(self, supplies: Sequence[Path]) -> None:
        if not supplies:
            raise ValueError("a sysfs battery needs at least one supply directory")
        self.supplies = tuple(supplies)
        """The battery supplies read (each a directory with ``type`` = Battery)."""
        self._failed = False

    @property
    def name(self) -> str:
        """``sysfs BAT0`` (or ``sysfs BAT0+BAT1``)."""
        return "sysfs " + "+".join(p.name for p in self.supplies)

    @classmethod
    def find(cls, root: Path = POWER_SUPPLY) -> SysfsBattery | None:
        """The batteries under ``root`` (a class directory, or one supply's), or None."""
        candidates = [root] if (root / "type").is_file() else _children(root)
        found = [p for p in candidates if _is_battery(p)]
        return cls(found) if found else None

    def read(self) -> BatteryLevel | None:
        """Every battery's level now, combined."""
        try:
            readings = [_read_supply(p) for p in self.supplies]
        except (OSError, ValueError) as exc:
            if not self._failed:
                log.warning("battery not readable: %s", exc)
            self._failed = True
            return None
        self._failed = False
        energies = [full for _, _, full in readings]
        if all(e is not None and e > 0 for e in energies):
            total = sum(e for e in energies if e is not None)
            level = sum(pct * (full or 0) for pct, _, full in readings) / total
        else:
            level = sum(pct for pct, _, _ in readings) / len(readings)
        return BatteryLevel(round(level), any(on for _, on, _ in readings))


class SimBattery:
    """A phone's battery draining over a simulated ride (see the module doc)."""

    def __init__(
        self,
        *,
        seed: int = 0,
        speed: float = 1.0,
        now_ms: Callable[[], int],
        start_pct: float | None = None,
        drain_pct_per_h: float | None = None,
    ) -> None:
        if not (math.isfinite(speed) and speed > 0):
            raise ValueError(f"speed must be a positive number, not {speed!r}")
        rng = random.Random(f"battery-{seed}")
        self.start_pct = start_pct if start_pct is not None else rng.uniform(75.0, 100.0)
        """Level at the first reading."""
        self.drain_pct_per_h = (
            drain_pct_per_h if drain_pct_per_h is not None else rng.uniform(6.0, 10.0)
        )
        """Drain in % an hour of ride time (one and a half times that below 20 %)."""
        if not 0 <= self.start_pct <= 100 or not self.drain_pct_per_h >= 0:
            raise ValueError("start_pct must be 0..100 and drain_pct_per_h not negative")
        self.speed = speed
        self._now_ms = now_ms
        self._start_ms: int | None = None

    @property
    def name(self) -> str:
        """``simulated``."""
        return "simulated"

    def level_after(self, ride_ms: float) -> float:
        """The level after ``ride_ms`` of ride time, in % (not rounded)."""
        hours = max(0.0, ride_ms) / 3_600_000
        level = self.start_pct - self.drain_pct_per_h * hours
        if level < 20.0:  # a worn cell sags once low: the last fifth goes faster
            level = 20.0 - (20.0 - level) * 1.5
        return min(100.0, max(0.0, level))

    def read(self) -> BatteryLevel:
        """The level now (the first reading starts the ride)."""
        now = self._now_ms()
        if self._start_ms is None:
            self._start_ms = now
        level = self.level_after((now - self._start_ms) * self.speed)
        return BatteryLevel(math.floor(level), charging=False)


def open_battery(
    spec: str,
    *,
    source: str,
    seed: int = 0,
    speed: float = 1.0,
    now_ms: Callable[[], int],
    root: Path = POWER_SUPPLY,
) -> Battery | None:
    """The battery BATTERY names (None for ``none``, or ``auto`` finding nothing).

    ``source`` is the position source's spec (``auto`` simulates with ``sim``); ``root``
    is where ``sysfs`` and ``auto`` look. Raises :class:`TrackerError` with a one-line
    reason for a spec it cannot use.
    """
    kind, colon, rest = spec.strip().partition(":")
    if kind == "auto" and not colon:
        found = SysfsBattery.find(root)
        if found is not None:
            return found
        if source.strip().partition(":")[0] == "sim":
            return SimBattery(seed=seed, speed=speed, now_ms=now_ms)
        return None
    if kind == "sysfs":
        if colon and not rest:
            raise TrackerError(
                "--battery sysfs: needs a directory, as in sysfs:/sys/class/power_supply"
            )
        where = Path(rest).expanduser() if rest else root
        if not where.is_dir():
            raise TrackerError(f"--battery {spec}: no such directory: {where}")
        battery = SysfsBattery.find(where)
        if battery is None:
            raise TrackerError(
                f"--battery {spec}: no power supply of type Battery in {where}; "
                "use --battery none on a device without one"
            )
        return battery
    if kind == "sim" and not colon:
        return SimBattery(seed=seed, speed=speed, now_ms=now_ms)
    if kind == "none" and not colon:
        return None
    raise TrackerError(f"unknown --battery {spec!r}: use {FORMS}")


def _children(root: Path) -> list[Path]:
    try:
        return sorted(p for p in root.iterdir() if p.is_dir())
    except OSError:
        return []


def _text(path: Path) -> str:
    return path.read_text(encoding="ascii", errors="replace").strip()


def _is_battery(supply: Path) -> bool:
    try:
        if _text(supply / "type").lower() != "battery":
            return False
        present = supply / "present"
        return not present.is_file() or _text(present) != "0"
    except OSError:
        return False


def _read_supply(supply: Path) -> tuple[int, bool, int | None]:
    """(level %, on external power, full energy or charge when known) of one battery."""
    counters = next(
        (
            (now, full)
            for now, full in (("energy_now", "energy_full"), ("charge_now", "charge_full"))
            if (supply / full).is_file()
        ),
        None,
    )
    full = None if counters is None else _number(supply / counters[1])
    if (supply / "capacity").is_file():
        level = _number(supply / "capacity")
    elif counters is not None and full is not None and full > 0:
        level = round(100 * _number(supply / counters[0]) / full)
    else:
        raise ValueError(f"{supply} has neither capacity nor energy or charge counters")
    status = _text(supply / "status").lower() if (supply / "status").is_file() else ""
    return min(100, max(0, level)), status in ON_POWER, full


def _number(path: Path) -> int:
    text = _text(path)
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{path} holds {text!r}, not a number") from None
