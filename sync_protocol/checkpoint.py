"""Checkpoints on a course, the validation of course values, and line-crossing times.

Pure data and functions, no I/O. A :class:`Checkpoint` is a named place at a race
distance (a sprint, the foot and top of a climb, a feed zone, the finish);
:func:`check_checkpoints` checks a course's set of them against its finish line, and
:func:`crossing_time_ms` interpolates when a rider crossed one between two fixes.
:class:`~sync_protocol.course.Course` re-exports all of these, so
``from sync_protocol.course import Checkpoint, crossing_time_ms`` keeps working.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from .errors import CourseError, LocalProtocolError

CHECKPOINT_KINDS = frozenset({"sprint", "climb", "feed", "intermediate", "finish"})
"""The kinds of :class:`Checkpoint`."""
FINISH_TOLERANCE_M = 1.0
"""A "finish" checkpoint must lie this close to :attr:`Course.finish_m`."""
MAX_NAME = 200
"""Longest course or checkpoint name, in characters."""


def check_name(value: object, what: str) -> str:
    """A printable name of at most :data:`MAX_NAME` characters, or CourseError."""
    if not isinstance(value, str):
        raise CourseError(f"{what} must be a string, not {type(value).__name__}")
    if len(value) > MAX_NAME or any(not c.isprintable() for c in value):
        raise CourseError(f"{what} must be at most {MAX_NAME} printable characters")
    return value


def check_number(value: object, what: str) -> float:
    """A finite int or float (never a bool) as a float, or CourseError."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CourseError(f"{what} must be a number, not {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise CourseError(f"{what} must be finite, not {value!r}")
    return number


def crossing_time_ms(
    prev_t_ms: int, prev_progress_m: float, t_ms: int, progress_m: float, mark_m: float
) -> int | None:
    """When a rider crossed ``mark_m`` between two fixes, linearly interpolated.

    Returns None unless ``prev_progress_m < mark_m <= progress_m``; use it for checkpoint
    passages and the finish line (``mark_m=course.finish_m``).
    """
    if t_ms < prev_t_ms:
        raise LocalProtocolError(f"crossing_time_ms: t_ms {t_ms} is before prev_t_ms {prev_t_ms}")
    if not all(map(math.isfinite, (prev_progress_m, progress_m, mark_m))):
        raise LocalProtocolError("crossing_time_ms: progress and mark must be finite")
    if not prev_progress_m < mark_m <= progress_m:
        return None
    fraction = (mark_m - prev_progress_m) / (progress_m - prev_progress_m)
    return prev_t_ms + round((t_ms - prev_t_ms) * fraction)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A named place on the course, at a race distance."""

    name: str
    """Unique within the course, shown to people ("Col du Galibier", "Sprint lap 5")."""
    kind: str
    """One of :data:`CHECKPOINT_KINDS`: sprint, climb, feed, intermediate, finish."""
    distance_m: float
    """Race distance of the checkpoint (of a climb's foot), 0..finish."""
    end_m: float | None = None
    """Race distance of a climb's top; only for kind "climb"."""

    def __post_init__(self) -> None:
        what = f"checkpoint {self.name!r}"
        if not check_name(self.name, "checkpoint name").strip():
            raise CourseError("checkpoint name must not be empty")
        if not isinstance(self.kind, str) or self.kind not in CHECKPOINT_KINDS:
            kinds = ", ".join(sorted(CHECKPOINT_KINDS))
            raise CourseError(f"{what}: kind {self.kind!r} is not one of {kinds}")
        distance = check_number(self.distance_m, f"{what} distance_m")
        if distance < 0:
            raise CourseError(f"{what}: distance_m {distance} is negative")
        object.__setattr__(self, "distance_m", distance)
        if self.end_m is not None:
            if self.kind != "climb":
                raise CourseError(f"{what}: only a climb has an end_m (its top)")
            end = check_number(self.end_m, f"{what} end_m")
            if end <= distance:
                raise CourseError(f"{what}: end_m {end} must be after distance_m {distance}")
            object.__setattr__(self, "end_m", end)


def check_checkpoints(checkpoints: Iterable[object], finish_m: float) -> tuple[Checkpoint, ...]:
    """A course's checkpoints, checked against its finish and sorted by race distance.

    Names must be unique, nothing may lie beyond ``finish_m``, and a "finish" checkpoint
    must be at the finish line (within :data:`FINISH_TOLERANCE_M`); CourseError otherwise.
    """
    if isinstance(checkpoints, str | bytes | Checkpoint):
        raise CourseError("checkpoints must be a sequence of Checkpoint")
    checked: list[Checkpoint] = []
    seen: set[str] = set()
    for cp in checkpoints:
        if not isinstance(cp, Checkpoint):
            raise CourseError(f"checkpoints must be Checkpoint objects, not {cp!r}")
        if cp.name in seen:
            raise CourseError(f"two checkpoints are named {cp.name!r}")
        seen.add(cp.name)
        top = cp.distance_m if cp.end_m is None else cp.end_m
        if top > finish_m:
            raise CourseError(
                f"checkpoint {cp.name!r} at {top:,.1f} m is beyond the finish at {finish_m:,.1f} m"
            )
        if cp.kind == "finish" and abs(cp.distance_m - finish_m) > FINISH_TOLERANCE_M:
            raise CourseError(
                f"finish checkpoint {cp.name!r} at {cp.distance_m:,.1f} m is not at the "
                f"finish line ({finish_m:,.1f} m)"
            )
        checked.append(cp)
    return tuple(sorted(checked, key=lambda cp: (cp.distance_m, cp.name)))
