"""Ingest of signed batches: verify again, store once, ack when durable.

Two senders share this one path: a relay posts the riders' original signed runs
(``POST /api/ingest``), and a tracker with no relay in reach posts its own batches
(``POST /v1/batches``, see :mod:`cloud.direct`). Both are length-prefixed batches (see
:mod:`sync_protocol.framing`). For each batch the cloud checks the device's certificate
(issued by this cloud to an enrolled device, valid when the fixes were recorded, for a
race the relay serves; a tracker's own upload may be for any race of its certificate),
runs the protocol receiver (signature, hash chain, plausibility), computes geometry
(progress along the course, step distance) and appends the new fixes to history in bulk.

There is one receiver state per device whichever way its batches come, so a fix that
arrives both straight from the tracker and later through a relay is a duplicate the
second time, and history appends are idempotent by (race, device, seq) besides. History
is committed before the receiver states, so a crash between the two re-accepts the
batch on retry and stores nothing twice. Acks go out only after both commits. The cloud
arms no session key: a MAC'd batch is refused with ``no-session`` (trackers sign every
batch they send here).
"""

from __future__ import annotations

import bisect
import logging
import threading
from dataclasses import dataclass
from typing import Any

from sync_protocol.ack import Ack
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
from .bus import FIX_FIELDS, LiveBus, fixes_message
from .errors import ApiError
from .history.store import COLUMNS, History, fix_row, rows_to_arrow
from .keys import CloudKey
from .store.devices import DeviceStore
from .store.ingest import DeviceProgress, IngestStateStore
from .store.races import RaceStore
from .store.relays import RelayStore

log = logging.getLogger("gruppetto.cloud.ingest")

WINDOW_SLACK_M = 150.0
"""Added to the farthest a rider can have ridden since the last fix (GPS error, bends)."""
DIRECT = 0
"""``via`` of fixes a tracker uploaded straight to the cloud (relay ids start at 1)."""
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
"""What the live bus carries of a fix (a ``fix`` message; ``fixes`` rows: :data:`FIX_FIELDS`)."""


@dataclass(frozen=True, slots=True)
class Source:
    """Who posted an upload."""

    via: int
    """The relay's id, or :data:`DIRECT` for a tracker's own upload."""
    name: str
    """The relay's name, or ``"direct"`` (for logs)."""
    races: frozenset[int] | None
    """Races the relay serves; None: any race of the device's certificate."""
    address: str = ""
    """The client address of a direct upload (for logs)."""


@dataclass(frozen=True, slots=True)
class BatchResult:
    """The outcome of one batch of an upload."""

    outcome: str
    """``accepted``, ``duplicate``, ``gap`` or ``rejected``."""
    device_id: bytes | None = None
    """The device the batch names, when it is long enough to name one."""
    ack: Ack | None = None
    """The device's ack after the commit; None when no enrolled device was loaded."""
    reason: str = ""
    """For a rejected batch: the protocol error's reason."""
    message: str = ""
    """For a rejected batch: what is wrong, for a person."""

    def to_json(self) -> dict[str, Any]:
        """The relay's view (``POST /api/ingest``): no ack on a rejected batch."""
        out: dict[str, Any] = {"outcome": self.outcome}
        if self.device_id is not None:
            out["device_id"] = self.device_id.hex()
        if self.outcome == "rejected":
            return {**out, "reason": self.reason, "message": self.message}
        if self.ack is not None:
            held, missing = self.ack.held, self.ack.missing
            out["ack"] = {"acked_seq": self.ack.acked_seq, "held": held, "missing": missing}
        return out


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

    def receive_from_relay(self, relay: Principal, body: bytes) -> list[BatchResult]:
        """Process a relay's upload body (for the races it serves)."""
        races = frozenset(self.relays.race_ids(relay.id))
        return self.receive(Source(relay.id, relay.name, races), body)

    def receive_direct(self, body: bytes, address: str) -> list[BatchResult]:
        """Process a tracker's own upload body (for the races of its certificate)."""
        return self.receive(Source(DIRECT, "direct", None, address), body)

    def receive(self, source: Source, body: bytes) -> list[BatchResult]:
        """Process one upload body; returns one result per batch, in order.

        Uploads are processed one at a time (one writer): concurrent duplicates of the same
        batch, from relays or trackers, are then simply duplicates, never a race between
        two receiver states. A malformed body is a 400 :class:`ApiError` (nothing stored).
        """
        with self._lock:
            return self._receive(source, body)

    def device_ack(self, device_id: bytes) -> Ack:
        """What the cloud holds of a device's chain (its committed receiver state)."""
        stored = self.states.get(device_id)
        if stored is None:
            return Ack(device_id, 0)
        return Receiver(ReceiverState.from_bytes(stored.receiver)).ack()

    def _receive(self, source: Source, body: bytes) -> list[BatchResult]:
        try:
            frames = decode_frames(body)
        except ProtocolError as exc:
            self._count(f"rejected:{exc.reason}")
            raise ApiError(400, exc.reason, f"upload body: {exc.message}") from None
        loaded: dict[bytes, _Device] = {}
        rows: list[tuple[Any, ...]] = []
        outcomes: list[tuple[bytes | None, str, ProtocolError | None]] = []
        for data in frames:
            named = data[4:20] if len(data) >= 20 else None
            try:
                batch = decode_batch(data)
                device = loaded.get(batch.device_id)
                if device is None:
                    device = loaded[batch.device_id] = self._load(batch, source.races)
                check_validity(device.cert, batch)  # every batch, not only the first
                outcomes.append((batch.device_id, self._take(batch, device, rows), None))
            except ProtocolError as exc:
                self._count(f"rejected:{exc.reason}")
                outcomes.append((named, "rejected", exc))
                log.warning(
                    "batch rejected",
                    extra={
                        "via": source.name,
                        "address": source.address or None,
                        "reason": exc.reason,
                        "detail": exc.message,
                        "device": None if named is None else named.hex(),
                    },
                )
        if rows:
            self.history.append(rows_to_arrow(rows))  # durable and idempotent first
        self.states.put_many({d: dev.progress for d, dev in loaded.items()})
        self._publish(source, rows)
        results = []
        for device_id, outcome, error in outcomes:  # acks reflect the committed state
            done = loaded.get(device_id) if device_id is not None else None
            ack = done.receiver.ack() if done is not None else None
            if error is None:
                results.append(BatchResult(outcome, device_id, ack))
            else:
                results.append(BatchResult(outcome, device_id, ack, error.reason, error.message))
        return results

    def _publish(self, source: Source, rows: list[tuple[Any, ...]]) -> None:
        """Put every accepted fix on the live bus (after the commits): one ``fixes`` message
        per rider's device, its fixes in chain order (the bus derives the newest ``fix``)."""
        runs: dict[tuple[int, int, bytes], list[dict[str, Any]]] = {}
        for row in rows:
            fix = dict(zip(COLUMNS, row, strict=True))
            runs.setdefault((fix["race_id"], fix["rider_id"], fix["device_id"]), []).append(fix)
        for (race_id, rider_id, device), fixes in runs.items():
            fixes.sort(key=lambda f: f["seq"])
            header = {
                "race_id": race_id,
                "rider_id": rider_id,
                "bib": fixes[-1]["bib"],
                "device_id": device.hex(),
                "via": source.via,
            }
            self.bus.publish(race_id, fixes_message(header, [_live_row(f) for f in fixes]))

    def _load(self, batch: Batch, served: frozenset[int] | None) -> _Device:
        row = self.devices.get(batch.device_id)
        if row is None:
            raise CertificateError(
                "no device with this id was enrolled here", reason="no-certificate"
            )
        cert = DeviceCertificate.decode(row["certificate"])
        cert.verify(self.key.public, batch.fixes[0].t_ms)
        races = sorted(set(cert.race_ids) if served is None else set(cert.race_ids) & served)
        if not races:
            where = "in any race" if served is None else "for no race this relay serves"
            raise CertificateError(
                f"the device's certificate is {where}: re-enrol it after registering",
                reason="wrong-race",
            )
        stored = self.states.get(batch.device_id)
        if stored is None:
            state = Receiver.for_certificate(cert).state
            stored = DeviceProgress(state.to_bytes(), races[0], None, None)
        receiver = Receiver(ReceiverState.from_bytes(stored.receiver))
        return _Device(cert, receiver, stored)

    def _take(self, batch: Batch, device: _Device, rows: list[tuple[Any, ...]]) -> str:
        """Run the receiver on ``batch``; its new fixes join ``rows``. Returns the outcome."""
        events = device.receiver.receive(batch)
        outcome = "accepted"
        for event in events:
            if isinstance(event, DuplicateReceived):
                outcome = "duplicate"
            elif isinstance(event, GapDetected):
                outcome = "gap"
            elif isinstance(event, FixesAccepted) and event.verified:
                rows += self._rows(device, event.fixes)
        self._count(outcome)
        device.progress.receiver = device.receiver.state.to_bytes()
        return outcome

    def _rows(self, device: _Device, fixes: tuple[Fix, ...]) -> list[tuple[Any, ...]]:
        cert, prog = device.cert, device.progress
        race_id = self._race_for(cert, fixes[0].t_ms, prog.race_id)
        race = self.races.get(race_id)
        bib = next(
            (r["bib"] for r in self.races.start_list(race_id) if r["rider_id"] == cert.racer_id), 0
        )
        course = self._course(race_id, race)
        out = []
        before: tuple[Fix, float] | None = None  # the previous fix of this run, projected
        for fix in fixes:
            if before is not None and before[0].seq == fix.seq - 1:
                prev: Fix | None = before[0]
                anchor: tuple[Fix, float | None] | None = before
            elif prog.last_fix is not None and prog.last_fix.seq == fix.seq - 1:
                prev = prog.last_fix
                anchor = (prog.last_fix, prog.progress_m)
            else:  # after a gap, or backfill: no step, but project near the newest known fix
                prev = None
                anchor = None
                if prog.last_fix is not None and prog.race_id == race_id:
                    anchor = (prog.last_fix, prog.progress_m)
            progress = 0.0 if course is None else _project(course, fix, anchor)
            out.append(
                fix_row(
                    race_id, cert.racer_id, bib, cert.device_id, fix, progress_m=progress, prev=prev
                )
            )
            before = (fix, progress)
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


def _project(course: Course, fix: Fix, anchor: tuple[Fix, float | None] | None) -> float:
    """The fix's race distance, searched within reach of ``anchor`` (a known fix of the
    device and its progress): ahead of it for a later fix, behind it for an older one (a
    backfill). With no anchor, the fix is a first one: near the start."""
    if anchor is None or anchor[1] is None:
        return course.project(
            fix.lat, fix.lon, last_progress_m=None, max_advance_m=WINDOW_SLACK_M
        ).progress_m
    known, known_m = anchor
    reach = (MAX_SPEED_CMS / 100) * abs(fix.t_ms - known.t_ms) / 1000 + WINDOW_SLACK_M
    if fix.t_ms >= known.t_ms:
        projection = course.project(fix.lat, fix.lon, last_progress_m=known_m, max_advance_m=reach)
    else:
        projection = course.project(
            fix.lat,
            fix.lon,
            last_progress_m=known_m,
            max_advance_m=WINDOW_SLACK_M,
            max_back_m=reach,
        )
    return projection.progress_m


def _live_row(fix: dict[str, Any]) -> list[Any]:
    """A history row as a ``fixes`` row (progress to the decimetre: compact on the wire)."""
    return [round(fix[f], 1) if f == "progress_m" else fix[f] for f in FIX_FIELDS]
