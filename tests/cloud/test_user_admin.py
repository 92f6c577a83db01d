"""Admins unlock locked-out accounts and reset passwords, against a real server; audited."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.cloud.conftest import CloudServer
from tests.cloud.helpers import PASSWORD, admin_client, user_client

WRONG = "not the password"


@pytest.fixture(scope="module")
def admin(cloud_server: CloudServer, tmp_path_factory: pytest.TempPathFactory) -> httpx.Client:
    return admin_client(cloud_server, tmp_path_factory.mktemp("user-admin"))


def racer(server: CloudServer) -> tuple[str, int]:
    client, user_id = user_client(server, "racer")
    return client.get("/api/me").json()["user"]["username"], user_id


def log_in(server: CloudServer, name: str, password: str, **extra: Any) -> httpx.Response:
    with server.client() as client:
        return client.post(
            "/api/auth/login", json={"username": name, "password": password, **extra}
        )


def audit(admin: httpx.Client, user_id: int) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = admin.get("/api/audit", params={"user_id": user_id}).json()
    return entries


def test_an_admin_unlocks_a_locked_out_account(
    cloud_server: CloudServer, admin: httpx.Client
) -> None:
    name, user_id = racer(cloud_server)
    for _ in range(5):
        assert log_in(cloud_server, name, WRONG).status_code == 401
    assert log_in(cloud_server, name, PASSWORD).json()["error"]["code"] == "account-locked"
    row = next(u for u in admin.get("/api/users").json() if u["id"] == user_id)
    assert row["locked_until_ms"] is not None

    unlocked = admin.post(f"/api/users/{user_id}/unlock")
    assert unlocked.status_code == 200, unlocked.text
    assert (unlocked.json()["locked_until_ms"], unlocked.json()["failed_logins"]) == (None, 0)
    assert log_in(cloud_server, name, PASSWORD).status_code == 200
    entry = audit(admin, user_id)[0]
    assert (entry["action"], entry["object_type"], entry["object_id"]) == (
        "user.unlock",
        "user",
        user_id,
    )
    assert entry["actor"] == admin.get("/api/me").json()["user"]["username"]
    assert entry["detail"]["locked_until_ms"] == row["locked_until_ms"]
    assert admin.post("/api/users/999999/unlock").status_code == 404


def test_a_password_reset_gives_a_one_time_password_and_ends_every_session(
    cloud_server: CloudServer, admin: httpx.Client
) -> None:
    name, user_id = racer(cloud_server)
    tokens = log_in(cloud_server, name, PASSWORD).json()
    browser = cloud_server.client()
    session = browser.post(
        "/api/auth/login", json={"username": name, "password": PASSWORD, "session": True}
    )
    assert session.status_code == 200
    for _ in range(5):  # locked out too: the reset also ends that
        log_in(cloud_server, name, WRONG)

    reset = admin.post(f"/api/users/{user_id}/password-reset")
    assert reset.status_code == 200, reset.text
    assert reset.headers["cache-control"] == "no-store"
    temporary = reset.json()["temporary_password"]
    assert len(temporary) >= 16
    assert reset.json()["user"]["password_reset_expires_ms"] == reset.json()["expires_ms"]
    assert reset.json()["user"]["locked_until_ms"] is None

    with cloud_server.client() as client:  # the old refresh token and web session are dead
        refreshed = client.post(
            "/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
        )
        assert refreshed.status_code == 401
    assert browser.get("/api/me").status_code == 401
    assert log_in(cloud_server, name, PASSWORD).status_code == 401
    required = log_in(cloud_server, name, temporary)
    assert (required.status_code, required.json()["error"]["code"]) == (
        403,
        "password-change-required",
    )
    assert "/api/auth/complete-reset" in required.json()["error"]["message"]

    url = "/api/auth/complete-reset"
    body = {"username": name, "temporary_password": temporary, "new_password": temporary}
    with cloud_server.client() as client:
        same = client.post(url, json=body)
        assert same.json()["error"]["fields"] == {
            "new_password": "must differ from the temporary password"
        }
        wrong = client.post(url, json={**body, "temporary_password": WRONG})
        assert wrong.json()["error"]["code"] == "invalid-credentials"
        done = client.post(url, json={**body, "new_password": "my own new password"})
        assert done.status_code == 200, done.text
        assert done.json()["token_type"] == "Bearer"
        assert client.post(url, json=body).status_code == 401  # used up
        settled = client.post(
            url,
            json={**body, "temporary_password": "my own new password", "new_password": PASSWORD},
        )
        assert settled.json()["error"]["code"] == "no-password-reset"
    assert log_in(cloud_server, name, "my own new password").status_code == 200
    assert log_in(cloud_server, name, temporary).status_code == 401

    entries = audit(admin, user_id)
    assert entries[0]["action"] == "user.password-reset"
    assert entries[0]["detail"] == {"expires_ms": reset.json()["expires_ms"]}
    assert temporary not in json.dumps(entries)  # the audit never holds a password
    row = next(u for u in admin.get("/api/users").json() if u["id"] == user_id)
    assert row["password_reset_expires_ms"] is None
    assert admin.post("/api/users/999999/password-reset").status_code == 404


def test_user_changes_by_admins_are_audited(admin: httpx.Client) -> None:
    created = admin.post(
        "/api/users", json={"username": "marshal-1", "password": PASSWORD, "role": "official"}
    )
    assert created.status_code == 201
    user_id = created.json()["id"]
    assert admin.patch(f"/api/users/{user_id}", json={"disabled": True}).status_code == 200
    assert admin.patch(f"/api/users/{user_id}", json={"disabled": True}).status_code == 200
    actions = [(e["action"], e["detail"]) for e in audit(admin, user_id)]
    assert actions == [
        ("user.update", {"disabled": [False, True]}),
        ("user.create", {"role": "official"}),
    ]
