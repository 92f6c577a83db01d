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


def test_every_route_module_is_covered() -> None:
    modules = {p.stem for p in Path(cloud.routes.__path__[0]).glob("*.py")} - {"__init__"}
    assert modules <= {m.name for m in pkgutil.iter_modules(cloud.routes.__path__)}
