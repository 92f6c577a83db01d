"""Device certificates: the cloud's word that a device key belongs to a racer.

The cloud signs (device public key, racer id, race ids, validity window) with its Ed25519
key. Relays and the cloud hold only the cloud's public key and check certificates offline,
so an event relay accepts a tracker's uploads with no uplink. Time is always an argument:
nothing here reads a clock.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .chain import PUBLIC_KEY_LEN, SIGNATURE_LEN, device_id, public_key_bytes
from .errors import CertificateError, DecodeError, LocalProtocolError
from .wire import field, pack, unpack_array

CERT_VERSION = 1
MAX_RACES_PER_CERT = 64
_CONTEXT = b"gruppetto/device-cert/v1"


def key_id(public_key: bytes) -> bytes:
    """An 8-byte fingerprint of an issuer's raw public key (names the key to use)."""
    return hashlib.sha256(public_key).digest()[:8]


@dataclass(frozen=True, slots=True)
class DeviceCertificate:
    """Binds a device's Ed25519 public key to a racer and the races it may record."""

    device_public_key: bytes
    """Raw 32-byte Ed25519 public key of the device."""
    racer_id: int
    """The racer's account id in the cloud."""
    race_ids: tuple[int, ...]
    """Races this device may upload fixes for."""
    not_before_ms: int
    """Start of validity, UTC ms."""
    not_after_ms: int
    """End of validity, UTC ms."""
    issuer_key_id: bytes
    """:func:`key_id` of the cloud key that signed this certificate."""
    signature: bytes = b""
    """The issuer's Ed25519 signature over the other fields."""

    def __post_init__(self) -> None:
        if len(self.device_public_key) != PUBLIC_KEY_LEN:
            raise LocalProtocolError("device_public_key must be 32 raw bytes")
        if self.racer_id < 1 or self.not_after_ms <= self.not_before_ms:
            raise LocalProtocolError("racer_id must be positive and not_after after not_before")
        if len(self.race_ids) > MAX_RACES_PER_CERT or any(r < 1 for r in self.race_ids):
            raise LocalProtocolError(f"race_ids: up to {MAX_RACES_PER_CERT} positive ids")
        if len(self.issuer_key_id) != 8:
            raise LocalProtocolError("issuer_key_id must be 8 bytes")

    @property
    def device_id(self) -> bytes:
        """The 16-byte device id the certified key implies."""
        return device_id(self.device_public_key)

    def _body(self) -> list[object]:
        return [
            CERT_VERSION,
            self.device_public_key,
            self.racer_id,
            list(self.race_ids),
            self.not_before_ms,
            self.not_after_ms,
            self.issuer_key_id,
        ]

    @classmethod
    def issue(
        cls,
        issuer: Ed25519PrivateKey,
        device_public_key: bytes,
        racer_id: int,
        race_ids: tuple[int, ...],
        not_before_ms: int,
        not_after_ms: int,
    ) -> DeviceCertificate:
        """Create and sign a certificate with the cloud's key."""
        unsigned = cls(
            device_public_key,
            racer_id,
            tuple(sorted(set(race_ids))),
            not_before_ms,
            not_after_ms,
            key_id(public_key_bytes(issuer)),
        )
        signature = issuer.sign(_CONTEXT + pack(unsigned._body()))
        return replace(unsigned, signature=signature)

    def encode(self) -> bytes:
        """Wire form (msgpack array)."""
        return pack([*self._body(), self.signature])

    @classmethod
    def decode(cls, data: bytes) -> DeviceCertificate:
        """Parse a certificate; raises DecodeError on malformed input (no signature check)."""
        v = unpack_array(data, "device certificate", 8, max_bytes=1_024)
        if field(v[0], int, "certificate version") != CERT_VERSION:
            raise DecodeError(f"certificate version {v[0]} is not supported", reason="version")
        races = field(v[3], list, "race_ids")
        try:
            return cls(
                field(v[1], bytes, "device key"),
                field(v[2], int, "racer_id"),
                tuple(field(r, int, "race id") for r in races),
                field(v[4], int, "not_before"),
                field(v[5], int, "not_after"),
                field(v[6], bytes, "issuer key id"),
                field(v[7], bytes, "signature"),
            )
        except LocalProtocolError as exc:
            raise DecodeError(f"device certificate is invalid: {exc}") from None

    def verify(self, issuer: Ed25519PublicKey, now_ms: int, race_id: int | None = None) -> None:
        """Raise CertificateError unless valid at ``now_ms`` (and for ``race_id``, if given)."""
        if self.issuer_key_id != key_id(public_key_bytes(issuer)):
            raise CertificateError(
                "device certificate was issued by another cloud key; log in to this "
                "race's cloud again to get a new certificate",
                reason="unknown-issuer",
            )
        if len(self.signature) != SIGNATURE_LEN:
            raise CertificateError("device certificate is not signed", reason="unsigned")
        try:
            issuer.verify(self.signature, _CONTEXT + pack(self._body()))
        except InvalidSignature:
            raise CertificateError(
                "device certificate signature does not verify (forged or altered)",
                reason="forged-certificate",
            ) from None
        if now_ms < self.not_before_ms:
            raise CertificateError("device certificate is not valid yet", reason="not-yet-valid")
        if now_ms > self.not_after_ms:
            raise CertificateError(
                "device certificate has expired; log in again with `gruppetto tracker login`",
                reason="expired",
            )
        if race_id is not None and race_id not in self.race_ids:
            raise CertificateError(
                f"device is not registered for race {race_id}; register for the race, then "
                "log in again to refresh the certificate",
                reason="wrong-race",
            )
