"""The cloud's Ed25519 signing key: device certificates and access tokens (EdDSA)."""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from sync_protocol.certificate import key_id
from sync_protocol.chain import public_key_bytes


@dataclass(frozen=True, slots=True)
class CloudKey:
    """The signing key and what others need to verify its signatures offline."""

    private: Ed25519PrivateKey
    """Signs certificates and tokens; never leaves the data directory."""

    @property
    def public(self) -> Ed25519PublicKey:
        """The verifying half."""
        return self.private.public_key()

    @property
    def public_raw(self) -> bytes:
        """Raw 32-byte public key."""
        return public_key_bytes(self.private)

    @property
    def kid(self) -> str:
        """Key id: hex of the 8-byte fingerprint used in certificates and JWT headers."""
        return key_id(self.public_raw).hex()

    def jwk(self) -> dict[str, str]:
        """The public key as an OKP JSON Web Key (RFC 8037)."""
        x = base64.urlsafe_b64encode(self.public_raw).rstrip(b"=").decode()
        return {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": x,
            "kid": self.kid,
            "alg": "EdDSA",
            "use": "sig",
        }


def load_or_create(data_dir: Path) -> CloudKey:
    """Load ``keys/cloud-ed25519.pem`` from the data directory, creating it (0600) once."""
    path = data_dir / "keys" / "cloud-ed25519.pem"
    if path.exists():
        key = load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} is not an Ed25519 private key")
        return CloudKey(key)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    fd = os.open(path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
        out.flush()
        os.fsync(out.fileno())
    os.replace(path.with_suffix(".tmp"), path)
    return CloudKey(key)
