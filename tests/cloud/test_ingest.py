"""Relays forward signed batches; the cloud verifies again, stores once, acks when durable."""

from __future__ import annotations

import signal
import threading
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sync_protocol.batch import encode_batch, seal
from sync_protocol.chain import device_id, genesis, public_key_bytes
from tests.cloud.conftest import CloudServer, start_cloud
from tests.cloud.riders import START_MS, Rider, now_ms, post, setup_race, stored

__all__ = ["START_MS", "Rider", "now_ms", "post", "setup_race", "stored"]


def counted(server: CloudServer) -> dict[str, float]:
    """The ingest counters of ``/metrics``: ``outcome`` and ``reason`` label values."""
    with server.client() as client:
        text = client.get("/metrics").text
    out: dict[str, float] = {}
    for line in text.splitlines():
        for name, label in (("batches", "outcome"), ("rejected", "reason")):
            prefix = f'gruppetto_ingest_{name}_total{{{label}="'
            if line.startswith(prefix):
                value, _, number = line[len(prefix) :].partition('"} ')
                out[value] = out.get(value, 0) + float(number)
    return out


def test_ingest_verifies_stores_once_and_acks(cloud_server: CloudServer, tmp_path: Path) -> None:
    before = counted(cloud_server)
    admin, race_id, credential = setup_race(cloud_server, tmp_path)
    rider = Rider(cloud_server, admin, race_id)
    first = post(cloud_server, credential, rider.batch(1, 60), rider.batch(61, 120))
    assert [r["outcome"] for r in first] == ["accepted", "accepted"]
    assert first[-1]["ack"]["acked_seq"] == 120
    again = post(cloud_server, credential, rider.batch(1, 60))
    assert again[0]["outcome"] == "duplicate"
    assert again[0]["ack"]["acked_seq"] == 120
    gap = post(cloud_server, credential, rider.batch(200, 210))
    assert gap[0]["outcome"] == "gap"
    assert gap[0]["ack"]["missing"] == [[121, 210]]
    tampered = bytearray(rider.batch(121, 180))
    tampered[-70] ^= 1
    bad = post(cloud_server, credential, bytes(tampered), rider.batch(121, 180)[:30])
    assert [r["outcome"] for r in bad] == ["rejected", "rejected"]
    assert bad[1]["reason"] == "truncated"
    stranger = Ed25519PrivateKey.generate()
    sid = device_id(public_key_bytes(stranger))
    forged = encode_batch(seal(sid, rider.fixes[:5], genesis(sid), key=stranger))
    assert post(cloud_server, credential, forged)[0]["reason"] == "no-certificate"
    after = counted(cloud_server)  # the module's other tests post nothing meanwhile
    delta = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    expected = Counter(["accepted", "accepted", "duplicate", "gap", "no-certificate"])
    expected.update([bad[0]["reason"], bad[1]["reason"]])  # forgeries counted by reason
    assert delta == dict(expected)


def test_relay_credential_required(cloud_server: CloudServer) -> None:
    anonymous = cloud_server.client()
    assert anonymous.post("/api/ingest", content=b"").status_code == 401


def test_concurrent_duplicates_and_kill_9_lose_and_double_nothing(tmp_path: Path) -> None:
    server = start_cloud(tmp_path / "cloud")
    try:
        admin, race_id, credential = setup_race(server, tmp_path)
        rider = Rider(server, admin, race_id)
        body = [rider.batch(s, s + 59) for s in range(1, 301, 60)]
        results: list[list[dict]] = []  # type: ignore[type-arg]
        threads = [
            threading.Thread(target=lambda: results.append(post(server, credential, *body)))
            for _ in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert max(r[-1]["ack"]["acked_seq"] for r in results) == 300
        server.stop(signal.SIGKILL)  # no clean shutdown: only what was committed survives
        server = start_cloud(tmp_path / "cloud")
        again = post(server, credential, *body)
        assert {r["outcome"] for r in again} == {"duplicate"}
    finally:
        server.stop()
    rows = stored(tmp_path / "cloud", rider.device)
    assert [s for s, _ in rows] == list(range(1, 301)), "every fix exactly once"
    progress = [p for _, p in rows]
    assert progress == sorted(progress)
    assert progress[-1] == pytest.approx(3_000, abs=25)  # 300 s at 10 m/s along the course


def test_fixes_before_enrolment_window_are_refused(
    cloud_server: CloudServer, tmp_path: Path
) -> None:
    admin, race_id, credential = setup_race(cloud_server, tmp_path)
    rider = Rider(cloud_server, admin, race_id)
    old = [replace(f, t_ms=f.t_ms - 86_400_000) for f in rider.fixes[:3]]
    batch = encode_batch(seal(rider.device, old, genesis(rider.device), key=rider.key))
    assert post(cloud_server, credential, batch)[0]["reason"] in {
        "not-yet-valid",
        "outside-validity",
    }


def test_every_batch_is_checked_against_the_certificate_validity(
    cloud_server: CloudServer, tmp_path: Path
) -> None:
    admin, race_id, credential = setup_race(cloud_server, tmp_path)
    rider = Rider(cloud_server, admin, race_id)
    late = [replace(f, t_ms=f.t_ms + 8 * 86_400_000) for f in rider.fixes[3:6]]  # after not_after
    after = encode_batch(seal(rider.device, late, rider.hashes[3], key=rider.key))
    results = post(cloud_server, credential, rider.batch(1, 3), after)
    assert [r["outcome"] for r in results] == ["accepted", "rejected"]
    assert results[1]["reason"] == "outside-validity"
    assert post(cloud_server, credential, rider.batch(4, 6))[0]["ack"]["acked_seq"] == 6
