"""Race control through the event relay while the cloud is away, forwarded exactly once."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from sync_protocol.frames import RaceStatus, RiderStatus, decode_frame
from tests.cloud.conftest import start_cloud
from tests.cloud.helpers import login, staff_client, user_client
from tests.edge_relay.harness import (
    RelayRider,
    now_ms,
    setup_relay_race,
    start_race,
    start_relay,
)
from tests.edge_relay.test_relay_ingest import configured, upload, wait_for
from tests.edge_relay.test_relay_live import ws_frames


def test_commands_queue_on_the_relay_and_reach_the_cloud_once(tmp_path: Path) -> None:
    cloud = start_cloud(tmp_path / "cloud")
    admin, race_id, credential = setup_relay_race(cloud, tmp_path)
    official = staff_client(cloud, admin, "official")
    racer, _ = user_client(cloud, "racer")
    rider = RelayRider(cloud, admin, race_id, count=30, start_ms=now_ms() - 31_000)
    start_race(admin, race_id)
    relay = start_relay(tmp_path / "relay", cloud, credential)
    try:
        wait_for(lambda: configured(relay, race_id), what="relay configuration")
        with relay.client() as c:
            wait_for(lambda: c.get("/api/info").json()["uplink"] == "up", what="uplink")
        asyncio.run(upload(relay.quic_port, rider, rider.batch(1, 30)))
        token = official.headers["Authorization"]
        official_name = official.get("/api/me").json()["user"]["username"]
        admin_name = admin.get("/api/me").json()["user"]["username"]
        port = int(cloud.url.rsplit(":", 1)[1])
        cloud.stop()  # the uplink drops; race control goes through the relay

        dnf = {
            "kind": "dnf",
            "rider_id": rider.id,
            "reason": "crash",
            "action_id": str(uuid.uuid4()),
        }
        neutralise = {"state": "neutralised", "action_id": str(uuid.uuid4())}
        with relay.client() as c:
            refused = c.post(
                f"/api/races/{race_id}/actions",
                json=dnf,
                headers={"Authorization": racer.headers["Authorization"]},
            )
            assert refused.status_code == 403
            assert c.post(f"/api/races/{race_id}/actions", json=dnf).status_code == 401
            forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
            response = c.post(
                f"/api/races/{race_id}/actions", json=dnf, headers={"Authorization": forged}
            )
            assert response.status_code == 401
            for body, path in ((dnf, "actions"), (neutralise, "state"), (dnf, "actions")):
                response = c.post(
                    f"/api/races/{race_id}/{path}", json=body, headers={"Authorization": token}
                )
                assert response.status_code == 202, response.text
            assert response.json()["new"] is False  # the replayed DNF
            bad = c.post(
                f"/api/races/{race_id}/actions",
                json={"kind": "penalty", "rider_id": rider.id, "seconds": 0, "reason": ""},
                headers={"Authorization": token},
            )
            assert bad.status_code == 400
        # The relay's own frames show both at once, with no cloud.
        (data,) = ws_frames(relay.http_port, f"/live/{race_id}", 1)
        frame = decode_frame(data)
        assert frame.race_status is RaceStatus.NEUTRALISED
        assert [r.status for r in frame.riders] == [RiderStatus.DNF]

        cloud = start_cloud(tmp_path / "cloud", port=port)

        def forwarded() -> bool:
            with relay.client() as c:
                log = c.get(f"/api/races/{race_id}/control").json()
            return len(log) == 2 and all(e["forwarded"] for e in log)

        wait_for(forwarded, timeout=60, what="commands forwarded to the cloud")
        admin = login(cloud, admin_name)
        actions = admin.get(f"/api/races/{race_id}/actions").json()
        race = admin.get(f"/api/races/{race_id}").json()
        assert [(a["kind"], a["action_id"]) for a in actions] == [("dnf", dnf["action_id"])]
        assert actions[0]["actor"] == official_name
        assert race["state"] == "neutralised"
    finally:
        relay.stop()
        cloud.stop()
