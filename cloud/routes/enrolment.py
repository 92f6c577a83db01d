"""Enrolment endpoints: devices (racers) and relays (admins), and the relay's race config."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ..auth.principal import Role, caller, requires
from ..device_status import DeviceStatuses
from ..enrolment import Enrolment
from ..errors import bad_request, not_found
from ..races import now_ms
from ..validation import json_object, path_int


def service(request: Request) -> Enrolment:
    enrolment: Enrolment = request.app.state.enrolment
    return enrolment


@requires(Role.RACER)
async def enrol_device(request: Request) -> JSONResponse:
    """``{"public_key": base64}`` → a device certificate for the racer's races."""
    result = service(request).enrol_device(caller(request), await json_object(request))
    return JSONResponse(result, status_code=201)


@requires(Role.RACER, Role.ADMIN)
async def list_devices(request: Request) -> JSONResponse:
    """Racers see their devices; admins see all."""
    who = caller(request)
    rows = service(request).devices.of_user(None if who.role is Role.ADMIN else who.id)
    for row in rows:
        row["device_id"] = row["device_id"].hex()
    return JSONResponse(rows)


@requires(Role.ADMIN)
async def enrol_relay(request: Request) -> JSONResponse:
    """``{"name", "race_ids"}`` → the relay and its credential (shown once)."""
    result = service(request).enrol_relay(caller(request), await json_object(request))
    return JSONResponse(result, status_code=201)


@requires(Role.ADMIN, Role.OFFICIAL)
async def list_relays(request: Request) -> JSONResponse:
    """Enrolled relays and their races."""
    return JSONResponse(service(request).relays.overview())


@requires(Role.ADMIN)
async def update_relay(request: Request) -> JSONResponse:
    """``{"race_ids"?, "disabled"?}``."""
    relay_id = path_int(request, "relay_id")
    data = await json_object(request)
    return JSONResponse(service(request).update_relay(caller(request), relay_id, data))


@requires(Role.RELAY)
async def relay_config(request: Request) -> JSONResponse:
    """The calling relay's races: course, riders, issuer key."""
    return JSONResponse(service(request).relay_config(caller(request)))


STATUS_FIELDS = {
    "name": str,
    "page_url": str,
    "webtransport_url": str,
    "cert_sha256": str,
    "self_signed": bool,
    "cert_not_after_ms": int,
    "trackers": int,
    "spectators": int,
    "backlog_fixes": int,
    "uplink": str,
    "races": list,
}
STALE_AFTER_MS = 60_000


@requires(Role.RELAY)
async def relay_status(request: Request) -> JSONResponse:
    """A relay reports its health and public addresses (every configuration refresh).

    ``devices``, when present, lists the newest battery status of each of its trackers
    (``{device_id, t_ms, battery_pct, charging}``): they go onto the races' live streams.
    """
    data = await json_object(request)
    status = {}
    for key, kind in STATUS_FIELDS.items():
        value = data.get(key)
        if value is not None and not isinstance(value, kind):
            raise bad_request(f"{key} must be a {kind.__name__}", **{key: kind.__name__})
        if isinstance(value, str) and len(value) > 300:
            raise bad_request(f"{key} is too long", **{key: "at most 300 characters"})
        status[key] = value
    who = caller(request)
    devices = 0
    if data.get("devices") is not None:
        statuses: DeviceStatuses = request.app.state.device_status
        devices = await run_in_threadpool(statuses.from_relay, who, data["devices"])
    await run_in_threadpool(service(request).relays.report, who.id, status, now_ms())
    return JSONResponse({"ok": True, "devices": devices})


@requires(Role.ADMIN, Role.OFFICIAL, Role.RACER, Role.SPECTATOR)
async def race_relays(request: Request) -> JSONResponse:
    """Where to watch a race live: its relays' pages and WebTransport addresses."""
    race_id = path_int(request, "race_id")
    if service(request).races.get(race_id) is None:
        raise not_found(f"race {race_id}")
    now = now_ms()
    out = []
    for relay in service(request).relays.serving(race_id):
        status = relay["status"] or {}
        reported = relay["reported_ms"]
        out.append(
            {
                "id": relay["id"],
                "name": relay["name"],
                "reported_ms": reported,
                "stale": reported is None or now - reported > STALE_AFTER_MS,
                **{k: status.get(k) for k in STATUS_FIELDS if k not in ("name", "races")},
            }
        )
    return JSONResponse(out)


routes = [
    Route("/api/devices", enrol_device, methods=["POST"]),
    Route("/api/devices", list_devices, methods=["GET"]),
    Route("/api/relays", enrol_relay, methods=["POST"]),
    Route("/api/relays", list_relays, methods=["GET"]),
    Route("/api/relays/{relay_id:int}", update_relay, methods=["PATCH"]),
    Route("/api/relay/config", relay_config, methods=["GET"]),
    Route("/api/relay/status", relay_status, methods=["POST"]),
    Route("/api/races/{race_id:int}/relays", race_relays, methods=["GET"]),
]
