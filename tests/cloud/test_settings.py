"""Settings: every one from its environment variable, flags winning, bad values refused, and
the rate limits and lock-out policy changed on a real server taking effect."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from click.testing import CliRunner

from cloud.auth.accounts import Accounts
from cloud.auth.passwords import Passwords
from cloud.auth.principal import Principal, Role
from cloud.auth.user_admin import UserAdmin
from cloud.cli import LIMITS
from cloud.errors import ApiError
from cloud.keys import load_or_create
from cloud.settings import ENVIRONMENT, Settings, SettingsError
from cloud.store.audit import AuditLog
from cloud.store.base import Database
from cloud.store.users import UserStore
from deploy.cli import main
from tests.cloud.conftest import start_cloud
from tests.cloud.helpers import PASSWORD
from tests.cloud.riders import setup_race

ADMIN = Principal(1, "root", Role.ADMIN)


class FakeClock:
    def __init__(self, t: float = 1_800_000_000.0) -> None:
        self.t = t

    def now(self) -> float:
        return self.t


def changed(spec: dataclasses.Field[object]) -> tuple[str, object]:
    """A value other than the default, as the variable's text and as the setting."""
    if spec.type == "bool":
        return "false", False
    if spec.type == "int":
        value = int(spec.default) + 7  # type: ignore[call-overload]
        return str(value), value
    return "somewhere-else", "somewhere-else"


def test_every_setting_comes_from_its_variable_and_a_flag_wins(tmp_path: Path) -> None:
    specs = {spec.name: spec for spec in dataclasses.fields(Settings)}
    environ, expected = {"GRUPPETTO_DATA": str(tmp_path)}, {}
    for name, variable in ENVIRONMENT.items():
        environ[variable], expected[name] = changed(specs[name])
    settings = Settings.from_environ(environ)
    assert settings.data_dir == tmp_path
    assert {name: getattr(settings, name) for name in ENVIRONMENT} == expected
    flagged = Settings.from_environ(environ, lockout_s=42, login_attempts=None)
    assert (flagged.lockout_s, flagged.login_attempts) == (42, expected["login_attempts"])
    assert Settings.from_environ({}).lockout_s == 300


def test_bad_settings_are_refused_with_the_variable_named(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="GRUPPETTO_LOCKOUT must be a whole number, not 'soon'"):
        Settings.from_environ({"GRUPPETTO_LOCKOUT": "soon"})
    with pytest.raises(SettingsError, match=r"tracker_uploads \(GRUPPETTO_TRACKER_UPLOADS\)"):
        Settings.from_environ({"GRUPPETTO_TRACKER_UPLOADS": "0"})
    result = CliRunner().invoke(
        main, ["cloud", "--data", str(tmp_path / "d")], env={"GRUPPETTO_LOGIN_WINDOW": "-5"}
    )
    assert result.exit_code == 2
    assert "login_window_s (GRUPPETTO_LOGIN_WINDOW) must be at least 1, not -5" in result.output
    assert not (tmp_path / "d").exists()  # refused before anything was made


def test_help_documents_every_limit_flag_and_its_variable() -> None:
    help_text = " ".join(CliRunner().invoke(main, ["cloud", "--help"]).output.split())
    for flag, name, _ in LIMITS:
        assert flag in help_text
        assert ENVIRONMENT[name] in help_text
    for variable in ("GRUPPETTO_ACCESS_TTL", "GRUPPETTO_DEVICE_CERT_TTL"):
        assert variable in help_text


# the policy, on an injected clock (no sleeping)


@pytest.fixture
def accounts(tmp_path: Path) -> Iterator[tuple[Accounts, UserAdmin, FakeClock]]:
    settings = Settings(
        data_dir=tmp_path,
        login_attempts=2,
        login_window_s=60,
        lockout_s=600,
        temporary_password_ttl_s=3_600,
    )
    db = Database(tmp_path / "gruppetto.db")
    clock = FakeClock()
    service = Accounts(
        settings,
        UserStore(db),
        load_or_create(tmp_path),
        passwords=Passwords(PasswordHasher(time_cost=1, memory_cost=8_192)),
        clock=clock,
    )
    yield service, UserAdmin(service, AuditLog(db)), clock
    db.close()


def refused(work: object, code: str) -> ApiError:
    assert callable(work)
    with pytest.raises(ApiError) as caught:
        work()
    assert caught.value.code == code, caught.value.message
    return caught.value


def test_the_lockout_lasts_its_own_setting_not_the_window(
    accounts: tuple[Accounts, UserAdmin, FakeClock],
) -> None:
    service, _, clock = accounts
    service.register({"username": "ada", "password": PASSWORD, "role": "racer"}, "10.0.0.1")
    wrong = {"username": "ada", "password": "not the password"}
    right = {"username": "ada", "password": PASSWORD}
    ghost = {"username": "nobody", "password": "not the password"}
    for attempt in (wrong, wrong, ghost, ghost):
        refused(lambda a=attempt: service.login(a, "10.0.0.1"), "invalid-credentials")
    locked = refused(lambda: service.login(right, "10.0.0.1"), "account-locked")
    assert locked.fields == {"retry_after_s": "600"}
    assert refused(lambda: service.login(ghost, "10.0.0.1"), "account-locked").fields == {
        "retry_after_s": "600"  # an unknown name locks the same way
    }
    clock.t += 599  # long past the 60 s window, still inside the 600 s lock-out
    refused(lambda: service.login(right, "10.0.0.1"), "account-locked")
    clock.t += 1
    assert service.login(right, "10.0.0.1").body["user"]["username"] == "ada"


def test_a_temporary_password_expires_after_its_setting(
    accounts: tuple[Accounts, UserAdmin, FakeClock],
) -> None:
    service, admin, clock = accounts
    user = service.register({"username": "bea", "password": PASSWORD, "role": "racer"}, "x")
    reset = admin.reset_password(ADMIN, user.id)
    assert reset["expires_ms"] == int(clock.t * 1000) + 3_600_000
    temporary = reset["temporary_password"]
    clock.t += 3_600
    body = {"username": "bea", "temporary_password": temporary, "new_password": "mine at last"}
    refused(lambda: service.complete_reset(body, "x"), "temporary-password-expired")
    again = admin.reset_password(ADMIN, user.id)["temporary_password"]
    done = service.complete_reset({**body, "temporary_password": again}, "x")
    assert done.body["user"]["id"] == user.id
    assert service.login({"username": "bea", "password": "mine at last"}, "x").body["access_token"]


# the same on a real server, set from the environment and from flags


def test_changed_limits_take_effect_on_a_running_server(tmp_path: Path) -> None:
    server = start_cloud(
        tmp_path / "cloud",
        *("--address-login-failures", "5"),
        env={
            "GRUPPETTO_LOGIN_ATTEMPTS": "2",
            "GRUPPETTO_LOCKOUT": "1000",
            "GRUPPETTO_REGISTRATIONS": "2",
        },
    )
    try:
        anonymous = server.client()
        for name in ("cyclist1", "cyclist2"):
            body = {"username": name, "password": PASSWORD, "role": "racer"}
            assert anonymous.post("/api/auth/register", json=body).status_code == 201
        third = anonymous.post(
            "/api/auth/register",
            json={"username": "cyclist3", "password": PASSWORD, "role": "racer"},
        )
        assert third.status_code == 429
        assert "at most 2 in 3600 s" in third.json()["error"]["message"]

        wrong = {"username": "cyclist1", "password": "not the password"}
        for _ in range(2):
            assert anonymous.post("/api/auth/login", json=wrong).status_code == 401
        locked = anonymous.post(
            "/api/auth/login", json={"username": "cyclist1", "password": PASSWORD}
        )
        assert locked.json()["error"]["code"] == "account-locked"
        assert 990 <= int(locked.headers["Retry-After"]) <= 1000

        for name in ("ghost1", "ghost2", "ghost3"):  # the address's 3rd..5th failures
            body = {"username": name, "password": "not the password"}
            assert anonymous.post("/api/auth/login", json=body).status_code == 401
        other = anonymous.post(
            "/api/auth/login", json={"username": "cyclist2", "password": PASSWORD}
        )
        assert other.status_code == 429
        assert other.json()["error"]["code"] == "rate-limited"
        assert "failed logins from this address: at most 5" in other.json()["error"]["message"]
    finally:
        server.stop()


def test_ingest_rate_and_secure_cookies_behind_a_tls_proxy(tmp_path: Path) -> None:
    # plain HTTP, as behind a TLS-terminating proxy: the variable still marks cookies Secure
    server = start_cloud(
        tmp_path / "cloud", "--ingest-rate", "1", env={"GRUPPETTO_SECURE_COOKIES": "true"}
    )
    try:
        _, _, credential = setup_race(server, tmp_path)
        relay = server.client(headers={"Authorization": f"Relay {credential}"})
        assert relay.post("/api/ingest", content=b"").json() == {"results": []}
        answers = [relay.post("/api/ingest", content=b"") for _ in range(4)]  # 1 per second
        (limited, *_) = [r for r in answers if r.status_code != 200]
        assert limited.status_code == 429
        assert limited.json()["error"]["code"] == "rate-limited"
        assert 1 <= int(limited.headers["Retry-After"]) <= 2

        anonymous = server.client()
        body = {"username": "cookie1", "password": PASSWORD, "role": "racer"}
        assert anonymous.post("/api/auth/register", json=body).status_code == 201
        login = {"username": "cookie1", "password": PASSWORD, "session": True}
        cookie = anonymous.post("/api/auth/login", json=login).headers["set-cookie"].lower()
        assert "secure" in cookie.split("; ")
        assert "httponly" in cookie.split("; ")
    finally:
        server.stop()
