"""The per-device hash chain and the signatures and MACs over its head.

Every fix extends its device's chain: ``h(n) = SHA-256(h(n-1) || fix(n).canonical())``
starting from a genesis hash bound to the device. A device signs (Ed25519) only a *head*:
"my chain at seq n is h(n)". One signature therefore authenticates every fix before it,
so a 60-fix catch-up batch costs one verification, and any contiguous run of fixes that
ends at a signed head can be re-batched by a relay and still verified by the cloud.

Live fixes may instead carry a 16-byte HMAC under a per-connection session key (see
:mod:`sync_protocol.session`): cheap to check at 1 Hz, shown live at once, and made
permanent by the next signed head, which covers them through the chain.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Iterable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .errors import BadSignature, DecodeError
from .fix import Fix

DEVICE_ID_LEN = 16
HASH_LEN = 32
SIGNATURE_LEN = 64
MAC_LEN = 16
PUBLIC_KEY_LEN = 32

_HEAD = struct.Struct(">16sQ32s")


def public_key_bytes(key: Ed25519PublicKey | Ed25519PrivateKey) -> bytes:
    """The raw 32-byte form of an Ed25519 public key (of a private key's public half)."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw)


def load_public_key(raw: bytes) -> Ed25519PublicKey:
    """Parse a raw 32-byte Ed25519 public key, raising DecodeError on anything else."""
    if len(raw) != PUBLIC_KEY_LEN:
        raise DecodeError(f"an Ed25519 public key is 32 bytes, got {len(raw)}")
    try:
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as exc:  # pragma: no cover - every 32-byte string is accepted today
        raise DecodeError(f"not an Ed25519 public key: {exc}") from None


def device_id(public_key: bytes) -> bytes:
    """The 16-byte identifier of a device, derived from its raw public key."""
    return hashlib.sha256(b"gruppetto/device/v1" + public_key).digest()[:DEVICE_ID_LEN]


def genesis(device: bytes) -> bytes:
    """The chain hash "before" fix 1 of ``device``."""
    return hashlib.sha256(b"gruppetto/chain/v1" + device).digest()


def extend(prev_hash: bytes, fix: Fix) -> bytes:
    """The chain hash after ``fix``, given the hash after the fix before it."""
    return hashlib.sha256(prev_hash + fix.canonical()).digest()


def extend_all(prev_hash: bytes, fixes: Iterable[Fix]) -> list[bytes]:
    """The chain hash after each of ``fixes`` in turn, starting from ``prev_hash``."""
    out: list[bytes] = []
    sha = hashlib.sha256
    for fix in fixes:
        prev_hash = sha(prev_hash + fix.canonical()).digest()
        out.append(prev_hash)
    return out


def head_message(device: bytes, seq: int, head: bytes) -> bytes:
    """The bytes a device signs (or MACs) to vouch for its chain up to ``seq``."""
    return b"gruppetto/head/v1" + _HEAD.pack(device, seq, head)


def sign_head(key: Ed25519PrivateKey, device: bytes, seq: int, head: bytes) -> bytes:
    """Sign the chain head at ``seq`` with the device key."""
    return key.sign(head_message(device, seq, head))


def verify_head(
    public_key: Ed25519PublicKey, device: bytes, seq: int, head: bytes, signature: bytes
) -> None:
    """Raise BadSignature unless ``signature`` vouches for ``head`` at ``seq``."""
    try:
        public_key.verify(signature, head_message(device, seq, head))
    except InvalidSignature:
        raise BadSignature(
            f"the signature over fixes up to seq {seq} does not verify: the fixes were "
            "altered, reordered or spliced, or were signed by another device's key"
        ) from None


def mac_head(session_key: bytes, device: bytes, seq: int, head: bytes) -> bytes:
    """A 16-byte HMAC-SHA256 over the chain head, under a session key."""
    return hmac.digest(session_key, head_message(device, seq, head), "sha256")[:MAC_LEN]


def verify_mac(session_key: bytes, device: bytes, seq: int, head: bytes, mac: bytes) -> None:
    """Raise BadSignature unless ``mac`` is the session's MAC over ``head`` at ``seq``."""
    if not hmac.compare_digest(mac_head(session_key, device, seq, head), mac):
        raise BadSignature(
            f"the session MAC over fixes up to seq {seq} does not verify "
            "(altered fixes, or a MAC from another session)"
        )
