"""The tracker's status line: what a racer glances at, and what ``tracker status`` prints.

While tracking, one line is kept up to date::

    GPS 3d 9 sats ±3 m | recorded 3,721 | waiting 0 | acked 3,721 (2 s ago) | link relay Col
    | radio 3 wake-ups | battery 74%

(one line on screen).

* **GPS**: the source's fix quality, satellites and accuracy of the last reading.
* **recorded**: fixes stored in the buffer (the sequence number of the newest).
* **waiting**: recorded but not yet acked by any hop.
* **acked**: the highest fix such that every fix up to it is acked, and how long ago the
  last ack came.
* **link**: ``relay NAME``, ``cloud HOST`` or ``offline`` (``no coverage`` in a dropout).
* **radio**: how many times the uploader woke the radio (a send after a silence), the
  figure that drives a phone's battery use.
* **battery**: the level the relays and officials are told (``charging`` when on external
  power), when the tracker has a battery (``--battery``).

A storage warning or the last upload problem follows when there is one.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from .account import Account
from .store import FixStore, Usage


@dataclass(frozen=True, slots=True)
class Status:
    """One snapshot of the tracker, as the status line shows it."""

    gps: str
    """Fix quality of the last reading (``3d``, ``2d``, ``dgps``, ``none``...), or ``-``."""
    satellites: int | None
    """Satellites used in the last reading, when the source says."""
    hacc_m: float | None
    """Horizontal accuracy of the last reading in metres."""
    recorded: int
    """Sequence number of the newest fix in the buffer."""
    waiting: int
    """Fixes recorded and not acked by any hop."""
    acked_seq: int
    """Fixes 1..acked_seq are acked."""
    last_ack_ms: int | None
    """When the last ack arrived (UTC ms), or None."""
    link: str
    """``relay``, ``cloud`` or ``offline``."""
    hop: str
    """The relay's name or the cloud's host ('' when offline)."""
    coverage: bool
    """False during a coverage dropout."""
    wakeups: int
    """Radio wake-ups caused by the uploader."""
    warning: str = ""
    """A storage warning, or the latest upload problem ('' when none)."""
    battery: str = ""
    """The battery level ("74%", "74% charging"); '' without a battery reading."""


def render(status: Status, now_ms: int) -> str:
    """The status line for ``status`` at ``now_ms``."""
    gps = f"GPS {status.gps}"
    if status.satellites is not None:
        gps += f" {status.satellites} sats"
    if status.hacc_m is not None:
        gps += f" ±{status.hacc_m:.0f} m"
    acked = f"acked {status.acked_seq:,}"
    if status.last_ack_ms is not None:
        acked += f" ({_ago(now_ms - status.last_ack_ms)})"
    if not status.coverage:
        link = "link offline (no coverage)"
    elif status.link == "offline":
        link = "link offline"
    else:
        link = f"link {status.link} {status.hop}".rstrip()
    parts = [
        gps,
        f"recorded {status.recorded:,}",
        f"waiting {status.waiting:,}",
        acked,
        link,
        f"radio {status.wakeups} wake-up{'' if status.wakeups == 1 else 's'}",
    ]
    if status.battery:
        parts.append(f"battery {status.battery}")
    line = " | ".join(parts)
    return f"{line} | {status.warning}" if status.warning else line


def describe(account: Account, store: FixStore | None, race_ids: list[int]) -> list[str]:
    """What ``gruppetto tracker status`` prints: the account, certificate and buffer."""
    cert = account.certificate
    lines = [
        f"racer       {account.username} (id {account.racer_id}) at {account.server}",
        f"device      {cert.device_id.hex()}",
        f"certificate races {', '.join(map(str, cert.race_ids)) or 'none'}; valid "
        f"{_utc(cert.not_before_ms)} .. {_utc(cert.not_after_ms)}",
        f"uploads     cloud HTTP/3 port {account.h3_port or 'none (relays only)'}",
        f"courses     saved for races {', '.join(map(str, race_ids)) or 'none'}",
    ]
    if store is None:
        lines.append("buffer      empty (nothing tracked yet)")
        return lines
    state = store.state
    waiting = sum(b - a + 1 for a, b in state.acked.gaps(1, state.recorded_seq))
    usage: Usage = store.usage()
    lines += [
        f"buffer      {state.recorded_seq:,} fixes recorded, {waiting:,} waiting, acked up to "
        f"{state.acked_seq:,}, cloud holds up to {state.cloud_acked_seq:,}",
        f"storage     {usage.fixes:,} fixes held, {usage.bytes / 1e6:.1f} MB "
        f"({usage.fraction:.0%} of budget); {store.pruned_seq:,} pruned",
    ]
    if usage.warning:
        lines.append(f"warning     {usage.warning}")
    return lines


def saved_races(data_dir: Path) -> list[int]:
    """Races whose course was saved at login."""
    folder = data_dir / "races"
    if not folder.is_dir():
        return []
    return sorted(int(p.stem) for p in folder.glob("*.json") if p.stem.isdigit())


def _ago(ms: int) -> str:
    seconds = max(0, ms) // 1000
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    return f"{seconds // 3600} h ago"


def _utc(t_ms: int) -> str:
    return datetime.datetime.fromtimestamp(t_ms / 1000, datetime.UTC).strftime("%Y-%m-%d %H:%M")
