"""Accounts against a real ``gruppetto cloud`` server on loopback: register, log in, lock-out,
refresh-token rotation, logout, password change, admin user management, ``create-admin``.

Tokens, web sessions, the auth middleware and the rate limiter: ``test_auth.py``."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from click.testing import CliRunner

from cloud.auth.tokens import AUDIENCE
from deploy.cli import main
from tests.cloud.conftest import CloudServer

PASSWORD = "correct horse battery"
ISSUER = "gruppetto-cloud"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def error(response: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()["error"]
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def register(client: httpx.Client, role: str = "racer", password: str = PASSWORD) -> str:
    name = unique(role)
    r = client.post(
        "/api/auth/register", json={"username": name, "password": password, "role": role}
    )
    assert r.status_code == 201, r.text
    return name


def login(client: httpx.Client, name: str, password: str = PASSWORD) -> dict[str, Any]:
    r = client.post("/api/auth/login", json={"username": name, "password": password})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


@pytest.fixture(scope="module")
def admin_token(cloud_server: CloudServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    password_file = tmp_path_factory.mktemp("admin") / "password.txt"
    password_file.write_text(PASSWORD + "\n")
    result = cloud_server.admin(
        "create-admin", "--username", "root", "--password-file", str(password_file)
    )
    assert result.returncode == 0, result.stderr
    assert "created admin root" in result.stdout
    with cloud_server.client() as client:
        token: str = login(client, "root")["access_token"]
    return token


# register, login, me, JWKS


def test_register_login_me_and_a_token_verified_offline_with_the_jwks(
    cloud_server: CloudServer,
) -> None:
    with cloud_server.client() as client:
        name = register(client, "spectator")
        tokens = login(client, name.upper())  # usernames are case-insensitive
        assert tokens["token_type"] == "Bearer"
        assert tokens["expires_in"] == 900
        assert tokens["user"]["username"] == name
        assert tokens["user"]["role"] == "spectator"
        assert "password_hash" not in tokens["user"]
        me = client.get("/api/me", headers=bearer(tokens["access_token"]))
        assert me.status_code == 200
        assert me.json() == {"user": tokens["user"], "csrf_token": None}

        document = client.get("/.well-known/jwks.json").json()
    key_set = jwt.PyJWKSet.from_dict(document)
    header = jwt.get_unverified_header(tokens["access_token"])
    assert header["alg"] == "EdDSA"
    assert header["kid"] == key_set.keys[0].key_id
    claims = jwt.decode(
        tokens["access_token"],
        key_set.keys[0].key,
        algorithms=["EdDSA"],
        audience=AUDIENCE,
        issuer=ISSUER,
    )
    assert claims["sub"] == str(tokens["user"]["id"])
    assert claims["name"] == name
    assert claims["role"] == "spectator"
    assert claims["exp"] - claims["iat"] == 900
    assert claims["jti"]


def test_registration_refuses_privileged_roles_weak_passwords_and_bad_input(
    cloud_server: CloudServer,
) -> None:
    with cloud_server.client() as client:

        def attempt(**body: Any) -> httpx.Response:
            return client.post("/api/auth/register", json=body)

        for role in ("admin", "official", "relay", None):
            r = attempt(username=unique("x"), password=PASSWORD, role=role)
            assert r.status_code == 400
            assert "racer, spectator" in error(r)["fields"]["role"]
        r = attempt(username=unique("x"), password="short", role="racer")
        assert error(r)["fields"]["password"] == "must be at least 10 characters"
        r = attempt(username="samesame123", password="SameSame123", role="racer")
        assert error(r)["fields"]["password"] == "must not be the username"
        for bad in ("ab", "a" * 33, "has space", "émile", 42):
            r = attempt(username=bad, password=PASSWORD, role="racer")
            assert r.status_code == 400
            assert "username" in error(r)["fields"]
        r = attempt(username=unique("x"), password=12345678901, role="racer")
        assert error(r)["fields"]["password"] == "must be a string"

        name = register(client)
        r = attempt(username=name.upper(), password=PASSWORD, role="racer")
        assert r.status_code == 409
        assert error(r)["code"] == "username-taken"

        r = client.post("/api/auth/register", content=b"{not json")
        assert r.status_code == 400
        assert error(r)["fields"]["body"] == "invalid JSON"
        r = client.post("/api/auth/register", json=["a", "list"])
        assert r.status_code == 400
        r = client.post("/api/auth/login", json={"username": name, "password": 5})
        assert error(r)["fields"]["password"] == "must be a string"
        r = client.post(
            "/api/auth/login", json={"username": name, "password": PASSWORD, "session": "yes"}
        )
        assert error(r)["fields"]["session"] == "must be true or false"


# passwords and lock-out


def test_a_wrong_password_and_an_unknown_user_get_the_same_answer(
    cloud_server: CloudServer,
) -> None:
    with cloud_server.client() as client:
        name = register(client)
        wrong = client.post("/api/auth/login", json={"username": name, "password": "x" * 12})
        nobody = client.post(
            "/api/auth/login", json={"username": unique("nobody"), "password": PASSWORD}
        )
    assert wrong.status_code == nobody.status_code == 401
    assert error(wrong) == error(nobody)
    assert error(wrong)["code"] == "invalid-credentials"


def test_lock_out_after_too_many_failures_says_when_to_retry(
    cloud_server: CloudServer, admin_token: str
) -> None:
    with cloud_server.client() as client:
        name = register(client)
        for _ in range(5):
            r = client.post("/api/auth/login", json={"username": name, "password": "x" * 12})
            assert r.status_code == 401
        locked = client.post("/api/auth/login", json={"username": name, "password": PASSWORD})
        assert locked.status_code == 429
        assert error(locked)["code"] == "account-locked"
        message = error(locked)["message"]
        assert message.startswith("too many failed logins for this account: it is locked until")
        assert "try again in 300 s" in message or "try again in 299 s" in message
        assert 290 <= int(locked.headers["Retry-After"]) <= 300
        assert locked.headers["Retry-After"] == error(locked)["fields"]["retry_after_s"]

        users = client.get("/api/users", headers=bearer(admin_token)).json()
        row = next(u for u in users if u["username"] == name)
        assert row["locked_until_ms"] > time.time() * 1000

        # unknown names lock the same way, so the answer does not reveal which exist
        ghost = unique("ghost")
        for _ in range(5):
            r = client.post("/api/auth/login", json={"username": ghost, "password": "x" * 12})
            assert r.status_code == 401
        r = client.post("/api/auth/login", json={"username": ghost, "password": "x" * 12})
        assert r.status_code == 429
        assert error(r)["code"] == "account-locked"


# refresh tokens


def test_refresh_rotates_and_reuse_revokes_every_refresh_token(
    cloud_server: CloudServer,
) -> None:
    with cloud_server.client() as client:
        name = register(client)
        first = login(client, name)
        other_device = login(client, name)
        r = client.post("/api/auth/refresh", json={"refresh_token": first["refresh_token"]})
        assert r.status_code == 200, r.text
        second = r.json()
        assert second["refresh_token"] != first["refresh_token"]
        assert client.get("/api/me", headers=bearer(second["access_token"])).status_code == 200

        reused = client.post("/api/auth/refresh", json={"refresh_token": first["refresh_token"]})
        assert reused.status_code == 401
        assert error(reused)["code"] == "refresh-token-reused"
        assert "log in again" in error(reused)["message"]
        for token in (second["refresh_token"], other_device["refresh_token"]):
            r = client.post("/api/auth/refresh", json={"refresh_token": token})
            assert r.status_code == 401

        r = client.post("/api/auth/refresh", json={"refresh_token": "never-issued"})
        assert error(r)["code"] == "invalid-refresh-token"
        r = client.post("/api/auth/refresh", json={})
        assert error(r)["fields"]["refresh_token"] == "required"


def test_logout_revokes_the_refresh_token(cloud_server: CloudServer) -> None:
    with cloud_server.client() as client:
        name = register(client)
        tokens = login(client, name)
        r = client.post("/api/auth/logout", json={"refresh_token": tokens["refresh_token"]})
        assert r.status_code == 204
        r = client.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert r.status_code == 401


def test_changing_the_password_revokes_other_sessions_and_refresh_tokens(
    cloud_server: CloudServer,
) -> None:
    new_password = "a brand new passphrase"
    with cloud_server.client() as client, cloud_server.client() as browser:
        name = register(client)
        tokens = login(client, name)
        web = browser.post(
            "/api/auth/login", json={"username": name, "password": PASSWORD, "session": True}
        )
        assert web.status_code == 200
        headers = bearer(tokens["access_token"])

        wrong = {"current_password": "not it at all", "new_password": new_password}
        r = client.post("/api/auth/password", headers=headers, json=wrong)
        assert r.status_code == 403
        assert error(r)["code"] == "wrong-password"
        r = client.post(
            "/api/auth/password",
            headers=headers,
            json={"current_password": PASSWORD, "new_password": "short"},
        )
        assert error(r)["fields"]["new_password"] == "must be at least 10 characters"

        right = {"current_password": PASSWORD, "new_password": new_password}
        r = client.post("/api/auth/password", headers=headers, json=right)
        assert r.status_code == 200, r.text
        fresh = r.json()
        assert client.get("/api/me", headers=bearer(fresh["access_token"])).status_code == 200
        r = client.post("/api/auth/refresh", json={"refresh_token": fresh["refresh_token"]})
        assert r.status_code == 200

        r = client.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert r.status_code == 401
        assert browser.get("/api/me").status_code == 401  # the other session ended
        r = client.post("/api/auth/login", json={"username": name, "password": PASSWORD})
        assert r.status_code == 401
        login(client, name, new_password)


# admin


def test_admin_endpoints_refuse_everyone_else(cloud_server: CloudServer, admin_token: str) -> None:
    with cloud_server.client() as client:
        official = unique("official")
        invite = {"username": official, "password": PASSWORD, "role": "official"}
        r = client.post("/api/users", headers=bearer(admin_token), json=invite)
        assert r.status_code == 201, r.text
        callers = {
            "racer": bearer(login(client, register(client, "racer"))["access_token"]),
            "spectator": bearer(login(client, register(client, "spectator"))["access_token"]),
            "official": bearer(login(client, official)["access_token"]),
        }
        requests = [("GET", "/api/users"), ("POST", "/api/users"), ("PATCH", "/api/users/1")]
        for method, path in requests:
            r = client.request(method, path, json={})
            assert r.status_code == 401, (method, path)
            assert error(r)["code"] == "unauthenticated"
            for role, headers in callers.items():
                r = client.request(method, path, json={}, headers=headers)
                assert r.status_code == 403, (role, method, path)
                assert error(r)["message"] == "this needs the role admin"


def test_admins_create_promote_and_disable_accounts(
    cloud_server: CloudServer, admin_token: str
) -> None:
    admin = bearer(admin_token)
    with cloud_server.client() as client, cloud_server.client() as browser:
        name = register(client)
        tokens = login(client, name)
        browser.post(
            "/api/auth/login", json={"username": name, "password": PASSWORD, "session": True}
        )
        user_id = tokens["user"]["id"]
        racers = client.get("/api/users", params={"role": "racer"}, headers=admin).json()
        assert any(u["id"] == user_id for u in racers)
        assert all(u["role"] == "racer" for u in racers)

        r = client.patch(f"/api/users/{user_id}", json={"role": "official"}, headers=admin)
        assert r.json()["role"] == "official"
        r = client.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert (
            jwt.decode(r.json()["access_token"], options={"verify_signature": False})["role"]
            == "official"
        )
        assert browser.get("/api/me").json()["user"]["role"] == "official"

        r = client.patch(f"/api/users/{user_id}", json={"disabled": True}, headers=admin)
        assert r.json()["disabled"] is True
        r = client.post("/api/auth/login", json={"username": name, "password": PASSWORD})
        assert r.status_code == 403
        assert error(r)["code"] == "account-disabled"
        assert browser.get("/api/me").status_code == 401

        r = client.patch(f"/api/users/{user_id}", json={"password": "x"}, headers=admin)
        assert error(r)["fields"]["password"] == "unknown field (role, disabled)"
        r = client.patch(f"/api/users/{user_id}", json={"role": "relay"}, headers=admin)
        assert r.status_code == 400
        assert client.patch("/api/users/999999", json={}, headers=admin).status_code == 404

        root = next(
            u for u in client.get("/api/users", headers=admin).json() if u["username"] == "root"
        )
        r = client.patch(f"/api/users/{root['id']}", json={"disabled": True}, headers=admin)
        assert r.status_code == 409
        assert error(r)["code"] == "last-admin"


def test_create_admin_refuses_a_weak_password_or_an_existing_name(
    cloud_server: CloudServer, tmp_path: Path
) -> None:
    weak = tmp_path / "weak.txt"
    weak.write_text("short\n")
    result = cloud_server.admin("create-admin", "--username", "boss", "--password-file", str(weak))
    assert result.returncode == 1
    assert result.stderr.strip() == "Error: password must be at least 10 characters"

    good = tmp_path / "good.txt"
    good.write_text(PASSWORD)
    result = cloud_server.admin("create-admin", "--username", "boss", "--password-file", str(good))
    assert result.returncode == 0, result.stderr
    result = cloud_server.admin("create-admin", "--username", "BOSS", "--password-file", str(good))
    assert result.returncode == 1
    assert "already exists" in result.stderr
    with cloud_server.client() as client:
        assert login(client, "boss")["user"]["role"] == "admin"


def test_create_admin_without_a_password_and_no_terminal_says_what_to_do(
    tmp_path: Path,
) -> None:
    args = ["cloud", "--data", str(tmp_path), "create-admin", "--username", "boss"]
    result = CliRunner().invoke(main, args, input="")
    assert result.exit_code == 1
    assert "no password: give --password-file FILE, or run in a terminal" in result.output
