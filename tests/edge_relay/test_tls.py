from __future__ import annotations

import hashlib
import ipaddress
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aioquic.quic.configuration import QuicConfiguration
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from edge_relay.tls import (
    CERT_FILE,
    DEFAULT_HOSTS,
    KEY_FILE,
    RelayCertificate,
    RelayCertificateError,
    ensure_certificate,
    load_certificate,
    needs_renewal,
)

NOW = datetime(2026, 7, 14, 12, 30, 15, 123_456, tzinfo=UTC)


def read_cert(cert: RelayCertificate) -> x509.Certificate:
    return x509.load_pem_x509_certificate(cert.cert_path.read_bytes())


def test_generated_certificate_fits_chromium_pinning(tmp_path: Path) -> None:
    cert = ensure_certificate(tmp_path, DEFAULT_HOSTS, NOW)
    parsed = read_cert(cert)

    public = parsed.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert public.curve.name == "secp256r1"
    parsed.verify_directly_issued_by(parsed)  # self-signed: raises otherwise
    assert parsed.version is x509.Version.v3
    period = parsed.not_valid_after_utc - parsed.not_valid_before_utc
    assert period <= timedelta(days=14)
    assert parsed.not_valid_before_utc < NOW  # backdated for clock skew
    assert parsed.not_valid_after_utc == NOW.replace(microsecond=0) + timedelta(days=13)
    assert (cert.not_before, cert.not_after) == (
        parsed.not_valid_before_utc,
        parsed.not_valid_after_utc,
    )
    assert cert.self_signed

    san = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert parsed.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "127.0.0.1"


def test_hash_is_sha256_of_the_der(tmp_path: Path) -> None:
    cert = ensure_certificate(tmp_path, DEFAULT_HOSTS, NOW)
    der = read_cert(cert).public_bytes(serialization.Encoding.DER)
    assert cert.sha256 == hashlib.sha256(der).digest()
    assert cert.sha256_hex == hashlib.sha256(der).hexdigest()
    assert len(cert.sha256_hex) == 64


def test_files_and_modes(tmp_path: Path) -> None:
    data = tmp_path / "relay-data"  # created on demand
    cert = ensure_certificate(data, ["relay.local", "192.0.2.7"], NOW)
    assert cert.cert_path == data / CERT_FILE
    assert cert.key_path == data / KEY_FILE
    assert stat.S_IMODE(cert.key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(cert.cert_path.stat().st_mode) == 0o644
    assert sorted(p.name for p in data.iterdir()) == [CERT_FILE, KEY_FILE]  # no temp files
    key = serialization.load_pem_private_key(cert.key_path.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    san = read_cert(cert).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["relay.local"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("192.0.2.7")]


def test_reused_while_fresh_and_renewed_when_due(tmp_path: Path) -> None:
    first = ensure_certificate(tmp_path, DEFAULT_HOSTS, NOW)
    assert not needs_renewal(first, NOW)

    # 9 days later: 4 days left, more than the 3-day margin.
    later = NOW + timedelta(days=9)
    assert not needs_renewal(first, later)
    assert ensure_certificate(tmp_path, DEFAULT_HOSTS, later) == first

    # 10 days and a minute later: within 3 days of expiry.
    due = NOW + timedelta(days=10, minutes=1)
    assert needs_renewal(first, due)
    second = ensure_certificate(tmp_path, DEFAULT_HOSTS, due)
    assert second.sha256 != first.sha256
    assert second.not_after == due.replace(microsecond=0) + timedelta(days=13)
    assert not needs_renewal(second, due)
    assert ensure_certificate(tmp_path, DEFAULT_HOSTS, due) == second


def test_renewed_when_expired_or_clock_went_back(tmp_path: Path) -> None:
    first = ensure_certificate(tmp_path, DEFAULT_HOSTS, NOW)
    assert needs_renewal(first, NOW + timedelta(days=30))
    assert needs_renewal(first, NOW - timedelta(days=1))
    assert ensure_certificate(tmp_path, DEFAULT_HOSTS, NOW - timedelta(days=1)) != first


def test_renewed_when_hosts_change(tmp_path: Path) -> None:
    first = ensure_certificate(tmp_path, ["127.0.0.1"], NOW)
    assert ensure_certificate(tmp_path, ["127.0.0.1"], NOW) == first
    second = ensure_certificate(tmp_path, ["127.0.0.1", "192.0.2.7"], NOW)
    assert second != first
    # A subset of the names the certificate covers is still covered.
    assert ensure_certificate(tmp_path, ["192.0.2.7"], NOW) == second


def test_renewal_margin(tmp_path: Path) -> None:
    cert = ensure_certificate(tmp_path, DEFAULT_HOSTS, NOW, validity_days=5)
    assert cert.not_after == NOW.replace(microsecond=0) + timedelta(days=5)
    assert not needs_renewal(cert, NOW + timedelta(days=3), renew_before=timedelta(days=1))
    assert needs_renewal(cert, NOW + timedelta(days=3), renew_before=timedelta(days=2, hours=1))


def test_more_than_13_days_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"validity_days must be 1\.\.13"):
        ensure_certificate(tmp_path, DEFAULT_HOSTS, NOW, validity_days=14)
    with pytest.raises(ValueError, match="validity_days"):
        ensure_certificate(tmp_path, DEFAULT_HOSTS, NOW, validity_days=0)
    with pytest.raises(ValueError, match="renew_before"):
        ensure_certificate(tmp_path, DEFAULT_HOSTS, NOW, renew_before=timedelta(days=13))
    assert list(tmp_path.iterdir()) == []


def test_bad_arguments_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="aware"):
        ensure_certificate(tmp_path, DEFAULT_HOSTS, datetime(2026, 7, 14))
    with pytest.raises(ValueError, match="non-empty"):
        ensure_certificate(tmp_path, [], NOW)
    with pytest.raises(ValueError, match="non-empty"):
        ensure_certificate(tmp_path, "localhost", NOW)
    with pytest.raises(ValueError, match="neither an IP address nor a DNS name"):
        ensure_certificate(tmp_path, ["bad host"], NOW)


def test_mismatched_or_corrupt_files_are_replaced(tmp_path: Path) -> None:
    first = ensure_certificate(tmp_path, DEFAULT_HOSTS, NOW)
    # A crash between the key's rename and the certificate's: a new key, the old cert.
    other_key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / KEY_FILE).write_bytes(
        other_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    second = ensure_certificate(tmp_path, DEFAULT_HOSTS, NOW)
    assert second.sha256 != first.sha256
    load_certificate(second.cert_path, second.key_path)  # the pair matches again

    (tmp_path / CERT_FILE).write_bytes(b"garbage")
    third = ensure_certificate(tmp_path, DEFAULT_HOSTS, NOW)
    assert third.sha256 != second.sha256


def test_long_lived_or_non_p256_files_are_replaced(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65_537, key_size=2048)
    write_pair(tmp_path / CERT_FILE, tmp_path / KEY_FILE, key, days=10)
    assert is_p256(ensure_certificate(tmp_path, DEFAULT_HOSTS, NOW))

    p256 = ec.generate_private_key(ec.SECP256R1())
    write_pair(tmp_path / CERT_FILE, tmp_path / KEY_FILE, p256, days=90)
    replaced = ensure_certificate(tmp_path, DEFAULT_HOSTS, NOW)
    assert replaced.not_after - replaced.not_before <= timedelta(days=14)


def is_p256(cert: RelayCertificate) -> bool:
    public = read_cert(cert).public_key()
    return isinstance(public, ec.EllipticCurvePublicKey) and public.curve.name == "secp256r1"


def write_pair(
    cert_path: Path,
    key_path: Path,
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey,
    *,
    days: int,
    chain: bytes = b"",
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "relay.example.org")])
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=days))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(h) for h in ("localhost",)]
                + [x509.IPAddress(ipaddress.ip_address(a)) for a in ("127.0.0.1", "::1")]
            ),
            critical=False,
        )
        .sign(key, algorithm)
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + chain)
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert


@pytest.mark.parametrize("kind", ["rsa", "ed25519", "p384"])
def test_operator_files_are_loaded_as_they_are(tmp_path: Path, kind: str) -> None:
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    if kind == "rsa":
        key = rsa.generate_private_key(public_exponent=65_537, key_size=2048)
    elif kind == "ed25519":
        key = ed25519.Ed25519PrivateKey.generate()
    else:
        key = ec.generate_private_key(ec.SECP384R1())
    # The leaf first, then (here a stand-in for) its CA chain.
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = write_pair(tmp_path / "ca.pem", tmp_path / "ca-key.pem", ca_key, days=3650)
    chain = ca.public_bytes(serialization.Encoding.PEM)
    cert_path, key_path = tmp_path / "fullchain.pem", tmp_path / "privkey.pem"
    leaf = write_pair(cert_path, key_path, key, days=90, chain=chain)

    cert = load_certificate(cert_path, key_path)
    assert not cert.self_signed
    assert cert.sha256 == hashlib.sha256(leaf.public_bytes(serialization.Encoding.DER)).digest()
    assert cert.not_after == leaf.not_valid_after_utc
    assert (cert.cert_path, cert.key_path) == (cert_path, key_path)
    # Never rotated by the relay, whatever the date.
    assert not needs_renewal(cert, NOW + timedelta(days=365))


def test_operator_files_that_do_not_fit_are_refused(tmp_path: Path) -> None:
    good = ensure_certificate(tmp_path / "good", DEFAULT_HOSTS, NOW)
    with pytest.raises(RelayCertificateError, match="cannot read"):
        load_certificate(tmp_path / "missing.pem", good.key_path)
    bad = tmp_path / "bad.pem"
    bad.write_bytes(b"-----BEGIN NOTHING-----\n")
    with pytest.raises(RelayCertificateError, match="not a PEM certificate"):
        load_certificate(bad, good.key_path)
    with pytest.raises(RelayCertificateError, match="not an unencrypted PEM private key"):
        load_certificate(good.cert_path, bad)
    other = ensure_certificate(tmp_path / "other", DEFAULT_HOSTS, NOW)
    with pytest.raises(RelayCertificateError, match="does not belong"):
        load_certificate(good.cert_path, other.key_path)


def test_aioquic_serves_with_it(tmp_path: Path) -> None:
    cert = ensure_certificate(tmp_path, DEFAULT_HOSTS, NOW)
    config = QuicConfiguration(is_client=False)
    config.load_cert_chain(cert.cert_path, cert.key_path)
    assert config.certificate is not None
    der = config.certificate.public_bytes(serialization.Encoding.DER)
    assert hashlib.sha256(der).digest() == cert.sha256
