"""The session hello: a device proves who it is once per connection.

A tracker opens each connection to a relay (or the cloud) with a hello carrying its device
certificate and a fresh 32-byte session key, signed by its device key. The transport (QUIC,
TLS 1.3) keeps the key secret. After one Ed25519 verification the receiver checks each live
1-fix batch with an HMAC under that key (about 2 µs) instead of a signature
(about 130 µs): the relay can take thousands of live fixes per second per core, and the
device's next signed head makes them permanent through the hash chain.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .certificate import DeviceCertificate
from .chain import SIGNATURE_LEN, load_public_key
from .errors import BadSignature, CertificateError, DecodeError, LocalProtocolError
from .wire import field, pack, unpack_array

SESSION_KEY_LEN = 32
MAX_CLOCK_SKEW_MS = 10 * 60_000
"""A hello dated further than this from the receiver's clock is refused."""
_CONTEXT = b"gruppetto/hello/v1"


@dataclass(frozen=True, slots=True)
class SessionHello:
    """A device's signed opening of a connection."""

    certificate: DeviceCertificate
    """The cloud-signed certificate of the device key."""
    session_key: bytes
    """32 random bytes (from the caller) keying the MACs of live batches."""
    t_ms: int
    """When the hello was made (UTC ms), to refuse stale replays."""
    signature: bytes = b""
    """The device's signature over certificate, key and time."""

    def __post_init__(self) -> None:
        if len(self.session_key) != SESSION_KEY_LEN:
            raise LocalProtocolError("session_key must be 32 bytes")

    def _signed_bytes(self) -> bytes:
        return _CONTEXT + pack([self.certificate.encode(), self.session_key, self.t_ms])

    @classmethod
    def create(
        cls, key: Ed25519PrivateKey, certificate: DeviceCertificate, session_key: bytes, t_ms: int
    ) -> SessionHello:
        """Sign a hello with the device key."""
        unsigned = cls(certificate, session_key, t_ms)
        return cls(certificate, session_key, t_ms, key.sign(unsigned._signed_bytes()))

    def encode(self) -> bytes:
        """Wire form."""
        return pack([1, self.certificate.encode(), self.session_key, self.t_ms, self.signature])

    @classmethod
    def decode(cls, data: bytes) -> SessionHello:
        """Parse a hello (no checks beyond structure)."""
        v = unpack_array(data, "session hello", 5, max_bytes=2_048)
        if field(v[0], int, "hello version") != 1:
            raise DecodeError(f"hello version {v[0]} is not supported", reason="version")
        try:
            return cls(
                DeviceCertificate.decode(field(v[1], bytes, "certificate")),
                field(v[2], bytes, "session key"),
                field(v[3], int, "hello time"),
                field(v[4], bytes, "hello signature"),
            )
        except LocalProtocolError as exc:
            raise DecodeError(f"session hello is invalid: {exc}") from None

    def verify(self, issuer: Ed25519PublicKey, now_ms: int, race_id: int | None = None) -> None:
        """Check the certificate, the device's signature and the hello's freshness."""
        self.certificate.verify(issuer, now_ms, race_id)
        if len(self.signature) != SIGNATURE_LEN:
            raise BadSignature("session hello is not signed")
        device_key = load_public_key(self.certificate.device_public_key)
        try:
            device_key.verify(self.signature, self._signed_bytes())
        except InvalidSignature:
            raise BadSignature("session hello is not signed by the certified device key") from None
        if abs(now_ms - self.t_ms) > MAX_CLOCK_SKEW_MS:
            raise CertificateError(
                "session hello is stale or from a device whose clock is more than 10 minutes "
                "off; check the tracker's time",
                reason="stale-hello",
            )
