"""Events the receiver state machine hands back to its caller."""

from __future__ import annotations

from dataclasses import dataclass

from .fix import Fix
from .ranges import Range


@dataclass(frozen=True, slots=True)
class Event:
    """Base class of receiver events."""


@dataclass(frozen=True, slots=True)
class FixesAccepted(Event):
    """New fixes to store durably and show live; nothing in them was seen before."""

    fixes: tuple[Fix, ...]
    """The fixes, consecutive in seq."""
    verified: bool
    """True when covered by a device signature; False when provisional (session MAC)."""


@dataclass(frozen=True, slots=True)
class ChainVerified(Event):
    """``first_seq..last_seq`` is now covered by one device signature.

    The stored fixes of that range, with ``prev_hash`` and ``signature``, form a batch any
    other hop can verify on its own: this is the unit a relay forwards to the cloud.
    """

    first_seq: int
    """First fix of the verified run."""
    last_seq: int
    """Last fix of the run, the signed head."""
    prev_hash: bytes
    """Chain hash before ``first_seq``."""
    signature: bytes
    """The device's signature over the head at ``last_seq``."""


@dataclass(frozen=True, slots=True)
class ProvisionalDiscarded(Event):
    """Provisional (MAC-only) fixes were replaced by different signed ones: delete them."""

    first_seq: int
    """First discarded seq."""
    last_seq: int
    """Last discarded seq."""


@dataclass(frozen=True, slots=True)
class DuplicateReceived(Event):
    """The batch held nothing new (a retry or a replay): ack again, store nothing."""

    first_seq: int
    """First seq of the duplicate batch."""
    last_seq: int
    """Last seq of the duplicate batch."""


@dataclass(frozen=True, slots=True)
class GapDetected(Event):
    """The batch cannot be verified until earlier fixes arrive; nothing was stored."""

    missing: tuple[Range, ...]
    """The ranges to ask the sender for."""
