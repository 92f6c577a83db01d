"""Every endpoint, every role, plus anonymous: only the roles an endpoint names get in."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import httpx
import pytest
from starlette.routing import Route

import cloud.routes
from tests.cloud.conftest import CloudServer
from tests.cloud.helpers import admin_client, staff_client, user_client

ROLES = ("admin", "official", "racer", "spectator", "relay", "anonymous")
PUBLIC: frozenset[str] = frozenset()
PEOPLE = frozenset({"admin", "official", "racer", "spectator"})
ADMIN = frozenset({"admin"})
STAFF = frozenset({"admin", "official"})
EXPECTED = {
    ("POST", "/api/auth/register"): PUBLIC,
    ("POST", "/api/auth/login"): PUBLIC,
    ("POST", "/api/auth/refresh"): PUBLIC,
    ("POST", "/api/auth/logout"): PUBLIC,
    ("POST", "/api/auth/password"): PEOPLE,
    ("POST", "/api/auth/complete-reset"): PUBLIC,
    ("GET", "/api/me"): PEOPLE,
    ("GET", "/.well-known/jwks.json"): PUBLIC,
    ("GET", "/api/users"): ADMIN,
    ("POST", "/api/users"): ADMIN,
    ("PATCH", "/api/users/{user_id:int}"): ADMIN,
    ("POST", "/api/users/{user_id:int}/unlock"): ADMIN,
    ("POST", "/api/users/{user_id:int}/password-reset"): ADMIN,
    ("GET", "/api/races/{race_id:int}/results"): PEOPLE,
    ("GET", "/api/races/{race_id:int}/stats"): PEOPLE,
    ("GET", "/api/races/{race_id:int}/summary"): PEOPLE,
    ("GET", "/api/riders/{rider_id:int}/season"): PEOPLE,
    ("GET", "/api/races/compare"): PEOPLE,
    ("GET", "/api/races/{race_id:int}/track"): PEOPLE,
    ("POST", "/api/races/{race_id:int}/actions"): STAFF | {"relay"},
    ("GET", "/api/races/{race_id:int}/actions"): PEOPLE | {"relay"},
    ("GET", "/api/races/{race_id:int}/live"): STAFF | {"relay"},
    ("POST", "/api/devices"): frozenset({"racer"}),
    ("GET", "/api/devices"): frozenset({"racer", "admin"}),
    ("POST", "/api/relays"): ADMIN,
    ("GET", "/api/relays"): STAFF,
    ("PATCH", "/api/relays/{relay_id:int}"): ADMIN,
    ("GET", "/api/relay/config"): frozenset({"relay"}),
    ("GET", "/healthz/live"): PUBLIC,
    ("GET", "/healthz/ready"): PUBLIC,
    ("POST", "/api/ingest"): frozenset({"relay"}),
    ("GET", "/metrics"): PUBLIC,
    ("GET", "/api/races"): PEOPLE,
    ("POST", "/api/races"): ADMIN,
    ("GET", "/api/races/{race_id:int}"): PEOPLE,
    ("PATCH", "/api/races/{race_id:int}"): ADMIN,
    ("DELETE", "/api/races/{race_id:int}"): ADMIN,
    ("POST", "/api/races/{race_id:int}/state"): STAFF | {"relay"},
    ("PUT", "/api/races/{race_id:int}/course"): ADMIN,
    ("PUT", "/api/races/{race_id:int}/checkpoints"): ADMIN,
    ("GET", "/api/races/{race_id:int}/riders"): PEOPLE,
    ("POST", "/api/races/{race_id:int}/registrations"): frozenset({"admin", "racer"}),
    ("DELETE", "/api/races/{race_id:int}/registrations/{user_id:int}"): frozenset(
        {"admin", "racer"}
    ),
    ("GET", "/api/audit"): ADMIN,
    ("POST", "/v1/hello"): PUBLIC,  # trackers: the device signatures authenticate
    ("POST", "/v1/batches"): PUBLIC,
    ("POST", "/v1/status"): PUBLIC,
    ("POST", "/api/relay/status"): frozenset({"relay"}),
    ("GET", "/api/races/{race_id:int}/relays"): PEOPLE,
}
"""Who may call what. A route whose roles change must change here too, on purpose."""


def all_routes() -> list[tuple[str, str, tuple[str, ...]]]:
    found = []
    for module in pkgutil.iter_modules(cloud.routes.__path__):
        routes = importlib.import_module(f"cloud.routes.{module.name}").routes
        for route in routes:
            if not isinstance(route, Route):
                continue
            roles = getattr(route.endpoint, "roles", None)
            assert roles is not None, f"{route.path} has neither @requires nor @public"
            for method in sorted((route.methods or set()) - {"HEAD"}):
                found.append((method, route.path, tuple(r.value for r in roles)))
    return found


@pytest.fixture(scope="module")
def clients(
    cloud_server: CloudServer, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, httpx.Client]:
    admin = admin_client(cloud_server, tmp_path_factory.mktemp("roles"))
    race = admin.post("/api/races", json={"name": "m", "starts_at": "2026-07-01T10:00:00Z"})
    relay = admin.post("/api/relays", json={"name": "matrix", "race_ids": [race.json()["id"]]})
    credential = relay.json()["credential"]
    return {
        "admin": admin,
        "official": staff_client(cloud_server, admin, "official"),
        "racer": user_client(cloud_server, "racer")[0],
        "spectator": user_client(cloud_server, "spectator")[0],
        "relay": cloud_server.client(headers={"Authorization": f"Relay {credential}"}),
        "anonymous": cloud_server.client(),
    }


@pytest.mark.parametrize(("method", "path", "allowed"), all_routes())
def test_role_matrix(
    clients: dict[str, httpx.Client], method: str, path: str, allowed: tuple[str, ...]
) -> None:
    url = re.sub(r"\{[a-z_]+(:[a-z]+)?\}", "999999", path)
    for role in ROLES:
        if path.startswith("/api/auth/logout") and role != "anonymous":
            continue  # logging out is covered by the accounts tests
        response = clients[role].request(method, url, json={})
        if not allowed or role in allowed:
            assert response.status_code not in (401, 403), f"{role} refused at {method} {path}"
        elif role == "anonymous":
            assert response.status_code == 401, f"anonymous {method} {path}: {response.status_code}"
        else:
            assert response.status_code == 403, f"{role} {method} {path}: {response.status_code}"


def test_every_route_has_the_roles_the_table_expects() -> None:
    found = {(method, path): frozenset(roles) for method, path, roles in all_routes()}
    assert found == EXPECTED


def test_every_route_module_is_covered() -> None:
    modules = {p.stem for p in Path(cloud.routes.__path__[0]).glob("*.py")} - {"__init__"}
    assert modules <= {m.name for m in pkgutil.iter_modules(cloud.routes.__path__)}
