"""Operating a relay: certificate rotation, zeroconf discovery, health."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from edge_relay.races import RelayConfig
from edge_relay.relay import Relay
from edge_relay.settings import RelaySettings
from tests.cloud.conftest import CloudServer, start_cloud
from tests.edge_relay.harness import setup_relay_race, start_relay
from tests.edge_relay.test_relay_ingest import configured, wait_for
from tracker_app.discovery import find_relays


def test_certificate_rotates_before_expiry_for_new_connections(tmp_path: Path) -> None:
    relay = Relay(RelaySettings(data_dir=tmp_path, cloud_url=None, credential=None))
    try:
        first = relay.certificate
        assert first.self_signed
        assert first.not_after - first.not_before <= timedelta(days=14)
        assert not relay.rotate_if_due(datetime.now(UTC))
        later = first.not_after - timedelta(days=2)  # inside the renewal window
        assert relay.rotate_if_due(later)
        assert relay.certificate.sha256 != first.sha256
        assert relay.certificate.not_after > first.not_after
        relay.quic_port, relay.http_port = 4433, 8080  # as if started
        assert relay.advert().cert_sha256 == relay.certificate.sha256_hex
    finally:
        relay.committer.close()
        relay.reads.conn.close()
        relay.uplink_reads.conn.close()


def test_relay_is_found_with_zeroconf_on_loopback(tmp_path: Path) -> None:
    cloud: CloudServer = start_cloud(tmp_path / "cloud")
    _, race_id, credential = setup_relay_race(cloud, tmp_path)
    relay = start_relay(
        tmp_path / "relay",
        cloud,
        credential,
        "--advertise",
        "--name",
        f"test-{race_id}-{id(tmp_path)}",
    )
    try:
        wait_for(lambda: configured(relay, race_id), what="relay configuration")

        async def look() -> list:  # type: ignore[type-arg]
            return await find_relays(race_id=race_id, timeout_s=15, interfaces=["127.0.0.1"])

        def found() -> bool:
            return any(a.quic_port == relay.quic_port for a in asyncio.run(look()))

        wait_for(found, timeout=40, what="the relay's zeroconf advert")
        (advert,) = [a for a in asyncio.run(look()) if a.quic_port == relay.quic_port]
        assert advert.http_port == relay.http_port
        assert advert.cert_sha256 == relay.cert_sha256
        assert race_id in advert.race_ids
        with relay.client() as c:
            assert c.get("/healthz/ready").json()["status"] == "ok"
            assert c.get("/healthz/live").status_code == 200
    finally:
        relay.stop()
        cloud.stop()


def test_relay_config_document_is_validated(tmp_path: Path) -> None:
    import pytest

    from edge_relay.races import ConfigError

    with pytest.raises(ConfigError, match="malformed"):
        RelayConfig.from_document(json.loads('{"relay": {"id": 1}}'))
