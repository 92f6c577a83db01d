from __future__ import annotations

from tests.cloud.conftest import CloudServer


def test_health_probes(cloud_server: CloudServer) -> None:
    with cloud_server.client() as client:
        assert client.get("/healthz/live").json() == {"status": "ok"}
        ready = client.get("/healthz/ready").json()
        assert ready["status"] == "ok"
        assert ready["checks"]["sqlite"] == "ok"


def test_metrics_count_ingest_outcomes(cloud_server: CloudServer) -> None:
    with cloud_server.client() as client:
        text = client.get("/metrics").text
    assert "# TYPE gruppetto_ingest_batches_total counter" in text
    assert "gruppetto_races" in text


def test_json_log_lines_carry_extra_fields() -> None:
    import json
    import logging

    from cloud.logs import JsonFormatter

    record = logging.LogRecord("gruppetto.x", logging.WARNING, "f", 1, "batch rejected", None, None)
    record.reason = "bad-signature"
    line = json.loads(JsonFormatter().format(record))
    assert line["msg"] == "batch rejected"
    assert line["reason"] == "bad-signature"
    assert line["level"] == "warning"
