"""Logging in and enrolling against a real cloud; ``run`` refuses what it must refuse."""

from __future__ import annotations

import base64
import json
import signal
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from deploy.cli import main
from sync_protocol.certificate import DeviceCertificate
from sync_protocol.chain import public_key_bytes
from tests.cloud.conftest import CloudServer
from tests.cloud.helpers import PASSWORD, admin_client, loop_gpx, user_client
from tests.tracker_app.tracking import (
    cafile,
    new_race,
    new_racer,
    start_h3_cloud,
    tracker_login,
)
from tracker_app import account
from tracker_app.errors import AccountError, NotAllowed


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudServer]:
    server = start_h3_cloud(tmp_path_factory.mktemp("cloud"))
    yield server
    server.stop(signal.SIGKILL)  # its graceful HTTP/3 shutdown takes 5 s; nothing to keep


@pytest.fixture(scope="module")
def admin(cloud: CloudServer, tmp_path_factory: pytest.TempPathFactory) -> httpx.Client:
    return admin_client(cloud, tmp_path_factory.mktemp("admin"))


def tracker(*args: str, input: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["tracker", *args], input=input)
    return result.exit_code, result.output


def test_login_enrols_the_device_and_keeps_its_certificate(
    cloud: CloudServer, admin: httpx.Client, tmp_path: Path
) -> None:
    race_id = new_race(admin)
    assert admin.put(f"/api/races/{race_id}/course", content=loop_gpx()).status_code == 200
    racer = new_racer(cloud, race_id)
    data = tmp_path / "tracker"
    password = tmp_path / "pw"
    password.write_text(PASSWORD + "\n")

    code, output = tracker(
        "login",
        "--server",
        cloud.url,
        "--username",
        racer.username,
        "--password-file",
        str(password),
        "--cafile",
        str(cafile(cloud)),
        "--data",
        str(data),
    )
    assert code == 0, output
    assert f"certified for races: {race_id}" in output

    key_file = data / account.KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((data / account.ACCOUNT_FILE).stat().st_mode) == 0o600
    saved = account.load(data)
    assert saved.racer_id == racer.id
    assert saved.certificate.race_ids == (race_id,)
    assert saved.h3_port == int(cloud.process.args[-1].rsplit(":", 1)[1])  # type: ignore[index]
    key = load_pem_private_key(key_file.read_bytes(), password=None)
    assert saved.certificate.device_public_key == public_key_bytes(key)  # type: ignore[arg-type]
    course = account.race_course(data, race_id)
    assert course is not None
    assert course.total_length_m > 4_000
    account.check_race(saved, race_id, saved.certificate.not_before_ms + 60_000)

    # The cloud lists the device; logging in again keeps the same key.
    devices = racer.client.get("/api/devices").json()
    assert [d["device_id"] for d in devices] == [saved.certificate.device_id.hex()]
    again = tracker_login(cloud, racer, data)
    assert again.certificate.device_id == saved.certificate.device_id

    code, output = tracker("status", "--data", str(data))
    assert code == 0, output
    assert f"racer       {racer.username}" in output
    assert "buffer      empty" in output


def test_wrong_password_is_one_clear_line_and_saves_nothing(
    cloud: CloudServer, tmp_path: Path
) -> None:
    racer = new_racer(cloud)
    data = tmp_path / "tracker"
    code, output = tracker(
        "login",
        "--server",
        cloud.url,
        "--username",
        racer.username,
        "--cafile",
        str(cafile(cloud)),
        "--data",
        str(data),
        input="not the password\n",
    )
    assert code == 1
    assert output.strip() == (
        f"Error: wrong username or password for {cloud.url}; check them and try again"
    )
    assert not (data / account.ACCOUNT_FILE).exists()


def test_an_untrusted_cloud_certificate_says_to_pass_cafile(
    cloud: CloudServer, tmp_path: Path
) -> None:
    racer = new_racer(cloud)
    with pytest.raises(AccountError, match="pass --cafile with its certificate"):
        account.login(cloud.url, racer.username, PASSWORD, tmp_path)


def test_a_spectator_cannot_enrol_a_tracker(cloud: CloudServer, tmp_path: Path) -> None:
    client, _ = user_client(cloud, "spectator")
    name = client.get("/api/me").json()["user"]["username"]
    with pytest.raises(AccountError, match="only registered racers can track"):
        account.login(cloud.url, name, PASSWORD, tmp_path, cafile=cafile(cloud))


def test_run_refuses_without_login(tmp_path: Path) -> None:
    code, output = tracker("run", "--race", "1", "--source", "sim", "--data", str(tmp_path))
    assert code == 1
    assert "no racer is logged in" in output
    assert "gruppetto tracker login --server URL" in output


def test_run_refuses_a_race_the_racer_is_not_registered_for(
    cloud: CloudServer, admin: httpx.Client, tmp_path: Path
) -> None:
    registered, other = new_race(admin), new_race(admin)
    racer = new_racer(cloud, registered)
    tracker_login(cloud, racer, tmp_path)
    code, output = tracker("run", "--race", str(other), "--source", "sim", "--data", str(tmp_path))
    assert code == 1
    assert f"is not registered for race {other}" in output
    assert f"register for race {other}, then log in again" in output
    assert not (tmp_path / "fixes.db").exists()  # nothing tracked


def test_run_refuses_an_expired_certificate(
    cloud: CloudServer, admin: httpx.Client, tmp_path: Path
) -> None:
    race_id = new_race(admin)
    racer = new_racer(cloud, race_id)
    saved = tracker_login(cloud, racer, tmp_path)
    # The cloud's own key issues the same certificate, but one that ended an hour ago.
    cloud_key = load_pem_private_key(
        (cloud.data_dir / "keys" / "cloud-ed25519.pem").read_bytes(), password=None
    )
    now = saved.certificate.not_before_ms + 5 * 60_000
    expired = DeviceCertificate.issue(
        cloud_key,  # type: ignore[arg-type]
        saved.certificate.device_public_key,
        racer.id,
        (race_id,),
        now - 7_200_000,
        now - 3_600_000,
    )
    record = json.loads((tmp_path / account.ACCOUNT_FILE).read_text())
    record["certificate"] = base64.b64encode(expired.encode()).decode()
    (tmp_path / account.ACCOUNT_FILE).write_text(json.dumps(record))

    code, output = tracker(
        "run", "--race", str(race_id), "--source", "sim", "--data", str(tmp_path)
    )
    assert code == 1
    assert "the device certificate expired on" in output
    assert f"gruppetto tracker login --server {cloud.url}" in output
    with pytest.raises(NotAllowed, match="expired"):
        account.check_race(account.load(tmp_path), race_id, now)
