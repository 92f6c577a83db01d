"""Trackers uploading straight to the cloud when no relay is in reach.

The cloud serves the tracker upload exchange of :mod:`sync_protocol.upload`, as a relay
does: ``POST /v1/hello`` with a session hello, then ``POST /v1/batches`` with framed
batches. There is no relay principal and no account: the requests are public, and what
authenticates them is the device's signatures. A hello is checked (a certificate this
cloud signed, for a device enrolled here, signed by the device key, fresh) and answered
with what the cloud already holds of the device's chain, and ``live_mac=False``: the
cloud keeps no session between requests (any replica may answer the next one), so a
tracker signs every batch it sends here and a MAC'd batch is refused with
``no-session``. Batches go through the same :class:`~cloud.ingest.Ingest` path as
relays' uploads, for the races of the device's certificate, and land in history once
whichever way they come.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sync_protocol.errors import CertificateError, DecodeError, ProtocolError
from sync_protocol.session import SessionHello
from sync_protocol.upload import HelloReply, UploadResult

from .errors import ApiError
from .ingest import BatchResult, Ingest
from .keys import CloudKey
from .races import now_ms
from .store.devices import DeviceStore

log = logging.getLogger("gruppetto.cloud.direct")


def upload_result(result: BatchResult) -> UploadResult:
    """The wire result of one batch: the ack, and the cloud's acked seq of the device."""
    ack = result.ack
    cloud_acked = 0 if ack is None else ack.acked_seq
    return UploadResult(ack, cloud_acked, result.reason, result.message)


class DirectUploads:
    """The cloud as a tracker's receiving hop."""

    def __init__(
        self,
        ingest: Ingest,
        key: CloudKey,
        devices: DeviceStore,
        clock_ms: Callable[[], int] = now_ms,
    ) -> None:
        self.ingest, self.key, self.devices, self.clock_ms = ingest, key, devices, clock_ms
        self.counters: dict[str, int] = {}
        """Hellos (``hello:accepted`` or ``hello:<reason>``) and batch outcomes
        (``batch:<outcome>``) of direct uploads, counted (exported as metrics)."""
        self._lock = threading.Lock()

    def hello(self, data: bytes, address: str) -> HelloReply:
        """Check a session hello; what the cloud holds of the device's chain.

        A malformed hello is a 400, one that does not verify (or names a device not
        enrolled here) a 403; the :class:`ApiError` code is the protocol reason.
        """
        try:
            hello = SessionHello.decode(data)
            hello.verify(self.key.public, self.clock_ms())
            device = hello.certificate.device_id
            row = self.devices.get(device)
            if row is None or row["public_key"] != hello.certificate.device_public_key:
                raise CertificateError(
                    "no device with this key was enrolled here: enrol it (POST /api/devices)",
                    reason="no-certificate",
                )
        except ProtocolError as exc:
            self._count(f"hello:{exc.reason}")
            log.warning(
                "hello refused",
                extra={"address": address, "reason": exc.reason, "detail": exc.message},
            )
            status = 400 if isinstance(exc, DecodeError) else 403
            raise ApiError(status, exc.reason, f"session hello: {exc.message}") from None
        self._count("hello:accepted")
        ack = self.ingest.device_ack(device)
        return HelloReply(ack, ack.acked_seq, live_mac=False)

    def batches(self, body: bytes, address: str) -> list[UploadResult]:
        """Verify, store and ack a framed upload; one result per batch, in order."""
        results = self.ingest.receive_direct(body, address)
        for result in results:
            self._count(f"batch:{result.outcome}")
        return [upload_result(r) for r in results]

    def _count(self, key: str) -> None:
        with self._lock:
            self.counters[key] = self.counters.get(key, 0) + 1
