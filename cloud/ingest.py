"""Ingest of relays' forwarded batches: verify again, store once, ack when durable.

A relay posts the riders' original signed runs (length-prefixed batches, see
:mod:`sync_protocol.framing`). For each batch the cloud checks the device's certificate
(issued by this cloud, valid when the fixes were recorded, for a race the relay serves),
runs the protocol receiver (signature, hash chain, plausibility), computes geometry
(progress along the course, step distance) and appends the new fixes to history in bulk.
History appends are idempotent by (race, device, seq) and are committed before the
receiver states, so a crash between the two re-accepts the batch on retry and stores
nothing twice. Acks go out only after both commits.
"""

from __future__ import annotations

import bisect
import logging
import threading
from dataclasses import dataclass
from typing import Any

from sync_protocol.batch import Batch, decode_batch
from sync_protocol.certificate import DeviceCertificate
from sync_protocol.course import Course
from sync_protocol.errors import CertificateError, ProtocolError
from sync_protocol.events import DuplicateReceived, FixesAccepted, GapDetected
from sync_protocol.fix import MAX_SPEED_CMS, Fix
from sync_protocol.framing import decode_frames
from sync_protocol.inbox import check_validity
from sync_protocol.receiver import Receiver, ReceiverState

from .auth.principal import Principal
from .bus import LiveBus
from .errors import ApiError
from .history.store import COLUMNS, History, fix_row, rows_to_arrow
from .keys import CloudKey
from .store.devices import DeviceStore
from .store.ingest import DeviceProgress, IngestStateStore
from .store.races import RaceStore
from .store.relays import RelayStore

log = logging.getLogger("gruppetto.cloud.ingest")

WINDOW_SLACK_M = 150.0
LIVE_FIELDS = (
    "race_id",
    "rider_id",
    "bib",
    "seq",
    "t_ms",
    "lat_e7",
    "lon_e7",
    "ele_dm",
    "speed_cms",
    "heading_dd",
    "progress_m",
)
"""What the live bus carries of a fix."""
"""Added to the farthest a rider can have ridden since the last fix (GPS error, bends)."""


@dataclass(slots=True)
class _Device:
    cert: DeviceCertificate
    receiver: Receiver
    progress: DeviceProgress


class Ingest:
    """The cloud's receiving hop."""

    def __init__(
        self,
        key: CloudKey,
        devices: DeviceStore,
        races: RaceStore,
        relays: RelayStore,
        states: IngestStateStore,
        history: History,
        bus: LiveBus,
    ) -> None:
        self.key, self.devices, self.races, self.relays = key, devices, races, relays
        self.states, self.history, self.bus = states, history, bus
        self._courses: dict[int, tuple[int, Course | None]] = {}
        self._lock = threading.Lock()
        self.counters: dict[str, int] = {}
        """Outcomes and rejection reasons, counted (exported as metrics)."""

    def receive(self, relay: Principal, body: bytes) -> list[dict[str, Any]]:
        """Process one upload body; returns one result per batch, in order.

        Uploads are processed one at a time (one writer): concurrent duplicates of the same
        batch are then simply duplicates, never a race between two receiver states.
        """
        with self._lock:
            return self._receive(relay, body)

    def _receive(self, relay: Principal, body: bytes) -> list[dict[str, Any]]:
        try:
            frames = decode_frames(body)
        except ProtocolError as exc:
            self._count(f"rejected:{exc.reason}")
            raise ApiError(400, exc.reason, f"upload body: {exc.message}") from None
        served = set(self.relays.race_ids(relay.id))
        touched: dict[bytes, _Device] = {}
        rows: list[tuple[Any, ...]] = []
        results: list[dict[str, Any]] = []
        for data in frames:
            try:
                batch = decode_batch(data)
                device = touched.get(batch.device_id) or self._load(batch, served)
                result = self._take(batch, device, rows)
                touched[batch.device_id] = device
            except ProtocolError as exc:
                self._count(f"rejected:{exc.reason}")
                result = {"outcome": "rejected", "reason": exc.reason, "message": exc.message}
                if len(data) >= 20:
                    result["device_id"] = data[4:20].hex()
                log.warning(
                    "batch rejected",
                    extra={
                        "relay": relay.name,
                        "reason": exc.reason,
                        "detail": exc.message,
                        "device": result.get("device_id"),
                    },
                )
            results.append(result)
        if rows:
            self.history.append(rows_to_arrow(rows))  # durable and idempotent first
        self.states.put_many({d: dev.progress for d, dev in touched.items()})
        self._publish(relay, rows)
        for result in results:  # acks reflect the committed state
            done = touched.get(bytes.fromhex(result.get("device_id", "")))
            if done is not None and result["outcome"] != "rejected":
                ack = done.receiver.ack()
                result["ack"] = {
                    "acked_seq": ack.acked_seq,
                    "held": ack.held,
                    "missing": ack.missing,
                }
        return results

    def _publish(self, relay: Principal, rows: list[tuple[Any, ...]]) -> None:
        """Put each rider's newest accepted fix on the live bus (after the commits)."""
        newest: dict[tuple[int, int], dict[str, Any]] = {}
        for row in rows:
            fix = dict(zip(COLUMNS, row, strict=True))
            key = (fix["race_id"], fix["rider_id"])
            if key not in newest or fix["seq"] > newest[key]["seq"]:
                newest[key] = fix
        for (race_id, _), fix in newest.items():
            message = {k: fix[k] for k in LIVE_FIELDS}
            self.bus.publish(
                race_id,
                {"type": "fix", **message, "device_id": fix["device_id"].hex(), "via": relay.id},
            )

    def _load(self, batch: Batch, served: set[int]) -> _Device:
        row = self.devices.get(batch.device_id)
        if row is None:
            raise CertificateError(
                "no device with this id was enrolled here", reason="no-certificate"
            )
        cert = DeviceCertificate.decode(row["certificate"])
        cert.verify(self.key.public, batch.fixes[0].t_ms)
        check_validity(cert, batch)
        races = sorted(set(cert.race_ids) & served)
        if not races:
            raise CertificateError(
                "the device is registered for no race this relay serves", reason="wrong-race"
            )
        stored = self.states.get(batch.device_id)
        if stored is None:
            state = Receiver.for_certificate(cert).state
            stored = DeviceProgress(state.to_bytes(), races[0], None, None)
        receiver = Receiver(ReceiverState.from_bytes(stored.receiver))
        return _Device(cert, receiver, stored)

    def _take(self, batch: Batch, device: _Device, rows: list[tuple[Any, ...]]) -> dict[str, Any]:
        events = device.receiver.receive(batch)
        result: dict[str, Any] = {"device_id": batch.device_id.hex(), "outcome": "accepted"}
        for event in events:
            if isinstance(event, DuplicateReceived):
                result["outcome"] = "duplicate"
            elif isinstance(event, GapDetected):
                result["outcome"] = "gap"
            elif isinstance(event, FixesAccepted) and event.verified:
                rows += self._rows(device, event.fixes)
        self._count(result["outcome"])
        device.progress.receiver = device.receiver.state.to_bytes()
        return result

    def _rows(self, device: _Device, fixes: tuple[Fix, ...]) -> list[tuple[Any, ...]]:
        cert, prog = device.cert, device.progress
        race_id = self._race_for(cert, fixes[0].t_ms, prog.race_id)
        race = self.races.get(race_id)
        bib = next(
            (r["bib"] for r in self.races.start_list(race_id) if r["rider_id"] == cert.racer_id), 0
        )
        course = self._course(race_id, race)
        out = []
        for fix in fixes:
            prev = prog.last_fix if prog.last_fix and prog.last_fix.seq == fix.seq - 1 else None
            progress = 0.0
            if course is not None:
                last = prog.progress_m if prev is not None else None
                reach = (MAX_SPEED_CMS / 100) * (fix.t_ms - prev.t_ms) / 1000 if prev else 0.0
                projection = course.project(
                    fix.lat, fix.lon, last_progress_m=last, max_advance_m=reach + WINDOW_SLACK_M
                )
                progress = projection.progress_m
            out.append(
                fix_row(
                    race_id, cert.racer_id, bib, cert.device_id, fix, progress_m=progress, prev=prev
                )
            )
            if prog.last_fix is None or fix.seq > prog.last_fix.seq:
                prog.last_fix, prog.progress_m, prog.race_id = fix, progress, race_id
        return out

    def _race_for(self, cert: DeviceCertificate, t_ms: int, current: int) -> int:
        """The race the fixes belong to: the latest to have started by ``t_ms``."""
        starts = sorted(
            (race["starts_at_ms"], rid)
            for rid in cert.race_ids
            if (race := self.races.get(rid)) is not None
        )
        index = bisect.bisect_right([s for s, _ in starts], t_ms) - 1
        return starts[max(index, 0)][1] if starts else current

    def _course(self, race_id: int, race: dict[str, Any] | None) -> Course | None:
        if race is None or race["course"] is None:
            return None
        cached = self._courses.get(race_id)
        if cached is None or cached[0] != race["updated_ms"]:
            cached = (race["updated_ms"], Course.from_dict(race["course"]))
            self._courses[race_id] = cached
        return cached[1]

    def _count(self, key: str) -> None:
        self.counters[key] = self.counters.get(key, 0) + 1
