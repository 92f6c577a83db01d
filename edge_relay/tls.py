"""The relay's QUIC/TLS certificate.

Browsers open WebTransport to a relay with ``serverCertificateHashes``: no CA is involved,
the page pins the SHA-256 of the certificate's DER encoding. Chromium accepts that only for
an X.509v3 certificate with an ECDSA P-256 key whose validity period is at most 14 days.
So by default the relay makes its own: :func:`ensure_certificate` keeps a self-signed
P-256 certificate in the data directory (``relay-cert.pem``, ``relay-key.pem``), valid
for 13 days from ``now`` and backdated one hour for clock skew, and replaces it once it is
within ``renew_before`` (3 days) of expiry. The new hash then goes out in the zeroconf
advert and the spectator page.

An operator with a CA-signed certificate (a relay on a public name) passes its files to
:func:`load_certificate` instead: any key type, never rotated by the relay.

Time is always an argument; nothing here reads the clock.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "CERT_FILE",
    "CLOCK_SKEW",
    "DEFAULT_HOSTS",
    "DEFAULT_RENEW_BEFORE",
    "KEY_FILE",
    "MAX_VALIDITY_DAYS",
    "RelayCertificate",
    "RelayCertificateError",
    "ensure_certificate",
    "load_certificate",
    "needs_renewal",
]

log = logging.getLogger(__name__)

CERT_FILE = "relay-cert.pem"
KEY_FILE = "relay-key.pem"
DEFAULT_HOSTS = ("127.0.0.1", "::1", "localhost")
MAX_VALIDITY_DAYS = 13
"""Chromium refuses pinned certificates valid for more than 14 days; 13 plus the
:data:`CLOCK_SKEW` backdating stays under that."""
CLOCK_SKEW = timedelta(hours=1)
"""How far ``not_before`` lies before ``now``, for clients whose clock is behind."""
DEFAULT_RENEW_BEFORE = timedelta(days=3)
_CHROMIUM_MAX_PERIOD = timedelta(days=14)


class RelayCertificateError(ValueError):
    """Certificate or key files that cannot be used, and why."""


@dataclass(frozen=True, slots=True)
class RelayCertificate:
    """A certificate and key on disk, ready for ``QuicConfiguration.load_cert_chain``."""

    cert_path: Path
    """PEM file with the certificate (an operator's may carry its chain after it)."""
    key_path: Path
    """PEM file with the private key (mode 0600 when the relay wrote it)."""
    not_before: datetime
    """Start of validity (UTC, aware)."""
    not_after: datetime
    """End of validity (UTC, aware)."""
    sha256: bytes
    """SHA-256 of the (leaf) certificate's DER encoding: what ``serverCertificateHashes``
    takes and what the zeroconf advert carries."""
    self_signed: bool
    """True for the relay's own rotating certificate, False for an operator's files."""

    @property
    def sha256_hex(self) -> str:
        """:attr:`sha256` as 64 lowercase hex digits."""
        return self.sha256.hex()


def needs_renewal(
    cert: RelayCertificate, now: datetime, renew_before: timedelta = DEFAULT_RENEW_BEFORE
) -> bool:
    """Whether the relay should replace its own certificate at ``now``.

    True when ``now`` is within ``renew_before`` of ``not_after`` (or past it), or before
    ``not_before`` (the clock went back). Always False for an operator's certificate,
    which the relay never rotates.
    """
    _require_aware(now)
    if not cert.self_signed:
        return False
    return not cert.not_before <= now < cert.not_after - renew_before


def ensure_certificate(
    data_dir: Path,
    hosts: Sequence[str],
    now: datetime,
    *,
    validity_days: int = MAX_VALIDITY_DAYS,
    renew_before: timedelta = DEFAULT_RENEW_BEFORE,
) -> RelayCertificate:
    """The relay's self-signed certificate in ``data_dir``, made anew when needed.

    Reuses ``relay-cert.pem`` / ``relay-key.pem`` when they hold a matching ECDSA P-256
    self-signed pair whose names cover ``hosts`` and which :func:`needs_renewal` does not
    flag at ``now``. Otherwise writes a new pair (each file atomically: temp file, fsync,
    rename; the key with mode 0600) for ``hosts``: IP addresses and DNS names, which all
    go in the subjectAltName (:data:`DEFAULT_HOSTS` for a relay on loopback). ``now``
    must be an aware datetime.
    """
    _require_aware(now)
    if not 1 <= validity_days <= MAX_VALIDITY_DAYS:
        raise ValueError(
            f"validity_days must be 1..{MAX_VALIDITY_DAYS} (browsers refuse pinned "
            f"certificates valid longer than 14 days), got {validity_days}"
        )
    if not timedelta(0) <= renew_before < timedelta(days=validity_days):
        raise ValueError(
            f"renew_before must be shorter than the validity ({validity_days} days), "
            f"got {renew_before}"
        )
    names = _subject_alt_names(hosts)
    cert_path, key_path = data_dir / CERT_FILE, data_dir / KEY_FILE
    if cert_path.exists() and key_path.exists():
        why = _why_not_reusable(cert_path, key_path, names, now, renew_before)
        if why is None:
            return load_certificate(cert_path, key_path, self_signed=True)
        log.info("making a new relay certificate: %s", why)
    return _generate(data_dir, hosts, names, now, validity_days)


def load_certificate(
    cert_path: Path, key_path: Path, *, self_signed: bool = False
) -> RelayCertificate:
    """Load certificate and key PEM files (an operator's: any key type, never rotated).

    The certificate file may carry the chain after the leaf; the hash is the leaf's.
    Raises :class:`RelayCertificateError` when a file is missing, is not PEM of the right
    kind, or the key does not belong to the certificate.
    """
    cert = _read_pair(cert_path, key_path)
    return RelayCertificate(
        cert_path=cert_path,
        key_path=key_path,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        sha256=hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest(),
        self_signed=self_signed,
    )


def _read_pair(cert_path: Path, key_path: Path) -> x509.Certificate:
    """The leaf certificate, once the key file is checked to hold its private key."""
    try:
        cert_pem, key_pem = cert_path.read_bytes(), key_path.read_bytes()
    except OSError as exc:
        raise RelayCertificateError(f"cannot read {exc.filename}: {exc.strerror}") from None
    try:
        cert = x509.load_pem_x509_certificates(cert_pem)[0]
    except ValueError as exc:
        raise RelayCertificateError(f"{cert_path} is not a PEM certificate: {exc}") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise RelayCertificateError(
            f"{key_path} is not an unencrypted PEM private key: {exc}"
        ) from None
    try:
        matches = _spki(key.public_key()) == _spki(cert.public_key())
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise RelayCertificateError(f"{cert_path}: unsupported public key: {exc}") from None
    if not matches:
        raise RelayCertificateError(f"the key in {key_path} does not belong to {cert_path}")
    return cert


def _why_not_reusable(
    cert_path: Path,
    key_path: Path,
    names: list[x509.GeneralName],
    now: datetime,
    renew_before: timedelta,
) -> str | None:
    """None when the files on disk can be kept, else the reason to replace them."""
    try:
        cert = _read_pair(cert_path, key_path)
    except RelayCertificateError as exc:
        return str(exc)
    public = cert.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey) or public.curve.name != "secp256r1":
        return "the key on disk is not ECDSA P-256"
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature):
        return "the certificate on disk is not self-signed"
    if cert.not_valid_after_utc - cert.not_valid_before_utc > _CHROMIUM_MAX_PERIOD:
        return "the certificate on disk is valid for more than 14 days"
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return "the certificate on disk has no subjectAltName"
    missing = [n for n in names if n not in san]
    if missing:
        return f"the certificate on disk does not cover {[n.value for n in missing]}"
    fresh = RelayCertificate(
        cert_path, key_path, cert.not_valid_before_utc, cert.not_valid_after_utc, b"", True
    )
    if needs_renewal(fresh, now, renew_before):
        return f"the certificate on disk is valid until {fresh.not_after}, due for renewal"
    return None


def _generate(
    data_dir: Path,
    hosts: Sequence[str],
    names: list[x509.GeneralName],
    now: datetime,
    validity_days: int,
) -> RelayCertificate:
    key = ec.generate_private_key(ec.SECP256R1())
    start = now.replace(microsecond=0)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0][:64])])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - CLOCK_SKEW)
        .not_valid_after(start + timedelta(days=validity_days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(key, hashes.SHA256())
    )
    data_dir.mkdir(parents=True, exist_ok=True)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Key first: a crash between the two renames leaves a pair that does not match,
    # which the next start detects and replaces.
    _write_atomically(data_dir / KEY_FILE, key_pem, 0o600)
    _write_atomically(data_dir / CERT_FILE, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    log.info(
        "new relay certificate for %s, valid until %s",
        ", ".join(hosts),
        cert.not_valid_after_utc.isoformat(),
    )
    return load_certificate(data_dir / CERT_FILE, data_dir / KEY_FILE, self_signed=True)


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _subject_alt_names(hosts: Sequence[str]) -> list[x509.GeneralName]:
    if isinstance(hosts, str) or not hosts:
        raise ValueError(f"hosts must be a non-empty list of names or addresses, got {hosts!r}")
    names: list[x509.GeneralName] = []
    for host in hosts:
        name: x509.GeneralName
        try:
            name = x509.IPAddress(ipaddress.ip_address(host))
        except ValueError:
            if not host or not host.isascii() or any(c.isspace() or c == "/" for c in host):
                raise ValueError(f"{host!r} is neither an IP address nor a DNS name") from None
            name = x509.DNSName(host.lower().rstrip("."))
        if name not in names:
            names.append(name)
    return names


def _spki(public_key: PublicKeyTypes) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"now must be an aware datetime (UTC), got naive {now!r}")
