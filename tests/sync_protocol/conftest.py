from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sync_protocol.certificate import DeviceCertificate
from sync_protocol.chain import device_id, public_key_bytes
from sync_protocol.fix import Fix
from tracker_app.simulate import START_MS, realistic_track

DAY_MS = 86_400_000


class Device:
    """A test device: key, certificate, and its recorded track."""

    def __init__(self, cloud: Ed25519PrivateKey, seed: int, racer_id: int = 7) -> None:
        self.key = Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)
        self.public = public_key_bytes(self.key)
        self.id = device_id(self.public)
        self.cert = DeviceCertificate.issue(
            cloud, self.public, racer_id, (42,), START_MS - DAY_MS, START_MS + DAY_MS
        )

    def track(self, count: int, seed: int = 1) -> list[Fix]:
        return realistic_track(count, seed=seed)


@pytest.fixture
def cloud_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(b"c" * 32)


@pytest.fixture
def device(cloud_key: Ed25519PrivateKey) -> Device:
    return Device(cloud_key, 1)


@pytest.fixture
def other_device(cloud_key: Ed25519PrivateKey) -> Device:
    return Device(cloud_key, 2, racer_id=8)
