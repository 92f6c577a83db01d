"""Trackers' device statuses (their battery) on the cloud, onto the races' live stream.

Two ways in:

* **Direct.** A tracker with no relay in reach sends ``POST /v1/status``
  (:mod:`sync_protocol.device_status`) next to its direct uploads. The cloud keeps no
  session between requests (see :mod:`cloud.direct`), so the status must be signed by the
  device key; it is checked against the key enrolled here, the certificate's validity
  and the cloud's clock. A MAC'd one is refused with ``no-session``.
* **Through a relay.** A relay verified its trackers' statuses with their session keys
  and reports the newest of each (``devices`` of ``POST /api/relay/status``). The cloud
  takes them on the relay's word (it is authenticated, and serves those races), for
  devices enrolled here and races the relay serves.

Each status goes to the race its rider is in (a race under way first, else the one whose
start is nearest), as a ``battery`` message on the live bus: the console scoring the
cloud's stream, and relays following it, show it. Statuses are live news, kept by the
bus (the newest per rider), never stored.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from sync_protocol.certificate import DeviceCertificate
from sync_protocol.chain import DEVICE_ID_LEN, load_public_key
from sync_protocol.device_status import DeviceStatus
from sync_protocol.errors import CertificateError, DecodeError, LocalProtocolError, ProtocolError
from sync_protocol.session import MAX_CLOCK_SKEW_MS

from .auth.principal import Principal
from .bus import LiveBus
from .errors import ApiError, bad_request
from .ingest import DIRECT
from .keys import CloudKey
from .races import now_ms
from .store.devices import DeviceStore
from .store.races import RaceStore
from .store.relays import RelayStore

log = logging.getLogger("gruppetto.cloud.status")

MAX_RELAY_DEVICES = 1_000
"""Most device statuses in one relay report."""
RUNNING = frozenset({"live", "neutralised"})


class DeviceStatuses:
    """Puts trackers' battery levels on the races' live streams."""

    def __init__(
        self,
        key: CloudKey,
        devices: DeviceStore,
        races: RaceStore,
        relays: RelayStore,
        bus: LiveBus,
        clock_ms: Callable[[], int] = now_ms,
    ) -> None:
        self.key, self.devices, self.races, self.relays = key, devices, races, relays
        self.bus, self.clock_ms = bus, clock_ms
        self.counters: dict[str, int] = {}
        """``direct:accepted``, ``direct:<reason>``, ``relay:accepted`` and
        ``relay:<reason>``, counted (exported as metrics)."""
        self._lock = threading.Lock()

    # -- a tracker's own status ------------------------------------------------------------

    def direct(self, body: bytes, address: str) -> None:
        """Verify a tracker's signed status and publish it.

        A malformed status is a 400; one that does not verify, is stale, or names a device
        not enrolled here a 403. The :class:`ApiError` code is the protocol reason.
        """
        try:
            status = DeviceStatus.decode(body)
            row = self.devices.get(status.device_id)
            if row is None:
                raise CertificateError(
                    "no device with this id was enrolled here: enrol it (POST /api/devices)",
                    reason="no-certificate",
                )
            if status.mac:
                raise CertificateError(
                    "the cloud keeps no session between requests: sign statuses sent here "
                    "with the device key",
                    reason="no-session",
                )
            status.verify(now_ms=self.clock_ms(), public_key=load_public_key(row["public_key"]))
            cert = DeviceCertificate.decode(row["certificate"])
            if not cert.not_before_ms <= status.t_ms <= cert.not_after_ms:
                raise CertificateError(
                    "device status dated outside the device certificate's validity",
                    reason="outside-validity",
                )
        except ProtocolError as exc:
            self._count(f"direct:{exc.reason}")
            log.warning(
                "device status refused",
                extra={"address": address, "reason": exc.reason, "detail": exc.message},
            )
            status_code = 400 if isinstance(exc, DecodeError) else 403
            raise ApiError(status_code, exc.reason, f"device status: {exc.message}") from None
        self._count("direct:accepted")
        self._publish(status, cert, cert.race_ids, DIRECT, {})

    # -- statuses a relay verified -----------------------------------------------------------

    def from_relay(self, relay: Principal, entries: Any) -> int:
        """Publish the statuses of a relay's report; returns how many were published.

        The whole list is checked first (a 400 naming the bad entry changes nothing).
        Devices not enrolled here, or riding none of the relay's races, are skipped and
        counted (``relay:unknown-device``, ``relay:wrong-race``).
        """
        statuses = self._parse(entries)
        served = frozenset(self.relays.race_ids(relay.id))
        races: dict[int, dict[str, Any] | None] = {}
        published = 0
        for status in statuses:
            row = self.devices.get(status.device_id)
            if row is None:
                self._count("relay:unknown-device")
                continue
            cert = DeviceCertificate.decode(row["certificate"])
            race_ids = tuple(r for r in cert.race_ids if r in served)
            if not race_ids or not self._publish(status, cert, race_ids, relay.id, races):
                self._count("relay:wrong-race")
                continue
            self._count("relay:accepted")
            published += 1
        return published

    def _parse(self, entries: Any) -> list[DeviceStatus]:
        if not isinstance(entries, list) or len(entries) > MAX_RELAY_DEVICES:
            raise bad_request(
                f"devices must be a list of at most {MAX_RELAY_DEVICES:,} statuses",
                devices="list of {device_id, t_ms, battery_pct, charging}",
            )
        latest = self.clock_ms() + MAX_CLOCK_SKEW_MS
        out = []
        for i, entry in enumerate(entries):
            where = f"devices[{i}]"
            if not isinstance(entry, dict):
                raise bad_request(f"{where} must be an object", devices=f"{where}: an object")
            try:
                device = bytes.fromhex(str(entry.get("device_id", "")))
            except ValueError:
                device = b""
            if len(device) != DEVICE_ID_LEN:
                raise bad_request(
                    f"{where}.device_id must be 32 hex digits", devices=f"{where}: device_id"
                )
            try:
                status = DeviceStatus(
                    device, entry["t_ms"], entry["battery_pct"], entry["charging"]
                )
            except KeyError as exc:
                raise bad_request(f"{where} has no {exc}", devices=f"{where}: {exc}") from None
            except LocalProtocolError as exc:
                raise bad_request(f"{where}: {exc.message}", devices=where) from None
            if status.t_ms > latest:
                raise bad_request(
                    f"{where}.t_ms is in the future by more than 10 minutes",
                    devices=f"{where}: t_ms",
                )
            out.append(status)
        return out

    # -- onto the live bus -------------------------------------------------------------------

    def _publish(
        self,
        status: DeviceStatus,
        cert: DeviceCertificate,
        race_ids: tuple[int, ...],
        via: int,
        races: dict[int, dict[str, Any] | None],
    ) -> bool:
        """The status as a ``battery`` message of the rider's race; False without one.

        ``races`` caches race rows across the statuses of one request.
        """
        placed = self._race_for(cert.racer_id, race_ids, status.t_ms, races)
        if placed is None:
            return False
        race_id, bib = placed
        self.bus.publish(
            race_id,
            {
                "type": "battery",
                "race_id": race_id,
                "rider_id": cert.racer_id,
                "bib": bib,
                "t_ms": status.t_ms,
                "battery_pct": status.battery_pct,
                "charging": status.charging,
                "device_id": status.device_id.hex(),
                "via": via,
            },
        )
        return True

    def _race_for(
        self,
        racer_id: int,
        race_ids: tuple[int, ...],
        t_ms: int,
        races: dict[int, dict[str, Any] | None],
    ) -> tuple[int, int] | None:
        """(race, bib): of the races named with the rider on the start list, one under way
        first, else the one whose start is nearest ``t_ms``."""
        candidates = []
        for race_id in race_ids:
            if race_id not in races:
                races[race_id] = self.races.one(
                    "SELECT id, state, starts_at_ms FROM races WHERE id = ?", (race_id,)
                )
            race = races[race_id]
            registration = self.races.registration(race_id, racer_id)
            if race is None or registration is None or registration["status"] == "withdrawn":
                continue
            rank = (race["state"] not in RUNNING, abs(race["starts_at_ms"] - t_ms), race_id)
            candidates.append((rank, race_id, int(registration["bib"])))
        if not candidates:
            return None
        _, race_id, bib = min(candidates)
        return race_id, bib

    def _count(self, key: str) -> None:
        with self._lock:
            self.counters[key] = self.counters.get(key, 0) + 1
