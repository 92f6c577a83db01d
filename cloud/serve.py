"""Running the cloud app on Hypercorn: HTTP/1.1 and HTTP/2 (TLS or plain), HTTP/3 over QUIC."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import signal
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypercorn.asyncio import serve
from hypercorn.config import Config

from .app import create_app
from .logs import configure as configure_logs
from .settings import Settings


def ensure_self_signed(data_dir: Path, host: str = "localhost") -> tuple[Path, Path]:
    """A self-signed ECDSA P-256 certificate for local TLS/QUIC, created once in ``data_dir``."""
    cert_path, key_path = data_dir / "tls" / "cert.pem", data_dir / "tls" / "key.pem"
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    cert_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=13))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(host), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def hypercorn_config(
    bind: str,
    *,
    quic_bind: str | None,
    certfile: Path | None,
    keyfile: Path | None,
) -> Config:
    """Hypercorn settings: plain HTTP when no certificate, TLS (h2) and QUIC (h3) with one."""
    config = Config()
    config.bind = [bind]
    config.accesslog = None
    config.errorlog = "-"
    config.graceful_timeout = 5
    if certfile and keyfile:
        config.certfile, config.keyfile = str(certfile), str(keyfile)
        if quic_bind:
            config.quic_bind = [quic_bind]
    return config


def run(settings: Settings, config: Config) -> None:
    """Serve until SIGINT/SIGTERM."""
    configure_logs()
    app = create_app(settings)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve(app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]

    asyncio.run(main())
