from __future__ import annotations

from tests.cloud.conftest import CloudServer


def test_health_probes(cloud_server: CloudServer) -> None:
    with cloud_server.client() as client:
        assert client.get("/healthz/live").json() == {"status": "ok"}
        ready = client.get("/healthz/ready").json()
        assert ready["status"] == "ok"
        assert ready["checks"]["sqlite"] == "ok"
