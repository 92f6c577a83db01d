"""Logging people in against a real cloud server."""

from __future__ import annotations

import itertools
from pathlib import Path

import httpx

from sync_protocol.course import Course
from sync_protocol.gpx import course_to_gpx
from tests.cloud.conftest import CloudServer

PASSWORD = "correct horse battery"
_names = itertools.count(1)


def admin_client(server: CloudServer, tmp_path: Path) -> httpx.Client:
    """Create an admin with ``gruppetto cloud create-admin`` and log in."""
    name = f"admin{next(_names)}"
    secret = tmp_path / f"{name}.pw"
    secret.write_text(PASSWORD + "\n")
    result = server.admin("create-admin", "--username", name, "--password-file", str(secret))
    assert result.returncode == 0, result.stderr
    return login(server, name)


def login(server: CloudServer, username: str, password: str = PASSWORD) -> httpx.Client:
    client = server.client()
    response = client.post("/api/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    client.headers["Authorization"] = f"Bearer {response.json()['access_token']}"
    return client


def user_client(server: CloudServer, role: str) -> tuple[httpx.Client, int]:
    """Register a new racer or spectator and log in; returns the client and user id."""
    name = f"{role}{next(_names)}"
    with server.client() as anon:
        response = anon.post(
            "/api/auth/register", json={"username": name, "password": PASSWORD, "role": role}
        )
        assert response.status_code == 201, response.text
    client = login(server, name)
    return client, client.get("/api/me").json()["user"]["id"]


def staff_client(server: CloudServer, admin: httpx.Client, role: str) -> httpx.Client:
    """An official (or another admin) created by an admin."""
    name = f"{role}{next(_names)}"
    response = admin.post("/api/users", json={"username": name, "password": PASSWORD, "role": role})
    assert response.status_code == 201, response.text
    return login(server, name)


def loop_gpx(km: float = 5.0) -> bytes:
    """A closed circuit of about ``km`` kilometres as GPX."""
    import math

    points = []
    radius = km * 1000 / (2 * math.pi)
    for i in range(120):
        a = 2 * math.pi * i / 120
        points.append(
            (
                45.0 + radius * math.sin(a) / 111_195,
                6.0 + radius * math.cos(a) / 78_600,
                500.0 + 20 * math.sin(a),
            )
        )
    points.append(points[0])
    return course_to_gpx(Course.from_points(points, name="circuit"))
