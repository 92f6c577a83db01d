"""The front of a receiving hop: one :class:`Receiver` per device that proved a certificate.

A relay admits a device when its session hello verifies against the cloud's public key
(offline); the cloud admits devices from the certificates it issued. A batch from a device
that was never admitted — a key without a certificate — is refused before any other work.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .batch import Batch, decode_batch
from .certificate import DeviceCertificate
from .errors import CertificateError
from .events import Event
from .receiver import Receiver, ReceiverState
from .session import SessionHello

StateLoader = Callable[[bytes], ReceiverState | None]
"""Looks up a device's persisted receiver state by device id (None when new)."""


class Inbox:
    """Admits devices and routes their batches to their receivers."""

    def __init__(
        self,
        issuer: Ed25519PublicKey,
        race_ids: Iterable[int] | None = None,
        load_state: StateLoader | None = None,
    ) -> None:
        self.issuer = issuer
        """The cloud's public key that signs device certificates."""
        self.race_ids = None if race_ids is None else frozenset(race_ids)
        """Races served here (None: any race the certificate names)."""
        self.receivers: dict[bytes, Receiver] = {}
        """Admitted devices by device id."""
        self.certificates: dict[bytes, DeviceCertificate] = {}
        """Each admitted device's certificate."""
        self._load_state = load_state

    def admit(self, certificate: DeviceCertificate, now_ms: int) -> Receiver:
        """Verify ``certificate`` (for one of our races) and return the device's receiver."""
        certificate.verify(self.issuer, now_ms)
        if self.race_ids is not None and not self.race_ids & set(certificate.race_ids):
            raise CertificateError(
                "device is registered for none of the races served here", reason="wrong-race"
            )
        device = certificate.device_id
        receiver = self.receivers.get(device)
        if receiver is None:
            stored = self._load_state(device) if self._load_state else None
            if stored is not None and stored.public_key == certificate.device_public_key:
                receiver = Receiver(stored)
            else:
                receiver = Receiver.for_certificate(certificate)
            self.receivers[device] = receiver
        self.certificates[device] = certificate
        return receiver

    def hello(self, data: bytes, now_ms: int) -> Receiver:
        """Verify a session hello and arm the device's receiver with its session key."""
        hello = SessionHello.decode(data)
        hello.verify(self.issuer, now_ms)
        receiver = self.admit(hello.certificate, now_ms)
        receiver.session_key = hello.session_key
        return receiver

    def receive(self, data: bytes) -> tuple[Receiver, Batch, list[Event]]:
        """Decode and verify a batch from an admitted device."""
        batch = decode_batch(data)
        receiver = self.receivers.get(batch.device_id)
        if receiver is None:
            raise CertificateError(
                "batch from a device with no valid certificate here: the tracker must "
                "open its connection with a session hello",
                reason="no-certificate",
            )
        check_validity(self.certificates[batch.device_id], batch)
        return receiver, batch, receiver.receive(batch)


def check_validity(certificate: DeviceCertificate, batch: Batch) -> None:
    """Every fix must be recorded while the device's certificate was valid."""
    first, last = batch.fixes[0].t_ms, batch.fixes[-1].t_ms
    if first < certificate.not_before_ms or last > certificate.not_after_ms:
        raise CertificateError(
            f"fixes {batch.first_seq}..{batch.last_seq} were recorded outside the device "
            "certificate's validity",
            reason="outside-validity",
        )
