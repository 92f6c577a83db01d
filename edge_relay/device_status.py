"""Trackers' device statuses (their battery) on the relay: verify, keep the newest, report.

A tracker sends ``POST /v1/status`` (:mod:`sync_protocol.device_status`) on the
connection it uploads on. The relay checks it against what the device's session hello
armed in the ingest's :class:`~sync_protocol.inbox.Inbox`: the session key for a MAC'd
status, the certified device key for a signed one, and the certificate's validity. It
keeps the newest status per device in memory (a battery level is live news, not a
record: after a restart the next status, at most a minute away, brings it back), hands
it to live scoring, and reports the newest ones to the cloud with the relay's periodic
status report, so a console watching the cloud sees them too.

The inbox's dicts are written on the writer thread; this module only looks entries up
from the event loop, which is safe for a dict.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sync_protocol.chain import load_public_key
from sync_protocol.device_status import DeviceStatus, StatusBoard
from sync_protocol.errors import CertificateError, ProtocolError
from sync_protocol.inbox import Inbox

log = logging.getLogger("gruppetto.relay.status")

REPORT_MAX_AGE_MS = 15 * 60_000
"""Statuses older than this are not reported to the cloud (it would not show them)."""
REPORT_MAX_DEVICES = 1_000
"""Most statuses in one report to the cloud (the newest first)."""


@dataclass(frozen=True, slots=True)
class AcceptedStatus:
    """A status that verified, and whose rider it is."""

    status: DeviceStatus
    """The status."""
    racer_id: int
    """The rider, from the device certificate."""
    race_ids: tuple[int, ...]
    """The races the certificate covers."""
    newest: bool
    """False when the relay already had a newer status of the device (nothing changes)."""


class RelayStatuses:
    """The relay's side of ``/v1/status``."""

    def __init__(self, clock_ms: Callable[[], int]) -> None:
        self.clock_ms = clock_ms
        self.board = StatusBoard()
        """The newest status of each device."""
        self.counters: Counter[str] = Counter()
        """``accepted``, ``old`` (an older one than the newest, ignored) and
        ``refused:<reason>``, counted (exported as metrics)."""

    def receive(self, inbox: Inbox, body: bytes) -> AcceptedStatus:
        """Verify a status body; raises ProtocolError (the caller answers 4xx)."""
        device: bytes | None = None
        try:
            status = DeviceStatus.decode(body)
            device = status.device_id
            receiver = inbox.receivers.get(device)
            cert = inbox.certificates.get(device)
            if receiver is None or cert is None:
                raise CertificateError(
                    "device status from a device with no session here: open the connection "
                    "with a session hello",
                    reason="no-certificate",
                )
            status.verify(
                now_ms=self.clock_ms(),
                session_key=receiver.session_key,
                public_key=load_public_key(cert.device_public_key),
            )
            if not cert.not_before_ms <= status.t_ms <= cert.not_after_ms:
                raise CertificateError(
                    "device status dated outside the device certificate's validity",
                    reason="outside-validity",
                )
        except ProtocolError as exc:
            self.counters[f"refused:{exc.reason}"] += 1
            log.info(
                "device status refused",
                extra={
                    "reason": exc.reason,
                    "detail": exc.message,
                    "device": None if device is None else device.hex(),
                },
            )
            raise
        newest = self.board.offer(status)
        self.counters["accepted" if newest else "old"] += 1
        return AcceptedStatus(status, cert.racer_id, cert.race_ids, newest)

    def report(self, now_ms: int) -> list[dict[str, Any]]:
        """The newest statuses for the cloud's ``POST /api/relay/status`` (``devices``)."""
        fresh = [s for s in self.board.latest.values() if now_ms - s.t_ms <= REPORT_MAX_AGE_MS]
        fresh.sort(key=lambda s: s.t_ms, reverse=True)
        return [
            {
                "device_id": s.device_id.hex(),
                "t_ms": s.t_ms,
                "battery_pct": s.battery_pct,
                "charging": s.charging,
            }
            for s in fresh[:REPORT_MAX_DEVICES]
        ]
